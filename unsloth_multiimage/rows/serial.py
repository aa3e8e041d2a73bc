"""The ``serial`` strategy: one image per user turn (pure Python: no PIL, torch or transformers).

A message whose content holds ``k >= 2`` image parts becomes ``k`` consecutive messages of the
same role, each holding one image: turn ``i`` is the text that came before image ``i`` (since
the previous image), then the label ``"Image i:"`` (:data:`LABEL`, ``i`` counted from 1 within
the message), then image ``i``; the last turn also takes everything after the last image (the
question). So ``[img, img, "Which colour is in both?"]`` becomes::

    user: "Image 1:" <image>
    user: "Image 2:" <image> "Which colour is in both?"

Every image group then holds one image: the regime Meta tuned the Llama 3.2 Vision Instruct
checkpoints in. With Mllama's default ``latest`` cross-attention mask the question sees only the
image of its own turn; with ``mllama_cross_attention="cumulative"`` it sees every image shown
before it. No text is dropped or reordered; messages with one image or none are kept as they are,
so the rewrite is idempotent.

The chat template must accept two user turns in a row: Llama 3.2 Vision's, Qwen2-VL's and most
ChatML templates do; Gemma's, Mistral's and Pixtral's raise ("roles must alternate").
:func:`template_refusal` probes a template once; the collator patch turns a refusal into an error
naming the first serialised row (merging the turns back would undo the strategy, and inserting
empty assistant turns would train the model on them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import RowShapeError, first_line
from .chat import chat_sides, is_image_part

__all__ = ["LABEL", "consecutive_turns", "needs_serial", "serialise", "template_refusal", "serial_template_error"]

#: The text part put right before image ``i`` of a serialised message.
LABEL = "Image {i}:"

_PROBE = [
    {"role": "user", "content": [{"type": "text", "text": "umi-probe-1"}]},
    {"role": "user", "content": [{"type": "text", "text": "umi-probe-2"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "umi-probe-3"}]},
]
_refusals: dict[str, str | None] = {}
_lock = threading.Lock()


def _n_images(message: Any) -> int:
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, (list, tuple)):
        return 0
    return sum(1 for part in content if is_image_part(part))


def needs_serial(example: Any) -> bool:
    """True when some message of ``example`` holds two or more image parts."""
    return any(_n_images(m) >= 2 for _key, chat in chat_sides(example) for m in chat)


def _split(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One message per image part of ``message`` (see the module docstring)."""
    content = list(message["content"])
    k = sum(1 for part in content if is_image_part(part))
    turns: list[list[Any]] = []
    current: list[Any] = []
    seen = 0
    for part in content:
        if not is_image_part(part):
            current.append(part)
            continue
        seen += 1
        current.append({"type": "text", "text": LABEL.format(i=seen)})
        current.append(part)
        if seen < k:
            turns.append(current)
            current = []
    turns.append(current)  # the last image and everything after it
    return [{**message, "content": parts} for parts in turns]


def consecutive_turns(example: Any) -> bool:
    """True when two messages in a row of ``example``'s chat have the same role (what serial makes)."""
    for _key, chat in chat_sides(example):
        roles = [m.get("role") if isinstance(m, Mapping) else None for m in chat]
        if any(a is not None and a == b for a, b in zip(roles, roles[1:])):
            return True
    return False


def serialise(example: Any) -> Any:
    """``example`` with each multi-image message split into single-image turns.

    The very same object when no message holds two images; otherwise a copy whose chat lists are
    new (every other key of the row kept as it is). Image parts keep their order, so bare
    placeholders still take the ``images`` column in order.
    """
    if not needs_serial(example):
        return example

    def messages(chat: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for message in chat:
            out.extend(_split(message) if _n_images(message) >= 2 else [message])
        return out

    if isinstance(example, (list, tuple)):
        return messages(example)
    out = dict(example)
    for key, chat in chat_sides(example):
        out[key] = messages(chat)
    return out


def template_refusal(render: Callable[[list[Any]], str], key: str) -> str | None:
    """Why a chat template cannot take two user turns in a row, or None when it can.

    ``render(messages) -> text`` renders a chat (e.g. ``apply_chat_template(..., tokenize=False)``);
    ``key`` identifies the template (its source), so each template is probed once per process. A
    template that raises, or that drops one of the two turns, refuses.
    """
    with _lock:
        if key in _refusals:
            return _refusals[key]
    try:
        text = render([dict(m) for m in _PROBE])
        why = None if "umi-probe-1" in text and "umi-probe-2" in text else "it drops one of two user turns in a row"
    except Exception as exc:  # the template's own error (jinja raises TemplateError via raise_exception)
        first = first_line(exc)
        why = f"it raises {type(exc).__name__}: {first[:200]}"
    with _lock:
        _refusals[key] = why
    return why


def serial_template_error(row: int, family: str, why: str) -> RowShapeError:
    """The error for a serialised row whose chat template refuses consecutive user turns."""
    return RowShapeError(
        f'unsloth_multiimage: row {row} was split into one user turn per image (strategy="serial"), but the '
        f"{family} chat template cannot render two user turns in a row: {why}. Fix: use "
        f'configure(strategy="native") (every image in its turn) or configure(strategy="grid") (one canvas), '
        f"or a chat template that accepts consecutive user turns.",
        row=row,
    )
