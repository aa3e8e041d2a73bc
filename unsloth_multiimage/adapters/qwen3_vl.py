"""Built-in model adapter: Qwen3-VL (``Qwen3VLProcessor``; also Qwen3-VL-MoE, Qwen3.5 and Qwen3.5-MoE,
which transformers 5.x maps to the same processor class).

The chat template renders ``<|vision_start|><|image_pad|><|vision_end|>`` for each image, as Qwen2-VL's
does; the processor repeats ``<|image_pad|>`` once per merged patch (``image_grid_thw.prod() //
merge_size**2``). A video frame is ``<t seconds><|vision_start|><|video_pad|>...<|vision_end|>``, so the
three-token group never occurs for a video. ``count_in_ids`` is Qwen2-VL's: complete images, an
``<|image_pad|>`` directly followed by ``<|vision_end|>``. The processor flattens the batch's images
(one ``image_grid_thw`` row per image, in placeholder order), so ``flat`` is exact. Read from
transformers' ``processing_qwen3_vl.py`` (the same layout on 4.x and 5.x).
"""

from __future__ import annotations

from . import ModelAdapter
from .qwen2_vl import IMAGE_TOKENS, PACKING, PLACEHOLDER, TOKEN_TYPES, count_images

ADAPTER = ModelAdapter(
    processor_classes=("Qwen3VLProcessor",),
    name="qwen3_vl",
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
