"""Built-in model adapter: MiniCPM-V 4.6 (``MiniCPMV4_6Processor``, transformers' ``minicpmv4_6``;
MiniCPM-V 2.6 / 4.0 / 4.5 are trust_remote_code only and are not covered).

The processor reads every marker off its tokenizer. The chat template renders the tokenizer's
``image_token`` for each image (``<|image_pad|>`` for openbmb/MiniCPM-V-4.6, a Qwen3.5 tokenizer: the
adapter's default; ``placeholder_attr`` reads the processor's own). The processor replaces each by
``<image_id>k</image_id>`` (k = the image's number in its row) + ``<image>`` + ``image_token`` x n +
``</image>`` [+ ``<slice>`` + ``image_token`` x m + ``</slice>`` per slice]. ``count_in_ids`` counts an
``image_token`` directly followed by ``</image>`` (the tokenizer's ``image_end_token``): one per image
whose main block is complete (video frames put ``video_token`` before ``</image>``; a cut inside the
slices after it is not seen). ``pixel_values`` is NaViT-packed (1, C, P, total) with one
``target_sizes`` row per block, in placeholder order across the batch: ``flat``. Read from
transformers' ``processing_minicpmv4_6.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, pairs, token_id, tokenizer_id

IMAGE_TOKEN = "<|image_pad|>"


def count_images(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: ``image_token`` ids followed by ``image_end_token``."""
    image = token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token")
    end = tokenizer_id(processor, "</image>", "image_end_token")
    return pairs(ids, image, end)


ADAPTER = ModelAdapter(
    processor_classes=("MiniCPMV4_6Processor",),
    name="minicpmv4_6",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    placeholder_attr="image_token",
    native_video=True,
)
