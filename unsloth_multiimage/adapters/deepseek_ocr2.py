"""Built-in model adapter: DeepSeek-OCR-2 (``DeepseekOcr2Processor``, transformers' ``deepseek_ocr2``;
DeepSeek-OCR v1 is trust_remote_code only).

The prompt format of the model card puts ``<image>\\n`` before the instruction, one per image. The
processor replaces each ``<image>`` by ``global + local x crops + 1`` ``<image>`` ids (global =
ceil(size / patch_size / downsample_ratio)**2, local likewise with ``tile_size``; crops 0, or
min_patches..max_patches when the image is larger than a tile), consuming the crop counts in order
across the batch: ``flat``. ``count_in_ids`` splits each run of ``<image>`` ids by solving
``run = k x (global + 1) + local x crops`` for the smallest k >= 1 (unique for the real sizes, 257 and
144 being coprime); a run with no solution (cut by truncation) counts the images that surely fit,
below the row's count. The processor REFUSES a call without images, so an all-text batch raises
upstream, with or without the plugin. Multi-image rows work in the model code; the checkpoint is
tuned on one document page per prompt. Read from transformers'
``processing_deepseek_ocr2.py``.
"""

from __future__ import annotations

import math
from typing import Any

from . import ModelAdapter, PackingFacts, runs, token_id

IMAGE_TOKEN = "<image>"


def count_images(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: its runs of ``<image>`` ids, split by the per-image lengths."""
    ip = processor.image_processor
    size = ip.size["height"] if isinstance(ip.size, dict) else ip.size.height
    per = processor.patch_size * processor.downsample_ratio
    first = math.ceil(size / per) ** 2 + 1  # the global view + the view separator
    local = math.ceil(ip.tile_size / per) ** 2
    most = first + local * int(getattr(ip, "max_patches", 6) or 6)
    total = 0
    for run in runs(ids, token_id(processor, "image_token_id", IMAGE_TOKEN)):
        ks = [k for k in range(1, run // first + 1) if (run - k * first) % local == 0]
        total += ks[0] if ks else run // most
    return total


ADAPTER = ModelAdapter(
    processor_classes=("DeepseekOcr2Processor",),
    name="deepseek_ocr2",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    placeholder_attr="image_token",
    # Packing: one pixel_values entry and one num_local_patches entry per image.
    packing=PackingFacts(unit_keys=("pixel_values",), units="images", image_keys=("num_local_patches",)),
)
