"""What the packing tests share: the families each compat row runs, the rows of a test batch, the
padded batch from the real collator, a model per attention implementation, and the comparisons
(losses per document, gradients) between a padded batch and its packed form.

Models and processors are built once per session (tests/support/family_cases.py); every forward
here zeroes the gradients first.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.family_cases import (
    EXPECTED,
    column_row,
    model_of,
    skip_if_mixed_rows_unsupported,
    text_row,
    tiny_of,
    upstream_failure,
)

DEFAULT_ROW = "tf5.17-zoo2026.10"
#: families run on the other compat rows: one per packing mechanism and layout (slots and Mllama's
#: cross-attention; M-RoPE; Gemma 3's image blocks; PaliGemma's prefix; Idefics' sub-image slots;
#: LLaVA-OneVision's per-row counts; a plain LLaVA), where the row can build them
OTHER_ROW_FAMILIES = ("mllama", "qwen2_vl", "glm4v", "gemma3", "paligemma", "idefics3", "llava_onevision", "llava")
IMPLEMENTATIONS = ("eager", "sdpa")
#: images of each row of the test batch (a text-only row among them)
IMAGES_PER_ROW = (2, 0, 3, 1)
#: the same without the text-only row, where the family's processor cannot mix one in (transformers
#: before 4.57 rejects an empty image list for per-row families: upstream's limit)
NO_TEXT_ONLY_ROW = (2, 1, 3, 1)
RTOL = 1e-5


def on_default_row() -> bool:
    return os.environ.get("UMI_COMPAT_ROW", DEFAULT_ROW) == DEFAULT_ROW


def families() -> list[str]:
    return list(EXPECTED) if on_default_row() else list(OTHER_ROW_FAMILIES)


_mllama: list[Any] = []
_rebuilt: dict[tuple[str, str], Any] = {}


def tiny_family(family: str) -> Any:
    """The family's ``tiny_vlms.Tiny``; the project's own tiny Mllama also below transformers 4.56."""
    try:
        return tiny_of(family)
    except pytest.skip.Exception:
        if family != "mllama":
            raise
    if not _mllama:
        from tests.support import tiny_vlms

        _mllama.append(tiny_vlms.FAMILIES["mllama"]())
    return _mllama[0]


def model_for(tiny: Any, implementation: str) -> Any:
    """The family's tiny model on ``implementation``: the session's shared model switched over, or,
    before transformers 4.56 (which picks attention classes when a model is built; only the tiny
    Mllama runs there), one tiny Mllama per implementation."""
    import transformers

    if hasattr(transformers.PreTrainedModel, "set_attn_implementation"):
        model = model_of(tiny)
        model.set_attn_implementation(implementation)
    else:
        assert tiny.family == "mllama", tiny.family
        model = _mllama_model(tiny, implementation)
    model.train()
    model.zero_grad(set_to_none=True)
    return model


def _mllama_model(tiny: Any, implementation: str) -> Any:
    key = ("mllama", implementation)
    if key not in _rebuilt:
        import torch
        from transformers import MllamaForConditionalGeneration

        from unsloth_multiimage import tiny_mllama

        config = tiny_mllama.build_config(tiny.processor)
        for sub in (config, config.text_config, config.vision_config):
            sub._attn_implementation = implementation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = MllamaForConditionalGeneration(config)
        tiny_mllama._open_zero_gates(model)
        sdpa = any("Sdpa" in type(m).__name__ for m in model.modules())  # these releases' classes say which
        assert sdpa == (implementation == "sdpa"), implementation
        _rebuilt[key] = model
    return _rebuilt[key]


def images_per_row(tiny: Any) -> tuple[int, ...]:
    """:data:`IMAGES_PER_ROW`, or :data:`NO_TEXT_ONLY_ROW` where upstream cannot mix a text-only row in."""
    try:
        skip_if_mixed_rows_unsupported(tiny)
    except pytest.skip.Exception:
        return NO_TEXT_ONLY_ROW
    return IMAGES_PER_ROW


def rows_of(tiny: Any) -> list[dict]:
    return [column_row(tiny, r, n) if n else text_row() for r, n in enumerate(images_per_row(tiny))]


def padded_batch(tiny: Any, model: Any, collator_cls: Any) -> dict:
    """The padded batch the real collator makes of :func:`rows_of` (skips where upstream cannot)."""
    known = upstream_failure(tiny.family)
    if known:
        pytest.skip(known[1])
    return dict(collator_cls(model, tiny.processor)(rows_of(tiny)))


@dataclass
class Run:
    loss: Any
    documents: Any  # summed loss of every document, in row order
    targets: int
    grads: dict


def run(model: Any, batch: dict, spans: list[tuple[int, int, int]]) -> Run:
    """Forward and backward of ``batch``; ``spans`` are (sequence, start, stop) of each document."""
    import torch

    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    logits, labels = out.logits.detach(), batch["labels"]
    documents = torch.stack(
        [
            torch.nn.functional.cross_entropy(
                logits[s, a : b - 1].float(), labels[s, a + 1 : b], ignore_index=-100, reduction="sum"
            )
            for s, a, b in spans
        ]
    )
    targets = sum(int((labels[s, a + 1 : b] != -100).sum()) for s, a, b in spans)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return Run(out.loss.detach(), documents, targets, grads)


def relative(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    scale = float(b.abs().max())
    diff = float((a - b).abs().max())
    return 0.0 if diff == 0 else diff / scale if scale else math.inf


def gradient_difference(packed: dict, padded: dict) -> tuple[float, str]:
    """The largest per-parameter max |Δ| / max(max |g|, 1e-3 · G) (G: the largest gradient of all),
    and the parameter; a parameter whose gradient is numerically zero in both (a key bias under
    softmax) is measured against 1e-3 · G."""
    assert set(packed) == set(padded), sorted(set(packed) ^ set(padded))
    scale = max(float(g.abs().max()) for g in padded.values())
    worst, name = 0.0, ""
    for n, g in padded.items():
        assert bool(packed[n].isfinite().all()), f"{n}: a non-finite gradient in the packed batch"
        d = float((packed[n] - g).abs().max()) / max(float(g.abs().max()), 1e-3 * scale)
        if d > worst:
            worst, name = d, n
    return worst, name


def sized_processor(tiny: Any, min_pixels: int = 56 * 56, max_pixels: int = 256 * 256) -> Any:
    """A copy of a Qwen-family tiny processor whose image processor lets image sizes through, as a
    real checkpoint's does (Qwen2-VL's ``min_pixels`` is 56*56): a smaller image then makes fewer
    tokens (the tiny fixture pins every image to 56*56, 4 tokens). Skips where this transformers'
    image processor cannot count an image's tokens from its size (``get_number_of_image_patches``)."""
    import copy

    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.token_count import SizeCounter

    processor = copy.deepcopy(tiny.processor)
    ip = processor.image_processor
    ip.size = type(ip.size)(shortest_edge=min_pixels, longest_edge=max_pixels)
    if hasattr(ip, "min_pixels"):  # 4.x keeps them beside `size` too (as a checkpoint's config sets both)
        ip.min_pixels, ip.max_pixels = min_pixels, max_pixels
    if SizeCounter(processor, find_adapter(processor)).per_image is None:
        pytest.skip(f"this transformers' {type(ip).__name__} has no get_number_of_image_patches: no size counts")
    return processor
