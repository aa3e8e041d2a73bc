"""Built-in model adapter: PaliGemma (``PaliGemmaProcessor``: PaliGemma 1 / 2).

There is no Hub chat template (prefix / suffix training); a template in this format renders
``<image>`` for each image, all first, then the prompt. The processor inserts ``<bos>`` after the last
``<image>`` of each text and ``\\n`` at its end, and repeats ``<image>`` ``image_seq_length`` times.
``count_in_ids`` divides the ``<image>`` ids by ``image_seq_length`` (a cut image is not counted).
Images per text: ``per_row``.

Known upstream limits (transformers' ``processing_paligemma.py``): the processor REFUSES a call
without images (an all-text batch raises, with or without the plugin); and in a mixed batch a
text-only row gets its ``<bos>`` at character 6 (``sample.rfind("<image>") + len("<image>")`` is 6
when the text has no ``<image>``), inside its first word. The model code takes several images per
row; the checkpoints were tuned on one image per prompt.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, token_id

IMAGE_TOKEN = "<image>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<image>`` ids // ``image_seq_length``."""
    image = token_id(processor, "image_token_id", IMAGE_TOKEN)
    return id_list(ids).count(image) // int(processor.image_seq_length)


ADAPTER = ModelAdapter(
    processor_classes=("PaliGemmaProcessor",),
    name="paligemma",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    # Packing: one pixel_values entry per image, each the same number of image tokens; positions count
    # from 1; a document's prefix (token_type_ids == 0) attends to itself bidirectionally, and transformers
    # builds that prefix over the whole packed row (one block), so only the block-diagonal mask packs it.
    packing=PackingFacts(
        position_offset=1,
        token_keys=("token_type_ids",),
        unit_keys=("pixel_values",),
        units="tokens",
        overlay="prefix",
        overlay_per_document=False,
        legacy_mask_needs_overlay=True,
    ),
)
