"""Built-in model adapter: Llama 3.2 Vision (Mllama)."""

from __future__ import annotations

from typing import Any

from . import ImageTokens, ModelAdapter, PackingFacts, id_list, token_id

IMAGE_TOKEN = "<|image|>"


def _count(processor: Any, ids: Any) -> int:
    return id_list(ids).count(token_id(processor, "image_token_id", IMAGE_TOKEN))


ADAPTER = ModelAdapter(
    processor_classes=("MllamaProcessor",),
    name="mllama",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=_count,
    multi_image=True,
    row_inputs=("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"),
    token_inputs=("cross_attention_mask",),
    # Each row's images are its first slots; each document's tokens keep their cross-attention
    # mask (latest or cumulative, as the padded batch built it) over their own slots only.
    packing=PackingFacts(
        slot_keys=("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"),
        slots="images",
        cross_attention_key="cross_attention_mask",
    ),
    # The tiles go to cross-attention, not to the sequence: one token per image, whatever its size.
    image_tokens=ImageTokens(
        counter=lambda processor: lambda width, height: 1,
        how="one <|image|> token per image, whatever its size",
        follows_size=False,
    ),
)
