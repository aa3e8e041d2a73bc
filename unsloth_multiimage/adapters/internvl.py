"""Built-in model adapter: InternVL (``InternVLProcessor``: InternVL 2.5 / 3 / 3.5 ``-hf`` checkpoints).

The chat template (InternVL3-hf) renders ``<IMG_CONTEXT>\\n`` for each image: the tokenizer's
``context_image_token`` is the placeholder. The processor replaces each by ``<img>`` +
``<IMG_CONTEXT>`` x (``image_seq_length`` x the image's tiles) + ``</img>``. ``count_in_ids`` counts
the ``</img>`` ids (``end_image_token_id``): one per complete image. Video frames are wrapped the same
way (``FrameN: <img>...</img>``) and would count too (the collator sends no videos with image rows).
``pixel_values`` holds every image's tiles in placeholder order across the batch: ``flat``. Read
from transformers' ``processing_internvl.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, token_id

PLACEHOLDER = "<IMG_CONTEXT>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: its ``</img>`` ids."""
    end = token_id(processor, "end_image_token_id", "</img>", "end_image_token")
    return id_list(ids).count(end)


ADAPTER = ModelAdapter(
    processor_classes=("InternVLProcessor",),
    name="internvl",
    nesting="flat",
    placeholder=PLACEHOLDER,
    count_in_ids=count_images,
    multi_image=True,
    placeholder_attr="image_token",
    native_video=True,
    # Packing: one pixel_values entry per tile, each the same number of image tokens.
    packing=PackingFacts(unit_keys=("pixel_values",), units="tokens"),
)
