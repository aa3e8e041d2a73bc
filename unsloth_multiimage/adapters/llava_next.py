"""Built-in model adapter: LLaVA-NeXT (``LlavaNextProcessor``: the LLaVA-1.6 checkpoints).

The Hub chat templates (llava-hf/llava-v1.6-*) render ``<image>\\n`` for each image, every image of a
message first. The processor repeats ``<image>`` once per feature of the image's anyres grid
(``_get_number_of_features``: it depends on the image's original size), so one image leaves one run of
``<image>`` ids of a length the ids alone do not tell. ``count_in_ids`` counts those runs: the newline
token after each placeholder separates neighbours (two placeholders written side by side would merge
into one run and count once). A run cut short by truncation still counts as an image; transformers'
own ``_check_special_mm_tokens`` raises on such a cut first (a mismatch between the text's and the
ids' image tokens), and a cut of the whole image is counted. ``pixel_values`` is (images, patches,
C, H, W) in placeholder order across the batch plus ``image_sizes``: ``flat``. The model code takes
several images per row; the 1.6 checkpoints were tuned on one image per conversation. Checked against
transformers 5.17.0 ``processing_llava_next.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, runs, token_id

IMAGE_TOKEN = "<image>"


def count_images(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: its runs of ``<image>`` ids."""
    image = token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token")
    return len(runs(ids, image))


ADAPTER = ModelAdapter(
    processor_classes=("LlavaNextProcessor",),
    name="llava_next",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
)
