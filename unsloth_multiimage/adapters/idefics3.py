"""Built-in model adapter: Idefics3 and SmolVLM (SmolVLM / SmolVLM2 processors).

The chat template renders ``<image>`` once per image; the processor expands each into
``<fake_token_around_image><global-img><image>*image_seq_len<fake_token_around_image>`` (plus one
``<row_i_col_j>`` block per crop when the image is split). Exactly one ``<global-img>`` per image
survives the expansion, which is what ``count_in_ids`` counts. Checked against transformers 4.57.3
and 5.17.0 ``processing_idefics3.py`` / ``processing_smolvlm.py``.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, id_list, token_id

IMAGE_TOKEN = "<image>"
GLOBAL_IMAGE_TAG = "<global-img>"


def _count(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: its ``<global-img>`` ids (one per image, split or not)."""
    return id_list(ids).count(token_id(processor, "global_image_token_id", GLOBAL_IMAGE_TAG))


ADAPTER = ModelAdapter(
    processor_classes=("Idefics3Processor", "SmolVLMProcessor"),
    name="idefics3",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=_count,
    multi_image=True,
)
