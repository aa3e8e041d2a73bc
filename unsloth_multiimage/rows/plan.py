"""Gather, align and validate the images of each example (pure Python: no torch, no transformers).

Where the images of a row come from:
- no ``images`` column (or ``images`` is None): the images embedded in the message content;
- an ``images`` column: bare ``{"type": "image"}`` placeholders in the messages take the
  column's images in order; content parts that carry their own image keep it. A row whose
  messages hold no bare placeholder at all takes the column as is (the rendered text is then
  checked against it).
Nothing is dropped, reordered or truncated silently: an inconsistency raises
:class:`ImageCountError`, naming the row, the counts and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import FormatError, ImageCountError, RowShapeError
from . import layouts
from .chat import column_entries, has_column, image_parts, messages_of, part_payload

__all__ = ["RowPlan", "plan_row", "count_token", "check_rendered_counts"]


@dataclass(frozen=True)
class RowPlan:
    """The images one row must send to the model, in placeholder order.

    Attributes:
        row: index of the example in the batch.
        images: the images, in the order of their placeholders.
        column: True when the images column is in use for this row.
        merged: True when content images and column images were interleaved (upstream, which
            lets the column win, would get this row wrong whatever its version).
        upstream_count: how many images upstream's own extraction yields for the row when it
            takes every column image (used to line up upstream's image list with the rows).
        placeholders: image parts in the messages (bare and filled).
        own_images: the processor must get these very images, not upstream's own extraction of
            them (a row ``on_overflow="shrink"`` shrank: upstream's resizing of content images
            could change its token count).
    """

    row: int
    images: tuple[Any, ...]
    column: bool
    merged: bool
    upstream_count: int
    placeholders: int
    own_images: bool = False


def plan_row(example: Any, row: int) -> RowPlan:
    """Decide the images of one example. Raises :class:`ImageCountError` on inconsistent input."""
    parts = image_parts(messages_of(example))
    filled = [part_payload(p) for p in parts]
    _refuse_nested_parts(filled, row)
    if not has_column(example):
        return _content_plan(filled, row)
    return _column_plan(_column_images(example, row), filled, row)


def _refuse_nested_parts(filled: list[Any], row: int) -> None:
    nested_parts = [(k, v) for k, v in enumerate(filled) if isinstance(v, (list, tuple))]
    if nested_parts:
        k, value = nested_parts[0]
        raise RowShapeError(
            f"unsloth_multiimage: row {row}'s image part {k} holds a {type(value).__name__} of "
            f"{len(value)} item(s), not one image. Fix: give each image its own "
            f'{{"type": "image", "image": ...}} part.',
            row=row,
        )


def _content_plan(filled: list[Any], row: int) -> RowPlan:
    """A row without an ``images`` column: every image part must carry its image."""
    n_bare = sum(v is None for v in filled)
    if n_bare:
        raise ImageCountError(
            f"unsloth_multiimage: row {row} has {n_bare} image placeholder(s) without an image "
            f"({len(filled)} image parts in all) and no `images` column. Fix: put the image in the part "
            f'(`{{"type": "image", "image": <PIL image or path>}}`) or add an `images` column with '
            f"{n_bare} image(s) for row {row}.",
            row=row,
        )
    images = tuple(filled)
    return RowPlan(row, images, column=False, merged=False, upstream_count=len(images), placeholders=len(filled))


def _column_images(example: Any, row: int) -> list[Any]:
    """The row's ``images`` column as a flat list without None entries (else the error that says why)."""
    column = column_entries(example)
    nested = [i for i, img in enumerate(column) if isinstance(img, (list, tuple))]
    if nested:
        raise RowShapeError(
            f"unsloth_multiimage: row {row}'s `images` is a nested list: position {nested[0]} holds a "
            f"{type(column[nested[0]]).__name__} of {len(column[nested[0]])} item(s) ({len(column)} entries in all). "
            f"Fix: make `images` a flat list with one image per placeholder, e.g. images=[a, b], not [[a, b]].",
            row=row,
        )
    missing = [i for i, img in enumerate(column) if img is None]
    if missing:
        raise ImageCountError(
            f"unsloth_multiimage: row {row} has None at position(s) {missing} of its `images` list "
            f"({len(column)} entries). Dropping them would shift the remaining images against their "
            f"placeholders. Fix: remove the None entries together with their image placeholders, or set the "
            f"whole `images` value to None to use the images embedded in the messages.",
            row=row,
        )
    return column


def _column_plan(column: list[Any], filled: list[Any], row: int) -> RowPlan:
    """A row with an ``images`` column: its images fill the bare placeholders, in order."""
    n_bare = sum(v is None for v in filled)
    n_filled = len(filled) - n_bare
    if n_filled == 0:
        if n_bare and n_bare != len(column):
            raise ImageCountError(
                f"unsloth_multiimage: row {row} has {len(column)} image(s) in its `images` column but {n_bare} bare "
                f'{{"type": "image"}} placeholder(s). Fix: give every column image exactly one placeholder, in order.',
                row=row,
            )
        # Plain column row (the usual TRL/Unsloth layout); the rendered text is checked later.
        images = tuple(column)
        return RowPlan(row, images, column=True, merged=False, upstream_count=len(images), placeholders=len(filled))
    if not column and n_bare == 0:
        # An empty column beside embedded images: upstream lets the empty column win.
        return RowPlan(row, tuple(filled), column=True, merged=True, upstream_count=0, placeholders=len(filled))
    if n_bare == 0:
        raise ImageCountError(
            f"unsloth_multiimage: row {row} has {len(column)} image(s) in its `images` column but every one of "
            f"its {len(filled)} image parts already carries an image, so there is no placeholder for them. "
            f'Fix: add one bare {{"type": "image"}} part per column image where each belongs, or drop the column.',
            row=row,
        )
    if n_bare != len(column):
        raise ImageCountError(
            f"unsloth_multiimage: row {row} has {len(column)} image(s) in its `images` column but {n_bare} bare "
            f'{{"type": "image"}} placeholder(s) (plus {n_filled} part(s) with their own image). '
            f"Fix: give every column image exactly one bare placeholder, in order.",
            row=row,
        )
    it = iter(column)
    images = tuple(next(it) if v is None else v for v in filled)
    return RowPlan(row, images, column=True, merged=True, upstream_count=len(column), placeholders=len(filled))


def count_token(text: str, token: str) -> int:
    """Occurrences of an image placeholder token in rendered text."""
    return text.count(token) if token else 0


def check_rendered_counts(
    texts: Sequence[str],
    counts: Sequence[int],
    token: str,
    *,
    examples: Sequence[Any] | None = None,
    first_row: int = 0,
    tagged: Sequence[tuple[str, int] | None] | None = None,
) -> None:
    """Raise :class:`ImageCountError` for the first text whose ``token`` count differs from its image count.

    With ``examples`` (the rows the texts were rendered from) or ``tagged`` (their
    :func:`~unsloth_multiimage.rows.layouts.tag_layout`, read before upstream ran: upstream may
    rewrite a row's contents in place), a row whose text holds image tags of a public dataset
    layout (``<image>`` in LLaMA-Factory or Mantis string contents) instead raises a
    :class:`~unsloth_multiimage.errors.FormatError` naming the layout and the conversion.
    """
    for i, (text, n_images) in enumerate(zip(texts, counts)):
        n_tokens = count_token(text, token)
        if n_tokens == n_images:
            continue
        row = first_row + i
        found = f"row {row} has {n_tokens} {token} token(s) in its text but {n_images} image(s)"
        if tagged is None and examples is not None:
            tagged = [layouts.tag_layout(example, token) for example in examples]
        tags_of = tagged[i] if tagged is not None else None
        if tags_of is not None:
            fmt, tags = tags_of
            raise FormatError(
                f"unsloth_multiimage: {found}; its text holds {tags} image tag(s) of {layouts.label(fmt)}, which the "
                f"collator does not convert. Fix: {layouts.describe(fmt)}",
                row=row,
            )
        fix = (
            f"add {n_images - n_tokens} image placeholder(s) to the messages"
            if n_tokens < n_images
            else f"remove {n_tokens - n_images} image placeholder(s) or add the missing image(s)"
        )
        raise ImageCountError(
            f"unsloth_multiimage: {found}. Fix: {fix}; each image needs exactly one placeholder, in order.", row=row
        )
