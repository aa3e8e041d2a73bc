"""Convert one row of a public dataset layout to the messages layout (pure Python).

See :mod:`unsloth_multiimage.formats` for the rules.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import FormatError, ImageTagMismatchError, UnknownFormatError
from ..rows.chat import IMAGE_PART_TYPES, column_entries, has_column, part_payload, rewrite_image_parts
from ..rows.decode import data_uri_bytes, file_uri_path
from ..rows.layouts import CHAT_KEYS, DEFAULT_IMAGE_TAGS, FORMATS, chat_of, describe, detect, is_message_list
from ..rows.video import VIDEO_PART_TYPES, video_payload

__all__ = [
    "DEFAULT_IMAGE_TAGS",
    "DEFAULT_VIDEO_TAGS",
    "to_messages",
    "is_relative_path",
    "resolve_image",
    "resolve_paths",
]

logger = logging.getLogger("unsloth_multiimage")


_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
_SLOT = ("slot",)  # a bare image placeholder while a row is being assembled
_VSLOT = ("vslot",)  # a bare video placeholder
#: The strings that stand for a video in the text of LLaVA-Video / ShareGPT4Video / LLaMA-Factory rows.
DEFAULT_VIDEO_TAGS = ("<video>",)
#: Columns that hold a row's videos (LLaVA-Video: ``video``; LLaMA-Factory and the messages layout: ``videos``).
_VIDEO_COLUMNS = ("video", "videos")


def is_relative_path(text: str) -> bool:
    """True for a non-empty local path that is not absolute (not a URL, URI or ``data:`` URI)."""
    return bool(text) and "://" not in text[:16] and text[:5].lower() != "data:" and not os.path.isabs(text)


def resolve_image(image: Any, image_root: str | os.PathLike[str] | None = None) -> Any:
    """One image reference with ``file://`` URIs turned into paths and relative paths joined to ``image_root``.

    Strings and path-likes are paths; in a ``{"bytes", "path"}`` dict only ``path`` is resolved,
    and only when ``bytes`` is None (with bytes, the path is just a name). URLs (``scheme://``),
    ``data:`` URIs, absolute paths, bytes, PIL images and anything else are returned unchanged.

    Args:
        image: the reference.
        image_root: folder that relative paths are relative to (made absolute), or None.

    Returns:
        The resolved reference (a ``str`` for a path; a new dict for a dict).
    """
    if isinstance(image, Mapping):
        path = image.get("path")
        if image.get("bytes") is None and isinstance(path, (str, os.PathLike)):
            resolved = resolve_image(path, image_root)
            return image if resolved == path else {**image, "path": resolved}
        return image
    if not isinstance(image, (str, os.PathLike)):
        return image
    text = os.fspath(image)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text[:7].lower() == "file://":
        local = file_uri_path(text)
        return text if local is None else local  # a remote host: not a local path; the decoder reports it
    if image_root is None or not is_relative_path(text):
        return text
    return os.path.join(os.path.abspath(os.path.expanduser(os.fspath(image_root))), text)


def resolve_paths(example: Any, image_root: str | os.PathLike[str], *, only_missing: bool = False) -> Any:
    """``example`` with the relative paths of its images and videos (the ``images`` and ``videos``
    columns, image and video parts) joined to ``image_root`` (see :func:`resolve_image`); a video
    given as a list of frames has each frame resolved. Unchanged rows come back as the same object.

    ``only_missing`` keeps a relative path that exists from the working directory (the commands do
    not: they read every relative path from the image root, README "Your data")."""
    from ..rows.chat import rewrite_contents
    from ..rows.video import VIDEOS

    resolve = _resolver(image_root, only_missing)
    changed = [False]

    def part(_k: int, p: Mapping[str, Any]) -> Mapping[str, Any]:
        return _resolved_part(p, ("image", "path"), resolve, changed)

    def video_parts(content: Sequence[Any]) -> list[Any]:
        from ..rows.video import VIDEO_PAYLOAD_KEYS, is_video_part

        return [_resolved_part(p, VIDEO_PAYLOAD_KEYS, resolve, changed) if is_video_part(p) else p for p in content]

    out = rewrite_contents(rewrite_image_parts(example, part), video_parts)
    if has_column(out):
        _resolve_column(out, "images", column_entries(out), resolve, changed)
    videos = out.get(VIDEOS) if isinstance(out, Mapping) else None
    if videos is not None:
        _resolve_column(out, VIDEOS, list(videos) if isinstance(videos, (list, tuple)) else [videos], resolve, changed)
    return out if changed[0] else example


def _resolver(image_root: str | os.PathLike[str], only_missing: bool) -> Any:
    """The function that resolves one image, video, or list of frames (see :func:`resolve_paths`)."""

    def resolve(image: Any) -> Any:
        if only_missing and isinstance(image, (str, os.PathLike)) and os.path.exists(image):
            return image
        if isinstance(image, (list, tuple)):  # a video given as its frames
            frames = [resolve(f) for f in image]
            return frames if any(a is not b and a != b for a, b in zip(image, frames)) else image
        return resolve_image(image, image_root)

    return resolve


def _resolved_part(p: Mapping[str, Any], keys: Sequence[str], resolve: Any, changed: list[bool]) -> Mapping[str, Any]:
    """A content part with the first of ``keys`` it holds resolved (a new dict when it changed)."""
    for key in keys:
        value = p.get(key)
        if isinstance(value, (str, os.PathLike, list, tuple)) or (value is not None and key in ("image", "path")):
            new = resolve(value)
            if new is not value and new != value:
                changed[0] = True
                return {**p, key: new}
    return p


def _resolve_column(out: Any, key: str, entries: list[Any], resolve: Any, changed: list[bool]) -> None:
    """``out[key]`` (a list, or one entry) with every entry resolved, in place when one changed."""
    new_entries = [resolve(e) for e in entries]
    if any(a is not b and a != b for a, b in zip(entries, new_entries)):
        changed[0] = True
        out[key] = new_entries if isinstance(out[key], (list, tuple)) else new_entries[0]


def _data_uri_bytes(uri: str, where: str) -> bytes:
    try:
        return data_uri_bytes(uri)
    except ValueError as exc:
        raise FormatError(
            f"unsloth_multiimage: {where} has {exc}. Fix: use `data:image/png;base64,<base64 data>`."
        ) from None


def _openai_image(payload: Any, where: str) -> Any:
    """An ``image_url`` payload as a ``{"bytes", "path"}`` dict (strings and bytes; others unchanged)."""
    if isinstance(payload, (bytes, bytearray)):
        return {"bytes": bytes(payload), "path": None}
    if not isinstance(payload, str):
        return payload
    if payload[:5].lower() == "data:":
        return {"bytes": _data_uri_bytes(payload, where), "path": None}
    return {"bytes": None, "path": payload}


def _column(value: Any, where: str, fmt: str, key: str) -> list[Any]:
    """A row's image column as a list (a single image becomes a list of one; None becomes [])."""
    if value is None:
        return []
    images = list(value) if isinstance(value, (list, tuple)) else [value]
    missing = [i for i, image in enumerate(images) if image is None]
    if missing:
        raise FormatError(
            f"unsloth_multiimage: {where} ({fmt} format) has None at position(s) {missing} of its `{key}` list "
            f"({len(images)} entries). Fix: remove those entries together with their image tags."
        )
    return images


@functools.lru_cache(maxsize=32)
def _tag_pattern(tags: tuple[str, ...]) -> re.Pattern[str] | None:
    tags = tuple(sorted({t for t in tags if t}, key=len, reverse=True))
    return re.compile("(" + "|".join(map(re.escape, tags)) + ")") if tags else None


def _split(text: str, tags: tuple[str, ...], strip_newline: bool, video_tags: tuple[str, ...] = ()) -> list[Any]:
    """Text and slot segments of a string holding image (and video) tags."""
    pattern = _tag_pattern(tags + video_tags)
    if pattern is None:
        return [("text", text)]
    out: list[Any] = []
    for i, piece in enumerate(pattern.split(text)):
        if i % 2:
            out.append(_VSLOT if piece in video_tags else _SLOT)
            continue
        if i and strip_newline and piece.startswith("\n"):
            piece = piece[1:]
        out.append(("text", piece))
    return out


def _role(value: Any, where: str, fmt: str) -> str:
    if not isinstance(value, str) or not value:
        raise FormatError(
            f"unsloth_multiimage: {where} ({fmt} format) has a turn whose role is {value!r}. "
            f"Fix: give every turn a role (user, assistant or system)."
        )
    return _ROLE_ALIASES.get(value, value)


@dataclass(frozen=True)
class _Row:
    """Per-row conversion state: where the row is (for errors), its format and the options."""

    where: str
    fmt: str
    tags: tuple[str, ...]
    strip_newline: bool
    image_root: Any
    video_tags: tuple[str, ...] = ()

    def error(self, cls: type[FormatError], found: str, fix: str) -> FormatError:
        return cls(f"unsloth_multiimage: {self.where} ({self.fmt} format) {found}. Fix: {fix}.")

    def segments(self, content: Any, split_parts: bool) -> list[Any]:
        """The text, slot and embedded-image segments of one turn's content."""
        if content is None:
            return []
        if isinstance(content, str):
            return _split(content, self.tags, self.strip_newline, self.video_tags)
        if not isinstance(content, (list, tuple)):
            raise self.error(
                FormatError,
                f"has a turn whose content is a {type(content).__name__}",
                "make each content a string or a list of typed parts",
            )
        out: list[Any] = []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                text = part.get("text") or ""
                out.extend(
                    _split(text, self.tags, self.strip_newline, self.video_tags) if split_parts else [("text", text)]
                )
            elif kind in VIDEO_PART_TYPES:
                payload = video_payload(part)
                out.append(_VSLOT if payload is None else ("video", payload))
            elif kind in IMAGE_PART_TYPES:
                payload = part_payload(part)
                if payload is None:
                    out.append(_SLOT)
                elif kind == "image_url":
                    out.append(("image", _openai_image(payload, f"{self.where} ({self.fmt} format)")))
                else:
                    out.append(("image", payload))
            else:
                shown = kind if kind is not None else type(part).__name__
                raise self.error(
                    FormatError,
                    f"has a content part of type {shown!r}",
                    "convert or drop parts other than text and image parts first",
                )
        return out


#: ``([(out_key, role, content)], images, image_key, consumed_keys)`` of one row.
_Turns = tuple[list[Any], list[Any], str, tuple[str, ...]]


def _turns(example: Mapping[str, Any], fmt: str, row: _Row) -> _Turns:
    """``([(out_key, role, content)], images, image_key, consumed_keys)`` for one row of ``fmt``."""
    if fmt == "cauldron":
        return _cauldron_turns(example, fmt, row)
    if fmt == "prompt_completion":
        return _pc_turns(example, fmt, row)
    return _chat_turns(example, fmt, row)


def _cauldron_turns(example: Mapping[str, Any], fmt: str, row: _Row) -> _Turns:
    """the_cauldron: ``texts`` of ``{user, assistant}`` pairs."""
    texts = example.get("texts")
    if not isinstance(texts, (list, tuple)):
        raise row.error(
            FormatError,
            f"has no `texts` list (keys: {sorted(example)})",
            "pass the right format=, or give the row `texts: [{user, assistant}]`",
        )
    turns = []
    for pair in texts:
        if not isinstance(pair, Mapping):
            raise row.error(
                FormatError,
                f"has a `texts` entry of type {type(pair).__name__}",
                "make every entry a {'user': ..., 'assistant': ...} dict",
            )
        turns += [("messages", role, pair[role]) for role in ("user", "assistant") if pair.get(role) is not None]
    return turns, _column(example.get("images"), row.where, fmt, "images"), "images", ("texts", "images")


def _pc_turns(example: Mapping[str, Any], fmt: str, row: _Row) -> _Turns:
    """TRL's prompt/completion: the two message lists, each turn keeping its side."""
    turns = []
    for side in ("prompt", "completion"):
        chat = example.get(side)
        if chat is not None and not is_message_list(chat):
            raise row.error(
                FormatError,
                f"has a `{side}` that is not a list of role/content turns",
                "give `prompt` (and `completion`) as message lists",
            )
        turns += [(side, _role(m.get("role"), row.where, fmt), m.get("content")) for m in chat or []]
    if not turns and example.get("prompt") is None:
        raise row.error(FormatError, f"has no `prompt` (keys: {sorted(example)})", "pass the right format=")
    return (
        turns,
        _column(example.get("images"), row.where, fmt, "images"),
        "images",
        ("prompt", "completion", "images"),
    )


def _chat_turns(example: Mapping[str, Any], fmt: str, row: _Row) -> _Turns:
    """One chat list (``messages``, ``conversations`` or ``conversation``): LLaVA's from/value turns
    or role/content turns."""
    key, chat = chat_of(example)
    if chat is None or key is None:
        raise row.error(
            FormatError,
            f"has none of {list(CHAT_KEYS)} (keys: {sorted(example)})",
            "pass the right format= (see unsloth_multiimage.formats.detect)",
        )
    if any(not isinstance(m, Mapping) for m in chat):
        raise row.error(FormatError, f"has a `{key}` entry that is not a dict", "make every turn a dict")
    if fmt == "llava":
        image, images = example.get("image"), example.get("images")
        if image is not None and images is not None:
            raise row.error(FormatError, "has both `image` and `images`", "keep one of the two columns")
        image_key = "image" if image is not None else "images"
        turns = [("messages", _role(m.get("from"), row.where, fmt), m.get("value")) for m in chat]
        return turns, _column(example.get(image_key), row.where, fmt, image_key), image_key, (key, "image", "images")
    turns = [("messages", _role(m.get("role"), row.where, fmt), m.get("content")) for m in chat]
    return turns, _column(example.get("images"), row.where, fmt, "images"), "images", (key, "images")


def _assemble(
    turns: list[Any],
    column: list[Any],
    image_key: str,
    row: _Row,
    videos: Sequence[Any] = (),
    video_key: str = "videos",
) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """Turn segments into output chats and the images and videos lists in placeholder order."""
    split_parts = not any(
        isinstance(c, (list, tuple)) and any(isinstance(p, Mapping) and p.get("type") in IMAGE_PART_TYPES for p in c)
        for _, _, c in turns
    )
    segmented = [(key, role, row.segments(content, split_parts)) for key, role, content in turns]
    segmented = _place_videos(segmented, list(videos), video_key, row)
    n_slots = sum(seg is _SLOT for *_, segs in segmented for seg in segs)
    n_embedded = sum(seg[0] == "image" for *_, segs in segmented for seg in segs)
    if not turns and column:
        raise row.error(
            FormatError,
            f"has an empty chat but {len(column)} image(s) in `{image_key}`: they have no turn to go into",
            "give the row its conversation, or remove the row (with its images) from the dataset",
        )
    if n_slots == 0 and n_embedded == 0 and column:
        first_user = next((i for i, (_, role, _) in enumerate(segmented) if role == "user"), None)
        if first_user is None:
            raise row.error(
                FormatError,
                f"has {len(column)} image(s) in `{image_key}`, no image tag and no user turn",
                "add a user turn, or image tags where the images belong",
            )
        key, role, segs = segmented[first_user]
        segmented[first_user] = (key, role, [_SLOT] * len(column) + segs)
        logger.debug("%s: no image tags; %d image(s) put at the start of the first user turn", row.where, len(column))
    elif n_slots != len(column):
        tags = " / ".join(row.tags) or "none"
        embedded = f" (plus {n_embedded} image part(s) with their own image)" if n_embedded else ""
        fix = (
            f"add the {len(column) - n_slots} missing image tag(s) (or bare image parts) where the images belong, "
            f"in order, or remove the extra image(s)"
            if n_slots < len(column)
            else f"remove the {n_slots - len(column)} extra tag(s) or add the missing image(s); if the text uses a tag "
            f"literally, pass image_tags=() or your own tags"
        )
        raise row.error(
            ImageTagMismatchError,
            f"has {n_slots} image placeholder(s) (tags {tags} or bare image "
            f"parts){embedded} but {len(column)} image(s) in `{image_key}`",
            fix,
        )
    fill, video_fill = iter(column), iter(videos)
    chats: dict[str, list[Any]] = {}
    images: list[Any] = []
    out_videos: list[Any] = []
    for key, role, segs in segmented:
        content = []
        for seg in segs:
            if seg[0] == "text":
                if seg[1]:
                    content.append({"type": "text", "text": seg[1]})
                continue
            if seg is _VSLOT or seg[0] == "video":
                found = next(video_fill) if seg is _VSLOT else seg[1]
                out_videos.append(
                    [resolve_image(f, row.image_root) for f in found]  # a video given as its frames
                    if isinstance(found, (list, tuple))
                    else resolve_image(found, row.image_root)
                )
                content.append({"type": "video", "text": None})
                continue
            images.append(resolve_image(next(fill) if seg is _SLOT else seg[1], row.image_root))
            content.append({"type": "image", "text": None})
        chats.setdefault(key, []).append({"role": role, "content": content})
    return chats, images, out_videos


def _place_videos(segmented: list[Any], videos: list[Any], video_key: str, row: _Row) -> list[Any]:
    """Check the video slots against the row's videos; with no video tag or part at all, every
    video goes to the start of the first user turn (as images do)."""
    n_slots = sum(seg is _VSLOT for *_, segs in segmented for seg in segs)
    if n_slots == len(videos):
        return segmented
    n_embedded = sum(seg[0] == "video" for *_, segs in segmented for seg in segs)
    first_user = next((i for i, (_, role, _) in enumerate(segmented) if role == "user"), None)
    if n_slots == 0 and n_embedded == 0 and first_user is not None:
        key, role, segs = segmented[first_user]
        return [*segmented[:first_user], (key, role, [_VSLOT] * len(videos) + segs), *segmented[first_user + 1 :]]
    tags = " / ".join(row.video_tags) or "none"
    raise row.error(
        ImageTagMismatchError,
        f"has {n_slots} video placeholder(s) (tags {tags} or bare video parts) but {len(videos)} video(s) in "
        f"`{video_key}`",
        "give every video exactly one video tag (or bare video part), in order",
    )


def _video_column(example: Mapping[str, Any], row: _Row) -> tuple[list[Any], str | None]:
    """``(videos, column key)`` of a row: its ``video`` (LLaVA-Video) or ``videos`` column."""
    found = [k for k in _VIDEO_COLUMNS if example.get(k) is not None]
    if len(found) > 1:
        raise row.error(FormatError, "has both `video` and `videos`", "keep one of the two columns")
    if not found:
        return [], None
    return _column(example[found[0]], row.where, row.fmt, found[0]), found[0]


#: Columns that hold a row's images in one layout or another.
_IMAGE_COLUMNS = ("image", "images")


def _refuse_stray_images(example: Mapping[str, Any], consumed: Sequence[str], row: _Row, index: int | None) -> None:
    """Raise when an image column the row's format does not read holds images: it would be
    passed through as a stray column and its images never reach the chat (nothing dropped silently)."""
    for key in _IMAGE_COLUMNS:
        value = example.get(key)
        if key in consumed or value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        n = len(value) if isinstance(value, (list, tuple)) else 1
        exc = row.error(
            FormatError,
            f"has {n} image(s) in `{key}`, a column the {row.fmt} format does not read (converting would drop them)",
            f"move them into the column the {row.fmt} format reads, with one image tag each, or pass the format "
            f"the row is really in (format=...)",
        )
        exc.row = index
        raise exc


def to_messages(
    example: Mapping[str, Any],
    idx: int | None = None,
    /,
    *,
    row: int | None = None,
    format: str = "auto",
    image_root: str | os.PathLike[str] | None = None,
    image_tags: Sequence[str] = DEFAULT_IMAGE_TAGS,
    strip_tag_newline: bool = True,
    video_tags: Sequence[str] = DEFAULT_VIDEO_TAGS,
) -> dict[str, Any]:
    """Convert one row to the messages layout (see the module docstring for the rules).

    Args:
        example: the row.
        idx: the row index, as ``Dataset.map(..., with_indices=True)`` passes it.
        row: the row index as a keyword (wins over ``idx``); errors say ``row ?`` without either.
        format: one of :data:`FORMATS`, or ``"auto"`` to :func:`detect` it per row.
        image_root: folder that relative image paths are relative to.
        image_tags: the strings that stand for an image in text; ``()`` converts none.
        strip_tag_newline: drop one ``"\\n"`` directly after each tag.
        video_tags: the strings that stand for a video in text (LLaVA-Video's ``<video>``); each becomes a
            bare ``{"type": "video"}`` part taking the next entry of the row's ``video``/``videos`` column.

    Returns:
        The row's other columns plus ``messages`` (``prompt``/``completion`` for
        ``prompt_completion``) and ``images`` (``[]`` for a text-only row), and ``videos`` when the
        row has a video column or a video.

    Raises:
        UnknownFormatError: the row matches no format (or ``format`` is not a format name).
        ImageTagMismatchError: placeholders and images disagree in number.
        FormatError: the row does not have the shape of its format.
    """
    index = row if row is not None else idx
    where = f"row {index}" if index is not None else "row ?"
    if not isinstance(example, Mapping):
        raise UnknownFormatError(
            f"unsloth_multiimage: {where} is a {type(example).__name__}, not a dict. "
            f"Fix: pass one row (a dict) at a time.",
            row=index,
        )
    fmt = detect(example) if format == "auto" else format
    if fmt not in FORMATS:
        found = (
            f"has an unknown layout (keys: {sorted(map(str, example))})"
            if fmt == "unknown"
            else (f"was given format={format!r}")
        )
        raise UnknownFormatError(
            f"unsloth_multiimage: {where} {found}. Fix: {describe('unknown')} Known formats: {', '.join(FORMATS)}.",
            row=index,
        )
    state = _Row(where, fmt, tuple(image_tags), strip_tag_newline, image_root, tuple(video_tags))
    try:
        turns, column, image_key, consumed = _turns(example, fmt, state)
        videos, video_key = _video_column(example, state)
        chats, images, out_videos = _assemble(turns, column, image_key, state, videos, video_key or "videos")
    except FormatError as exc:
        exc.row = index  # the helpers name the row in the message only
        raise
    _refuse_stray_images(example, consumed, state, index)
    has_video_column = any(k in example for k in _VIDEO_COLUMNS)
    out = {k: v for k, v in example.items() if k not in consumed and k not in _VIDEO_COLUMNS}
    if fmt == "prompt_completion":
        out["prompt"] = chats.get("prompt", [])
        if example.get("completion") is not None:
            out["completion"] = chats.get("completion", [])
    else:
        out["messages"] = chats.get("messages", [])
    out["images"] = images
    if out_videos or has_video_column:
        out["videos"] = out_videos
    return out
