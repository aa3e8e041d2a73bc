"""Built-in model adapter: Gemma 3.

The chat template renders ``<start_of_image>`` (the begin-of-image token) once per image; the
processor replaces each by ``\\n\\n<start_of_image>`` + ``image_seq_length`` x ``<image_soft_token>`` +
``<end_of_image>\\n\\n``. ``processor.image_token`` is NOT the placeholder on every release: on
transformers 4.x (checked 4.57.3) it is the expanded soft token ``<image_soft_token>`` (256 per
image), so the ``image_token`` fallback would count 0 per rendered row; on 5.x (checked 5.17.0) it
is the boi token. This adapter says ``<start_of_image>`` on both.
"""

from __future__ import annotations

from typing import Any

from . import ModelAdapter, id_list

BOI_TOKEN = "<start_of_image>"


def _boi_id(processor: Any) -> int:
    tok = getattr(processor, "tokenizer", processor)
    boi = getattr(processor, "boi_token", None) or getattr(tok, "boi_token", None) or BOI_TOKEN
    return tok.convert_tokens_to_ids(str(boi))


def _count(processor: Any, ids: Any) -> int:
    """Images in one row of ``input_ids``: its begin-of-image ids."""
    return id_list(ids).count(_boi_id(processor))


ADAPTER = ModelAdapter(
    processor_classes=("Gemma3Processor",),
    name="gemma3",
    nesting="per_row",
    placeholder=BOI_TOKEN,
    count_in_ids=_count,
    multi_image=True,
)
