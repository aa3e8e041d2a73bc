"""The cross-attention mask of a prompt/completion batch, over its completion tokens too.

The unsloth_zoo releases that need ``pc_cross_attention`` encode the prompts (with their images, left-padded) and the
completions (text only, right-padded) apart, join and re-pad the ids, and keep the prompts'
``cross_attention_mask``: shorter than ``input_ids`` (Mllama then fails on the shapes) and laid out
for the prompts' padding. Later releases extend it as this module does: every completion token sees
the images the last prompt token sees; padding sees none.
"""

from __future__ import annotations

from typing import Any

__all__ = ["needs_repair", "extend_over_completions"]


def needs_repair(batch: Any) -> bool:
    """True for a batch whose ``cross_attention_mask`` does not cover its ``input_ids``."""
    cam = batch.get("cross_attention_mask") if hasattr(batch, "get") else None
    ids = batch.get("input_ids") if hasattr(batch, "get") else None
    return cam is not None and ids is not None and cam.shape[1] != ids.shape[1]


def extend_over_completions(batch: Any, prompts: Any, completions: Any, padding_side: str) -> None:
    """Rebuild ``batch["cross_attention_mask"]`` in place, aligned with ``batch["input_ids"]``.

    ``prompts`` and ``completions`` are the processor outputs of the two encodings. Each row's real
    tokens in ``batch`` are its prompt's real tokens then its completion's, in order; when the
    collator truncated the row (``max_seq_length``), the real tokens it kept are the last ones
    (padding on the left) or the first ones (padding on the right), as its truncation keeps them.
    """
    import torch

    prompt_mask = prompts["cross_attention_mask"]
    prompt_attention = torch.as_tensor(prompts["attention_mask"]).bool()
    completion_attention = torch.as_tensor(completions["attention_mask"]).bool()
    attention = torch.as_tensor(batch["attention_mask"]).bool()
    rows, length = attention.shape
    out = prompt_mask.new_zeros((rows, length, *prompt_mask.shape[2:]))
    for b in range(rows):
        prompt_positions = prompt_attention[b].nonzero().flatten()
        if not len(prompt_positions):
            continue
        last = prompt_positions[-1]
        sources = torch.cat([prompt_positions, last.repeat(int(completion_attention[b].sum()))])
        real = attention[b].nonzero().flatten()
        if not len(real):
            continue
        kept = sources[-len(real) :] if padding_side == "left" else sources[: len(real)]
        out[b, real] = prompt_mask[b, kept]
    batch["cross_attention_mask"] = out
