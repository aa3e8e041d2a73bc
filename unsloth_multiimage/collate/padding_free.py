"""unsloth's ``UnslothVisionDataCollator(padding_free=True)``, packed by the plugin's packing.

unsloth's subclass of the zoo collator (``unsloth.trainer``) packs a ``padding_free`` batch into one
unbounded row, for Gemma 4 only: building it for any other model raises. With the plugin, a family
whose packing the plugin proves (its adapter's packing facts) is packed by the code behind
``configure(packing=True)`` (:mod:`.train_packing`): the fewest sequences of at most
``max_seq_length`` tokens, positions, labels, attention and images kept per document. The
collator keeps upstream's ``padding_free`` flag (unsloth's trainer then collates evaluation from an
unpacked copy) and its model (:class:`PackedFor`); each call runs upstream's own unpacked path
(formatting_func, the video check, the zoo collator) with that model named
(:func:`.pack_context.packing_for`), and the patched zoo collator packs the batch.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..adapters import AdapterLookup
from ..engine.decision import StrEnum
from ..engine.patching import TargetAbsent
from ..errors import PackingRefused
from .pack_context import packing_for
from .train_packing import max_seq_length_of

__all__ = ["BuildFix", "BatchFix", "PackedFor", "build", "call", "class_shape", "MODULE"]

MODULE = "unsloth.trainer"
#: The upstream members the two wrappers rely on (checked before either is applied).
_SLOTS = ("_padding_free", "_checked_video_paths")
_UNPACKED = "_collate_unpacked"


class BuildFix(StrEnum):
    """What the ``unsloth_padding_free`` patch adds (``[patches.unsloth_padding_free]``)."""

    PROVEN_FAMILIES = "proven_families"


class BatchFix(StrEnum):
    """What the ``unsloth_padding_free_batches`` patch adds (``[patches.unsloth_padding_free_batches]``)."""

    PLUGIN_PACKING = "plugin_packing"


class PackedFor(set[str]):
    """The collator's ``_checked_video_paths`` set, holding the model its batches are packed for.

    The collator is fully slotted and cannot be weak-referenced, so no side table can hold its
    model safely; this set is the one object of its own the plugin may extend (upstream only adds
    the video paths it checked; copies share it)."""

    def __init__(self, paths: Iterable[str], model: Any) -> None:
        super().__init__(paths)
        self.model = model


def class_shape(target: Any) -> str | None:
    """None when ``unsloth.trainer.UnslothVisionDataCollator`` has what both wrappers use: the
    ``padding_free`` keyword, the slots named in ``_SLOTS`` and the unpacked path."""
    cls = getattr(sys.modules.get(MODULE), "UnslothVisionDataCollator", None)
    if not isinstance(cls, type):
        return f"{MODULE}.UnslothVisionDataCollator is not a class"
    if not any("__call__" in vars(klass) for klass in cls.__mro__[:-1]):
        return TargetAbsent(f"{MODULE}.UnslothVisionDataCollator is unsloth's CPU stand-in (it collates on a GPU only)")
    try:
        params = inspect.signature(inspect.getattr_static(cls, "__init__")).parameters
    except (TypeError, ValueError):
        return f"{MODULE}.UnslothVisionDataCollator.__init__'s signature cannot be read"
    if "padding_free" not in params:
        return f"{MODULE}.UnslothVisionDataCollator.__init__ takes no padding_free"
    slots = {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}
    missing = [name for name in _SLOTS if name not in slots]
    if missing or not callable(getattr(cls, _UNPACKED, None)):
        return f"{MODULE}.UnslothVisionDataCollator lacks {', '.join(missing) or _UNPACKED}"
    return None


def _batches_patched(cls: type) -> bool:
    """Whether ``cls.__call__`` is the plugin's (else upstream would pack with its own code)."""
    wrapper = getattr(inspect.getattr_static(cls, "__call__", None), "_self_wrapper", None)
    return getattr(wrapper, "umi_padding_free_batches", False) is True


def build(
    wrapped: Callable[..., Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    adapters: AdapterLookup,
) -> Any:
    """``__init__`` with ``padding_free=True`` for a family the plugin proves: upstream builds an
    unpacked collator, then it is marked padding-free and given its model. A processor no adapter
    knows, or a family without packing facts, is left to upstream (its Gemma 4 path, or its
    refusal, which is reworded to say what the plugin proves)."""
    if not kwargs.get("padding_free") or not _batches_patched(type(instance)):
        return wrapped(*args, **kwargs)
    model = args[0] if args else kwargs.get("model")
    processor = args[1] if len(args) > 1 else kwargs.get("processor")
    adapter = adapters(processor) if processor is not None else None
    if adapter is None or adapter.packing is None:
        try:
            return wrapped(*args, **kwargs)
        except ValueError as exc:
            if "padding_free" not in str(exc):
                raise
            family = adapter.name if adapter is not None else "this processor (no model adapter knows it)"
            raise PackingRefused(
                f"unsloth_multiimage: UnslothVisionDataCollator(padding_free=True) is refused for {family}: unsloth "
                f"packs only the model types it lists, and the plugin proves packing for the families whose adapter "
                f"has packing facts, which {family} has not. Fix: padding_free=False (unpacked batches)."
            ) from exc
    result = wrapped(*args, **{**kwargs, "padding_free": False})
    max_seq_length_of(instance, model)  # no limit anywhere: refused now, not at the first batch
    instance._padding_free = True
    instance._checked_video_paths = PackedFor(instance._checked_video_paths, model)
    return result


def call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``__call__`` of a collator :func:`build` marked: upstream's unpacked path with its model
    named, so the patched zoo collator packs; anything else goes to upstream unchanged (an
    evaluation copy has ``_padding_free`` off)."""
    paths = getattr(instance, "_checked_video_paths", None)
    if not getattr(instance, "_padding_free", False) or not isinstance(paths, PackedFor) or len(args) != 1 or kwargs:
        return wrapped(*args, **kwargs)
    with packing_for(paths.model, padding_free=True):
        return getattr(instance, _UNPACKED)(args[0])
