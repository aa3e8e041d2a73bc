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

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

__all__ = [
    "ImageCountError",
    "RowPlan",
    "content_parts",
    "is_image_part",
    "part_payload",
    "messages_of",
    "plan_row",
    "count_token",
    "check_rendered_counts",
]

IMAGE_PART_TYPES = ("image", "image_url")
_PAYLOAD_KEYS = ("image", "image_url", "url", "path")


class ImageCountError(ValueError):
    """An example's images and image placeholders disagree (the message names the row)."""


def messages_of(example: Any) -> list:
    """The chat of an example, as the Unsloth collator reads it (messages / conversations / the
    example itself, or prompt + completion when both are message lists)."""
    if isinstance(example, Mapping):
        if "messages" in example:
            return list(example["messages"] or [])
        if "conversations" in example:
            return list(example["conversations"] or [])
        if "prompt" in example and "completion" in example:
            out: list = []
            for side in (example["prompt"], example["completion"]):
                if isinstance(side, list) and all(isinstance(m, Mapping) for m in side):
                    out.extend(side)
            return out
        return []
    if isinstance(example, (list, tuple)):
        return list(example)
    return []


def content_parts(messages: Sequence[Any]) -> Iterator[Mapping]:
    """Every dict content part of every message, in order."""
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, (list, tuple)):
            for part in content:
                if isinstance(part, Mapping):
                    yield part


def is_image_part(part: Mapping) -> bool:
    return part.get("type") in IMAGE_PART_TYPES


def part_payload(part: Mapping) -> Any | None:
    """The image a content part carries, or None for a bare placeholder.

    Arrow-backed datasets add the keys of every part type with None values, so None counts
    as absent.
    """
    for key in _PAYLOAD_KEYS:
        value = part.get(key)
        if isinstance(value, Mapping) and key == "image_url":
            value = value.get("url")
        if value is not None:
            return value
    return None


def _is_single_image(value: Any) -> bool:
    return not isinstance(value, (list, tuple))


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
    """

    row: int
    images: tuple
    column: bool
    merged: bool
    upstream_count: int
    placeholders: int


def plan_row(example: Any, row: int) -> RowPlan:
    """Decide the images of one example. Raises :class:`ImageCountError` on inconsistent input."""
    messages = messages_of(example)
    parts = [p for p in content_parts(messages) if is_image_part(p)]
    filled = [part_payload(p) for p in parts]
    n_bare = sum(v is None for v in filled)
    has_column = isinstance(example, Mapping) and example.get("images") is not None

    if not has_column:
        if n_bare:
            raise ImageCountError(
                f"unsloth_multiimage: row {row} has {n_bare} image placeholder(s) without an image "
                f"({len(parts)} image parts in all) and no `images` column. Fix: put the image in the part "
                f'(`{{"type": "image", "image": <PIL image or path>}}`) or add an `images` column with '
                f"{n_bare} image(s) for row {row}."
            )
        images = tuple(filled)
        return RowPlan(row, images, column=False, merged=False, upstream_count=len(images), placeholders=len(parts))

    column = example["images"]
    column = [column] if _is_single_image(column) else list(column)
    missing = [i for i, img in enumerate(column) if img is None]
    if missing:
        raise ImageCountError(
            f"unsloth_multiimage: row {row} has None at position(s) {missing} of its `images` list "
            f"({len(column)} entries). Dropping them would shift the remaining images against their "
            f"placeholders. Fix: remove the None entries together with their image placeholders, or set the "
            f"whole `images` value to None to use the images embedded in the messages."
        )
    n_filled = len(parts) - n_bare
    if n_filled == 0:
        if n_bare and n_bare != len(column):
            raise ImageCountError(
                f"unsloth_multiimage: row {row} has {len(column)} image(s) in its `images` column but {n_bare} bare "
                f'{{"type": "image"}} placeholder(s). Fix: give every column image exactly one placeholder, in order.'
            )
        # Plain column row (the usual TRL/Unsloth layout); the rendered text is checked later.
        images = tuple(column)
        return RowPlan(row, images, column=True, merged=False, upstream_count=len(images), placeholders=len(parts))
    if not column and n_bare == 0:
        # An empty column beside embedded images: upstream lets the empty column win.
        return RowPlan(row, tuple(filled), column=True, merged=True, upstream_count=0, placeholders=len(parts))
    if n_bare == 0:
        raise ImageCountError(
            f"unsloth_multiimage: row {row} has {len(column)} image(s) in its `images` column but every one of "
            f"its {len(parts)} image parts already carries an image, so there is no placeholder for them. "
            f'Fix: add one bare {{"type": "image"}} part per column image where each belongs, or drop the column.'
        )
    if n_bare != len(column):
        raise ImageCountError(
            f"unsloth_multiimage: row {row} has {len(column)} image(s) in its `images` column but {n_bare} bare "
            f'{{"type": "image"}} placeholder(s) (plus {n_filled} part(s) with their own image). '
            f"Fix: give every column image exactly one bare placeholder, in order."
        )
    it = iter(column)
    images = tuple(next(it) if v is None else v for v in filled)
    return RowPlan(row, images, column=True, merged=True, upstream_count=len(column), placeholders=len(parts))


def count_token(text: str, token: str) -> int:
    """Occurrences of an image placeholder token in rendered text."""
    return text.count(token) if token else 0


def check_rendered_counts(texts: Sequence[str], counts: Sequence[int], token: str, *, what: str = "row") -> None:
    """Raise :class:`ImageCountError` for the first text whose ``token`` count differs from its image count."""
    for i, (text, n_images) in enumerate(zip(texts, counts)):
        n_tokens = count_token(text, token)
        if n_tokens != n_images:
            fix = (
                f"add {n_images - n_tokens} image placeholder(s) to the messages"
                if n_tokens < n_images
                else f"remove {n_tokens - n_images} image placeholder(s) or add the missing image(s)"
            )
            raise ImageCountError(
                f"unsloth_multiimage: {what} {i} has {n_tokens} {token} token(s) in its text but {n_images} image(s). "
                f"Fix: {fix}; each image needs exactly one placeholder, in order."
            )
