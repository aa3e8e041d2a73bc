"""Built-in model adapter: Gemma 3n (``Gemma3nProcessor``).

The chat template renders ``<image_soft_token>`` for each image: the tokenizer's ``image_token`` is the
placeholder AND the expanded token. The processor replaces each by ``\\n\\n<start_of_image>`` +
``<image_soft_token>`` x ``image_seq_length`` (256 for the real checkpoints) + ``<end_of_image>\\n\\n``
(audio has its own ``<start_of_audio>`` / ``<audio_soft_token>`` / ``<end_of_audio>``).
``count_in_ids`` is Gemma 3's: the ``<end_of_image>`` ids (the tokenizer's ``eoi_token``), one per
complete image. The processor nests images per text and requires ``len(images) == len(text)``:
``per_row``. The vision tower is a timm model (``TimmWrapperModel``, MobileNetV5), so the model needs
``timm``. Read from transformers' ``processing_gemma3n.py``.
"""

from __future__ import annotations

from . import ModelAdapter, PackingFacts
from .gemma3 import count_images

IMAGE_TOKEN = "<image_soft_token>"

ADAPTER = ModelAdapter(
    processor_classes=("Gemma3nProcessor",),
    name="gemma3n",
    nesting="per_row",
    placeholder=IMAGE_TOKEN,
    count_in_ids=count_images,
    multi_image=True,
    # Packing: one pixel_values entry per image, each the same number of soft tokens.
    packing=PackingFacts(token_keys=("token_type_ids",), unit_keys=("pixel_values",), units="tokens"),
)
