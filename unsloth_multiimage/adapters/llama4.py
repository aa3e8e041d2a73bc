"""Built-in model adapter: Llama 4 (``Llama4Processor``: Scout / Maverick).

The chat template renders ``<|image|>`` for each image (the processor's ``fake_image_token``). The
processor replaces each by ``<|image_start|>`` [tiles: ``<|patch|>`` x n, separated by
``<|tile_x_separator|>`` / ``<|tile_y_separator|>``] ``<|image|>`` ``<|patch|>`` x n ``<|image_end|>``
(the global view last). ``count_in_ids`` counts the ``<|image_end|>`` ids: one per complete image.
The processor flattens whatever it gets (``make_flat_list_of_images``) and checks only the batch
total, so ``flat`` (a per-row mismatch is caught by the plugin's check of the rendered rows, not by
transformers). Read from transformers' ``processing_llama4.py``; NOT run through the collator
offline: ``Llama4ImageProcessor`` has only a torchvision backend (no PIL class).
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, id_list, tokenizer_id

IMAGE_TOKEN = "<|image|>"
IMAGE_END = "<|image_end|>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: its ``<|image_end|>`` ids."""
    end = tokenizer_id(processor, IMAGE_END, "end_of_img_token")
    return id_list(ids).count(end)


ADAPTER = ModelAdapter(
    processor_classes=("Llama4Processor",),
    name="llama4",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
)
