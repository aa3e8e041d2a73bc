"""Row shapes the plugin can diagnose before upstream runs (pure Python).

Upstream meets a malformed row deep inside its own code (a bare ``AssertionError`` for a string
``messages``, ``KeyError: 0`` for a row without a chat, ``TypeError`` from a chat template): none
of them names the row. :func:`check_row` raises a :class:`RowShapeError` that names the row, what
was found and the fix; a row in a known public dataset layout (LLaVA, Mantis, the_cauldron...)
gets the one line that converts it (:mod:`unsloth_multiimage.formats`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import FormatError, RowShapeError
from . import layouts
from .chat import CHAT_KEYS, is_pc_row

__all__ = ["check_row", "check_formatted"]

_LAYOUT = (
    'a dict with `messages` (a list of {"role": ..., "content": ...} turns) and, for bare '
    '{"type": "image"} placeholders, `images` (a list)'
)


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} ({text[:60] + '...' if len(text) > 60 else text})"


def _foreign(example: Any, row: int, found: str) -> FormatError | None:
    """The error for a row in a known dataset layout that needs converting, or None."""
    fmt = layouts.detect(example)
    if fmt in (layouts.MESSAGES, layouts.PROMPT_COMPLETION, layouts.UNKNOWN):
        return None
    return FormatError(
        f"unsloth_multiimage: row {row} looks like {layouts.label(fmt)} ({found}), a layout the collator cannot "
        f"read. Fix: {layouts.describe(fmt)}",
        row=row,
    )


def _check_turns(example: Any, key: str, chat: Any, row: int) -> None:
    if isinstance(chat, str):
        raise _foreign(example, row, f"`{key}` is a string") or RowShapeError(
            f"unsloth_multiimage: row {row}'s `{key}` is a string, not a list of turns. Fix: make it "
            f'[{{"role": "user", "content": ...}}, {{"role": "assistant", "content": ...}}].',
            row=row,
        )
    if not isinstance(chat, (list, tuple)):
        raise RowShapeError(
            f"unsloth_multiimage: row {row}'s `{key}` is a {_kind(chat)}, not a list of turns. Fix: make it "
            f'[{{"role": "user", "content": ...}}, {{"role": "assistant", "content": ...}}].',
            row=row,
        )
    if not chat and key != "completion":
        raise RowShapeError(
            f"unsloth_multiimage: row {row}'s `{key}` is an empty list: the row has no turn to train on. "
            f"Fix: give the row its conversation, or leave it out "
            f"of the dataset.",
            row=row,
        )
    for t, turn in enumerate(chat):
        _check_turn(example, key, t, turn, row)


def _check_turn(example: Any, key: str, t: int, turn: Any, row: int) -> None:
    """One turn: a dict with a ``role`` and a ``content`` that is None, a string, or a list of typed parts."""
    if not isinstance(turn, Mapping):
        raise RowShapeError(
            f"unsloth_multiimage: row {row}, `{key}` turn {t} is a {_kind(turn)}, not a "
            f'{{"role": ..., "content": ...}} dict. Fix: write each turn as such a dict.',
            row=row,
        )
    missing = [k for k in ("role", "content") if k not in turn]
    if missing:
        raise _foreign(example, row, f"turns with the keys {sorted(map(str, turn))}") or RowShapeError(
            f"unsloth_multiimage: row {row}, `{key}` turn {t} has no {' and no '.join(map(repr, missing))} "
            f"(keys: {sorted(map(str, turn))}). Fix: give every turn a `role` and a `content`.",
            row=row,
        )
    content = turn["content"]
    if content is None or isinstance(content, str):
        return
    if t == 0 and not content:
        # unsloth_zoo reads the first turn's first part (``content[0]``): an IndexError.
        raise RowShapeError(
            f"unsloth_multiimage: row {row}, `{key}` turn 0 has an empty content list. Fix: give it its "
            f'parts (e.g. [{{"type": "text", "text": ...}}]), or drop the turn.',
            row=row,
        )
    if not isinstance(content, (list, tuple)):
        raise RowShapeError(
            f"unsloth_multiimage: row {row}, `{key}` turn {t} has a content that is a {_kind(content)}. Fix: "
            f'use a string, or a list of parts such as {{"type": "text", "text": ...}} and {{"type": "image"}}.',
            row=row,
        )
    for p, part in enumerate(content):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise RowShapeError(
                f"unsloth_multiimage: row {row}, `{key}` turn {t}, content part {p} is a {_kind(part)}, not a "
                f'typed part. Fix: write it as {{"type": "text", "text": ...}} or {{"type": "image", ...}}.',
                row=row,
            )


def check_row(example: Any, row: int) -> None:
    """Raise :class:`RowShapeError` (naming ``row``) unless ``example`` is shaped like a chat row."""
    if isinstance(example, (list, tuple)):
        _check_turns(example, "messages", example, row)
        return
    if not isinstance(example, Mapping):
        raise RowShapeError(
            f"unsloth_multiimage: row {row} is a {_kind(example)}, not a row. Fix: make each row {_LAYOUT}.", row=row
        )
    for key in CHAT_KEYS:
        if example.get(key) is not None:  # None: absent (an Arrow row has every column of its table)
            _check_turns(example, key, example[key], row)
            return
    if is_pc_row(example):
        for side in ("prompt", "completion"):
            if not isinstance(example[side], str):  # a string side is plain text
                _check_turns(example, side, example[side], row)
        return
    raise _foreign(example, row, f"keys {sorted(map(str, example))}") or RowShapeError(
        f"unsloth_multiimage: row {row} has no chat: none of `messages`, `conversations` or `prompt` + "
        f"`completion` (keys: {sorted(map(str, example))}). Fix: make each row {_LAYOUT}, or pass a "
        f"`formatting_func` that builds one.",
        row=row,
    )


def check_formatted(result: Any, row: int) -> None:
    """Raise when a collator's ``formatting_func`` returned something that is not a row."""
    if isinstance(result, (Mapping, list, tuple)):
        return
    raise RowShapeError(
        f"unsloth_multiimage: formatting_func returned a {_kind(result)} for row {row}, not a row. Fix: return "
        f"{_LAYOUT} (the collator renders the chat itself).",
        row=row,
    )
