"""The chat walker: one notion of "image part" for every module that reads or rewrites a row.

A row holds its chat under ``messages`` or ``conversations`` (the Unsloth collator reads them in
that order), or as ``prompt`` + ``completion`` message lists (TRL's prompt/completion layout), or
is itself a list of messages. An image part is a content part whose ``type`` is ``image`` or
``image_url``; it carries its own image under one of :data:`PAYLOAD_KEYS`, or none (a bare
placeholder, which takes the next entry of the row's ``images`` column). Arrow-backed datasets
give every part every key, with None where absent, so None always counts as absent.

Pure Python: nothing here imports PIL, torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "CHAT_KEYS",
    "IMAGE_PART_TYPES",
    "PAYLOAD_KEYS",
    "bare_part",
    "carrying_part",
    "chat_sides",
    "column_entries",
    "content_parts",
    "has_column",
    "image_parts",
    "is_chat",
    "is_image_part",
    "is_pc_row",
    "messages_of",
    "part_payload",
    "rewrite_contents",
    "rewrite_image_parts",
    "without_none_keys",
]

#: Keys under which a row holds its whole chat, in the order the Unsloth collator looks.
CHAT_KEYS = ("messages", "conversations")
#: Content part types that stand for one image.
IMAGE_PART_TYPES = ("image", "image_url")
#: Keys of an image part that may carry the image itself.
PAYLOAD_KEYS = ("image", "image_url", "url", "path")

#: ``fn(k, part) -> new part or None`` (None drops the part); ``k`` counts image parts in order.
PartFn = Callable[[int, Mapping[str, Any]], "Mapping[str, Any] | None"]


def is_chat(value: Any) -> bool:
    """True for a list of message dicts (what a chat side of a row must be)."""
    return isinstance(value, list) and all(isinstance(m, Mapping) for m in value)


def is_pc_row(example: Any) -> bool:
    """True for a TRL prompt/completion row (what upstream tests: both keys present; None is absent)."""
    return isinstance(example, Mapping) and example.get("prompt") is not None and example.get("completion") is not None


def chat_sides(example: Any) -> list[tuple[str | None, list[Any]]]:
    """``(key, messages)`` for each chat list of ``example``, in reading order.

    ``key`` is None when the example itself is the list of messages. A prompt/completion row
    gives both sides (each only when it is a message list: a string completion is plain text).
    """
    if isinstance(example, Mapping):
        for key in CHAT_KEYS:
            value = example.get(key)  # None: absent (an Arrow row has every column of its table)
            if value is not None:
                return [(key, list(value))] if isinstance(value, (list, tuple)) else []
        if is_pc_row(example):
            return [(side, example[side]) for side in ("prompt", "completion") if is_chat(example[side])]
        return []
    if isinstance(example, (list, tuple)):
        return [(None, list(example))]
    return []


def messages_of(example: Any) -> list[Any]:
    """Every message of ``example``, in order (prompt then completion for prompt/completion rows)."""
    return [m for _key, messages in chat_sides(example) for m in messages]


def content_parts(messages: Sequence[Any]) -> Iterator[Mapping[str, Any]]:
    """Every dict content part of every message, in order."""
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, (list, tuple)):
            for part in content:
                if isinstance(part, Mapping):
                    yield part


def is_image_part(part: Any) -> bool:
    """True for a content part that stands for one image."""
    return isinstance(part, Mapping) and part.get("type") in IMAGE_PART_TYPES


def image_parts(messages: Sequence[Any]) -> list[Mapping[str, Any]]:
    """The image parts of ``messages``, in order."""
    return [p for p in content_parts(messages) if is_image_part(p)]


def part_payload(part: Mapping[str, Any]) -> Any | None:
    """The image an image part carries, or None for a bare placeholder.

    ``{"type": "image_url", "image_url": {"url": ...}}`` (the OpenAI layout) carries its URL.
    """
    for key in PAYLOAD_KEYS:
        value = part.get(key)
        if isinstance(value, Mapping) and key == "image_url":
            value = value.get("url")
        if value is not None:
            return value
    return None


def bare_part(part: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``part`` as a bare ``{"type": "image"}`` placeholder (other keys kept)."""
    return {**{k: (None if k in PAYLOAD_KEYS else v) for k, v in part.items()}, "type": "image"}


def carrying_part(part: Mapping[str, Any], image: Any) -> dict[str, Any]:
    """A copy of ``part`` as an ``{"type": "image", "image": image}`` part (other keys kept)."""
    return {**bare_part(part), "image": image}


def has_column(example: Any) -> bool:
    """True when the row has an ``images`` column value (``None`` means "use the content")."""
    return isinstance(example, Mapping) and example.get("images") is not None


def column_entries(example: Mapping[str, Any]) -> list[Any]:
    """The row's ``images`` value as a list (a single image counts as a list of one)."""
    column = example["images"]
    return list(column) if isinstance(column, (list, tuple)) else [column]


def _with_contents(example: Any, fn: Callable[[Sequence[Any]], list[Any]]) -> Any:
    """A copy of ``example`` whose list contents are ``fn(content)``, message by message in
    reading order. Only the chat lists are copied (their messages and content lists are new
    objects); every other key of the row is kept as it is."""

    def messages(chat: Sequence[Any]) -> list[Any]:
        out = []
        for message in chat:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, (list, tuple)):
                message = {**message, "content": fn(content)}
            out.append(message)
        return out

    if isinstance(example, (list, tuple)):
        return messages(example)
    out = dict(example)
    for key, chat in chat_sides(example):
        out[key] = messages(chat)
    return out


def rewrite_contents(example: Any, fn: Callable[[Sequence[Any]], list[Any]]) -> Any:
    """A copy of ``example`` whose list contents are ``fn(content)``, message by message in reading
    order (only the chat lists are copied; every other key of the row is kept as it is)."""
    return _with_contents(example, fn)


def rewrite_image_parts(example: Any, fn: PartFn) -> Any:
    """A copy of ``example`` whose image parts are ``fn(k, part)`` (dropped where it returns None).

    Only the chat lists are copied (their messages and content lists are new objects); every other
    key of the row is kept as it is. ``k`` numbers the image parts of the whole row in reading order.
    """
    counter = iter(range(1 << 62))

    def parts(content: Sequence[Any]) -> list[Any]:
        out = []
        for part in content:
            if is_image_part(part):
                part = fn(next(counter), part)
                if part is None:
                    continue
            out.append(part)
        return out

    return _with_contents(example, parts)


def without_none_keys(example: Any) -> Any:
    """``example`` with the None-valued keys of its content parts left out (Arrow's filler, which some
    releases read as an image reference); the very same object when no part has one."""
    if not any(v is None for _key, chat in chat_sides(example) for p in content_parts(chat) for v in p.values()):
        return example
    return _with_contents(
        example,
        lambda content: [
            {k: v for k, v in p.items() if v is not None} if isinstance(p, Mapping) else p for p in content
        ],
    )
