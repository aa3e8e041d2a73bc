"""The family fixtures the inference tests run on: tests/tiny_vlms.py's (built once per session, via
tests/adapters/family_cases.py), and the project's own tiny Mllama on every transformers release it
supports (4.46+: tiny_vlms gates its other fixtures at 4.56, not this one)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))  # the family fixtures' helpers

from family_cases import EXPECTED, IMG, assistant, model_of, tiny_of, upstream_failure, user  # noqa: E402

__all__ = ["EXPECTED", "IMG", "assistant", "model_of", "tiny_family", "upstream_failure", "user"]

_mllama: list[Any] = []


def tiny_family(family: str) -> Any:
    """The family's ``tiny_vlms.Tiny`` (skips with the reason where it cannot be built here)."""
    import pytest

    try:
        return tiny_of(family)  # the session's shared fixture (and model)
    except pytest.skip.Exception:
        if family != "mllama":
            raise
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    if not _mllama:  # transformers < 4.56: tiny_vlms' version gate, which the tiny Mllama does not need
        import tiny_vlms

        _mllama.append(tiny_vlms.FAMILIES["mllama"]())
    return _mllama[0]
