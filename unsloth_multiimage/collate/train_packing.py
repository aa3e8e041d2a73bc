"""Packing the training batches of the zoo collator: when it applies, and with which model.

The zoo collator keeps no reference to its model (``__slots__``, no ``model``) and cannot tell a
training batch from an evaluation one. Packing therefore happens inside a training dataloader:
the ``trainer_packing`` patch wraps the ``collate_fn`` of ``Trainer.get_train_dataloader`` in
:class:`PackingCollate`, which names the trainer's model for the duration of each call
(:func:`packing_model`). Evaluation and prediction dataloaders are built elsewhere and stay
unpacked (as unsloth's own ``padding_free`` collator keeps them: ``_unpacked_for_evaluation``).
A custom training loop packs with ``with packing_for(model): batch = collator(rows)``.

Under ``on_overflow="shrink"`` a batch about to be packed gets a row fitter (:func:`shrinker_for`,
:mod:`.shrink`) for the row pipeline, before upstream collates; the rows it shrank are warned
about here, with their collated lengths, once per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.decision import StrEnum
from ..settings import get_settings
from .pack_attention import PackingRefused
from .pack_context import packing_for, packing_model, packing_requested
from .pack_plan import RowTooLongError, plan_packs
from .pack_split import locate_rows
from .packing import facts_of, pack_batch
from .shrink import RowShrinker, Shrunk, shrink_refused, warn_shrunk
from .token_count import SizeCounter

__all__ = [
    "PackingCollate",
    "packing_for",
    "packing_model",
    "pack_if_training",
    "shrinker_for",
    "max_seq_length_of",
    "packing_train_loader",
    "TrainerFix",
]

logger = logging.getLogger("unsloth_multiimage")


class TrainerFix(StrEnum):
    """What the ``trainer_packing`` patch adds (``[patches.trainer_packing]``)."""

    PACKED_TRAIN_BATCHES = "packed_train_batches"


class PackingCollate:
    """A training dataloader's ``collate_fn``, called with :func:`packing_for` its model.

    Picklable (DataLoader workers): it holds the collate function and the model.
    """

    __slots__ = ("collate_fn", "model")

    def __init__(self, collate_fn: Callable[[Any], Any], model: Any) -> None:
        self.collate_fn = collate_fn
        self.model = model

    def __call__(self, features: Any) -> Any:
        with packing_for(self.model):
            return self.collate_fn(features)

    def __getstate__(self) -> tuple[Any, Any]:
        return self.collate_fn, self.model

    def __setstate__(self, state: tuple[Any, Any]) -> None:
        self.collate_fn, self.model = state


def max_seq_length_of(collator: Any, model: Any = None) -> int:
    """The longest packed sequence: the collator's own ``max_seq_length``, else the
    ``packing_max_seq_length`` setting, else the model's ``max_seq_length`` (an Unsloth model's,
    from ``from_pretrained(max_seq_length=...)``); an error naming the three when none is set."""
    own = _positive(getattr(collator, "max_seq_length", None))
    if own is not None:
        return own
    setting = get_settings().packing_max_seq_length
    if setting is not None:
        return setting
    model_limit = _positive(getattr(model if model is not None else packing_model(), "max_seq_length", None))
    if model_limit is not None:
        return model_limit
    raise PackingRefused(
        "unsloth_multiimage: packing needs the longest sequence a pack may be, and the collator and the model "
        "have no max_seq_length. Fix: pass max_seq_length to UnslothVisionDataCollator, or "
        "configure(packing_max_seq_length=...) (UNSLOTH_MULTIIMAGE_PACKING_MAX_SEQ_LENGTH)."
    )


def _positive(value: Any) -> int | None:
    """``value`` when it is a positive int, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def shrinker_for(
    collator: Any,
    adapter: Any,
    render: Callable[[Any, int], str],
    identity: Callable[[int], str | None] | None = None,
    *,
    add_special_tokens: bool = False,
) -> RowShrinker | None:
    """The row fitter of ``on_overflow="shrink"`` (:class:`.shrink.RowShrinker`) for a batch that is
    about to be packed, or None (shrink off, not a training batch, or a family whose image tokens
    are not counted from image sizes: its rows too long are refused by the planner, naming why)."""
    if get_settings().on_overflow != "shrink" or not packing_requested() or adapter is None:
        return None
    counter = SizeCounter(collator.processor, adapter, add_special_tokens=add_special_tokens)
    if counter.per_image is None:
        return None
    return RowShrinker(counter, render, max_seq_length_of(collator), get_settings(), identity)


def pack_if_training(
    collator: Any,
    batch: Any,
    adapter: Any,
    images_per_row: Sequence[int],
    shrinker: RowShrinker | None = None,
) -> Any:
    """``batch`` packed when packing is on and this is a training batch, else ``batch`` itself;
    ``shrinker``: the row fitter the batch's rows went through (its shrunk rows are warned about)."""
    if not packing_requested():
        return batch
    model = packing_model()
    settings = get_settings()
    tokenizer = getattr(collator.processor, "tokenizer", collator.processor)
    longest = max_seq_length_of(collator)
    lengths = [share.length for share in locate_rows(batch, facts_of(adapter), images_per_row, model)]
    shrunk: list[Shrunk] = shrinker.shrunk if shrinker is not None else []
    if shrunk:
        warn_shrunk(shrunk, longest, lengths)
    try:
        plan = plan_packs(lengths, longest)
    except RowTooLongError as exc:
        if settings.on_overflow == "shrink" and shrinker is None and exc.row is not None:
            family = adapter.name if adapter is not None else "this processor"
            # declared, but this transformers' image processor cannot count from a size
            declared = adapter is not None and adapter.image_tokens is not None
            raise shrink_refused(exc, family, lengths[exc.row], longest, declared) from exc
        raise
    packed = pack_batch(
        batch, plan, adapter, model, images_per_row, pad_token_id=getattr(tokenizer, "pad_token_id", None)
    )
    logger.debug(
        "unsloth_multiimage: packed %d rows into %d sequence(s) of %d tokens",
        len(images_per_row),
        int(packed["input_ids"].shape[0]),
        int(packed["input_ids"].shape[1]),
    )
    return packed


def packing_train_loader(loader: Any, model: Any) -> Any:
    """``Trainer.get_train_dataloader``'s ``loader`` whose batches are packed for ``model`` while
    packing is configured (its ``collate_fn`` becomes a :class:`PackingCollate`); unchanged with
    packing off."""
    if model is None or not get_settings().packing:
        return loader
    # accelerate's prepared loader iterates the DataLoader it wraps (DataLoaderAdapter.base_dataloader).
    inner = loader
    while getattr(inner, "base_dataloader", None) is not None:
        inner = inner.base_dataloader
    collate_fn = getattr(inner, "collate_fn", None)
    if collate_fn is not None and not isinstance(collate_fn, PackingCollate):
        inner.collate_fn = PackingCollate(collate_fn, model)
    return loader
