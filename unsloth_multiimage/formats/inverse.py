"""Write a messages-layout row in another layout: the inverse of :func:`~.convert.to_messages`."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import FormatError, ImageTagMismatchError, UnknownFormatError
from ..rows.chat import content_parts, part_payload
from ..rows.layouts import FORMATS
from .convert import _column

__all__ = ["from_messages"]

_FROM_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


def _canonical(example: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """(messages, images) of a messages-layout row (prompt + completion joined), bare parts only."""
    if example.get("messages") is not None:
        chat = list(example["messages"])
    else:
        chat = list(example.get("prompt") or []) + list(example.get("completion") or [])
    images = _column(example.get("images"), "row ?", "messages", "images")
    return chat, images


def _tagged(content: Sequence[Mapping[str, Any]], tag: str) -> str:
    """A typed content list as a string: each image is ``tag + "\\n"`` (undone by :func:`to_messages`)."""
    return "".join(tag + "\n" if p.get("type") == "image" else (p.get("text") or "") for p in content)


def _mime(data: bytes) -> str:
    for magic, mime in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif")):
        if data.startswith(magic):
            return mime
    return "image/webp" if data[8:12] == b"WEBP" else "application/octet-stream"


def _url(image: Any) -> str:
    if isinstance(image, Mapping):
        if image.get("bytes") is not None:
            data = bytes(image["bytes"])
            return f"data:{_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"
        image = image.get("path")
    if isinstance(image, (bytes, bytearray)):
        return _url({"bytes": image})
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    raise FormatError(
        f"unsloth_multiimage: an image of type {type(image).__name__} has no URL form. "
        f"Fix: use paths or bytes for the openai format."
    )


def from_messages(example: Mapping[str, Any], format: str, *, tag: str = "<image>") -> dict[str, Any]:
    """The inverse of :func:`to_messages`: a messages-layout row written in ``format``.

    String formats get ``tag + "\\n"`` per image (so converting back restores the text exactly);
    adjacent text parts of a turn merge into one string. ``openai`` rows carry the images as
    ``image_url`` parts (paths as they are, bytes as base64 ``data:`` URIs). ``cauldron`` needs
    user/assistant pairs with every image at the start of the first user turn.

    Args:
        example: a row with ``messages`` (or ``prompt``/``completion``) and ``images``; image parts
            must be bare.
        format: one of :data:`FORMATS`.
        tag: the image tag for string formats.

    Returns:
        The row in ``format``; its other columns unchanged.

    Raises:
        FormatError: the row cannot be written in ``format``.
    """
    if format not in FORMATS:
        raise UnknownFormatError(f"unsloth_multiimage: unknown format {format!r}. Known formats: {', '.join(FORMATS)}.")
    chat, images = _canonical(example)
    rest = {k: v for k, v in example.items() if k not in ("messages", "prompt", "completion", "images")}
    _check_bare_parts(chat, images)
    contents = [list(m.get("content") or []) for m in chat]
    if format == "messages":
        return {**rest, "messages": chat, "images": images}
    if format == "prompt_completion":
        return _as_prompt_completion(rest, chat, images)
    if format == "openai":
        return _as_openai(rest, chat, contents, images)
    if format == "cauldron":
        return {**rest, "images": images, "texts": _cauldron_texts(chat, contents, len(images))}
    return _as_tagged_strings(rest, chat, contents, images, format, tag)


def _check_bare_parts(chat: list[Any], images: list[Any]) -> None:
    n_parts = sum(p.get("type") == "image" for p in content_parts(chat))
    if n_parts != len(images) or any(
        part_payload(p) is not None for p in content_parts(chat) if p.get("type") == "image"
    ):
        raise ImageTagMismatchError(
            f"unsloth_multiimage: row ? (messages format) has {n_parts} image part(s) but "
            f"{len(images)} image(s). Fix: one bare image part per image."
        )


def _as_prompt_completion(rest: dict[str, Any], chat: list[Any], images: list[Any]) -> dict[str, Any]:
    """The trailing assistant turns are the completion; the rest is the prompt."""
    cut = len(chat)
    while cut and chat[cut - 1].get("role") == "assistant":
        cut -= 1
    cut = cut or len(chat)  # an all-assistant chat stays in the prompt
    out = {**rest, "prompt": chat[:cut], "images": images}
    if cut < len(chat):
        out["completion"] = chat[cut:]
    return out


def _as_openai(rest: dict[str, Any], chat: list[Any], contents: list[Any], images: list[Any]) -> dict[str, Any]:
    """Every image as an ``image_url`` part in its place."""
    it = iter(images)

    def part(p: Mapping[str, Any]) -> dict[str, Any]:
        if p.get("type") == "image":
            return {"type": "image_url", "image_url": {"url": _url(next(it))}}
        return {"type": "text", "text": p.get("text") or ""}

    messages = [{"role": m["role"], "content": [part(p) for p in c]} for m, c in zip(chat, contents, strict=True)]
    return {**rest, "messages": messages}


def _as_tagged_strings(
    rest: dict[str, Any], chat: list[Any], contents: list[Any], images: list[Any], format: str, tag: str
) -> dict[str, Any]:
    """The string formats (``llava``, ``mantis``, ``llamafactory``): ``tag`` per image in the text."""
    turns = [(m["role"], _tagged(c, tag)) for m, c in zip(chat, contents, strict=True)]
    if format == "llava":
        out = {**rest, "conversations": [{"from": _FROM_ROLE.get(r, r), "value": v} for r, v in turns]}
        if images:
            out["image"] = images[0] if len(images) == 1 else images
        return out
    key = "conversation" if format == "mantis" else "messages"
    return {**rest, key: [{"role": r, "content": v} for r, v in turns], "images": images}


def _cauldron_texts(chat: list[Any], contents: list[Any], n_images: int) -> list[Any]:
    roles = [m.get("role") for m in chat]
    first = contents[0] if contents else []
    leading = 0
    while leading < len(first) and first[leading].get("type") == "image":
        leading += 1
    if len(roles) % 2 or any(r != ("user", "assistant")[i % 2] for i, r in enumerate(roles)) or leading != n_images:
        raise FormatError(
            "unsloth_multiimage: row ? cannot be written as cauldron: it needs user/assistant pairs "
            "with every image at the start of the first user turn. Fix: use another format."
        )
    text = ["".join(p.get("text") or "" for p in c if p.get("type") != "image") for c in contents]
    return [{"user": text[i], "assistant": text[i + 1]} for i in range(0, len(text), 2)]
