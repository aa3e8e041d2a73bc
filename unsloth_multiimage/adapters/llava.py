"""Built-in model adapter: LLaVA (``LlavaProcessor``: LLaVA-1.5 style checkpoints).

The chat template renders ``<image>`` once per image; the processor repeats it
``(height // patch_size) * (width // patch_size) + num_additional_image_tokens`` times, minus one
with ``vision_feature_select_strategy == "default"`` (read from transformers' ``processing_llava.py``,
4.x and 5.x). LLaVA-NeXT / OneVision have their own processor classes (a
variable number of tokens per image); they get the ``image_token`` fallback, which is also ``<image>``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, runs, token_id

IMAGE_TOKEN = "<image>"


def _tokens_per_image(processor: Any) -> int | None:
    ip = getattr(processor, "image_processor", None)
    patch = getattr(processor, "patch_size", None)
    size = getattr(ip, "crop_size", None) or getattr(ip, "size", None)
    if not patch or size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
    height, width = get("height"), get("width")
    if not height or not width:
        return None
    n = (int(height) // int(patch)) * (int(width) // int(patch)) + int(
        getattr(processor, "num_additional_image_tokens", 0) or 0
    )
    if getattr(processor, "vision_feature_select_strategy", None) == "default":
        n -= 1
    return n if n > 0 else None


def _count(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: image-token ids / tokens per image (runs of image
    tokens when the per-image count cannot be read off the processor)."""
    row_ids = id_list(ids)
    token = token_id(processor, "image_token_id", IMAGE_TOKEN)
    per_image = _tokens_per_image(processor)
    if per_image:
        return row_ids.count(token) // per_image
    return len(runs(row_ids, token))


ADAPTER = ModelAdapter(
    processor_classes=("LlavaProcessor",),
    name="llava",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=_count,
    multi_image=True,
    # Packing: one pixel_values entry per image, each the same number of image tokens.
    packing=PackingFacts(unit_keys=("pixel_values",), units="tokens"),
)
