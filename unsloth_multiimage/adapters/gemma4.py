"""Built-in model adapter: Gemma 4 (``Gemma4Processor``).

The chat template renders ``<|image|>`` for each image: the tokenizer's ``image_token`` is the
placeholder AND the expanded soft token. The processor replaces each by ``<|image>`` (boi) +
``<|image|>`` x the image's soft tokens (its own count: aspect-ratio preserving resize up to
``max_soft_tokens``) + ``<image|>`` (eoi). A video frame is ``<|image>`` + ``<|video|>`` x n +
``<image|>``. So ``<|image|>`` must never be counted in ``input_ids``; ``count_in_ids`` counts an
``<|image|>`` directly followed by ``<image|>``: one per complete image, none per video frame. The
processor nests images per text (``make_nested_list_of_images``) and checks the count per sample:
``per_row`` (one list per text, ``[]`` for a text-only row). Read from transformers'
``processing_gemma4.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, pairs, token_id, tokenizer_id

IMAGE_TOKEN = "<|image|>"
EOI_TOKEN = "<image|>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<|image|>`` ids followed by ``<image|>``."""
    soft = token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token")
    eoi = tokenizer_id(processor, EOI_TOKEN, "eoi_token")
    return pairs(ids, soft, eoi)


ADAPTER = ModelAdapter(
    processor_classes=("Gemma4Processor",),
    name="gemma4",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    native_video=True,
    # Packing: one pixel_values / image_position_ids entry per image (patches padded alike); each run of
    # image tokens attends to itself bidirectionally (mm_token_type_ids == 1) on sliding layers.
    packing=PackingFacts(
        token_keys=("mm_token_type_ids",),
        unit_keys=("pixel_values", "image_position_ids"),
        units="images",
        overlay="image_blocks",
        overlay_key="mm_token_type_ids",
    ),
)
