"""Built-in plugin: ``UnslothVisionDataCollator`` sends every image of every example.

One wrapper on the zoo class's ``__call__`` covers every release line and every method layout,
and the unsloth subclass (``unsloth.trainer.UnslothVisionDataCollator``); the work is
:func:`unsloth_multiimage.collate.zoo_collator.collate`. A second patch repairs the
prompt/completion image extraction of the releases that need ``pc_extract_tuple``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..collate.release import Fix, PcFix
from ..collate.zoo_collator import collate
from ..plugin import AdapterLookup, Decision, Patch, Wrapper, hookimpl, signature_accepts

__all__ = ["umi_patches"]

MODULE = "unsloth_zoo.vision_utils"


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name="unsloth_collator",
            module=MODULE,
            attribute="UnslothVisionDataCollator.__call__",
            make_wrapper=make_wrapper,
            shape_check=lambda call: signature_accepts(call, positional=1),
            fixes=tuple(Fix),
        ),
        Patch(
            name="unsloth_collator_pc_extract",
            module=MODULE,
            attribute="UnslothVisionDataCollator._extract_images_for_pc",
            make_wrapper=make_pc_extract_wrapper,
            shape_check=lambda call: signature_accepts(call, positional=3),
            fixes=tuple(PcFix),
        ),
    ]


def make_wrapper(decision: Decision, *, adapters: AdapterLookup) -> Wrapper:
    """The ``__call__`` wrapper for the installed release (``decision.fixes`` are its active fixes;
    ``adapters`` finds the model family of the collator's processor)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if instance is None or len(args) != 1 or kwargs:
            return wrapped(*args, **kwargs)
        examples = list(args[0])
        if not examples:
            return wrapped(*args, **kwargs)
        return collate(wrapped, instance, examples, decision, adapters)

    return wrapper


def make_pc_extract_wrapper(decision: Decision) -> Wrapper:
    """``_extract_images_for_pc`` returns ``(images, videos, video_kwargs)`` to a caller that resizes
    what it gets as the image list, so every prompt/completion row fails: give it the images."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = wrapped(*args, **kwargs)
        if isinstance(result, tuple) and len(result) == 3:
            return result[0]
        return result

    return wrapper
