"""Built-in plugin: ``MllamaProcessor`` takes every image of every sample, on every release.

Wraps ``MllamaProcessor.__call__``; the work is :func:`unsloth_multiimage.collate.mllama.call`.
The cumulative cross-attention mask (``configure(mllama_cross_attention="cumulative")``) is a
setting, not a fix: it acts wherever the wrapper is installed, whatever fixes the release needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..collate.mllama import Fix, call
from ..plugin import Decision, Patch, Wrapper, hookimpl, signature_accepts

__all__ = ["umi_patches"]


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name="mllama_processor",
            module="transformers.models.mllama.processing_mllama",
            attribute="MllamaProcessor.__call__",
            make_wrapper=make_wrapper,
            shape_check=lambda call: signature_accepts(call, "images", "text"),
            fixes=tuple(Fix),
        )
    ]


def make_wrapper(decision: Decision) -> Wrapper:
    """The ``__call__`` wrapper for the installed release (``decision.fixes`` are its active fixes)."""
    fixes = decision.fixes

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return call(wrapped, instance, args, kwargs, fixes)

    return wrapper
