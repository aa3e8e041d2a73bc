"""Tiny, randomly initialised VLMs of every family the adapter table knows, built OFFLINE in code
(no Hub, no files): ``build(family)`` gives a :class:`Tiny`.

The families are data: each family-group module (:mod:`.llama_families`, :mod:`.qwen_families`,
:mod:`.gemma_families`, :mod:`.llava_families`, :mod:`.other_families`) holds one :class:`Family`
row each (processor class, special tokens, template format, image processor settings, model config
with the tokenizer-dependent values as markers (:mod:`.markers`), decoder (:mod:`.decoders`)), and
one builder (:func:`.builder.build_family`) turns a row into a :class:`Tiny` (Mllama uses the
project's own tiny model, ``unsloth_multiimage.tiny_mllama``). A :class:`Tiny` has the REAL
processor class of the family (its real image processor with tiny sizes, the PIL backend on
transformers 5.x, a ``tokenizers`` WordLevel tokenizer carrying the family's special tokens wrapped
in ``PreTrainedTokenizerFast``, and a chat template written for this project in the family's format
that renders every image item the way the family's Hub template does (:mod:`.chat`)) and a
``make_model`` that builds the real ``...ForConditionalGeneration`` from a tiny config.
``decode(batch)`` reads the coded images of :func:`make_tile_image` back from the batch
(normalisation undone), in the order the model consumes them, as ``[(row, index), ...]``.

Families (name -> processor class; see each row's ``doc`` for sizes and layout):
``mllama`` (unsloth_multiimage.tiny_mllama), ``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``, ``glm4v``,
``glm46v``, ``gemma3``, ``gemma3n``, ``gemma4``, ``idefics2``, ``idefics3``, ``smolvlm``, ``llava``,
``llava_next``, ``llava_onevision``, ``pixtral``, ``mistral3`` (both ``PixtralProcessor``),
``internvl``, ``paddleocr_vl``, ``deepseek_ocr2``, ``deepseek_vl``, ``minicpmv4_6``, ``aya_vision``,
``paligemma``, ``llama4``, ``lfm2_vl``.

A builder raises :class:`Unavailable` with the precise reason where the installed libraries cannot
build that family on this machine: a transformers release without the family, a family whose only
image processor is a torchvision one (Llama 4, LFM2-VL: torchvision is not installed on the CI rows;
nothing imitates it), Gemma 3n without timm. The one thing that stands in for a library is the
import-only torchvision stand-in (:mod:`.torchvision_stand_in`, which says why it edits
``sys.modules``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from tests.support.tiles import make_tile_image

from . import gemma_families, llama_families, llava_families, other_families, qwen_families
from .builder import Family, Tiny, build_family
from .chat import chat_template
from .decoders import decode_colour
from .installed import Unavailable
from .torchvision_stand_in import STAND_IN_MODULES, StandIn, import_under_torchvision_stand_in

__all__ = [
    "FAMILIES",
    "TABLE",
    "Family",
    "Tiny",
    "Unavailable",
    "build",
    "chat_template",
    "make_tile_image",
    "decode_colour",
    "import_under_torchvision_stand_in",
    "STAND_IN_MODULES",
    "StandIn",
]

#: the families built from a table row, in the order the adapter table lists them (Mllama first,
#: built by its own builder)
ORDER = (
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "glm4v",
    "glm46v",
    "gemma3",
    "gemma3n",
    "gemma4",
    "idefics2",
    "idefics3",
    "smolvlm",
    "llava",
    "llava_next",
    "llava_onevision",
    "pixtral",
    "mistral3",
    "internvl",
    "paddleocr_vl",
    "deepseek_ocr2",
    "deepseek_vl",
    "minicpmv4_6",
    "aya_vision",
    "paligemma",
    "llama4",
    "lfm2_vl",
)
_ROWS = {
    fam.name: fam
    for group in (llama_families, qwen_families, gemma_families, llava_families, other_families)
    for fam in group.TABLE
}
if sorted(_ROWS) != sorted(ORDER):  # a row added to a group module but not here, or the reverse
    raise RuntimeError(f"tiny_vlms.ORDER and the family tables differ: {sorted(set(_ROWS) ^ set(ORDER))}")

#: every family's row, in ORDER
TABLE: tuple[Family, ...] = tuple(_ROWS[name] for name in ORDER)

#: family name -> builder of its Tiny (Mllama: the project's own tiny model; every other family: its
#: row of TABLE through the one builder), in the order the adapter table lists them
FAMILIES: dict[str, Callable[[], Tiny]] = {
    "mllama": llama_families.mllama,
    **{fam.name: functools.partial(build_family, fam) for fam in TABLE},
}


def build(family: str) -> Tiny:
    """Build the tiny processor of ``family`` (the model is built by ``Tiny.make_model()``)."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("4.56"):
        # Config and processor constructors of these families changed a lot before 4.56 (sub-configs
        # given as dicts have no to_dict on 4.46-4.50, SmolVLM lacks video_sampling on 4.50, ...).
        raise Unavailable(
            f"the tiny {family} fixture is written for transformers >= 4.56, not {transformers.__version__}"
        )
    return FAMILIES[family]()
