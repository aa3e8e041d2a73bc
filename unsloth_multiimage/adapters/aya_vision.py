"""Built-in model adapter: Aya Vision (``AyaVisionProcessor``: CohereLabs/aya-vision-8b / -32b).

The Hub chat template renders ``<image>`` for each image. The processor replaces each by
``<|START_OF_IMG|>`` [``TILE_k`` + ``<|IMG_PATCH|>`` x n per crop] ``TILE_GLOBAL`` + ``<|IMG_PATCH|>`` x n
``<|END_OF_IMG|>``; note that ``processor.image_token_id`` is the PATCH token, not the placeholder.
``count_in_ids`` counts the ``<|END_OF_IMG|>`` ids: one per complete image, whatever its crops.
``pixel_values`` holds every image's crops in placeholder order across the batch: ``flat``. Read
from transformers' ``processing_aya_vision.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, tokenizer_id

IMAGE_TOKEN = "<image>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: its ``<|END_OF_IMG|>`` ids."""
    end = tokenizer_id(processor, "<|END_OF_IMG|>", "end_of_img_token")
    return id_list(ids).count(end)


ADAPTER = ModelAdapter(
    processor_classes=("AyaVisionProcessor",),
    name="aya_vision",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    # Packing: one pixel_values entry per tile, each the same number of image tokens.
    packing=PackingFacts(unit_keys=("pixel_values",), units="tokens"),
)
