"""Built-in model adapter: Gemma 3.

The chat template renders ``<start_of_image>`` (the begin-of-image token) once per image; the
processor replaces each by ``\\n\\n<start_of_image>`` + ``image_seq_length`` x ``<image_soft_token>`` +
``<end_of_image>\\n\\n``. ``processor.image_token`` is NOT the placeholder on every release: on
transformers 4.x it is the expanded soft token ``<image_soft_token>`` (256 per
image), so the ``image_token`` fallback would count 0 per rendered row; on 5.x it
is the boi token. This adapter says ``<start_of_image>`` on both. ``count_in_ids`` counts the
``<end_of_image>`` ids (the tokenizer's ``eoi_token``): one per complete image, so an image whose soft
tokens were cut by truncation is not counted (with pan-and-scan every crop has its own
``<start_of_image>`` ... ``<end_of_image>``: the count is then above the row's image count, never below).
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, PackingFacts, id_list

BOI_TOKEN = "<start_of_image>"
EOI_TOKEN = "<end_of_image>"


def eoi_id(processor: Any) -> int:
    """The id of the processor's (or its tokenizer's) ``eoi_token``, else of ``<end_of_image>``."""
    tok = getattr(processor, "tokenizer", processor)
    eoi = getattr(processor, "eoi_token", None) or getattr(tok, "eoi_token", None) or EOI_TOKEN
    found: int = tok.convert_tokens_to_ids(str(eoi))  # one token in, one id out
    return found


def count_images(processor: Any, ids: Any) -> int:
    """Complete images in one row of ``input_ids``: its end-of-image ids."""
    return id_list(ids).count(eoi_id(processor))


ADAPTER = ModelAdapter(
    processor_classes=("Gemma3Processor",),
    name="gemma3",
    nesting="per_row",
    placeholder=BOI_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    # Image tokens attend to each other by these per-token types: TRL builds them with the
    # processor's padding side beside left-padded ids; the TRL patches lay them over each row's tokens
    # (a completion token takes the last prompt token's type: text, the generation prompt's end).
    row_inputs=("token_type_ids",),
    token_inputs=("token_type_ids",),
    # Packing: one pixel_values entry per image (per crop with pan-and-scan), each the same number of
    # soft tokens; each run of image tokens attends to itself bidirectionally (token_type_ids == 1).
    packing=PackingFacts(
        token_keys=("token_type_ids",),
        unit_keys=("pixel_values",),
        units="tokens",
        overlay="image_blocks",
    ),
)
