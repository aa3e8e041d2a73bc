"""Built-in model adapter: Pixtral and Mistral 3 (``PixtralProcessor``: Pixtral-12B on
``LlavaForConditionalGeneration``, and Mistral Small 3.1 / 3.2, whose ``Mistral3ForConditionalGeneration``
uses the same processor class with ``spatial_merge_size=2``; one adapter for both).

The chat template renders ``[IMG]`` once per image; the processor expands each into rows of
``[IMG]`` tokens (one per patch) separated by ``[IMG_BREAK]`` and closed by one ``[IMG_END]``
(read from transformers' ``processing_pixtral.py``, 4.x and 5.x).
So the rendered text has one ``[IMG]`` per image and ``input_ids`` one ``[IMG_END]`` per complete
image. The processor flattens the batch's images (one ``image_sizes`` row each): ``flat``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, token_id

IMAGE_TOKEN = "[IMG]"
IMAGE_END_TOKEN = "[IMG_END]"


def count_images(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: its ``[IMG_END]`` ids."""
    return id_list(ids).count(
        token_id(processor, "image_end_token_id", getattr(processor, "image_end_token", IMAGE_END_TOKEN))
    )


ADAPTER = ModelAdapter(
    processor_classes=("PixtralProcessor",),
    name="pixtral",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    # Packing: one pixel_values entry and one image_sizes entry per image.
    packing=PackingFacts(unit_keys=("pixel_values",), units="images", image_keys=("image_sizes",)),
)
