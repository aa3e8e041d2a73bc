"""Built-in model adapter: LLaVA-NeXT (``LlavaNextProcessor``: the LLaVA-1.6 checkpoints).

The Hub chat templates (llava-hf/llava-v1.6-*) render ``<image>\\n`` for each image, every image of a
message first. The processor repeats ``<image>`` once per feature of the image's anyres grid
(``_get_number_of_features``: it depends on the image's original size), so one image leaves one run of
``<image>`` ids of a length the ids alone do not tell. ``image_lengths`` reads that length off the
processor for each image (``_get_number_of_features`` of its ``image_sizes`` entry and the
``pixel_values`` crop size, one less with the "default" feature strategy: what the processor
expanded it to), so the truncation check counts complete images even when a chat template writes
its placeholders side by side (``<image><image>``: one run of ids). ``count_in_ids`` (the fallback
when a release's processor cannot say) counts runs: the newline token after each placeholder of
the Hub templates separates neighbours. ``pixel_values`` is (images, patches, C, H, W) in
placeholder order across the batch plus ``image_sizes``: ``flat``. The model code takes
several images per row; the 1.6 checkpoints were tuned on one image per conversation. Read from
transformers' ``processing_llava_next.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, runs, token_id

IMAGE_TOKEN = "<image>"


def count_images(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: its runs of ``<image>`` ids."""
    image = token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token")
    return len(runs(ids, image))


def image_lengths(processor: Any, outputs: Any) -> list[int] | None:
    """The ``<image>`` ids each image of the batch expanded to, from the processor's own count
    (None when the outputs or the processor cannot say)."""
    features = getattr(processor, "_get_number_of_features", None)
    sizes = outputs.get("image_sizes") if hasattr(outputs, "get") else None
    pixels = outputs.get("pixel_values") if hasattr(outputs, "get") else None
    if features is None or sizes is None or pixels is None or not hasattr(pixels, "shape"):
        return None
    height, width = (int(v) for v in pixels.shape[-2:])
    less = 1 if getattr(processor, "vision_feature_select_strategy", None) == "default" else 0
    rows = sizes.tolist() if hasattr(sizes, "tolist") else list(sizes)
    return [int(features(int(h), int(w), height, width)) - less for h, w in rows]


ADAPTER = ModelAdapter(
    processor_classes=("LlavaNextProcessor",),
    name="llava_next",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    image_lengths=image_lengths,
    multi_image=True,
    # Packing: one pixel_values entry (its patches) and one image_sizes entry per image.
    packing=PackingFacts(unit_keys=("pixel_values",), units="images", image_keys=("image_sizes",)),
)
