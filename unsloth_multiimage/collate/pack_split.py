"""Where each row of a padded batch lives: its real tokens, and its share of every image tensor.

A padded batch holds a row's tokens between padding, and its images in one of three layouts
(:class:`~unsloth_multiimage.adapters.PackingFacts`): slots of its own (``(batch, slots, ...)``),
a run of units on a flat axis shared by the whole batch (``(units, ...)``, row after row, the order
in which the model scatters image features into image tokens), and one entry per image (also row
after row). :func:`locate_rows` finds every row's share, checking that the shares add up to the
tensors; nothing is copied here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..adapters import PackingFacts
from ..errors import PackingLayoutError

__all__ = ["RowShare", "PackingLayoutError", "locate_rows", "image_token_id"]


@dataclass(frozen=True)
class RowShare:
    """One row's share of a padded batch.

    Attributes:
        row: the row's index in the batch.
        start, stop: its real tokens, ``[start, stop)`` of the padded row.
        images: how many images it has.
        slots: its slot indices on the slot axis (slot keys).
        units: its ``[first, last)`` range on the unit axis (unit keys).
        image_range: its ``[first, last)`` range on the per-image axis (image keys).
    """

    row: int
    start: int
    stop: int
    images: int
    slots: tuple[int, ...] = ()
    units: tuple[int, int] = (0, 0)
    image_range: tuple[int, int] = (0, 0)

    @property
    def length(self) -> int:
        return self.stop - self.start


def _spans(batch: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Each row's real tokens: the ones of ``attention_mask`` (one contiguous run, either padding side)."""
    ids = batch["input_ids"]
    rows, width = int(ids.shape[0]), int(ids.shape[1])
    mask = batch.get("attention_mask")
    if mask is None:
        return [(0, width)] * rows
    if mask.dim() != 2:
        raise PackingLayoutError(f"attention_mask must be (batch, seq_len) to pack, got shape {tuple(mask.shape)}")
    spans = []
    for r in range(rows):
        real = mask[r].nonzero().flatten().tolist()
        if not real:
            spans.append((0, 0))
            continue
        start, stop = real[0], real[-1] + 1
        if stop - start != len(real):
            raise PackingLayoutError(f"row {r}'s attention_mask has padding between real tokens: cannot pack it")
        spans.append((start, stop))
    return spans


def image_token_id(model: Any) -> int:
    """The id of the token every image unit is expanded into, from the model's config."""
    config = getattr(model, "config", None)
    for owner in (config, getattr(config, "text_config", None)):
        for name in ("image_token_id", "image_token_index"):
            found = getattr(owner, name, None)
            if isinstance(found, int):
                return found
    raise PackingLayoutError(f"{type(model).__name__}'s config names no image_token_id / image_token_index")


def _first_axis(batch: Mapping[str, Any], keys: Sequence[str]) -> int | None:
    """The common first-axis length of the present ``keys`` (None when none is present)."""
    sizes = {k: int(batch[k].shape[0]) for k in keys if batch.get(k) is not None}
    if len(set(sizes.values())) > 1:
        raise PackingLayoutError(f"these keys should share their first axis but do not: {sizes}")
    return next(iter(sizes.values()), None)


def _units_per_row(
    batch: Mapping[str, Any], facts: PackingFacts, images: Sequence[int], spans: Sequence[tuple[int, int]], model: Any
) -> list[int]:
    if facts.units == "images":
        return list(images)
    if facts.units == "grid":
        grid = batch.get("image_grid_thw")
        if grid is None:
            raise PackingLayoutError("units='grid' needs image_grid_thw in the batch")
        per_image = [int(t) * int(h) * int(w) for t, h, w in grid.tolist()]
        out, at = [], 0
        for n in images:
            out.append(sum(per_image[at : at + n]))
            at += n
        return out
    # "tokens": every unit gives the same number of image tokens.
    token = image_token_id(model)
    ids = batch["input_ids"]
    per_row = [int((ids[r, a:b] == token).sum()) for r, (a, b) in enumerate(spans)]
    total_units = _first_axis(batch, facts.unit_keys) or 0
    total_tokens = sum(per_row)
    if total_units == 0:
        return [0] * len(per_row)
    if total_tokens % total_units:
        raise PackingLayoutError(
            f"{total_tokens} image tokens do not divide evenly over {total_units} image units: units differ in size"
        )
    each = total_tokens // total_units
    if any(n % each for n in per_row):
        raise PackingLayoutError(f"a row's image tokens ({per_row}) are not a whole number of units of {each} tokens")
    return [n // each for n in per_row]


def _slots(batch: Mapping[str, Any], facts: PackingFacts, images: Sequence[int]) -> list[tuple[int, ...]]:
    present = [k for k in facts.slot_keys if batch.get(k) is not None]
    if not present:
        return [() for _ in images]
    first = batch[present[0]]
    if facts.slots == "images":
        if max(images, default=0) > int(first.shape[1]):
            raise PackingLayoutError(
                f"{present[0]} has {int(first.shape[1])} slots per row, a row has {max(images)} images"
            )
        return [tuple(range(n)) for n in images]
    nonzero = first.flatten(2).abs().sum(-1) > 0  # (batch, slots): the model drops all-zero slots
    return [tuple(nonzero[r].nonzero().flatten().tolist()) for r in range(int(first.shape[0]))]


def locate_rows(
    batch: Mapping[str, Any], facts: PackingFacts, images_per_row: Sequence[int], model: Any = None
) -> list[RowShare]:
    """Every row's share of ``batch``, checked against the tensors' sizes.

    Args:
        batch: the padded batch (``input_ids`` and, usually, ``attention_mask`` ``(batch, seq_len)``).
        facts: the family's packing facts.
        images_per_row: how many images each row was given (in the batch's row order).
        model: the model (its config names the image token, for ``units="tokens"``).

    Raises:
        PackingLayoutError: the shares do not add up to the tensors.
    """
    rows = int(batch["input_ids"].shape[0])
    images = [int(n) for n in images_per_row]
    if len(images) != rows:
        raise PackingLayoutError(f"images_per_row has {len(images)} entries for a batch of {rows} rows")
    spans = _spans(batch)
    total_images = _first_axis(batch, facts.image_keys)
    if total_images is not None and total_images != sum(images):
        raise PackingLayoutError(f"the batch's per-image keys hold {total_images} images, its rows {sum(images)}")
    units = _units_per_row(batch, facts, images, spans, model) if facts.unit_keys else [0] * rows
    total_units = _first_axis(batch, facts.unit_keys)
    if total_units is not None and total_units != sum(units):
        raise PackingLayoutError(f"{list(facts.unit_keys)} hold {total_units} units, the rows' images {sum(units)}")
    slots = _slots(batch, facts, images)
    shares, unit_at, image_at = [], 0, 0
    for r in range(rows):
        shares.append(
            RowShare(
                row=r,
                start=spans[r][0],
                stop=spans[r][1],
                images=images[r],
                slots=slots[r],
                units=(unit_at, unit_at + units[r]),
                image_range=(image_at, image_at + images[r]),
            )
        )
        unit_at += units[r]
        image_at += images[r]
    return shares
