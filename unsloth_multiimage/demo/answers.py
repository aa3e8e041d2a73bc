"""Held-out questions answered by generation: the prompt through
:func:`unsloth_multiimage.generate_answer` (the training pipeline, then ``model.generate``), the
answer compared with the row's own by exact match (case and spacing aside). Used by ``demo`` (a
few questions printed) and ``demo --compare`` (exact-match accuracy beside the likelihood one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Answered", "answer_rows", "exact_match", "expected_answer", "generated_exact", "held_out_image_rows"]


@dataclass(frozen=True)
class Answered:
    """One held-out row: its question, the expected answer, the generated one, and its image count."""

    question: str
    expected: str
    generated: str
    images: int

    @property
    def correct(self) -> bool:
        return exact_match(self.generated, self.expected)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def exact_match(generated: str, expected: str) -> bool:
    """The generated answer is the expected one (lower case, whitespace collapsed)."""
    return _norm(generated) == _norm(expected)


def _texts(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    return " ".join(p.get("text") or "" for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def expected_answer(row: dict[str, Any]) -> str:
    """The text of the row's last assistant turn."""
    return _texts([m for m in row["messages"] if m.get("role") == "assistant"][-1]).strip()


def held_out_image_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rows of the synthetic task with two or more images, from a seed training never uses."""
    from .demo_data import make_rows

    rows = make_rows(n=max(16, n * 4), seed=seed + 10_007)
    multi = [r for r in rows if _image_count(r) >= 2]
    return multi[:n]


def _image_count(row: dict[str, Any]) -> int:
    from ..rows.plan import plan_row

    return len(plan_row(row, 0).images)


def _stop_ids(processor: Any) -> list[int]:
    """The tokens that end an assistant turn (EOS, and Llama 3's ``<|eot_id|>`` where the vocabulary has it)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    if isinstance(eot, int) and eot != tokenizer.unk_token_id:
        ids.add(eot)
    return sorted(ids)


def answer_rows(
    model: Any, processor: Any, rows: Sequence[dict[str, Any]], settings: Any = None, max_new_tokens: int = 6
) -> list[Answered]:
    """Each row's prompt answered greedily by ``model`` (in eval mode for the call)."""
    from ..inference import generate_answer

    was_training = bool(getattr(model, "training", False))
    model.eval()
    out = []
    try:
        for row in rows:
            answer = generate_answer(
                model,
                processor,
                row,
                settings=settings,
                max_new_tokens=max_new_tokens,
                eos_token_id=_stop_ids(processor),
            )
            user = [m for m in answer.prompt.example["messages"] if m.get("role") == "user"]
            out.append(Answered(_texts(user[-1]).strip(), expected_answer(row), answer.text, answer.prompt.given))
    finally:
        if was_training:
            model.train()
    return out


def generated_exact(
    model: Any, processor: Any, rows: Sequence[dict[str, Any]], answers: Sequence[str], *, resize: Any = "min"
) -> list[bool]:
    """Per row: do the first ``k`` greedily generated tokens (``k``: the length of its expected
    answer in tokens) decode to exactly that answer? ``demo --compare`` trains on the answer's
    tokens only, not on the token that closes the turn, so its models are not taught to stop: the
    answer's own length is where to read the generation. The settings in force shape the prompts,
    and ``resize`` must be the ``resize`` of the collator the model was trained with (else the
    prompt's images are not the pixels training gave it)."""
    from ..inference import generate_answer

    tokenizer = getattr(processor, "tokenizer", processor)
    out = []
    for row, answer in zip(rows, answers):
        k = max(1, len(tokenizer(answer, add_special_tokens=False)["input_ids"]))
        got = generate_answer(model, processor, row, max_new_tokens=k, min_new_tokens=k, resize=resize)
        out.append(exact_match(got.text, answer))
    return out
