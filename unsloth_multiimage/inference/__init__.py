"""After training: prompts for ``model.generate`` shaped exactly as the collator shaped training rows.

:func:`prepare_inputs` runs a prompt through the same steps as a training row in the patched
``UnslothVisionDataCollator`` (format conversion, shape check, policies, grid or serial strategy,
decoding, the family adapter's image layout and placeholder check, the collator's resize, and for
Llama 3.2 Vision the configured cross-attention mask) and returns what ``model.generate(**inputs)``
takes. :func:`generate_answer` adds the ``generate`` call and decodes the new tokens.

The layer above ``patches`` (tests/engine/test_layers.py): it reuses the row pipeline, the
adapters and the processor patch; the commands (``ask``, the demo) import it.
"""

from __future__ import annotations

from .generation import Answer, generate_answer
from .prompt import PreparedPrompt, collator_image_size, prepare_inputs, prepare_prompt, resize_like_collator

__all__ = [
    "Answer",
    "PreparedPrompt",
    "collator_image_size",
    "generate_answer",
    "prepare_inputs",
    "prepare_prompt",
    "resize_like_collator",
]
