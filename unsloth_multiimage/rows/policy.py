"""Image policies applied per example before upstream sees it (pure Python + PIL, imported lazily).

:func:`apply_policies` runs, per row and in this order:

1. **cap** (``max_images`` / ``on_excess``): above the cap, ``error`` raises
   :class:`~unsloth_multiimage.errors.ImageCountError` naming every offending row;
   ``keep_first`` / ``keep_last`` drop the other images, each with its placeholder (the bare
   ``{"type": "image"}`` part and its column entry, or the part that carries the image), and one
   warning per call names the rows;
2. **pixel budget** (``max_pixels_per_example``): a row whose images hold more pixels in all
   than the budget has every image downsized by the same factor ``sqrt(budget / total)``
   (aspect ratio kept, LANCZOS, at least 1 px per side), computed in integers so the total fits
   (a row can only stay above the budget when sides are held at 1 px);
3. **strategy** ``grid`` (early fusion): a row with two or more images gets them composed into
   one canvas (:func:`unsloth_multiimage.rows.grid.compose_grid`); its image placeholders collapse to
   one, at the first image's position; strategy ``serial``: every message holding two or more
   images is split into one turn per image (:func:`unsloth_multiimage.rows.serial.serialise`;
   needs no pixels, so it also runs before decoding).

The cap works on any image payload (paths, bytes, dicts, PIL images), so a caller may run it
alone before decoding (``dataclasses.replace(settings, max_pixels_per_example=None,
strategy="native")``) and never load the images it drops; the budget and the grid need loaded
PIL images (``TypeError`` naming the row otherwise).

Inputs are never modified: a changed row comes back as a new example (new message lists and
dicts, a new ``images`` list) with a new :class:`RowPlan`; an untouched row comes back as the
very same objects. The returned plan always agrees with the returned example: ``plan_row`` on the
new example gives the same flags, placeholder count and (for loaded images) the same images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..errors import ImageCountError
from ..settings import Settings
from .chat import (
    bare_part,
    carrying_part,
    column_entries,
    has_column,
    image_parts,
    messages_of,
    part_payload,
    rewrite_image_parts,
)
from .decode import MIN_SIDE
from .plan import RowPlan, plan_row
from .serial import needs_serial, serialise

__all__ = ["apply_policies", "cap_indices", "budget_sizes"]

logger = logging.getLogger("unsloth_multiimage")

_DEFAULTS = Settings()
_MAX_ROWS_NAMED = 20


def apply_policies(
    examples: Sequence[Any], plans: Sequence[RowPlan], settings: Settings
) -> tuple[list[Any], list[RowPlan]]:
    """Apply the configured policies to a batch.

    Args:
        examples: the batch's examples (after any ``formatting_func``).
        plans: one :class:`RowPlan` per example, images already loaded (decoding happens before).
        settings: the policies (:func:`unsloth_multiimage.get_settings`).

    Returns:
        ``(examples, plans)``: lists of the same length; rows no policy touched keep their objects,
        and with default settings the input lists themselves come back.

    Raises:
        ImageCountError: a row above ``max_images`` with ``on_excess="error"``, or a row whose
            images cannot be matched to its placeholders when a policy must drop or merge them.
        TypeError: a row that must be resized or composed holds something other than PIL images.
    """
    if len(examples) != len(plans):
        raise ValueError(f"apply_policies: {len(examples)} examples but {len(plans)} plans")
    if not _active(settings):
        return _as_list(examples), _as_list(plans)

    cap = settings.max_images
    if cap is not None and settings.on_excess == "error":
        _raise_for_excess(plans, cap)

    out_examples, out_plans, dropped = [], [], []
    for example, plan in zip(examples, plans):
        new_example, new_plan, n_before = _apply_row(example, plan, settings)
        if n_before is not None:
            dropped.append((plan.row, n_before))
        out_examples.append(new_example)
        out_plans.append(new_plan)
    if dropped:
        _warn_dropped(dropped, cap, settings.on_excess)
    return out_examples, out_plans


def _active(settings: Settings) -> bool:
    return (
        settings.max_images is not None
        or settings.max_pixels_per_example is not None
        or settings.strategy != _DEFAULTS.strategy
    )


def _as_list(seq: Sequence[Any]) -> list[Any]:
    return seq if isinstance(seq, list) else list(seq)


# --------------------------------------------------------------------------------------------
# cap


def cap_indices(n: int, cap: int | None, on_excess: str) -> list[int]:
    """Indices (in order) of the images a row of ``n`` images keeps under ``cap``."""
    if cap is None or n <= cap:
        return list(range(n))
    if on_excess == "keep_first":
        return list(range(cap))
    if on_excess == "keep_last":
        return list(range(n - cap, n))
    raise ValueError(f"on_excess={on_excess!r} does not drop images")


def _raise_for_excess(plans: Sequence[RowPlan], cap: int) -> None:
    over = [(p.row, len(p.images)) for p in plans if len(p.images) > cap]
    if not over:
        return
    row, n = over[0]
    others = ""
    if len(over) > 1:
        named = ", ".join(f"row {r} ({k})" for r, k in over[1:_MAX_ROWS_NAMED])
        more = f" and {len(over) - _MAX_ROWS_NAMED} more" if len(over) > _MAX_ROWS_NAMED else ""
        others = f" Also above the cap: {named}{more}."
    most = max(k for _, k in over)
    raise ImageCountError(
        f"unsloth_multiimage: row {row} has {n} images but max_images={cap}.{others} "
        f"Fix: raise the cap (configure(max_images={most}) or UNSLOTH_MULTIIMAGE_MAX_IMAGES={most}), or drop the "
        f'excess images with their placeholders: configure(on_excess="keep_first") or configure(on_excess="keep_last") '
        f"(UNSLOTH_MULTIIMAGE_ON_EXCESS), or remove images from the row."
    )


def _warn_dropped(dropped: list[tuple[int, int]], cap: int | None, on_excess: str) -> None:
    which = "last" if on_excess == "keep_first" else "first"
    named = ", ".join(f"row {r} ({n} -> {cap})" for r, n in dropped[:_MAX_ROWS_NAMED])
    more = f" and {len(dropped) - _MAX_ROWS_NAMED} more" if len(dropped) > _MAX_ROWS_NAMED else ""
    logger.warning(
        "unsloth_multiimage: max_images=%s, on_excess=%r: dropped the %s images (with their placeholders) of "
        "%d row(s): %s%s. Raise max_images to keep every image.",
        cap,
        on_excess,
        which,
        len(dropped),
        named,
        more,
    )


# --------------------------------------------------------------------------------------------
# pixel budget


def budget_sizes(sizes: Sequence[tuple[int, int]], budget: int) -> list[tuple[int, int]]:
    """The ``(width, height)`` of each image once the row fits ``budget`` pixels.

    Unchanged when the row fits already. Otherwise every side is scaled by
    ``f = sqrt(budget / total)`` and rounded down, in exact integer arithmetic
    (``floor(w * f) == isqrt(w * w * budget // total)``), then held at ``MIN_SIDE`` px at least
    (smaller sides are misread by some image processors); so the new total is at most ``budget``
    unless a side had to be held at ``MIN_SIDE``.
    """
    total = sum(w * h for w, h in sizes)
    if total <= budget:
        return list(sizes)
    return [
        (
            max(min(w, MIN_SIDE), math.isqrt(w * w * budget // total)),
            max(min(h, MIN_SIDE), math.isqrt(h * h * budget // total)),
        )
        for w, h in sizes
    ]


def _pil_images(images: Sequence[Any], row: int, why: str) -> None:
    from PIL import Image

    for k, img in enumerate(images):
        if not isinstance(img, Image.Image):
            raise TypeError(
                f"unsloth_multiimage: row {row}, image {k} is a {type(img).__name__}, not a PIL image; {why} works on "
                f"loaded PIL images. Fix: store PIL images, paths or bytes in the dataset, or turn that setting off."
            )


def _fit_budget(images: list[Any], budget: int, row: int) -> list[Any]:
    _pil_images(images, row, "max_pixels_per_example")
    sizes = [img.size for img in images]
    target = budget_sizes(sizes, budget)
    if target == sizes:
        return images
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    logger.debug(
        "unsloth_multiimage: row %d: %d px > max_pixels_per_example=%d, resized %s -> %s",
        row,
        sum(w * h for w, h in sizes),
        budget,
        sizes,
        target,
    )
    return [img if size == new else img.resize(new, lanczos) for img, size, new in zip(images, sizes, target)]


# --------------------------------------------------------------------------------------------
# one row


def _apply_row(example: Any, plan: RowPlan, settings: Settings) -> tuple[Any, RowPlan, int | None]:
    """``(example, plan, n_before)``; ``n_before`` is the row's image count when the cap dropped some."""
    n = len(plan.images)
    keep = cap_indices(n, settings.max_images, settings.on_excess)
    capped = len(keep) < n
    images = [plan.images[i] for i in keep]
    if settings.max_pixels_per_example is not None and images:
        images = _fit_budget(images, settings.max_pixels_per_example, plan.row)
    grid = settings.strategy == "grid" and len(images) >= 2
    if grid:
        from .grid import compose_grid

        _pil_images(images, plan.row, 'strategy="grid"')
        images = [compose_grid(images, gap=settings.grid_gap, labels=settings.grid_labels)]
    # A plain column row (no placeholders to split at) with several images cannot be serialised.
    serial = settings.strategy == "serial" and (needs_serial(example) or (plan.placeholders != n and len(images) >= 2))
    if not capped and not grid and not serial and all(a is b for a, b in zip(images, plan.images)):
        return example, plan, None

    if plan.placeholders != n:
        # Only a plain column row can get here (images.plan_row): its images cannot be paired with
        # placeholders, so only a change that keeps the count (the pixel budget) is possible.
        if capped or grid or serial:
            what = f"max_images={settings.max_images}" if capped else f'strategy="{settings.strategy}"'
            raise ImageCountError(
                f"unsloth_multiimage: row {plan.row} has {n} image(s) in its `images` column but {plan.placeholders} "
                f'{{"type": "image"}} part(s) in its messages, so {what} cannot tell which placeholder goes with which '
                f'image. Fix: give every column image exactly one bare {{"type": "image"}} part, in order.'
            )
        new_example = {**example, "images": _column_entries(example, plan, images)}
    else:
        new_example = _rebuild(example, plan, keep, images, grid)
        if serial:
            new_example = serialise(new_example)
    return new_example, _replan(new_example, plan, images), n if capped else None


def _column_entries(example: Mapping[str, Any], plan: RowPlan, images: list[Any]) -> list[Any]:
    """The plain column row's new ``images`` list: original entries where the image is unchanged."""
    return [entry if new is old else new for entry, old, new in zip(column_entries(example), plan.images, images)]


def _rebuild(example: Any, plan: RowPlan, keep: list[int], images: list[Any], grid: bool) -> Any:
    """A new example holding only the image parts of ``keep``, with ``images`` (one per kept part,
    or the one canvas at the first kept part for a grid row).

    Each bare placeholder consumes the next column entry; a dropped part takes its entry with it.
    A grid row that used the column gets its canvas as the one column entry, behind a bare part.
    """
    column = has_column(example)
    entries = iter(column_entries(example) if column else ())
    bare = [part_payload(p) is None for p in image_parts(messages_of(example))]
    to_column = grid and column and any(bare[i] for i in keep)
    new_image = {keep[0]: images[0]} if grid else dict(zip(keep, images))
    new_column: list[Any] = []

    def part(k: int, p: Mapping[str, Any]) -> dict[str, Any] | None:
        entry = next(entries) if (bare[k] and column) else None
        if k not in new_image:
            return None  # dropped, together with its column entry (consumed above)
        image, old = new_image[k], plan.images[k]
        if grid:
            if to_column:
                new_column.append(image)
                return bare_part(p)
            return carrying_part(p, image)
        if bare[k]:
            new_column.append(entry if image is old else image)
            return dict(p)
        return dict(p) if image is old else carrying_part(p, image)

    out = rewrite_image_parts(example, part)
    if column:
        out["images"] = new_column
    return out


def _replan(example: Any, plan: RowPlan, images: list[Any]) -> RowPlan:
    new = plan_row(example, plan.row)
    if len(new.images) != len(images):  # pragma: no cover - an internal invariant
        raise RuntimeError(
            f"unsloth_multiimage: internal error: row {plan.row} rewritten with {len(new.images)} image(s) for "
            f"{len(images)} image(s); please report this"
        )
    return replace(new, images=tuple(images))
