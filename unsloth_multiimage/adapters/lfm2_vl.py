"""Built-in model adapter: LFM2-VL (``Lfm2VlProcessor``).

The chat template renders ``<image>`` for each image: the tokenizer's ``image_token`` is the
placeholder AND the expanded token. With ``use_image_special_tokens`` (the default) the processor
replaces each by ``<|image_start|>`` [per tile: ``<|img_row_R_col_C|>`` + ``<image>`` x n]
[``<|img_thumbnail|>`` + ``<image>`` x m] ``<|image_end|>``; ``count_in_ids`` then counts the
``<|image_end|>`` ids, one per complete image. Without the special tokens the ids hold only runs of
``<image>`` that cannot tell adjacent images apart: in a row without ``<|image_start|>`` the count
falls back to the number of ``<image>`` ids (never below the row's images, so no false alarm; it
then catches only a cut of every image token). The processor validates the image count per sample:
``per_row``. Read from transformers'
``processing_lfm2_vl.py``; NOT run through the collator offline: ``Lfm2VlImageProcessor`` has
only a torchvision backend (no PIL class).
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, id_list, token_id, tokenizer_id

IMAGE_TOKEN = "<image>"
IMAGE_START = "<|image_start|>"
IMAGE_END = "<|image_end|>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<|image_end|>`` ids (``<image>`` ids in a row
    without any ``<|image_start|>``, i.e. without the special tokens)."""
    row_ids = id_list(ids)
    start = tokenizer_id(processor, IMAGE_START, "image_start_token")
    end = tokenizer_id(processor, IMAGE_END, "image_end_token")
    if start in row_ids:
        return row_ids.count(end)
    return row_ids.count(token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token"))


ADAPTER = ModelAdapter(
    processor_classes=("Lfm2VlProcessor",),
    name="lfm2_vl",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
)
