"""Public multi-image dataset layouts in, the TRL/Unsloth messages layout out (pure Python).

The plugin reads a row as ``messages`` (a list of ``{"role", "content": [parts]}``) plus an
``images`` list whose entries fill the bare ``{"type": "image"}`` parts in order.
:func:`to_messages` produces exactly that from the layouts public multi-image sets ship in
(LLaVA / ShareGPT, Mantis, LLaMA-Factory, the_cauldron, OpenAI chat, prompt/completion), every
image in tag order, nothing dropped; :func:`convert_dataset` does it for a ``datasets.Dataset``
with a stable Arrow schema; :func:`to_preference` and :func:`to_grpo_prompt` give TRL's DPO and
GRPO layouts. The formats, the conversion rules and the Arrow details: docs/formats.md.

Use with ``datasets``::

    dataset = unsloth_multiimage.formats.convert_dataset(dataset, image_root="/data/images", num_proc=4)

``with_indices=True`` (as ``convert_dataset`` passes it) gives the row index, so errors name the row.
"""

from ..errors import FormatError, ImageTagMismatchError, UnknownFormatError
from ..rows.layouts import FORMATS, describe, detect
from .convert import DEFAULT_IMAGE_TAGS, resolve_image, resolve_paths, to_messages
from .dataset import consumed_columns, convert_dataset
from .inverse import from_messages
from .preference import to_grpo_prompt, to_preference

__all__ = [
    "FORMATS",
    "DEFAULT_IMAGE_TAGS",
    "FormatError",
    "UnknownFormatError",
    "ImageTagMismatchError",
    "detect",
    "to_messages",
    "to_grpo_prompt",
    "to_preference",
    "from_messages",
    "describe",
    "consumed_columns",
    "convert_dataset",
    "resolve_image",
    "resolve_paths",
]
