"""Built-in model adapter: Idefics2 (``Idefics2Processor``).

The Hub chat template (HuggingFaceM4/idefics2-8b) renders ``<image>`` for each image. The processor
replaces each by ``<fake_token_around_image>`` + ``<image>`` x ``image_seq_len`` +
``<fake_token_around_image>`` (that block x 5 with image splitting: 4 crops + the image; adjacent fake
tokens merged). ``count_in_ids`` divides the ``<image>`` ids by that fixed per-image count (a cut
image is not counted). ``pixel_values`` is (rows, most images in a row, C, H, W), zero-padded, plus
``pixel_attention_mask``: one slot per text, so ``per_row``.

``image_row_first``: transformers 5.x's image processor reads ``images[0][0]`` (the PIL backend for
the channel count, the torchvision one for shape and device), so a batch whose FIRST row has no image
raises IndexError, with any nesting. The collator's processor call then gets the rows permuted so an
image row comes first, and every per-row output is put back in order. Read from transformers'
``processing_idefics2.py`` / ``image_processing_pil_idefics2.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, token_id

IMAGE_TOKEN = "<image>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<image>`` ids // tokens per image."""
    per = int(processor.image_seq_len) * (5 if getattr(processor.image_processor, "do_image_splitting", False) else 1)
    return id_list(ids).count(token_id(processor, "image_token_id", IMAGE_TOKEN)) // per


ADAPTER = ModelAdapter(
    processor_classes=("Idefics2Processor",),
    name="idefics2",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    image_row_first=True,
    # Packing: a row's images (sub-images) are its slots of pixel_values that are not all zero.
    packing=PackingFacts(slot_keys=("pixel_values", "pixel_attention_mask"), slots="nonzero"),
)
