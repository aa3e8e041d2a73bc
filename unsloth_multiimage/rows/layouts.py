"""Which public dataset layout a row is in (keys and value shapes only, nothing parsed).

Read by the row shape check (a row in a layout the collator cannot read gets the one line that
converts it) and by :mod:`unsloth_multiimage.formats`, which converts those layouts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .chat import content_parts, image_parts, messages_of

__all__ = [
    "FORMATS",
    "CHAT_KEYS",
    "DEFAULT_IMAGE_TAGS",
    "detect",
    "describe",
    "label",
    "chat_of",
    "is_message_list",
    "tag_layout",
]

MESSAGES = "messages"
LLAVA = "llava"
MANTIS = "mantis"
LLAMAFACTORY = "llamafactory"
CAULDRON = "cauldron"
OPENAI = "openai"
PROMPT_COMPLETION = "prompt_completion"
UNKNOWN = "unknown"

#: Every layout :func:`detect` can name, except ``"unknown"``.
FORMATS = (MESSAGES, LLAVA, MANTIS, LLAMAFACTORY, CAULDRON, OPENAI, PROMPT_COMPLETION)
#: Keys a chat may sit under in these layouts (Mantis uses the singular).
CHAT_KEYS = ("messages", "conversations", "conversation")
#: The strings that stand for an image in the text of these layouts (LLaVA-style, and Llama 3.2
#: Vision's own token, which users write by hand).
DEFAULT_IMAGE_TAGS = ("<image>", "<|image|>")

_LABELS = {
    MESSAGES: "messages layout (`messages` of typed parts + `images`)",
    LLAVA: "LLaVA/ShareGPT rows (`conversations` of from/value + `image`)",
    MANTIS: "Mantis rows (`conversation(s)` with <image> tags + `images`)",
    LLAMAFACTORY: "LLaMA-Factory rows (`messages` with string contents + `images`)",
    CAULDRON: "the_cauldron rows (`images` + `texts`)",
    OPENAI: "OpenAI chat rows (`image_url` content parts)",
    PROMPT_COMPLETION: "TRL prompt/completion rows",
}


def label(fmt: str) -> str:
    """What rows of ``fmt`` look like, in a few words."""
    return _LABELS.get(fmt, "rows of an unknown layout")


def chat_of(example: Mapping[str, Any], keys: Sequence[str] = CHAT_KEYS) -> tuple[str | None, list[Any] | None]:
    """The first of ``keys`` holding a list, and that list (Arrow gives absent keys as None)."""
    for key in keys:
        value = example.get(key)
        if isinstance(value, (list, tuple)):
            return key, list(value)
    return None, None


def is_message_list(value: Any) -> bool:
    """True for a list of role/content turns."""
    return isinstance(value, (list, tuple)) and all(
        isinstance(m, Mapping) and (m.get("role") is not None or m.get("content") is not None) for m in value
    )


def detect(example: Any) -> str:
    """Name the layout of one row from its keys and value shapes (no content is parsed).

    Rules, first match wins:

    1. ``texts`` is a non-empty list of dicts with ``user``/``assistant``: ``"cauldron"``.
    2. The chat is an empty list: the layout its keys name (``image`` or ``conversations``:
       ``"llava"``; ``conversation``: ``"mantis"``; else ``"messages"``), so that its images are
       read from the column that layout keeps them in (and an empty chat with images is refused).
    3. The chat (``messages``, else ``conversations``, else ``conversation``) holds
       ``{"from", "value"}`` turns: ``"llava"`` (LLaMA-Factory's from/value sharegpt too).
    4. Role/content turns with an ``image_url`` part anywhere: ``"openai"``.
    5. Role/content turns with a string content and no image part: ``"llamafactory"`` under
       ``messages``, ``"mantis"`` under ``conversation(s)``. Text-only string chats land here too
       (harmless: converting them only wraps the strings into text parts).
    6. Role/content turns with list contents (string text turns beside image parts included):
       ``"messages"``.
       OpenAI rows without images are ``"messages"``: the two layouts coincide.
    7. ``prompt`` is a list of role/content turns: ``"prompt_completion"`` (prompt-only rows
       too). String prompts (TRL's standard, non-conversational layout) are ``"unknown"``.
    8. ``texts`` is an empty list: ``"cauldron"``.

    Returns:
        One of :data:`FORMATS` or ``"unknown"`` (anything that is not a mapping is unknown).
    """
    if not isinstance(example, Mapping):
        return UNKNOWN
    texts = example.get("texts")
    if (
        isinstance(texts, (list, tuple))
        and texts
        and isinstance(texts[0], Mapping)
        and (texts[0].get("user") is not None or texts[0].get("assistant") is not None)
    ):
        return CAULDRON
    key, chat = chat_of(example)
    if chat is not None:
        return _chat_layout(example, key, chat)
    if is_message_list(example.get("prompt")) and example.get("prompt"):
        return PROMPT_COMPLETION
    if isinstance(texts, (list, tuple)) and not texts:
        return CAULDRON  # an empty `texts`: still the_cauldron's key (its images then have no chat)
    return UNKNOWN


def _chat_layout(example: Mapping[str, Any], key: str | None, chat: list[Any]) -> str:
    """Rules 2-6 of :func:`detect`: the layout of a row by its chat list under ``key``."""
    turns = [m for m in chat if isinstance(m, Mapping)]
    if not turns:
        return _empty_chat_layout(example, key) if not chat else UNKNOWN
    if turns[0].get("from") is not None or turns[0].get("value") is not None:
        return LLAVA
    if turns[0].get("role") is None and turns[0].get("content") is None:
        return UNKNOWN
    if any(p.get("type") == "image_url" for p in content_parts(turns)):
        return OPENAI
    if any(isinstance(m.get("content"), str) for m in turns) and not image_parts(turns):
        return LLAMAFACTORY if key == "messages" else MANTIS
    return MESSAGES


def _empty_chat_layout(example: Mapping[str, Any], key: str | None) -> str:
    """The layout of a row whose chat is an empty list: named by its keys, since there is no turn
    to read (a LLaVA row with ``conversations: []`` and an ``image`` is LLaVA, not ``messages``,
    so that converting it reads ``image`` and refuses the row instead of dropping its images)."""
    if example.get("image") is not None or key == "conversations":
        return LLAVA
    if key == "conversation":
        return MANTIS
    return MESSAGES


def describe(fmt: str) -> str:
    """The one-line fix for a dataset in ``fmt``, for error messages.

    Raises:
        ValueError: ``fmt`` is neither a name of :data:`FORMATS` nor ``"unknown"``.
    """
    if fmt == UNKNOWN:
        return (
            "give each row `messages` (turns of {role, content: [{type: text|image}]}) and `images`, or a layout "
            "formats.detect knows (LLaVA, Mantis, LLaMA-Factory, the_cauldron, OpenAI, TRL prompt/completion); "
            "DPO rows: formats.to_preference, GRPO rows: formats.to_grpo_prompt."
        )
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}, unknown")
    if fmt == MESSAGES:
        return (
            "already the messages layout; `dataset = unsloth_multiimage.formats.convert_dataset(dataset)` only "
            "normalises it (tags in text, images without placeholders)."
        )
    root = ', image_root="<image folder>"' if fmt in (LLAVA, MANTIS, LLAMAFACTORY) else ""
    cli = " --image-root <image folder>" if root else ""
    return (
        f"convert the dataset first: `dataset = unsloth_multiimage.formats.convert_dataset(dataset{root})`, "
        f"or `unsloth-multiimage convert IN OUT{cli}`."
    )


def tag_layout(example: Any, placeholder: str | None = None) -> tuple[str, int] | None:
    """``(format, number of tags)`` when the row's text carries its images as tags of a public
    layout (no image part, tags in string contents or text parts), else None.

    Tags equal to the model's own ``placeholder`` do not count: the processor reads those itself.
    """
    messages = messages_of(example)
    if not messages or image_parts(messages):
        return None
    tags = [t for t in DEFAULT_IMAGE_TAGS if t != placeholder]
    texts: list[str] = [m["content"] for m in messages if isinstance(m, Mapping) and isinstance(m.get("content"), str)]
    texts += [p["text"] for p in content_parts(messages) if p.get("type") == "text" and isinstance(p.get("text"), str)]
    n = sum(text.count(tag) for text in texts for tag in tags)
    if not n:
        return None
    fmt = detect(example)
    return (fmt if fmt not in (MESSAGES, UNKNOWN) else LLAMAFACTORY), n
