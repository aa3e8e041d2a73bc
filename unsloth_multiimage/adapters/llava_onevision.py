"""Built-in model adapter: LLaVA-OneVision (``LlavaOnevisionProcessor``).

The Hub chat template (llava-hf/llava-onevision-qwen2-*-hf) renders ``<image>`` for each image, every
image of a message first and side by side, then ``\\n`` + the text. The image processor reads the
NESTING of the image list (``batch_num_images``): a row with several images gets the multi-image
treatment (no anyres patches, ``num_image_tokens + 1`` tokens each, one less with the "default"
feature strategy), a row with one image the anyres one (a size-dependent count). A flat list would
silently make every image a single-image anyres input, so ``per_row`` is required. ``count_in_ids``
splits each run of ``<image>`` ids by the multi-image length: a run of k x that length is k images,
any other run is one anyres image (so a multi-image run cut by truncation counts 1, below the row's
count). The model code and the checkpoints take several images per row. Read from transformers'
``processing_llava_onevision.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, runs, token_id

IMAGE_TOKEN = "<image>"


def _multi_image_length(processor: Any) -> int:
    n = int(processor.num_image_tokens) + 1  # + image_newline
    return n - 1 if getattr(processor, "vision_feature_select_strategy", None) == "default" else n


def count_images(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: runs of ``<image>``, each split by the multi-image length."""
    image = token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token")
    per = _multi_image_length(processor)
    return sum(r // per if r % per == 0 else 1 for r in runs(ids, image))


ADAPTER = ModelAdapter(
    processor_classes=("LlavaOnevisionProcessor",),
    name="llava_onevision",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    native_video=True,
    # Packing: one pixel_values entry (its patches) and one image_sizes entry per image; batch_num_images
    # (anyres for single-image rows only) is rebuilt per document.
    packing=PackingFacts(
        unit_keys=("pixel_values",), units="images", image_keys=("image_sizes",), count_keys=("batch_num_images",)
    ),
)
