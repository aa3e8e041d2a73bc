"""Built-in plugin: unsloth's ``UnslothVisionDataCollator(padding_free=True)`` packs every family
the plugin proves, with the plugin's packing (the work: :mod:`unsloth_multiimage.collate.padding_free`).

``unsloth_padding_free`` wraps the subclass's ``__init__`` (upstream refuses every model type but
Gemma 4 there); ``unsloth_padding_free_batches`` wraps its ``__call__`` (upstream packs a batch into
one unbounded row, without per-family positions). The first acts only while the second is in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..collate.padding_free import MODULE, BatchFix, BuildFix, build, call, class_shape
from ..plugin import AdapterLookup, Decision, Patch, Wrapper, hookimpl

__all__ = ["umi_patches"]


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name="unsloth_padding_free",
            module=MODULE,
            attribute="UnslothVisionDataCollator.__init__",
            make_wrapper=make_build_wrapper,
            shape_check=class_shape,
            fixes=tuple(BuildFix),
        ),
        Patch(
            name="unsloth_padding_free_batches",
            module=MODULE,
            attribute="UnslothVisionDataCollator.__call__",
            make_wrapper=make_call_wrapper,
            shape_check=class_shape,
            fixes=tuple(BatchFix),
        ),
    ]


def make_build_wrapper(decision: Decision, *, adapters: AdapterLookup) -> Wrapper:
    """``__init__`` that builds a padding-free collator for every family the plugin proves."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return build(wrapped, instance, args, kwargs, adapters)

    return wrapper


def make_call_wrapper(decision: Decision) -> Wrapper:
    """``__call__`` that packs a padding-free collator's batch with the plugin's packing."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return call(wrapped, instance, args, kwargs)

    wrapper.umi_padding_free_batches = True  # type: ignore[attr-defined]  # read by collate.padding_free
    return wrapper
