"""Built-in adapter plugin: Pixtral (``PixtralProcessor``).

The chat template renders ``[IMG]`` once per image; the processor expands each into rows of
``[IMG]`` tokens (one per patch) separated by ``[IMG_BREAK]`` and closed by one ``[IMG_END]``
(checked against transformers 4.57.3 ``processing_pixtral.py``; the 5.17.0 file does the same).
So the rendered text has one ``[IMG]`` per image and ``input_ids`` one ``[IMG_END]`` per image.
"""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from . import ModelAdapter, id_list, processor_is, token_id

IMAGE_TOKEN = "[IMG]"
IMAGE_END_TOKEN = "[IMG_END]"


def _count(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: its ``[IMG_END]`` ids."""
    return id_list(ids).count(token_id(processor, "image_end_token_id", getattr(processor, "image_end_token", IMAGE_END_TOKEN)))


ADAPTER = ModelAdapter(
    name="pixtral",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=_count,
    multi_image=True,
    notes=(
        "Pixtral: one [IMG] per image in the rendered text, expanded to rows of [IMG]/[IMG_BREAK] ending in "
        "[IMG_END]; variable image sizes, pixel_values one entry per image with image_sizes"
    ),
)


@hookimpl
def umi_model_adapter(processor: Any, config: Any) -> ModelAdapter | None:
    if processor_is(processor, "PixtralProcessor"):
        return ADAPTER
    return None
