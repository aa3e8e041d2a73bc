"""Packed batches: the rows of a padded batch laid end to end in the fewest sequences, exactly.

:func:`pack_batch` turns the padded batch a collator produced into packed sequences by a plan
(:func:`~.pack_plan.plan_packs`) and the family's declared facts
(:class:`~unsloth_multiimage.adapters.PackingFacts`):

- every per-token key (``input_ids``, ``labels``, ``mm_token_type_ids``, ``token_type_ids`` ...) is
  cut to each row's real tokens and concatenated in document order; each document's first label
  is ignored (the previous document's last token must not learn to predict it);
- positions restart for every document (an M-RoPE family's come from the model's own
  ``get_rope_index``, called on each document alone);
- every image tensor is laid out in document order: a row's own slots, its run of units on a flat
  axis, its entries of per-image keys; Mllama's ``cross_attention_mask`` gives each document's
  tokens its own slots only (as the padded batch built it: ``latest`` or ``cumulative``);
- attention is isolated per document by the mechanism :mod:`.pack_attention` chooses, and the
  batch carries ``use_cache=False`` (transformers builds packed masks only without a cache).

The packed batch gives the same summed loss, per-document losses and gradients as the padded one
(tests/collate/test_packing_families.py). A family without facts, a key no fact places, or an
attention setup that cannot isolate documents is refused (:class:`.pack_attention.PackingRefused`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..adapters import ModelAdapter, PackingFacts
from .pack_attention import (
    Attention,
    PackingRefused,
    block_mask,
    check_overlay_present,
    check_window,
    choose_attention,
)
from .pack_context import packing_off
from .pack_images import check_own_slots, place_images, place_slots
from .pack_plan import PackPlan, plan_packs
from .pack_split import PackingLayoutError, RowShare, locate_rows

__all__ = ["pack_batch", "pack_padded", "facts_of", "PackingRefused", "PackingLayoutError", "IGNORE_INDEX"]

IGNORE_INDEX = -100
#: keys every family's batch may hold besides those its facts place
BASE_KEYS = frozenset({"input_ids", "labels", "attention_mask"})


def facts_of(adapter: ModelAdapter | None) -> PackingFacts:
    """The adapter's packing facts, or :class:`PackingRefused` naming the family and the fallback."""
    if adapter is None:
        raise PackingRefused(
            "unsloth_multiimage: packing is refused for this processor: no model adapter knows it, so its "
            "batches' image tensors cannot be laid out per document. Fix: turn packing off "
            f"({packing_off()}) to train on unpacked batches."
        )
    if adapter.packing is None:
        raise PackingRefused(
            f"unsloth_multiimage: packing is refused for {adapter.name}: it is not proven exact for this family "
            f"(no packing facts in its adapter). Fix: turn packing off ({packing_off()}) to train on "
            f"unpacked batches."
        )
    return adapter.packing


def _check_keys(batch: Mapping[str, Any], family: str, facts: PackingFacts) -> None:
    unknown = sorted(k for k, v in batch.items() if v is not None and k not in BASE_KEYS | facts.keys)
    if unknown:
        raise PackingRefused(
            f"unsloth_multiimage: packing {family} is refused for this batch: it holds {unknown}, which "
            f"{family}'s packing facts do not place per document (e.g. videos). Fix: turn packing off "
            f"({packing_off()}) for this data, or leave those inputs out."
        )


def _check_plan(plan: PackPlan, shares: Sequence[RowShare]) -> None:
    rows = sorted(r for seq in plan.sequences for r in seq)
    if rows != list(range(len(shares))):
        raise ValueError(f"the pack plan places rows {rows}, the batch has {len(shares)} rows (each exactly once)")
    for share in shares:
        if plan.lengths[share.row] != share.length:
            raise ValueError(
                f"the pack plan counts {plan.lengths[share.row]} tokens for row {share.row}, the batch has {share.length}"
            )


def _pad_id(batch: Mapping[str, Any], pad_token_id: int | None) -> int:
    if pad_token_id is not None:
        return int(pad_token_id)
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2 and (mask == 0).any():
        return int(batch["input_ids"][mask == 0][0])
    return 0


def _rope_index(model: Any) -> Any:
    for module in model.modules():
        found = getattr(module, "get_rope_index", None)
        if callable(found):
            return found
    raise PackingLayoutError(f"{type(model).__name__} has no get_rope_index: its M-RoPE positions cannot be computed")


def _mrope_positions(model: Any, batch: Mapping[str, Any], share: RowShare) -> Any:
    """``(3, length)`` M-RoPE positions of one document, by the model's own ``get_rope_index``."""
    import torch

    rope_index = _rope_index(model)
    accepted = inspect.signature(rope_index).parameters
    ids = batch["input_ids"][share.row : share.row + 1, share.start : share.stop]
    grid = batch.get("image_grid_thw")
    kwargs: dict[str, Any] = {
        "input_ids": ids,
        "image_grid_thw": grid[share.image_range[0] : share.image_range[1]]
        if grid is not None and share.images
        else None,
        "video_grid_thw": None,
        "attention_mask": torch.ones_like(ids),
    }
    types = batch.get("mm_token_type_ids")
    if types is not None:
        kwargs["mm_token_type_ids"] = types[share.row : share.row + 1, share.start : share.stop]
    with torch.no_grad():
        positions, _ = rope_index(**{k: v for k, v in kwargs.items() if k in accepted})
    return positions[:, 0]


def _model_dtype(model: Any) -> Any:
    import torch

    dtype = getattr(model, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _check_overlay_edges(family: str, facts: PackingFacts, out: dict[str, Any], doc: Any) -> None:
    """Under packed positions transformers numbers image runs over the whole row: a run must not
    cross from one document into the next."""
    if facts.overlay != "image_blocks" or facts.overlay_key not in out:
        return
    image = out[facts.overlay_key] == 1
    crossing = image[:, 1:] & image[:, :-1] & (doc[:, 1:] != doc[:, :-1])
    if bool(crossing.any()):
        raise PackingRefused(
            f"unsloth_multiimage: packing {family} is refused for this batch: a document ends with image tokens "
            f"and the next one starts with them, so their image blocks would merge. Fix: turn packing off "
            f"({packing_off()})."
        )


@dataclass
class _Layout:
    """The token-level tensors of the packed batch being built."""

    out: dict[str, Any]
    positions: Any  # (sequences, seq_len) text positions
    doc: Any  # (sequences, seq_len) document number inside its sequence
    real: Any  # (sequences, seq_len) True on the documents' own tokens
    mrope: Any  # (3, sequences, seq_len) M-RoPE positions, or None


def _empty_layout(batch: Mapping[str, Any], facts: PackingFacts, plan: PackPlan, pad_token_id: int | None) -> _Layout:
    import torch

    ids = batch["input_ids"]
    shape = (len(plan.sequences), max(plan.sequence_lengths, default=0))
    out: dict[str, Any] = {"input_ids": ids.new_full(shape, _pad_id(batch, pad_token_id))}
    if batch.get("labels") is not None:
        out["labels"] = batch["labels"].new_full(shape, IGNORE_INDEX)
    for key in facts.token_keys:
        if batch.get(key) is not None:
            out[key] = batch[key].new_zeros((*shape, *batch[key].shape[2:]))
    return _Layout(
        out=out,
        positions=torch.zeros(shape, dtype=torch.long),
        doc=torch.zeros(shape, dtype=torch.long),
        real=torch.zeros(shape, dtype=torch.bool),
        mrope=torch.zeros((3, *shape), dtype=torch.long) if facts.positions == "mrope" else None,
    )


def _lay_documents(
    layout: _Layout,
    batch: Mapping[str, Any],
    facts: PackingFacts,
    plan: PackPlan,
    shares: Sequence[RowShare],
    model: Any,
) -> None:
    """Every document's tokens, labels, per-token keys and positions, sequence by sequence."""
    import torch

    out, seq_len = layout.out, int(layout.positions.shape[1])
    for s, seq in enumerate(plan.sequences):
        at = 0
        for number, r in enumerate(seq):
            share = shares[r]
            stop = at + share.length
            for key in ("input_ids", "labels", *facts.token_keys):
                if key in out:
                    out[key][s, at:stop] = batch[key][r, share.start : share.stop]
            if "labels" in out and share.length:
                out["labels"][s, at] = IGNORE_INDEX  # the previous document must not learn to predict it
            layout.positions[s, at:stop] = torch.arange(share.length) + facts.position_offset
            layout.doc[s, at:stop] = number
            layout.real[s, at:stop] = True
            if layout.mrope is not None and share.length:
                layout.mrope[:, s, at:stop] = _mrope_positions(model, batch, share)
            at = stop
        # The tail that pads a shorter sequence continues its last document, as right padding does in
        # a padded batch: its tokens learn nothing and come after every real token, which attends only
        # backwards. (A tail of its own would be pad tokens seeing only each other: constant hidden
        # states, and NaN gradients through Gemma 3n's per-token standard deviations.)
        tail = torch.arange(1, seq_len - at + 1)
        last = int(layout.positions[s, at - 1]) if at else facts.position_offset - 1
        layout.positions[s, at:] = last + tail
        layout.doc[s, at:] = max(len(seq) - 1, 0)
        if layout.mrope is not None:
            layout.mrope[:, s, at:] = (int(layout.mrope[:, s, at - 1].max()) if at else -1) + tail


def _check_batch(
    batch: Mapping[str, Any], family: str, facts: PackingFacts, plan: PackPlan, shares: Sequence[RowShare], model: Any
) -> tuple[PackPlan, Attention]:
    """The checks before packing; the plan as the mechanism lays it out (flash: one row)."""
    _check_plan(plan, shares)
    attention = choose_attention(model, family, facts)
    if attention.mechanism == "varlen" and len(plan.sequences) > 1:
        # Flash attention finds documents from position ids only in a batch of one row.
        plan = PackPlan((tuple(sorted(r for seq in plan.sequences for r in seq)),), plan.lengths, sum(plan.lengths))
    if facts.cross_attention_key is not None and batch.get(facts.cross_attention_key) is not None:
        check_own_slots(model, family)
    if attention.mechanism == "block_mask":
        check_window(model, family, [s.length for s in shares])
    check_overlay_present(model, family, facts, batch.get(facts.overlay_key) is not None)
    return plan, attention


def pack_batch(
    batch: Mapping[str, Any],
    plan: PackPlan,
    adapter: ModelAdapter | None,
    model: Any,
    images_per_row: Sequence[int],
    *,
    pad_token_id: int | None = None,
) -> dict[str, Any]:
    """The packed batch of ``batch`` by ``plan``.

    Args:
        batch: the padded batch a collator produced (``input_ids``, ``labels``,
            ``attention_mask`` ``(batch, seq_len)``, the family's image tensors).
        plan: which rows go into which sequence (its lengths must be the rows' real tokens).
        adapter: the family's model adapter (its ``packing`` facts).
        model: the model the batch is for (attention implementation, dtype, ``get_rope_index``).
        images_per_row: how many images each row was given.
        pad_token_id: the id that pads sequences (default: the batch's own padding).

    Raises:
        PackingRefused: the family, a key of the batch or the attention setup cannot be packed exactly.
    """
    import torch

    family = adapter.name if adapter is not None else "this processor"
    facts = facts_of(adapter)
    _check_keys(batch, family, facts)
    shares = locate_rows(batch, facts, images_per_row, model)
    plan, attention = _check_batch(batch, family, facts, plan, shares, model)
    layout = _empty_layout(batch, facts, plan, pad_token_id)
    _lay_documents(layout, batch, facts, plan, shares, model)
    out = layout.out
    place_slots(batch, facts, plan, shares, out)
    place_images(batch, facts, plan, shares, out)
    if attention.mechanism == "block_mask":
        out["position_ids"] = layout.positions if layout.mrope is None else layout.mrope
        overlay = out.get(facts.overlay_key) if facts.overlay else None
        out["attention_mask"] = block_mask(layout.doc, layout.real, overlay, facts.overlay, _model_dtype(model))
    else:
        _check_overlay_edges(family, facts, out, layout.doc)
        mrope = layout.mrope
        out["position_ids"] = layout.positions if mrope is None else torch.cat([layout.positions[None], mrope], dim=0)
    out["use_cache"] = False  # transformers builds the packed mask only without a cache
    return out


def pack_padded(
    batch: Mapping[str, Any],
    adapter: ModelAdapter | None,
    model: Any,
    images_per_row: Sequence[int],
    max_seq_length: int,
    *,
    pad_token_id: int | None = None,
) -> dict[str, Any]:
    """Plan (:func:`~.pack_plan.plan_packs` over the rows' real tokens) and :func:`pack_batch`."""
    facts = facts_of(adapter)
    shares = locate_rows(batch, facts, images_per_row, model)
    plan = plan_packs([s.length for s in shares], max_seq_length)
    return pack_batch(batch, plan, adapter, model, images_per_row, pad_token_id=pad_token_id)
