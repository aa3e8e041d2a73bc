"""The outcome of a version check (kept free of heavy imports: read at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["APPLY", "NATIVE", "UNTESTED", "UNSUPPORTED", "ABSENT", "Decision"]

APPLY = "apply"
NATIVE = "native"
UNTESTED = "untested"
UNSUPPORTED = "unsupported"
ABSENT = "absent"


@dataclass(frozen=True)
class Decision:
    """What a patch does on one installed version, and why.

    ``state`` is one of apply / native / untested / unsupported / absent; ``applies`` says
    whether the wrapper is installed; ``fixes`` names the parts of the patch that are active.
    """

    state: str
    reason: str
    applies: bool
    version: str | None = None
    fixes: frozenset[str] = field(default_factory=frozenset)
