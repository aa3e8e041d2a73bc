"""RL and preference layouts from the layouts :func:`~.convert.to_messages` reads (pure Python).

* :func:`to_grpo_prompt`: a GRPO row, ``{"prompt": [turns with image parts], "images": [...],
  "answer": str | None}``: the conversation up to its last user turn is the prompt; the text of
  the assistant turn(s) after it (the reference answer a reward function compares with) is
  ``answer``. TRL's ``GRPOTrainer`` takes the ``prompt`` + ``images`` columns as they are.
* :func:`to_preference`: a DPO row, ``{"prompt": [...], "chosen": [...], "rejected": [...],
  "images": [...]}``, the images those of the prompt (TRL's ``DPOTrainer`` vision layout). The
  prompt is the row's ``prompt`` (a string with image tags, or turns) or, without one, its
  conversation in any layout ``to_messages`` reads; ``chosen`` / ``rejected`` are a string, one
  assistant turn, a list of assistant turns, or the whole conversation (prompt first, as
  Anthropic-HH-style sets store them: the turns after the prompt are kept).

Bad rows raise :class:`~unsloth_multiimage.errors.FormatError` naming the row, what was found and
the fix: an image in an answer (images belong to the prompt), a prompt without a user turn, an
answer that is empty or not a conversation continuing the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import FormatError
from .convert import to_messages

__all__ = ["to_grpo_prompt", "to_preference"]

_PREFERENCE_COLUMNS = ("chosen", "rejected")


def _where(row: int | None) -> str:
    return f"row {row}" if row is not None else "row ?"


def _text_of(turns: Sequence[Mapping[str, Any]]) -> str:
    return "".join(
        part.get("text") or ""
        for turn in turns
        for part in (turn.get("content") or [])
        if isinstance(part, Mapping) and part.get("type") == "text"
    )


def _has_image(turns: Sequence[Mapping[str, Any]]) -> bool:
    return any(
        isinstance(part, Mapping) and part.get("type") in ("image", "video")
        for turn in turns
        for part in (turn.get("content") or [])
    )


def _split_at_last_user(turns: list[Any], where: str, index: int | None) -> tuple[list[Any], list[Any]]:
    users = [i for i, turn in enumerate(turns) if turn.get("role") == "user"]
    if not users:
        raise FormatError(
            f"unsloth_multiimage: {where} has no user turn, so it has no prompt. Fix: give each row a user turn "
            f"(with its images) before the answer.",
            row=index,
        )
    return turns[: users[-1] + 1], turns[users[-1] + 1 :]


def to_grpo_prompt(
    example: Mapping[str, Any], idx: int | None = None, /, *, row: int | None = None, **convert: Any
) -> dict[str, Any]:
    """One row (any layout :func:`~.convert.to_messages` reads) as a GRPO prompt row.

    ``convert`` goes to ``to_messages`` (``format``, ``image_root``, ``image_tags`` ...). A string
    ``prompt`` (TRL's standard layout, image tags in the text, a string ``completion`` its answer) is
    read as one user turn. The row's other columns are kept; ``answer`` is the text after the last
    user turn (None when there is none).
    """
    index = row if row is not None else idx
    where = _where(index)
    if isinstance(example.get("prompt"), str):  # TRL's standard layout: the prompt's text, image tags in it
        rest = {k: v for k, v in example.items() if k not in ("prompt", "completion")}
        rest["messages"] = [{"role": "user", "content": example["prompt"]}]
        if isinstance(example.get("completion"), str):
            rest["messages"].append({"role": "assistant", "content": example["completion"]})
        convert.setdefault("format", "llamafactory")
        example = rest
    out = to_messages(example, row=index, **convert)
    if "prompt" in out:  # prompt/completion rows: the completion is the answer
        prompt, answer_turns = list(out.pop("prompt")), list(out.pop("completion", None) or [])
    else:
        prompt, answer_turns = _split_at_last_user(list(out.pop("messages")), where, index)
    if _has_image(answer_turns):
        raise FormatError(
            f"unsloth_multiimage: {where} has an image after its last user turn (in the answer); a GRPO prompt "
            f"carries every image the model sees. Fix: move the image into a user turn.",
            row=index,
        )
    out["prompt"] = prompt
    out["answer"] = _text_of(answer_turns) if answer_turns else None
    return out


def _answer(value: Any, prompt: list[Any], key: str, where: str, index: int | None) -> list[Any]:
    """``chosen`` / ``rejected`` as assistant turns with typed parts."""
    if isinstance(value, str):
        turns: list[Any] = [{"role": "assistant", "content": value}]
    elif isinstance(value, Mapping):
        turns = [value]
    elif isinstance(value, Sequence) and value and all(isinstance(t, Mapping) for t in value):
        turns = list(value)
    else:
        raise FormatError(
            f"unsloth_multiimage: {where}: {key!r} is {type(value).__name__} {str(value)[:60]!r}, not a string or a "
            f"list of turns. Fix: give {key!r} as the answer text or as assistant turns.",
            row=index,
        )
    if any(t.get("role") == "user" for t in turns):  # the whole conversation: keep what follows the prompt
        if [t.get("role") for t in turns[: len(prompt)]] == [t.get("role") for t in prompt]:
            turns = turns[len(prompt) :]
        else:
            _, turns = _split_at_last_user(turns, where, index)
    if _has_image(turns) or any("image" in t for t in turns):
        raise FormatError(
            f"unsloth_multiimage: {where}: {key!r} holds an image; in a preference row the images belong to the "
            f"prompt (TRL's DPO layout). Fix: move it into the prompt's user turn.",
            row=index,
        )
    if turns:  # typed parts, as the prompt's (image tags in an answer fail here, naming the row)
        fmt = "llamafactory" if _string_contents(turns) else "messages"
        turns = list(to_messages({"messages": turns}, row=index, format=fmt)["messages"])
    if not turns or not _text_of(turns).strip():
        raise FormatError(
            f"unsloth_multiimage: {where}: {key!r} has no answer text after the prompt. Fix: give the answer "
            f"(a string or assistant turns).",
            row=index,
        )
    return turns


def _string_contents(turns: Sequence[Mapping[str, Any]]) -> bool:
    return all(isinstance(t.get("content"), str) for t in turns)


def to_preference(
    example: Mapping[str, Any], idx: int | None = None, /, *, row: int | None = None, **convert: Any
) -> dict[str, Any]:
    """One preference row as TRL's vision DPO row: ``prompt`` turns with image parts, ``chosen``,
    ``rejected`` (assistant turns), ``images`` (the prompt's, in placeholder order).

    The prompt is the row's ``prompt`` column (a string with image tags, a list of turns) with
    its ``images`` / ``image`` column, else the rest of the row in any layout ``to_messages`` reads
    (its turns up to the last user turn). ``convert`` goes to ``to_messages``.
    """
    index = row if row is not None else idx
    where = _where(index)
    missing = [k for k in _PREFERENCE_COLUMNS if example.get(k) is None]
    if missing:
        raise FormatError(
            f"unsloth_multiimage: {where} has no {' / '.join(repr(k) for k in missing)} column (keys: "
            f"{sorted(map(str, example))}). Fix: a preference row needs 'chosen' and 'rejected' answers.",
            row=index,
        )
    rest = {k: v for k, v in example.items() if k not in _PREFERENCE_COLUMNS}
    prompt_value = rest.pop("prompt", None)
    if isinstance(prompt_value, str):
        rest["messages"] = [{"role": "user", "content": prompt_value}]
        convert.setdefault("format", "llamafactory")
    elif isinstance(prompt_value, Sequence) and prompt_value:
        rest["messages"] = list(prompt_value)
    out = to_messages(rest, row=index, **convert)
    prompt, _ = _split_at_last_user(list(out.pop("messages")), where, index)
    out["prompt"] = prompt
    for key in _PREFERENCE_COLUMNS:
        out[key] = _answer(example[key], prompt, key, where, index)
    return out
