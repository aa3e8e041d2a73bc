"""``model.generate`` on a prompt prepared by :func:`~.prompt.prepare_prompt`, the answer decoded.

Llama 3.2 Vision: transformers' Mllama extends ``cross_attention_mask`` for each generated token by
repeating its last position (``_update_model_kwargs_for_generation``, every supported release). With every image
in the prompt, that is the mask training gives answer tokens under both settings (``latest``: the
latest group of images; ``cumulative``: every image), so the prepared mask needs no generation-time
change: tests/inference/test_generation.py compares each generated token's logits with one
teacher-forced forward over the same sequence built by the collator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from .prompt import PreparedPrompt, prepare_prompt

__all__ = ["Answer", "generate_answer"]


@dataclass(frozen=True)
class Answer:
    """A generated answer.

    Attributes:
        text: the new tokens decoded (special tokens skipped, surrounding whitespace stripped).
        token_ids: the new tokens.
        prompt: the prepared prompt (its ``describe()`` says which settings shaped it).
    """

    text: str
    token_ids: tuple[int, ...]
    prompt: PreparedPrompt


def generate_answer(
    model: Any,
    processor: Any,
    messages: Any,
    images: Sequence[Any] | None = None,
    *,
    settings: Settings | None = None,
    max_new_tokens: int = 32,
    resize: Any = "min",
    image_root: Any = None,
    row: int = 0,
    **generate_kwargs: Any,
) -> Answer:
    """Prepare the prompt as training did (:func:`~.prompt.prepare_inputs`, with ``model``), run
    ``model.generate`` (greedy unless ``generate_kwargs`` say otherwise) and decode the new tokens.
    ``row``: the number errors give the prompt (a dataset row's own index)."""
    import torch

    prompt = prepare_prompt(
        processor, messages, images, settings=settings, model=model, resize=resize, image_root=image_root, row=row
    )
    tokenizer = getattr(processor, "tokenizer", processor)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False}
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None:
        kwargs["pad_token_id"] = pad
    kwargs.update(generate_kwargs)
    with torch.no_grad():
        out = model.generate(**prompt.inputs, **kwargs)
    sequences = out.sequences if hasattr(out, "sequences") else out
    new = sequences[0, prompt.inputs["input_ids"].shape[1] :].tolist()
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    return Answer(text, tuple(int(t) for t in new), prompt)
