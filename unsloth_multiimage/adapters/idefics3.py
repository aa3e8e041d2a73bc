"""Built-in model adapter: Idefics3 and SmolVLM (SmolVLM / SmolVLM2 processors).

The chat template renders ``<image>`` once per image; the processor expands each into
``<fake_token_around_image><global-img><image>*image_seq_len<fake_token_around_image>`` (plus one
``<row_i_col_j>`` block per crop when the image is split, before the global one). Exactly one
``<global-img>`` per image survives the expansion; ``count_in_ids`` counts those whose run of
``<image>`` ids is closed by ``<fake_token_around_image>`` (complete images: truncation inside the
last image leaves its block open). Read from transformers' (4.x and 5.x)
``processing_idefics3.py`` / ``processing_smolvlm.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list, token_id

IMAGE_TOKEN = "<image>"
GLOBAL_IMAGE_TAG = "<global-img>"
FAKE_TOKEN = "<fake_token_around_image>"


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: ``<global-img>``, a run of ``<image>``, then
    ``<fake_token_around_image>``."""
    ids = id_list(ids)
    tag = getattr(processor, "global_image_token", None) or getattr(processor, "global_image_tag", None)
    glob = token_id(processor, "global_image_token_id", tag or GLOBAL_IMAGE_TAG)
    image = token_id(processor, "image_token_id", IMAGE_TOKEN, "image_token")
    fake = token_id(processor, "fake_image_token_id", FAKE_TOKEN, "fake_image_token")
    found = 0
    for at, t in enumerate(ids):
        if t == glob:
            end = at + 1
            while end < len(ids) and ids[end] == image:
                end += 1
            found += end < len(ids) and ids[end] == fake
    return found


ADAPTER = ModelAdapter(
    processor_classes=("Idefics3Processor", "SmolVLMProcessor"),
    name="idefics3",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    # Packing: a row's images (sub-images) are its slots of pixel_values that are not all zero.
    packing=PackingFacts(slot_keys=("pixel_values", "pixel_attention_mask"), slots="nonzero"),
)
