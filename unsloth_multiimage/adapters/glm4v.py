"""Built-in model adapter: GLM-4.1V / GLM-4.5V (``Glm4vProcessor``) and GLM-4.6V (``Glm46VProcessor``,
a copy of the GLM-4.1V processor in transformers 5.x; the two files differ only in names and in the
video timestamp format).

The chat template renders ``<|begin_of_image|><|image|><|end_of_image|>`` for each image; the processor
repeats ``<|image|>`` once per merged patch (``image_grid_thw.prod() // merge_size**2``). Video frames
reuse both markers and the ``<|image|>`` token, inside ``<|begin_of_video|>`` .. ``<|end_of_video|>``:
``<|begin_of_image|><|image|>...<|end_of_image|>{timestamp}`` per frame. So ``count_in_ids`` counts an
``<|image|>`` directly followed by ``<|end_of_image|>`` OUTSIDE a video segment: complete images only
(truncation inside an image's run leaves it unclosed). The processor flattens the batch's images (one
``image_grid_thw`` row per image, in placeholder order): ``flat``. Read from transformers'
``processing_glm4v.py`` / ``processing_glm46v.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, id_list, token_id, tokenizer_id
from .qwen2_vl import PACKING

PLACEHOLDER = "<|begin_of_image|><|image|><|end_of_image|>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<|image|><|end_of_image|>`` outside a video."""
    ids = id_list(ids)
    image = token_id(processor, "image_token_id", "<|image|>", "image_token")
    end = tokenizer_id(processor, "<|end_of_image|>")
    bov = token_id(processor, "video_start_id", "<|begin_of_video|>")
    eov = token_id(processor, "video_end_id", "<|end_of_video|>")
    depth = found = 0
    for a, b in zip(ids, ids[1:]):
        if a == bov:
            depth += 1
        elif a == eov:
            depth = max(0, depth - 1)
        elif a == image and b == end and depth == 0:
            found += 1
    return found


ADAPTER = ModelAdapter(
    processor_classes=("Glm4vProcessor", "Glm46VProcessor"),
    name="glm4v",
    nesting="flat",
    placeholder=PLACEHOLDER,
    count_in_ids=count_images,
    multi_image=True,
    native_video=True,
    # Packing: Qwen2-VL's layout (grid patches per image, M-RoPE from the model's get_rope_index).
    packing=PACKING,
)
