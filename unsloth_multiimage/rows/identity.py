"""What identifies a row in its dataset, for errors met during training (pure Python).

A collator sees a batch, not a dataset: "row 1" is the row's place in the batch, which shuffling
makes useless for finding it. :func:`row_identity` says what the user can search the dataset for:
the row's ``id`` / ``idx`` / ``index`` value when it has one, else its first image path, else the
start of its text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .chat import column_entries, content_parts, has_column, image_parts, messages_of, part_payload

__all__ = ["ID_KEYS", "TEXT_CHARS", "row_identity"]

#: Keys that carry a row's identity, in the order they are read.
ID_KEYS = ("id", "idx", "index")
#: How much of a row's text identifies it when it has neither an id nor an image path.
TEXT_CHARS = 60


def _path(image: Any) -> str | None:
    if isinstance(image, Mapping):
        image = image.get("path")
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if isinstance(image, str) and image and not image[:5].lower() == "data:":
        return image
    return None


def _first_text(example: Any) -> str | None:
    messages = messages_of(example)
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str) and content.strip():
            return content
        for part in content_parts([message]):
            text = part.get("text")
            if part.get("type") == "text" and isinstance(text, str) and text.strip():
                return text
    return None


def row_identity(example: Any) -> str | None:
    """``"its `id` is 's17'"``, ``"its first image is 'img/a.png'"``, ``"its text starts 'Describe...'"``,
    or None when the row has none of them."""
    if not isinstance(example, (Mapping, list, tuple)):
        return None
    if isinstance(example, Mapping):
        for key in ID_KEYS:
            value = example.get(key)
            if value is not None and not isinstance(value, (list, tuple, Mapping)):
                return f"its `{key}` is {value!r}"
    images = column_entries(example) if isinstance(example, Mapping) and has_column(example) else []
    images += [part_payload(p) for p in image_parts(messages_of(example))]
    for image in images:
        path = _path(image)
        if path is not None:
            return f"its first image is {path!r}"
    text = _first_text(example)
    if text is not None:
        text = " ".join(text.split())
        shown = text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "..."
        return f"its text starts {shown!r}"
    return None
