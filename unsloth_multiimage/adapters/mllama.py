"""Built-in adapter plugin: Llama 3.2 Vision (Mllama)."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from . import ModelAdapter, id_list, processor_is, token_id

IMAGE_TOKEN = "<|image|>"


def _count(processor: Any, ids: Any) -> int:
    return id_list(ids).count(token_id(processor, "image_token_id", IMAGE_TOKEN))


ADAPTER = ModelAdapter(
    name="mllama",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=_count,
    multi_image=True,
    notes="cross-attention per image slot; the Instruct checkpoint was tuned on one image per prompt",
)


@hookimpl
def umi_model_adapter(processor: Any, config: Any) -> ModelAdapter | None:
    if processor_is(processor, "MllamaProcessor"):
        return ADAPTER
    return None
