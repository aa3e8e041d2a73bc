"""Built-in model adapter: Qwen2-VL and Qwen2.5-VL.

The chat template renders ``<|vision_start|><|image_pad|><|vision_end|>`` for each image (and
``<|vision_start|><|video_pad|><|vision_end|>`` for each video); the processor then repeats
``<|image_pad|>`` once per merged patch (``image_grid_thw.prod() // merge_size**2``). The whole
three-token group is the placeholder: it occurs exactly once per image and never for a video
(``<|vision_start|>`` alone would also count videos). Checked against transformers 4.57.3 and
5.17.0 ``processing_qwen2_vl.py`` / ``processing_qwen2_5_vl.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, id_list, token_id

VISION_START = "<|vision_start|>"
IMAGE_PAD = "<|image_pad|>"
VISION_END = "<|vision_end|>"
PLACEHOLDER = VISION_START + IMAGE_PAD + VISION_END


def _ids_of(processor: Any) -> tuple[int, int]:
    tok = getattr(processor, "tokenizer", processor)
    pad = token_id(processor, "image_token_id", getattr(processor, "image_token", IMAGE_PAD))
    return tok.convert_tokens_to_ids(VISION_START), pad


def _count(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: ``<|vision_start|>`` ids followed by ``<|image_pad|>``."""
    ids = id_list(ids)
    start, pad = _ids_of(processor)
    return sum(1 for a, b in zip(ids, ids[1:]) if a == start and b == pad)


ADAPTER = ModelAdapter(
    processor_classes=("Qwen2VLProcessor", "Qwen2_5_VLProcessor"),
    name="qwen2_vl",
    nesting="flat",
    placeholder=PLACEHOLDER,
    count_in_ids=_count,
    multi_image=True,
)
