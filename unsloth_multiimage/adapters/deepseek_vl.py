"""Built-in model adapter: DeepSeek-VL (v1; ``DeepseekVLProcessor``, and ``DeepseekVLHybridProcessor``
of the hybrid high-resolution variant, which expands images the same way).

The chat format (``User: <image_placeholder>...\\n\\nAssistant: ...``) renders the tokenizer's
``image_token`` (``<image_placeholder>`` in the real tokenizers; ``placeholder_attr`` reads the
processor's own) for each image. The processor repeats it ``num_image_tokens`` times (576 by
default). ``count_in_ids`` divides those ids by ``num_image_tokens`` (a cut image is not counted).
``pixel_values`` holds the batch's images in placeholder order: ``flat``. Read from
transformers' ``processing_deepseek_vl.py`` / ``processing_deepseek_vl_hybrid.py`` (the hybrid
processor is claimed from that reading; the fixtures build the v1 one).
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, token_id

IMAGE_TOKEN = "<image_placeholder>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: image-token ids // ``num_image_tokens``."""
    image = token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token")
    return id_list(ids).count(image) // int(processor.num_image_tokens)


ADAPTER = ModelAdapter(
    processor_classes=("DeepseekVLProcessor", "DeepseekVLHybridProcessor"),
    name="deepseek_vl",
    nesting="flat",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    placeholder_attr="image_token",
    # Packing: one pixel_values entry per image, each the same number of image tokens.
    packing=PackingFacts(unit_keys=("pixel_values",), units="tokens"),
)
