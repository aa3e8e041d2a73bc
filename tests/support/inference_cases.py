"""The family fixtures the inference tests run on: tests/support/tiny_vlms/'s (built once per session,
via family_cases), and the project's own tiny Mllama on every transformers release it supports
(4.46+: tiny_vlms gates its other fixtures at 4.56, not this one)."""

from __future__ import annotations

from typing import Any

from tests.support.family_cases import EXPECTED, IMG, assistant, model_of, tiny_of, upstream_failure, user

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
        from tests.support import tiny_vlms

        _mllama.append(tiny_vlms.FAMILIES["mllama"]())
    return _mllama[0]
