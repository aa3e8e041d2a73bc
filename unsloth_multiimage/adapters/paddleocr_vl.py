"""Built-in model adapter: PaddleOCR-VL (``PaddleOCRVLProcessor``).

The Hub chat template (PaddlePaddle/PaddleOCR-VL) renders
``<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>`` for each image, every image of a message first.
The processor repeats ``<|IMAGE_PLACEHOLDER|>`` (the tokenizer's ``image_token``) once per merged
patch (``image_grid_thw.prod() // merge_size**2``). ``count_in_ids`` counts an
``<|IMAGE_PLACEHOLDER|>`` directly followed by ``<|IMAGE_END|>``: one per complete image (a cut through
an image's run drops its ``<|IMAGE_END|>``). The batch's images are flattened into ``pixel_values``
(patches, C, P, P), one ``image_grid_thw`` row each, in placeholder order: ``flat``. The model code
takes several images per row; the checkpoint's prompts are one document image plus a task prompt.
Read from transformers' ``processing_paddleocr_vl.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, pairs, token_id, tokenizer_id
from .qwen2_vl import PACKING

PLACEHOLDER = "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<|IMAGE_PLACEHOLDER|><|IMAGE_END|>`` pairs."""
    image = token_id(processor, "image_token_id", "<|IMAGE_PLACEHOLDER|>", "image_token")
    return pairs(ids, image, tokenizer_id(processor, "<|IMAGE_END|>"))


ADAPTER = ModelAdapter(
    processor_classes=("PaddleOCRVLProcessor",),
    name="paddleocr_vl",
    nesting="flat",
    placeholder=PLACEHOLDER,
    count_in_ids=count_images,
    multi_image=True,
    # Packing: Qwen2-VL's layout (grid patches per image, M-RoPE from the model's get_rope_index).
    packing=PACKING,
)
