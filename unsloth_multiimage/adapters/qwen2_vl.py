"""Built-in model adapter: Qwen2-VL and Qwen2.5-VL.

The chat template renders ``<|vision_start|><|image_pad|><|vision_end|>`` for each image (and
``<|vision_start|><|video_pad|><|vision_end|>`` for each video); the processor then repeats
``<|image_pad|>`` once per merged patch (``image_grid_thw.prod() // merge_size**2``). The whole
three-token group is the placeholder: it occurs exactly once per image and never for a video
(``<|vision_start|>`` alone would also count videos). ``count_in_ids`` counts complete images: an
``<|image_pad|>`` directly followed by ``<|vision_end|>`` (a video ends ``<|video_pad|><|vision_end|>``;
an image whose run of pads was cut by truncation has no closing ``<|vision_end|>``). Read from
transformers' ``processing_qwen2_vl.py`` / ``processing_qwen2_5_vl.py``; Qwen3-VL
has its own module (:mod:`.qwen3_vl`) with the same layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import ImageTokens, ModelAdapter, PackingFacts, pairs, token_id

VISION_START = "<|vision_start|>"
IMAGE_PAD = "<|image_pad|>"
VISION_END = "<|vision_end|>"
PLACEHOLDER = VISION_START + IMAGE_PAD + VISION_END


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<|image_pad|>`` ids followed by ``<|vision_end|>``."""
    pad = token_id(processor, "image_token_id", getattr(processor, "image_token", IMAGE_PAD))
    end = token_id(processor, "vision_end_token_id", VISION_END)
    return pairs(ids, pad, end)


#: Per-token image/video types for M-RoPE (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): TRL builds them with the
#: processor's padding side beside left-padded ids; the TRL patches lay them over each row's real tokens
#: (a completion token takes the last prompt token's type: text, the generation prompt's end).
TOKEN_TYPES = ("mm_token_type_ids",)

#: Packing (shared by Qwen3-VL, GLM-4V and PaddleOCR-VL): ``pixel_values`` holds every image's
#: ``image_grid_thw`` product of patch rows, image after image; M-RoPE positions from the model's own
#: ``get_rope_index`` per document.
PACKING = PackingFacts(
    positions="mrope",
    token_keys=TOKEN_TYPES,
    unit_keys=("pixel_values",),
    units="grid",
    image_keys=("image_grid_thw",),
)


def _patch_counter(processor: Any) -> Callable[[int, int], int] | None:
    """The image processor's own ``get_number_of_image_patches(height, width)`` (its smart_resize
    within its min/max pixels, then patches) over ``merge_size**2``: what one ``<|image_pad|>``
    becomes. None on a transformers without that method."""
    ip = getattr(processor, "image_processor", None)
    patches = getattr(ip, "get_number_of_image_patches", None)
    merge = getattr(ip, "merge_size", None)
    if patches is None or not isinstance(merge, int):
        return None
    return lambda width, height: int(patches(height, width, {})) // (merge * merge)


#: Qwen2-VL, Qwen2.5-VL and Qwen3-VL: tokens per image from its size (exact, no pixel decoded).
IMAGE_TOKENS = ImageTokens(
    counter=_patch_counter,
    how="the image processor's get_number_of_image_patches(height, width) / merge_size**2",
)

ADAPTER = ModelAdapter(
    processor_classes=("Qwen2VLProcessor", "Qwen2_5_VLProcessor"),
    name="qwen2_vl",
    nesting="flat",
    placeholder=PLACEHOLDER,
    count_in_ids=count_images,
    multi_image=True,
    native_video=True,
    row_inputs=TOKEN_TYPES,
    token_inputs=TOKEN_TYPES,
    packing=PACKING,
    image_tokens=IMAGE_TOKENS,
)
