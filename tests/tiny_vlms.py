"""Tiny, randomly initialised VLMs of every family the adapter table knows, built OFFLINE in code
(no Hub, no files).

The families are data: :data:`TABLE` holds one :class:`Family` row each (processor class, special
tokens, template format, image processor settings, model config with the tokenizer-dependent values
as markers, decoder), and one builder, :func:`_build_family`, turns a row into a :class:`Tiny` (Mllama
uses the project's own tiny model). A :class:`Tiny` has the REAL processor class of the family (its real
image processor with tiny sizes, the PIL backend on transformers 5.x, a ``tokenizers`` WordLevel
tokenizer carrying the family's special tokens wrapped in ``PreTrainedTokenizerFast``, and a chat
template written for this project in the family's format that renders every image item the way the
family's Hub template does) and a ``make_model`` that builds the real ``...ForConditionalGeneration``
from a tiny config. ``decode(batch)`` reads the coded images of :func:`make_tile_image` back from
the batch (normalisation undone), in the order the model consumes them, as ``[(row, index), ...]``.

Families (name -> processor class; see each row's ``doc`` for sizes and layout):
``mllama`` (demo/tiny_mllama), ``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``, ``glm4v``, ``glm46v``,
``gemma3``, ``gemma3n``, ``gemma4``, ``idefics2``, ``idefics3``, ``smolvlm``, ``llava``,
``llava_next``, ``llava_onevision``, ``pixtral``, ``mistral3`` (both ``PixtralProcessor``),
``internvl``, ``paddleocr_vl``, ``deepseek_ocr2``, ``deepseek_vl``, ``minicpmv4_6``, ``aya_vision``,
``paligemma``, ``llama4``, ``lfm2_vl``.

A builder raises :class:`Unavailable` with the precise reason where the installed libraries cannot
build that family on this machine: a transformers release without the family, a family whose only
image processor is a torchvision one (Llama 4, LFM2-VL: torchvision is not installed on the CI rows;
nothing imitates it), Gemma 3n without timm.

Import-only stand-in: :func:`import_under_torchvision_stand_in` (the one place anything stands in
for a library; see its docstring). PixtralProcessor (Pixtral, Mistral 3) and Gemma4Processor import a
pure helper from their torchvision-backed image-processor module, and timm (Gemma 3n's vision tower)
imports torchvision names at its top; what runs afterwards is the real PIL image processor and the
real timm model, with no torchvision code at all.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import functools
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from unsloth_multiimage.demo.tiny_mllama import WORDS

from tiles import decode_tile, make_tile_image

__all__ = [
    "FAMILIES",
    "TABLE",
    "Family",
    "Tiny",
    "Unavailable",
    "build",
    "make_tile_image",
    "decode_colour",
    "import_under_torchvision_stand_in",
    "STAND_IN_MODULES",
]


class Unavailable(RuntimeError):
    """This family cannot be built offline with the installed libraries (the message says why)."""


@dataclass
class Tiny:
    family: str
    processor: Any
    make_model: Callable[[], Any]
    image_size: tuple[int, int]
    #: key of the batch that holds the images (the family's pixel tensor)
    pixel_key: str = "pixel_values"
    #: how many images of the batch ``batch`` reached the pixel tensor / grid
    images_in_batch: Callable[[Any], int] = field(default=lambda batch: int(batch["pixel_values"].shape[0]))
    notes: str = ""
    #: (row, index) of every image of the batch, in the order the model consumes them
    decode: Callable[[Any], list] = field(default=lambda batch: [])
    #: parameter-name prefixes of the vision tower (gradients must reach them)
    vision_prefixes: tuple[str, ...] = ("model.vision_tower.",)
    #: the token each image is expanded into in ``input_ids`` (a cut just before its last occurrence
    #: is a truncation inside the row's last image)
    expanded_token: str = "<image>"
    #: whether the adapter's ``count_in_ids`` sees an image cut inside its tokens (False: LLaVA-NeXT,
    #: whose per-image length is not in the ids)
    sees_cut: bool = True
    #: what stands in for a missing library while a module is imported ("" = nothing)
    stand_ins: str = ""


# ---------------------------------------------------------------------------------- versions, imports
def _tf_version() -> Any:
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__)


def _tf_major() -> int:
    return _tf_version().major


def _has(package: str) -> None:
    """Raise Unavailable unless the installed transformers has ``transformers.models.<package>``."""
    if importlib.util.find_spec(f"transformers.models.{package}") is None:
        raise Unavailable(f"transformers {_tf_version()} has no {package}")


def _cls(module: str, name: str) -> Any:
    """A transformers class from its own module (not the lazy top-level placeholder)."""
    _has(module.split(".")[0])
    try:
        mod = importlib.import_module(f"transformers.models.{module}")
    except ImportError as e:  # e.g. a module that imports torchvision at its top
        raise Unavailable(f"transformers.models.{module} cannot be imported here: {e}") from e
    obj = getattr(mod, name, None)
    if obj is None:
        raise Unavailable(f"transformers.models.{module} has no {name}")
    return obj


def _needs_tf5(family: str) -> None:
    """Fixtures written against transformers 5's API only (``rope_parameters`` configs, its model
    constructors) and never tried on 4.x, where they could not run here anyway (no timm, no torchvision)."""
    if _tf_major() < 5:
        raise Unavailable(
            f"the tiny {family} fixture is written for transformers 5.x and not tried on transformers {_tf_version()}"
        )


def _image_processor(pkg: str, name: str, **kwargs: Any) -> Any:
    """The family's real image processor: the PIL backend on 5.x (where the default backend needs
    torchvision, which is not installed), the (slow, PIL/numpy) class on 4.x."""
    if _tf_major() >= 5:
        try:
            return _cls(f"{pkg}.image_processing_pil_{pkg}", f"{name}Pil")(**kwargs)
        except Unavailable:
            pass
    return _cls(f"{pkg}.image_processing_{pkg}", name)(**kwargs)


def _torchvision_only(family: str, class_name: str) -> None:
    """Raise Unavailable unless torchvision imports: ``class_name`` is the family's only image processor
    (on 4.x its ``...Fast`` class)."""
    if _tf_major() < 5:
        class_name += "Fast"
    if importlib.util.find_spec("torchvision") is None:
        raise Unavailable(
            f"{class_name} has only a torchvision backend in transformers {_tf_version()} and "
            f"torchvision is not installed on this row (nothing stands in for it: {family} is not "
            f"proven offline)"
        )
    try:
        importlib.import_module("torchvision.transforms.v2.functional")
    except Exception as e:  # e.g. PyPI's wheel beside the CPU torch build
        raise Unavailable(
            f"{class_name} has only a torchvision backend in transformers {_tf_version()} and "
            f"torchvision does not import on this row: {e!r}"
        ) from e


# ------------------------------------------------------------------------ the import-only stand-in
#: the modules of the stand-in: torchvision and the submodules transformers and timm import from
STAND_IN_MODULES = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.transforms.v2",
    "torchvision.transforms.v2.functional",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.datasets",
    "torchvision.utils",
    "torchvision.models",
    "torchvision.io",
)


class _InterpolationMode(enum.Enum):
    """The members and values of torchvision's ``InterpolationMode`` (read at import time, as data)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class _StandIn(types.ModuleType):
    """A stand-in module: every name is a placeholder class that raises when instantiated or called
    (``InterpolationMode`` is an enum of torchvision's values), so importing works and running
    anything through it fails loudly."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return _InterpolationMode
        qualname = f"{self.__name__}.{name}"

        def refuse(cls: Any, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{qualname} is an import-only stand-in (torchvision is not installed)")

        placeholder = type(name, (), {"__new__": refuse, "__module__": self.__name__})
        setattr(self, name, placeholder)
        return placeholder


def import_under_torchvision_stand_in(module: str, drop: Sequence[str] = ()) -> Any:
    """Import ``module``; where that fails for want of torchvision, import it again with a stand-in
    ``torchvision`` (:data:`STAND_IN_MODULES`, :class:`_StandIn`) present in ``sys.modules`` ONLY while
    the import runs. Then every stand-in module leaves ``sys.modules`` again, and so do the modules in
    ``drop`` (torchvision-backed modules imported on the way, e.g. ``image_processing_pixtral``, whose
    globals would hold the stand-in): importing them later fails as it does without torchvision.

    For modules that import a PURE helper from a torchvision-backed module (PixtralProcessor:
    ``get_resize_output_image_size``, used only by vLLM's token-count helper; Gemma4Processor: its
    ``ImagesKwargs`` and ``get_aspect_ratio_preserving_size``) and for timm, which imports
    ``FrozenBatchNorm2d`` (its batch-norm freezing helpers) and ``torchvision.transforms`` (timm.data)
    at its top. No code of the stand-in runs afterwards: the processors run on their PIL image
    processors, timm builds and runs its models in torch. transformers' cached
    ``is_torchvision_available()`` is read first, so it keeps answering False.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("torchvision"):
            raise
    from transformers.utils import import_utils

    for check in ("is_torchvision_available", "is_torchvision_v2_available"):
        if hasattr(import_utils, check):
            getattr(import_utils, check)()  # pin the lru_cache to the real answer
    made = {}
    for name in STAND_IN_MODULES:
        made[name] = mod = _StandIn(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []  # a package without files: a submodule not listed here is not found
    made["torchvision"].__version__ = "0.0.0+import-only-stand-in"
    for name in STAND_IN_MODULES[1:]:
        parent, child = name.rsplit(".", 1)
        setattr(made[parent], child, made[name])
    if any(name in sys.modules for name in made):
        raise RuntimeError("a torchvision module is already imported: no stand-in needed or possible")
    sys.modules.update(made)
    try:
        return importlib.import_module(module)
    except Exception as e:
        raise Unavailable(f"{module} does not import even with a torchvision import-only stand-in: {e!r}") from e
    finally:
        for name in made:
            sys.modules.pop(name, None)
        for name in drop:
            sys.modules.pop(name, None)
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and child in vars(sys.modules[parent]):
                delattr(sys.modules[parent], child)


# ------------------------------------------------------------------------------- coded test images
_BASE, _STEP, _BLUE = 8, 8, 200


def _stats(ip: Any) -> tuple[list, list, float]:
    """(mean, std, rescale) with which ``ip`` normalised (identity where it does not normalise)."""
    mean = ip.image_mean if isinstance(ip.image_mean, (list, tuple)) else [ip.image_mean] * 3
    std = ip.image_std if isinstance(ip.image_std, (list, tuple)) else [ip.image_std] * 3
    if not getattr(ip, "do_normalize", True):
        mean, std = [0.0] * 3, [1.0] * 3
    rescale = float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0
    return list(mean), list(std), rescale


def decode_colour(values: Any, ip: Any) -> tuple[int, int]:
    """``(row, index)`` of a :func:`make_tile_image` image from its pixels ``values`` shaped
    (3, ...) as ``ip`` normalised them: the channel medians, de-normalised, decoded. Raises
    ValueError for anything else (padding, a mix of two images)."""
    import torch

    t = torch.as_tensor(values).detach().float().reshape(3, -1)
    mean, std, rescale = _stats(ip)
    rgb = [(float(t[c].median()) * float(std[c]) + float(mean[c])) / rescale for c in range(3)]
    if abs(rgb[2] - _BLUE) > _STEP / 2:
        raise ValueError(f"not a coded image (pixel {[round(v, 1) for v in rgb]})")
    codes = []
    for v in rgb[:2]:
        c = (v - _BASE) / _STEP
        if abs(c - round(c)) > 0.3:
            raise ValueError(f"not a coded image (pixel {[round(v, 1) for v in rgb]})")
        codes.append(int(round(c)))
    return codes[0], codes[1]


def _runs(codes: list) -> list:
    """Consecutive tiles / views of one image decode to the same code: one entry per run."""
    return [c for i, c in enumerate(codes) if i == 0 or codes[i - 1] != c]


def _each(key: str, ip: Any, runs: bool = False, view: Callable[[Any], Any] = lambda img: img) -> Callable[[Any], list]:
    """Decoder for a pixel tensor with one entry (image, tile or view) per first-axis index."""

    def decode(batch: Any) -> list:
        pv = batch.get(key)
        codes = [] if pv is None else [decode_colour(view(img), ip) for img in pv]
        return _runs(codes) if runs else codes

    return decode


def _grid(ip: Any, grid_key: str = "image_grid_thw", channels_first: bool = True) -> Callable[[Any], list]:
    """Decoder for Qwen2-VL-style flattened patches: image i owns ``grid[i].prod()`` rows."""

    def decode(batch: Any) -> list:
        pv, grid = batch.get("pixel_values"), batch.get(grid_key)
        out, start = [], 0
        for thw in [] if grid is None else grid.tolist():
            n = thw[0] * thw[1] * thw[2]
            rows = pv[start : start + n].float()
            values = rows.reshape(n, 3, -1).transpose(0, 1) if channels_first else rows.transpose(0, 1)
            out.append(decode_colour(values, ip))
            start += n
        return out

    return decode


def _slots(ip: Any) -> Callable[[Any], list]:
    """Decoder for (rows, most images in a row, C, H, W) with zero-padded slots (Idefics2/3, SmolVLM)."""

    def decode(batch: Any) -> list:
        pv = batch.get("pixel_values")
        if pv is None:
            return []
        return [
            decode_colour(pv[r, s], ip)
            for r in range(pv.shape[0])
            for s in range(pv.shape[1])
            if pv[r, s].abs().sum() > 0
        ]

    return decode


def _count_slots(batch: Any) -> int:
    pv = batch.get("pixel_values")
    return 0 if pv is None else int((pv.flatten(2).abs().sum(-1) > 0).sum())


def _first_axis(key: str = "pixel_values") -> Callable[[Any], int]:
    return lambda batch: 0 if batch.get(key) is None else int(batch[key].shape[0])


# ------------------------------------------------------------------------------- tokenizer, template
def _tokenizer(
    specials: list[str],
    *,
    template: str,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str = "[UNK]",
    prepend_bos: bool = False,
    extra: dict | None = None,
    words: Sequence[str] = WORDS,
    cls: Any = None,
    added: Sequence[str] = (),
    tail: Sequence[str] = (),
    padding_side: str = "right",
) -> Any:
    """A WordLevel tokenizer: ``specials``, ``unk``, ``added`` (plain added tokens such as a newline,
    kept by the whitespace pre-tokenizer), ``words``, then ``tail`` (special tokens that must have
    the highest ids, e.g. Gemma 3n's vision / audio vocabulary regions)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    from unsloth_multiimage.demo.tiny_mllama import word_level_backend

    backend, vocab = word_level_backend(specials, (*added, *words, *tail), unk)
    if added:  # plain (not special) added tokens
        backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    if tail:
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tail])
    if prepend_bos and bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, vocab[bos])]
        )
    kwargs: dict[str, Any] = dict(
        tokenizer_object=backend,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        padding_side=padding_side,
        model_input_names=["input_ids", "attention_mask"],
        chat_template=template,
    )
    if bos:
        kwargs["bos_token"] = bos
    if extra:
        kwargs["extra_special_tokens"] = extra
    tok = (cls or PreTrainedTokenizerFast)(**kwargs)
    tok.chat_template = template
    return tok


def _template(
    *,
    begin: str = "",
    turn: str,
    end: str,
    image: str,
    roles: dict | None = None,
    gen: str = "",
    trim: bool = False,
    images_first: bool = False,
    text_prefix: str = "",
) -> str:
    """A chat template in a family's format. ``turn`` and ``end`` are Jinja expressions (``role`` is
    the mapped role); every image item renders ``image``, every text item its text (trimmed where the
    family's template trims, after ``text_prefix``). ``images_first``: a message's image items first,
    then its texts (the LLaVA-NeXT / OneVision / PaddleOCR-VL / PaliGemma layout)."""
    image_item = "{{- '" + image + "' -}}"
    text = "item['text'] | trim" if trim else "item['text']"
    text_item = "{{- '" + text_prefix + "' + " + text + " -}}" if text_prefix else "{{- " + text + " -}}"
    if images_first:
        body = (
            "{%- for item in message['content'] -%}{%- if item['type'] in ('image', 'image_url') -%}"
            + image_item
            + "{%- endif -%}{%- endfor -%}{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}"
            + text_item
            + "{%- endif -%}{%- endfor -%}"
        )
    else:
        body = (
            "{%- for item in message['content'] -%}{%- if item['type'] in ('image', 'image_url') -%}"
            + image_item
            + "{%- elif item['type'] == 'text' -%}"
            + text_item
            + "{%- endif -%}{%- endfor -%}"
        )
    return (
        "{%- set rmap = "
        + repr(roles or {})
        + " -%}"
        + ("{{- '" + begin + "' -}}" if begin else "")
        + "{%- for message in messages -%}"
        "{%- set role = rmap.get(message['role'], message['role']) -%}"
        "{{- " + turn + " -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- elif message['content'] is not none -%}" + body + "{%- endif -%}"
        "{{- " + end + " -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + gen + "' -}}{%- endif -%}"
    )


CHATML = dict(turn="'<|im_start|>' + role + '\n'", end="'<|im_end|>\n'", gen="<|im_start|>assistant\n")


def _rope(config_text: dict, mrope: list[int] | None = None) -> dict:
    if _tf_major() >= 5:
        rp: dict[str, Any] = {"rope_type": "default", "rope_theta": 10000.0}
        if mrope:
            rp["mrope_section"] = mrope
        config_text["rope_parameters"] = rp
    else:
        config_text["rope_theta"] = 10000.0
        config_text["rope_scaling"] = {"type": "mrope", "mrope_section": mrope} if mrope else {"rope_type": "default"}
    return config_text


def _mrope(config_text: dict, **rope: Any) -> dict:
    """A text config's rope settings with extra keys (``mrope_section`` ...): ``rope_parameters`` on
    transformers 5, ``rope_theta`` + ``rope_scaling`` on 4.x."""
    if _tf_major() >= 5:
        config_text["rope_parameters"] = _rope5(**rope)
    else:
        config_text.update(rope_theta=10000.0, rope_scaling={"rope_type": "default", **rope})
    return config_text


def _tokenizer_class_4x(module: str, name: str) -> Any:
    """The tokenizer class a 4.x processor type-checks for (None on 5.x, which checks nothing)."""
    return _cls(module, name) if _tf_major() < 5 else None


def _rope5(**extra: Any) -> dict:
    """A transformers 5 ``rope_parameters`` dict."""
    return {"rope_type": "default", "rope_theta": 10000.0, **extra}


def _seeded(build: Callable[[], Any], seed: int = 0) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    model.train()
    return model


_TEXT = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)
_CLIP = dict(
    model_type="clip_vision_model",
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    projection_dim=16,
)
_VIT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)  # one layer
_SIGLIP = dict(_VIT, model_type="siglip_vision_model")


def _video_processor(module: str, name: str, **kwargs: Any) -> Any:
    """A video processor for processors that insist on one (no test sends videos): the family's own
    where it builds here (they need torchvision), else transformers' generic ``BaseVideoProcessor``."""
    try:
        return _cls(module, name)(**kwargs)
    except Exception:
        pass
    try:
        from transformers.video_processing_utils import BaseVideoProcessor

        return BaseVideoProcessor()
    except Exception:
        return None


@contextlib.contextmanager
def _lenient_video_check(proc_cls: Any, video: Any):
    """transformers 5.x type-checks ``video_processor`` against the top-level ``BaseVideoProcessor``,
    which without torchvision is a placeholder class that nothing is an instance of. While the
    processor is built, the check is skipped for that one argument when it is a real
    ``BaseVideoProcessor`` (no test sends videos)."""
    original = getattr(proc_cls, "check_argument_for_proper_class", None)
    if original is None:  # older releases have no such check (and no video processor argument)
        yield
        return

    def check(self: Any, argument_name: str, argument: Any) -> Any:
        if argument_name == "video_processor" and argument is video:
            return type(argument)
        return original(self, argument_name, argument)

    with mock.patch.object(proc_cls, "check_argument_for_proper_class", check):
        yield


def _with_video(proc_cls: Any, video: Any, **kwargs: Any) -> Any:
    with _lenient_video_check(proc_cls, video):
        processor = proc_cls(video_processor=video, **kwargs)
    processor.chat_template = kwargs["chat_template"]
    return processor


# -------------------------------------------------------------------------------------------- Mllama
def _mllama() -> Tiny:
    """Llama 3.2 Vision: the project's own tiny Mllama (``unsloth_multiimage.demo.tiny_mllama``):
    ``<|image|>`` per image (not expanded), (rows, images, tiles, C, H, W) pixel values."""
    import transformers.models.mllama.processing_mllama  # noqa: F401  (the project's patch lands on import)

    from unsloth_multiimage.demo import tiny_mllama

    processor = tiny_mllama.build_processor()

    def slots(batch: Any) -> list:
        ids = batch.get("aspect_ratio_ids")
        return (
            []
            if ids is None
            else [(r, s) for r in range(ids.shape[0]) for s in range(ids.shape[1]) if int(ids[r, s]) > 0]
        )

    def decode(batch: Any) -> list:
        return [decode_tile(batch["pixel_values"][r, s, 0], processor) for r, s in slots(batch)]

    return Tiny(
        family="mllama",
        processor=processor,
        make_model=lambda: tiny_mllama.build_model(processor, seed=0),
        image_size=(28, 28),
        images_in_batch=lambda b: len(slots(b)),
        decode=decode,
        vision_prefixes=("model.vision_model.", "vision_model."),
        expanded_token="<|image|>",
    )


# -------------------------------------------------------------------------- config values, resolved
# The tables below are data: a config value that depends on the family's tokenizer or on the installed
# transformers is written as one of these markers and resolved when the model is made.
@dataclass(frozen=True)
class Tok:
    """The id of ``token`` in the family's tokenizer."""

    token: str


@dataclass(frozen=True)
class TokAttr:
    """An attribute of the family's tokenizer (``pad_token_id`` ...)."""

    name: str


#: ``len(tokenizer)``
VOCAB = TokAttr("__len__")
PAD, BOS, EOS = TokAttr("pad_token_id"), TokAttr("bos_token_id"), TokAttr("eos_token_id")


@dataclass(frozen=True)
class Rope:
    """A text config with default rope settings for the installed transformers (:func:`_rope`)."""

    text: dict
    mrope: list[int] | None = None


@dataclass(frozen=True)
class MRope:
    """A text config with extra rope keys (:func:`_mrope`); ``tf5`` keys only on transformers 5."""

    text: dict
    rope: dict
    tf5: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tf4Extra:
    """A dict with ``extra`` keys added on transformers 4.x only."""

    values: dict
    extra: dict


@dataclass(frozen=True)
class Lazy:
    """A value computed when the model is made (e.g. from a library imported only then)."""

    make: Callable[[], Any]


def _resolve(value: Any, tok: Any) -> Any:
    """``value`` with every marker replaced (a fresh structure: configs may edit their dicts)."""
    if isinstance(value, Tok):
        return tok.convert_tokens_to_ids(value.token)
    if isinstance(value, TokAttr):
        return len(tok) if value is VOCAB else getattr(tok, value.name)
    if isinstance(value, Rope):
        return _rope(_resolve(value.text, tok), value.mrope)
    if isinstance(value, MRope):
        return _mrope(_resolve(value.text, tok), **value.rope, **(value.tf5 if _tf_major() >= 5 else {}))
    if isinstance(value, Tf4Extra):
        return {**_resolve(value.values, tok), **(value.extra if _tf_major() < 5 else {})}
    if isinstance(value, Lazy):
        return value.make()
    if isinstance(value, dict):
        return {k: _resolve(v, tok) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, tok) for v in value)
    return copy.deepcopy(value)


# ------------------------------------------------------------------------------------ one family
#: a decoder factory: the family's image processor -> ``Tiny.decode``
Decoder = Callable[[Any], Callable[[Any], list]]


@dataclass(frozen=True)
class Family:
    """How to build one family's tiny processor and model: everything :func:`_build_family` needs.

    ``processor`` is the class name in ``transformers.models.<package>.processing_<package>``, or a
    loader returning the class. ``template`` are :func:`_template`'s arguments, or a function of the
    processor class returning the template (the upstream one). ``tokenizer`` are :func:`_tokenizer`'s
    arguments (``cls_4x``: the ``(module, class)`` a 4.x processor type-checks for).
    ``image_processor`` is ``(package, class, kwargs)`` through :func:`_image_processor` (``ip_direct``:
    the class itself, no PIL variant). ``model`` is ``(package, config class, model class)`` and
    ``config`` its settings (markers resolved). ``checks`` run first and raise :class:`Unavailable`."""

    name: str
    doc: str
    package: str
    processor: str | Callable[[], Any]
    specials: tuple[str, ...]
    template: dict | Callable[[Any], str]
    tokenizer: dict
    image_processor: tuple[str, str, dict]
    model: tuple[str, str, str]
    config: dict
    image_size: tuple[int, int]
    decode: Decoder
    images_in_batch: Callable[[Any], int] | None = None
    vision_prefixes: tuple[str, ...] | None = None
    expanded_token: str = "<image>"
    sees_cut: bool = True
    notes: str = ""
    stand_ins: str | Callable[[], str] = ""
    checks: tuple[Callable[[], Any], ...] = ()
    #: (module, class, kwargs) of the video processor a processor insists on (see _video_processor)
    video: tuple[str, str, dict] | None = None
    #: attributes set on the video processor when the generic one stands in for the family's own
    generic_video_attrs: dict = field(default_factory=dict)
    feature_extractor: tuple[str, str] | None = None
    processor_kwargs: dict = field(default_factory=dict)
    ip_direct: bool = False
    ip_attrs: dict = field(default_factory=dict)
    #: a processor ``__init__`` that fails here (TypeError, ValueError, ImportError) is Unavailable
    init_may_fail: bool = False
    #: transformers 4.x also reads the text settings at the top level of the config
    text_top_level_4x: bool = False
    #: run on the freshly built model (inside the seeded block)
    after_init: Callable[[Any], None] | None = None


def _processor_class(fam: Family) -> Any:
    if callable(fam.processor):
        return fam.processor()
    return _cls(f"{fam.package}.processing_{fam.package}", fam.processor)


def _build_processor(fam: Family, proc_cls: Any, template: str, tok: Any, ip: Any) -> Any:
    kwargs = dict(image_processor=ip, tokenizer=tok, chat_template=template, **fam.processor_kwargs)
    if fam.feature_extractor:
        kwargs["feature_extractor"] = _cls(*fam.feature_extractor)()
    try:
        if fam.video is None:
            processor = proc_cls(**kwargs)
        else:
            module, name, video_kwargs = fam.video
            video = _video_processor(module, name, **video_kwargs)
            if fam.generic_video_attrs and not hasattr(video, next(iter(fam.generic_video_attrs))):
                for attr, value in fam.generic_video_attrs.items():
                    setattr(video, attr, value)
            processor = _with_video(proc_cls, video, **kwargs)
    except (TypeError, ValueError, ImportError) as e:
        if not fam.init_may_fail:
            raise
        raise Unavailable(f"{proc_cls.__name__}.__init__ fails here: {e}") from e
    processor.chat_template = template
    return processor


def _model_maker(fam: Family, tok: Any) -> Callable[[], Any]:
    """``Tiny.make_model``: the family's config class from ``config`` (markers resolved), its model
    class on that config, seeded. The classes load on the first build, so a family whose modeling
    code cannot import here still gives its processor."""
    module, config_name, model_name = fam.model

    def make_model() -> Any:
        settings = _resolve(fam.config, tok)
        if fam.text_top_level_4x and _tf_major() < 5:
            settings.update(settings["text_config"])
        cfg = _cls(f"{module}.configuration_{module}", config_name)(**settings)
        model_cls = _cls(f"{module}.modeling_{module}", model_name)

        def init() -> Any:
            model = model_cls(cfg)
            if fam.after_init is not None:
                fam.after_init(model)
            return model

        return _seeded(init)

    return make_model


def _build_family(fam: Family) -> Tiny:
    """The one builder: the family's real processor class with its real image processor, a
    WordLevel tokenizer with its special tokens and a template in its format, and its model maker."""
    _has(fam.package)
    for check in fam.checks:
        check()
    proc_cls = _processor_class(fam)
    template = fam.template(proc_cls) if callable(fam.template) else _template(**fam.template)
    tok_kwargs = dict(fam.tokenizer)
    if "cls_4x" in tok_kwargs:
        tok_kwargs["cls"] = _tokenizer_class_4x(*tok_kwargs.pop("cls_4x"))
    tok = _tokenizer(list(fam.specials), template=template, **tok_kwargs)
    pkg, ip_name, ip_kwargs = fam.image_processor
    if fam.ip_direct:
        ip = _cls(f"{pkg}.image_processing_{pkg}", ip_name)(**ip_kwargs)
    else:
        ip = _image_processor(pkg, ip_name, **ip_kwargs)
    for attr, value in fam.ip_attrs.items():
        setattr(ip, attr, value)
    processor = _build_processor(fam, proc_cls, template, tok, ip)
    extra: dict[str, Any] = {}
    if fam.images_in_batch is not None:
        extra["images_in_batch"] = fam.images_in_batch
    if fam.vision_prefixes is not None:
        extra["vision_prefixes"] = fam.vision_prefixes
    return Tiny(
        family=fam.name,
        processor=processor,
        make_model=_model_maker(fam, tok),
        image_size=fam.image_size,
        decode=fam.decode(ip),
        expanded_token=fam.expanded_token,
        sees_cut=fam.sees_cut,
        notes=fam.notes,
        stand_ins=fam.stand_ins() if callable(fam.stand_ins) else fam.stand_ins,
        **extra,
    )


# ------------------------------------------------------------------------- decoders of one family
def _first_patch(img: Any) -> Any:
    """LLaVA-NeXT / OneVision: patch 0 of an image is the whole image resized."""
    return img[0]


def _each_image(ip: Any) -> Callable[[Any], list]:
    return _each("pixel_values", ip)


def _each_run(ip: Any) -> Callable[[Any], list]:
    """Tiles / views of one image in a row of the first axis: one entry per run."""
    return _each("pixel_values", ip, runs=True)


def _each_first_patch(ip: Any) -> Callable[[Any], list]:
    return _each("pixel_values", ip, view=_first_patch)


def _sized(ip: Any) -> Callable[[Any], list]:
    """Pixtral: (images, 3, H, W) padded, ``image_sizes`` the true sizes."""

    def decode(batch: Any) -> list:
        pv, sizes = batch.get("pixel_values"), batch.get("image_sizes")
        if pv is None:
            return []
        return [decode_colour(img[:, :h, :w], ip) for img, (h, w) in zip(pv, sizes.tolist())]

    return decode


def _positioned(ip: Any) -> Callable[[Any], list]:
    """Gemma 4: (images, max patches, P*P*C) channels last, padded patches at position -1."""

    def decode(batch: Any) -> list:
        pv, pos = batch.get("pixel_values"), batch.get("image_position_ids")
        if pv is None:
            return []
        return [decode_colour(img[(p >= 0).all(-1)].reshape(-1, 3).T, ip) for img, p in zip(pv, pos)]

    return decode


def _masked(ip: Any) -> Callable[[Any], list]:
    """LFM2-VL: (tiles, max patches, P*P*C) channels last, padded patches masked out."""

    def decode(batch: Any) -> list:
        pv, mask = batch.get("pixel_values"), batch.get("pixel_attention_mask")
        if pv is None:
            return []
        return _runs([decode_colour(img[m.bool()].reshape(-1, 3).T, ip) for img, m in zip(pv, mask)])

    return decode


def _navit(ip: Any) -> Callable[[Any], list]:
    """MiniCPM-V 4.6 NaViT packing: pixel_values (1, 3, patch, total_L), each block a (h * w * patch)
    stretch of the last axis; ``target_sizes`` one (h_patches, w_patches) row per block, in order."""

    def decode(batch: Any) -> list:
        pv, sizes = batch.get("pixel_values"), batch.get("target_sizes")
        out, at = [], 0
        for h, w in [] if sizes is None else sizes.tolist():
            n = h * w * pv.shape[2]
            out.append(decode_colour(pv[0, :, :, at : at + n], ip))
            at += n
        return out

    return decode


# ------------------------------------------------------------------- family-specific import paths
def _pixtral_processor_class() -> Any:
    """``PixtralProcessor``. transformers 5.x: ``processing_pixtral.py`` does ``from
    .image_processing_pixtral import get_resize_output_image_size`` and that module (the torchvision
    image processor) starts with ``from torchvision.transforms.v2 import functional as tvF``. The
    function is pure Python (``get_image_size`` + arithmetic; the PIL module has a copy) and the
    processor uses it only in ``_get_num_multimodal_tokens`` (vLLM's helper), never in ``__call__``:
    the import-only stand-in, and the torchvision module is dropped again."""
    if _tf_major() < 5:
        return _cls("pixtral.processing_pixtral", "PixtralProcessor")
    mod = import_under_torchvision_stand_in(
        "transformers.models.pixtral.processing_pixtral", drop=("transformers.models.pixtral.image_processing_pixtral",)
    )
    return mod.PixtralProcessor


def _gemma4_processor_class() -> Any:
    """processing_gemma4 imports Gemma4ImageProcessorKwargs / get_aspect_ratio_preserving_size from
    image_processing_gemma4, whose top line imports torchvision: the import-only stand-in."""
    proc_mod = import_under_torchvision_stand_in(
        "transformers.models.gemma4.processing_gemma4", drop=("transformers.models.gemma4.image_processing_gemma4",)
    )
    return proc_mod.Gemma4Processor


#: a 3-stage MobileNetV5 (edge-residual, universal-inverted-residual and mobile-MQA blocks, as
#: mobilenetv5_300m_enc has) small enough for a CPU test
_TINY_MNV5 = [
    ["er_r1_k3_s2_e2_c8"],
    ["uir_r1_a3_k0_s2_e2_c16"],
    ["uir_r1_a3_k0_s2_e2_c16", "mqa_r1_k3_h2_v2_s1_d8_c16", "uir_r1_a0_k0_s1_e2_c16"],
]


def _import_timm() -> Any:
    """timm, for Gemma 3n's vision tower. timm declares torchvision as a dependency (installed here with
    --no-deps) and imports torchvision names at its top; none of them is used to build or run a model:
    the import-only stand-in covers the import."""
    if importlib.util.find_spec("timm") is None:
        raise Unavailable(
            "Gemma 3n's vision tower is a timm model (TimmWrapperModel, MobileNetV5) and timm is not "
            "installed on this row"
        )
    return import_under_torchvision_stand_in("timm")


def _timm_stand_in_note() -> str:
    return f"timm {_import_timm().__version__} imported under the torchvision import-only stand-in"


def _tiny_mnv5_blocks() -> Any:
    from timm.models._efficientnet_builder import decode_arch_def

    return decode_arch_def(_TINY_MNV5)


def _gemma3_projection_init(model: Any) -> None:
    """transformers 5 initialises the projection to zeros: no gradient would reach the vision tower
    before a first optimiser step (as Mllama's zero gates, see tiny_mllama.build_model)."""
    import torch

    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.02)


def _upstream_template(proc_cls: Any) -> str:
    """The chat template the processing module ships (Llama 4's real one)."""
    return sys.modules[proc_cls.__module__].chat_template


# -------------------------------------------------------------------------- the families (a table)
_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
_QWEN_TOKENIZER = dict(
    bos=None, eos="<|im_end|>", pad="<|endoftext|>", cls_4x=("qwen2.tokenization_qwen2_fast", "Qwen2TokenizerFast")
)
_QWEN_IDS = dict(
    image_token_id=Tok("<|image_pad|>"),
    video_token_id=Tok("<|video_pad|>"),
    vision_start_token_id=Tok("<|vision_start|>"),
    vision_end_token_id=Tok("<|vision_end|>"),
)
#: the Qwen-style vision tower of Qwen3-VL and GLM-4.xV: one layer, patch 8, 2x2 merge
_PATCH8_VISION = dict(
    depth=1,
    hidden_size=16,
    intermediate_size=32,
    num_heads=2,
    patch_size=8,
    spatial_merge_size=2,
    temporal_patch_size=2,
    out_hidden_size=32,
)
#: a text config on top of _TEXT: the tokenizer's vocabulary and pad id
_TEXT_VOCAB = dict(_TEXT, vocab_size=VOCAB, pad_token_id=PAD)


def _qwen(v25: bool) -> Family:
    module = "qwen2_5_vl" if v25 else "qwen2_vl"
    if v25:
        vision = dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=32,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[0],
        )
    else:
        vision = dict(
            depth=1,
            embed_dim=16,
            hidden_size=32,
            mlp_ratio=2,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
    return Family(
        name=module,
        doc="""Qwen2-VL / Qwen2.5-VL: ``min_pixels = max_pixels = 56*56``, every image a 1x4x4 grid (4 tokens);
        ``<|vision_start|><|image_pad|><|vision_end|>`` per image. The video processor needs torchvision:
        transformers' generic one stands in (no test sends videos).""",
        package=module,
        processor="Qwen2_5_VLProcessor" if v25 else "Qwen2VLProcessor",
        specials=_QWEN_SPECIALS,
        template=dict(CHATML, image=_QWEN_IMAGE),
        tokenizer=_QWEN_TOKENIZER,
        image_processor=(
            "qwen2_vl",
            "Qwen2VLImageProcessor",
            dict(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2),
        ),
        video=("qwen2_vl.video_processing_qwen2_vl", "Qwen2VLVideoProcessor", {}),
        model=(
            module,
            "Qwen2_5_VLConfig" if v25 else "Qwen2VLConfig",
            "Qwen2_5_VLForConditionalGeneration" if v25 else "Qwen2VLForConditionalGeneration",
        ),
        config=dict(
            text_config=Rope(
                dict(
                    _TEXT,
                    vocab_size=VOCAB,
                    pad_token_id=Tok("<|endoftext|>"),
                    eos_token_id=Tok("<|im_end|>"),
                    bos_token_id=Tok("<|endoftext|>"),
                ),
                mrope=[2, 1, 1],
            ),
            vision_config=vision,
            **_QWEN_IDS,
        ),
        text_top_level_4x=True,
        image_size=(56, 56),
        images_in_batch=_first_axis("image_grid_thw"),
        decode=_grid,
        vision_prefixes=("model.visual.", "visual."),
        expanded_token="<|image_pad|>",
    )


_GEMMA3 = ("<start_of_image>", "<end_of_image>", "<image_soft_token>")  # boi, eoi, soft
_GEMMA3N_TAIL = (
    "<end_of_image>",
    "<image_soft_token>",
    "<vision_pad_2>",
    "<vision_pad_3>",
    "<end_of_audio>",
    "<audio_soft_token>",
    "<audio_pad_2>",
    "<audio_pad_3>",
)
_GEMMA4 = ("<|image>", "<image|>", "<|image|>")  # boi, eoi, soft
#: Gemma's turns, the assistant as "model"
_GEMMA_TEMPLATE = dict(
    begin="<bos>",
    turn="'<start_of_turn>' + role + '\n'",
    end="'<end_of_turn>\n'",
    roles={"assistant": "model"},
    gen="<start_of_turn>model\n",
)
_GEMMA_TOKENIZER = dict(bos="<bos>", eos="<eos>", pad="<pad>", words=(*WORDS, "model"))


def _idefics3(smol: bool) -> Family:
    module = "smolvlm" if smol else "idefics3"
    return Family(
        name=module,
        doc="""Idefics3 / SmolVLM: no image splitting, 56-pixel images, ``image_seq_len=4`` (scale factor 2);
        ``<image>`` per image.""",
        package=module,
        processor="SmolVLMProcessor" if smol else "Idefics3Processor",
        specials=(
            "<|endoftext|>",
            "<|im_start|>",
            "<end_of_utterance>",
            "<fake_token_around_image>",
            "<image>",
            "<global-img>",
            *[f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
        ),
        template=dict(
            begin="<|im_start|>",
            turn="(role | capitalize) + ':'",
            end="'<end_of_utterance>\n'",
            image="<image>",
            gen="Assistant:",
        ),
        tokenizer=dict(bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>"),
        image_processor=(
            module,
            "SmolVLMImageProcessor" if smol else "Idefics3ImageProcessor",
            dict(do_image_splitting=False, size={"longest_edge": 56}, max_image_size={"longest_edge": 56}),
        ),
        video=("smolvlm.video_processing_smolvlm", "SmolVLMVideoProcessor", {}) if smol else None,
        processor_kwargs=dict(image_seq_len=4),
        init_may_fail=True,
        model=(
            module,
            "SmolVLMConfig" if smol else "Idefics3Config",
            "SmolVLMForConditionalGeneration" if smol else "Idefics3ForConditionalGeneration",
        ),
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="llama")),
            vision_config=dict(image_size=56, patch_size=14, **_VIT),
            scale_factor=2,
            image_token_id=Tok("<image>"),
            pad_token_id=PAD,
            tie_word_embeddings=False,
        ),
        image_size=(56, 56),
        images_in_batch=_count_slots,
        decode=_slots,
        vision_prefixes=("model.vision_model.", "model.connector."),
    )


def _pixtral(mistral3: bool) -> Family:
    patch = 8 if mistral3 else 16
    if mistral3:
        model = ("mistral3", "Mistral3Config", "Mistral3ForConditionalGeneration")
        head = dict(spatial_merge_size=2, vision_feature_layer=-1)
    else:
        model = ("llava", "LlavaConfig", "LlavaForConditionalGeneration")
        head = dict(vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu")
    return Family(
        name="mistral3" if mistral3 else "pixtral",
        doc="""Pixtral-12B layout: Pixtral image processor (longest edge 32, patch 16) and a
        ``LlavaForConditionalGeneration`` with a Pixtral vision tower; ``[IMG]`` per image, expanded into 2
        rows of ``[IMG][IMG]`` + ``[IMG_BREAK]`` / ``[IMG_END]``. ``mistral3``: Mistral Small 3.1 / 3.2 layout,
        ``Mistral3ForConditionalGeneration`` with ``spatial_merge_size=2`` (patch 8: a 32-pixel image is a
        4x4 patch grid merged to 2x2 tokens).""",
        package="pixtral",
        processor=_pixtral_processor_class,
        specials=("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "<pad>"),
        template=dict(
            begin="<s>",
            turn="'[INST]' if role == 'user' else ''",
            image="[IMG]",
            end="'[/INST]' if message['role'] == 'user' else '</s>'",
        ),
        tokenizer=dict(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>"),
        image_processor=(
            "pixtral",
            "PixtralImageProcessor",
            dict(size={"longest_edge": 32}, patch_size={"height": patch, "width": patch}),
        ),
        processor_kwargs=dict(patch_size=patch, spatial_merge_size=2 if mistral3 else 1),
        model=model,
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="mistral", head_dim=8)),
            vision_config=Rope(dict(model_type="pixtral", image_size=32, patch_size=patch, **_VIT, head_dim=8)),
            image_token_index=Tok("[IMG]"),
            **head,
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=_first_axis(),
        decode=_sized,
        expanded_token="[IMG]",
        stand_ins="torchvision import-only stand-in while processing_pixtral is imported (transformers 5.x)",
    )


def _glm(v46: bool) -> Family:
    module = "glm46v" if v46 else "glm4v"
    text = dict(_TEXT, head_dim=8, vocab_size=VOCAB, pad_token_id=Tok("<|endoftext|>"))
    if v46:
        text["model_type"] = "glm4v_text"
    return Family(
        name=module,
        doc="""GLM-4.1V / GLM-4.6V: GLM image processor (patch 8, merge 2; its smart_resize counts the temporal
        factor into the pixel budget), ``[gMASK]<sop><|user|>\\n...<|assistant|>\\n``, each image item
        ``<|begin_of_image|><|image|><|end_of_image|>``.""",
        package=module,
        processor="Glm46VProcessor" if v46 else "Glm4vProcessor",
        specials=(
            "<|endoftext|>",
            "[gMASK]",
            "<sop>",
            "<|system|>",
            "<|user|>",
            "<|assistant|>",
            "<|begin_of_image|>",
            "<|end_of_image|>",
            "<|image|>",
            "<|begin_of_video|>",
            "<|end_of_video|>",
            "<|video|>",
            "<think>",
            "</think>",
        ),
        template=dict(
            begin="[gMASK]<sop>",
            turn="'<|' + role + '|>\n'",
            end="''",
            image="<|begin_of_image|><|image|><|end_of_image|>",
            gen="<|assistant|>\n",
        ),
        tokenizer=dict(bos=None, eos="<|endoftext|>", pad="<|endoftext|>"),
        image_processor=(
            module,
            "Glm46VImageProcessor" if v46 else "Glm4vImageProcessor",
            dict(
                size={"shortest_edge": 32 * 32, "longest_edge": 2 * 32 * 32},
                patch_size=8,
                merge_size=2,
                temporal_patch_size=2,
            ),
        ),
        video=(
            f"{module}.video_processing_{module}",
            "Glm46VVideoProcessor" if v46 else "Glm4vVideoProcessor",
            dict(patch_size=8, merge_size=2),
        ),
        model=(
            module,
            "Glm46VConfig" if v46 else "Glm4vConfig",
            "Glm46VForConditionalGeneration" if v46 else "Glm4vForConditionalGeneration",
        ),
        config=dict(
            text_config=MRope(text, rope=dict(mrope_section=[2, 1, 1]), tf5=dict(partial_rotary_factor=1.0)),
            vision_config=dict(_PATCH8_VISION, image_size=32),
            image_token_id=Tok("<|image|>"),
            video_token_id=Tok("<|video|>"),
            image_start_token_id=Tok("<|begin_of_image|>"),
            image_end_token_id=Tok("<|end_of_image|>"),
            video_start_token_id=Tok("<|begin_of_video|>"),
            video_end_token_id=Tok("<|end_of_video|>"),
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=_first_axis("image_grid_thw"),
        decode=_grid,
        vision_prefixes=("model.visual.",),
        expanded_token="<|image|>",
    )


_LLAMA4_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad|>",
    "<|header_start|>",
    "<|header_end|>",
    "<|eot|>",
    "<|eom|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|image_start|>",
    "<|image_end|>",
    "<|image|>",
    "<|patch|>",
    "<|tile_x_separator|>",
    "<|tile_y_separator|>",
)
_DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")  # bos, eos
_PADDLE = ("<|IMAGE_START|>", "<|IMAGE_PLACEHOLDER|>", "<|IMAGE_END|>")  # start, image, end
_MINICPM_MARKS = dict(
    image_token="<|image_pad|>",
    video_token="<|video_pad|>",
    image_start_token="<image>",
    image_end_token="</image>",
    slice_start_token="<slice>",
    slice_end_token="</slice>",
    image_id_start_token="<image_id>",
    image_id_end_token="</image_id>",
)
#: LLaVA's turns (USER: / ASSISTANT:)
_LLAVA_TEMPLATE = dict(begin="<s>", turn="(role | upper) + ': '", image="<image>\n", gen="ASSISTANT:")
_LLAVA_SPECIALS = ("<s>", "</s>", "<pad>", "<image>")
_LLAVA_HEAD = dict(vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False)
_TORCH_TOWERS = ("model.vision_tower.", "model.multi_modal_projector.")

TABLE: tuple[Family, ...] = (
    _qwen(False),
    _qwen(True),
    Family(
        name="qwen3_vl",
        doc="""Qwen3-VL: Qwen2-VL image processor (patch 8, merge 2, 32x32: a 1x4x4 grid, 4 tokens),
        ``<|vision_start|><|image_pad|><|vision_end|>`` per image; deepstack on the one vision layer.""",
        package="qwen3_vl",
        processor="Qwen3VLProcessor",
        specials=_QWEN_SPECIALS,
        template=dict(CHATML, image=_QWEN_IMAGE),
        tokenizer=_QWEN_TOKENIZER,
        image_processor=(
            "qwen2_vl",
            "Qwen2VLImageProcessor",
            dict(
                size={"shortest_edge": 32 * 32, "longest_edge": 32 * 32},
                patch_size=8,
                merge_size=2,
                temporal_patch_size=2,
            ),
        ),
        video=("qwen3_vl.video_processing_qwen3_vl", "Qwen3VLVideoProcessor", dict(patch_size=8, merge_size=2)),
        model=("qwen3_vl", "Qwen3VLConfig", "Qwen3VLForConditionalGeneration"),
        config=dict(
            text_config=MRope(
                dict(_TEXT, head_dim=8, vocab_size=VOCAB, pad_token_id=Tok("<|endoftext|>")),
                rope=dict(mrope_section=[2, 1, 1], mrope_interleaved=True),
            ),
            vision_config=dict(_PATCH8_VISION, num_position_embeddings=16, deepstack_visual_indexes=[0]),
            **_QWEN_IDS,
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=_first_axis("image_grid_thw"),
        decode=_grid,
        vision_prefixes=("model.visual.",),
        expanded_token="<|image_pad|>",
    ),
    _glm(False),
    _glm(True),
    Family(
        name="gemma3",
        doc="""Gemma 3: 28x28 images, ``image_seq_length=4``; ``<start_of_image>`` per image, the tokenizer
        carries ``boi_token`` / ``eoi_token`` / ``image_token``.""",
        package="gemma3",
        processor="Gemma3Processor",
        specials=("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", *_GEMMA3),
        template=dict(_GEMMA_TEMPLATE, image=_GEMMA3[0]),
        tokenizer=dict(
            _GEMMA_TOKENIZER, extra={"boi_token": _GEMMA3[0], "eoi_token": _GEMMA3[1], "image_token": _GEMMA3[2]}
        ),
        image_processor=(
            "gemma3",
            "Gemma3ImageProcessor",
            dict(size={"height": 28, "width": 28}, do_pan_and_scan=False),
        ),
        processor_kwargs=dict(image_seq_length=4),
        model=("gemma3", "Gemma3Config", "Gemma3ForConditionalGeneration"),
        config=dict(
            text_config=Tf4Extra(
                dict(
                    _TEXT,
                    vocab_size=VOCAB,
                    head_dim=8,
                    pad_token_id=Tok("<pad>"),
                    eos_token_id=Tok("<eos>"),
                    bos_token_id=Tok("<bos>"),
                    sliding_window=64,
                ),
                extra=dict(rope_theta=10000.0),
            ),
            vision_config=dict(image_size=28, patch_size=14, **_VIT),
            mm_tokens_per_image=4,
            boi_token_index=Tok(_GEMMA3[0]),
            eoi_token_index=Tok(_GEMMA3[1]),
            image_token_index=Tok(_GEMMA3[2]),
        ),
        after_init=_gemma3_projection_init,
        image_size=(28, 28),
        decode=_each_image,
        expanded_token=_GEMMA3[2],
    ),
    Family(
        name="gemma3n",
        doc="""Gemma 3n: SigLIP image processor (32x32, no normalisation, as Gemma 3n's), ``image_seq_length=4``
        (= msfa_output_resolution**2; the real model has 256), a 3-stage timm MobileNetV5 vision tower;
        each image item ``<image_soft_token>``, text items trimmed. The vision / audio vocabulary regions
        come after every text token (``vocab_offset``), as in the real tokenizer.""",
        package="gemma3n",
        processor="Gemma3nProcessor",
        checks=(_import_timm, lambda: _needs_tf5("gemma3n")),
        specials=(
            "<pad>",
            "<eos>",
            "<bos>",
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_of_image>",
            "<start_of_audio>",
        ),
        template=dict(_GEMMA_TEMPLATE, image="<image_soft_token>", trim=True),
        tokenizer=dict(
            _GEMMA_TOKENIZER,
            tail=_GEMMA3N_TAIL,
            extra={
                "image_token": "<image_soft_token>",
                "boi_token": "<start_of_image>",
                "eoi_token": "<end_of_image>",
                "audio_token": "<audio_soft_token>",
                "boa_token": "<start_of_audio>",
                "eoa_token": "<end_of_audio>",
            },
        ),
        image_processor=("siglip", "SiglipImageProcessor", dict(size={"height": 32, "width": 32}, do_normalize=False)),
        feature_extractor=("gemma3n.feature_extraction_gemma3n", "Gemma3nAudioFeatureExtractor"),
        processor_kwargs=dict(image_seq_length=4, audio_seq_length=4),
        model=("gemma3n", "Gemma3nConfig", "Gemma3nForConditionalGeneration"),
        config=dict(
            text_config=dict(
                vocab_size=VOCAB,
                vocab_size_per_layer_input=Tok("<end_of_image>"),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=8,
                hidden_size_per_layer_input=8,
                laurel_rank=4,
                altup_num_inputs=2,
                num_kv_shared_layers=0,
                layer_types=["sliding_attention", "full_attention"],
                activation_sparsity_pattern=[0.0, 0.0],
                sliding_window=64,
                pad_token_id=PAD,
                bos_token_id=BOS,
                eos_token_id=EOS,
                max_position_embeddings=2048,
            ),
            vision_config=dict(
                architecture="mobilenetv5_300m_enc",
                hidden_size=2048,
                vocab_size=4,
                vocab_offset=Tok("<end_of_image>"),
                model_args={"block_args": Lazy(_tiny_mnv5_blocks), "stem_size": 8, "msfa_output_resolution": 2},
            ),
            audio_config=dict(
                vocab_size=4,
                vocab_offset=Tok("<end_of_audio>"),
                hidden_size=16,
                conf_num_attention_heads=2,
                conf_num_hidden_layers=1,
                sscp_conv_channel_size=[4, 4],
            ),
            vision_soft_tokens_per_image=4,
            audio_soft_tokens_per_image=4,
            boi_token_id=Tok("<start_of_image>"),
            eoi_token_id=Tok("<end_of_image>"),
            image_token_id=Tok("<image_soft_token>"),
            boa_token_id=Tok("<start_of_audio>"),
            eoa_token_id=Tok("<end_of_audio>"),
            audio_token_id=Tok("<audio_soft_token>"),
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=_first_axis(),
        decode=_each_image,
        vision_prefixes=("model.vision_tower.", "model.embed_vision."),
        expanded_token="<image_soft_token>",
        stand_ins=_timm_stand_in_note,
    ),
    Family(
        name="gemma4",
        doc="""Gemma 4: Gemma 4 image processor (PIL; patch 4, pooling 3, ``max_soft_tokens=70``, the smallest
        allowed: each 32x32 image is resized up to the 70-token budget, 64 soft tokens here); each image
        item ``<|image|>`` (the soft token itself), text items trimmed, left padding as the Hub's.""",
        package="gemma4",
        processor=_gemma4_processor_class,
        specials=(
            "<pad>",
            "<eos>",
            "<bos>",
            "<|turn>",
            "<turn|>",
            *_GEMMA4,
            "<|audio>",
            "<audio|>",
            "<|audio|>",
            "<|video|>",
        ),
        template=dict(
            _GEMMA_TEMPLATE,
            turn="'<|turn>' + role + '\n'",
            end="'<turn|>\n'",
            image=_GEMMA4[2],
            gen="<|turn>model\n",
            trim=True,
        ),
        tokenizer=dict(
            _GEMMA_TOKENIZER,
            extra={
                "image_token": _GEMMA4[2],
                "boi_token": _GEMMA4[0],
                "eoi_token": _GEMMA4[1],
                "audio_token": "<|audio|>",
                "boa_token": "<|audio>",
                "eoa_token": "<audio|>",
            },
            padding_side="left",
        ),
        image_processor=(
            "gemma4",
            "Gemma4ImageProcessor",
            dict(patch_size=4, max_soft_tokens=70, pooling_kernel_size=3),
        ),
        feature_extractor=("gemma4.feature_extraction_gemma4", "Gemma4AudioFeatureExtractor"),
        video=(
            "gemma4.video_processing_gemma4",
            "Gemma4VideoProcessor",
            dict(patch_size=4, max_soft_tokens=70, pooling_kernel_size=3),
        ),
        processor_kwargs=dict(image_seq_length=70),
        model=("gemma4", "Gemma4Config", "Gemma4ForConditionalGeneration"),
        config=dict(
            text_config=dict(
                _TEXT,
                head_dim=8,
                vocab_size=VOCAB,
                pad_token_id=Tok("<pad>"),
                eos_token_id=Tok("<eos>"),
                bos_token_id=Tok("<bos>"),
                num_hidden_layers=2,
                layer_types=["sliding_attention", "full_attention"],
                sliding_window=64,
                vocab_size_per_layer_input=VOCAB,
                hidden_size_per_layer_input=8,
                global_head_dim=8,
                rope_parameters={"sliding_attention": _rope5(), "full_attention": _rope5()},
            ),
            vision_config=dict(
                **_VIT,
                num_key_value_heads=2,
                head_dim=8,
                patch_size=4,
                pooling_kernel_size=3,
                position_embedding_size=64,
                rope_parameters=_rope5(),
            ),
            audio_config=None,
            boi_token_id=Tok(_GEMMA4[0]),
            eoi_token_id=Tok(_GEMMA4[1]),
            image_token_id=Tok(_GEMMA4[2]),
            video_token_id=Tok("<|video|>"),
            boa_token_id=Tok("<|audio>"),
            eoa_token_index=Tok("<audio|>"),
            audio_token_id=Tok("<|audio|>"),
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=_first_axis(),
        decode=_positioned,
        vision_prefixes=("model.vision_tower.", "model.embed_vision."),
        expanded_token=_GEMMA4[2],
        stand_ins="torchvision import-only stand-in while processing_gemma4 is imported",
    ),
    Family(
        name="idefics2",
        doc="""Idefics2: Idefics2 image processor (28x28, no splitting), ``image_seq_len=4``, perceiver resampler.
        Hub template (HuggingFaceM4/idefics2-8b): ``User:`` + items in order, ``<image>`` per image,
        ``<end_of_utterance>\\n``; ``Assistant:``.""",
        package="idefics2",
        processor="Idefics2Processor",
        specials=("<unk>", "<s>", "</s>", "<pad>", "<fake_token_around_image>", "<image>", "<end_of_utterance>"),
        template=dict(
            begin="<s>",
            turn="(role | capitalize) + ':'",
            end="'<end_of_utterance>\n'",
            image="<image>",
            gen="Assistant:",
        ),
        tokenizer=dict(
            bos="<s>",
            eos="</s>",
            pad="<pad>",
            unk="<unk>",
            extra={"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>"},
        ),
        image_processor=(
            "idefics2",
            "Idefics2ImageProcessor",
            dict(do_image_splitting=False, size={"shortest_edge": 28, "longest_edge": 28}),
        ),
        processor_kwargs=dict(image_seq_len=4),
        model=("idefics2", "Idefics2Config", "Idefics2ForConditionalGeneration"),
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="mistral", head_dim=8)),
            vision_config=dict(image_size=28, patch_size=14, **_VIT),
            perceiver_config=dict(
                hidden_size=32,
                resampler_n_latents=4,
                resampler_depth=1,
                resampler_n_heads=2,
                resampler_head_dim=8,
                num_key_value_heads=1,
            ),
            image_token_id=Tok("<image>"),
            tie_word_embeddings=False,
        ),
        image_size=(28, 28),
        images_in_batch=_count_slots,
        decode=_slots,
        vision_prefixes=("model.vision_model.", "model.connector."),
    ),
    _idefics3(False),
    _idefics3(True),
    Family(
        name="llava",
        doc="""LLaVA-1.5: CLIP image processor (28x28), patch 14, ``num_additional_image_tokens=1`` (CLS),
        strategy "default": 4 ``<image>`` tokens per image; ``<image>\\n`` per image.""",
        package="llava",
        processor="LlavaProcessor",
        specials=_LLAVA_SPECIALS,
        template=dict(_LLAVA_TEMPLATE, end="'</s>' if message['role'] == 'assistant' else ' '"),
        tokenizer=dict(bos="<s>", eos="</s>", pad="<pad>"),
        image_processor=(
            "clip",
            "CLIPImageProcessor",
            dict(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        ),
        processor_kwargs=dict(
            patch_size=14,
            vision_feature_select_strategy="default",
            image_token="<image>",
            num_additional_image_tokens=1,
        ),
        model=("llava", "LlavaConfig", "LlavaForConditionalGeneration"),
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="llama")),
            vision_config=dict(_CLIP, image_size=28, patch_size=14),
            image_token_index=Tok("<image>"),
            **_LLAVA_HEAD,
        ),
        image_size=(28, 28),
        decode=_each_image,
        vision_prefixes=_TORCH_TOWERS,
    ),
    Family(
        name="llava_next",
        doc="""LLaVA-NeXT (LLaVA-1.6): anyres image processor (28-pixel crops, pinpoints 28x28 / 28x56 / 56x28),
        CLIP tower. Hub templates (llava-hf/llava-v1.6-*): every image of a message first, each as
        ``<image>\\n`` (the newline a token of its own, as in the real tokenizers).""",
        package="llava_next",
        processor="LlavaNextProcessor",
        specials=_LLAVA_SPECIALS,
        template=dict(_LLAVA_TEMPLATE, end="('</s>' if message['role'] == 'assistant' else ' ')", images_first=True),
        tokenizer=dict(bos="<s>", eos="</s>", pad="<pad>", added=("\n",)),
        image_processor=(
            "llava_next",
            "LlavaNextImageProcessor",
            dict(
                size={"shortest_edge": 28},
                crop_size={"height": 28, "width": 28},
                image_grid_pinpoints=[[28, 28], [28, 56], [56, 28]],
            ),
        ),
        processor_kwargs=dict(patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1),
        model=("llava_next", "LlavaNextConfig", "LlavaNextForConditionalGeneration"),
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="llama")),
            vision_config=dict(_CLIP, image_size=28, patch_size=14),
            image_token_index=Tok("<image>"),
            image_grid_pinpoints=[[28, 28], [28, 56], [56, 28]],
            **_LLAVA_HEAD,
        ),
        image_size=(28, 28),
        images_in_batch=_first_axis(),
        decode=_each_first_patch,  # (images, patches, 3, H, W)
        vision_prefixes=_TORCH_TOWERS,
        sees_cut=False,
    ),
    Family(
        name="llava_onevision",
        doc="""LLaVA-OneVision: OneVision image processor (28x28, pinpoints 56x56), SigLIP tower. Hub template
        (llava-hf/llava-onevision-qwen2-*-hf): ``<|im_start|>user `` + ``<image>`` per image, all first and
        side by side, then ``\\n`` + text. A row with several images gets the multi-image treatment
        (4 + 1 tokens each, strategy "full"), a single image the anyres one (24 tokens): not multiples.""",
        package="llava_onevision",
        processor="LlavaOnevisionProcessor",
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
        template=dict(
            turn="'<|im_start|>' + role + ' '",
            end="'<|im_end|>\n'",
            image="<image>",
            images_first=True,
            text_prefix="\n",
            gen="<|im_start|>assistant\n",
        ),
        tokenizer=dict(bos=None, eos="<|im_end|>", pad="<|endoftext|>"),
        image_processor=(
            "llava_onevision",
            "LlavaOnevisionImageProcessor",
            dict(size={"height": 28, "width": 28}, image_grid_pinpoints=[[56, 56]]),
        ),
        video=("llava_onevision.video_processing_llava_onevision", "LlavaOnevisionVideoProcessor", {}),
        processor_kwargs=dict(
            num_image_tokens=4, vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9"
        ),
        model=("llava_onevision", "LlavaOnevisionConfig", "LlavaOnevisionForConditionalGeneration"),
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="qwen2")),
            vision_config=dict(_SIGLIP, image_size=28, patch_size=14),
            image_token_index=Tok("<image>"),
            video_token_index=Tok("<video>"),
            image_grid_pinpoints=[[56, 56]],
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            tie_word_embeddings=False,
        ),
        image_size=(28, 28),
        images_in_batch=_first_axis(),
        decode=_each_first_patch,
        vision_prefixes=_TORCH_TOWERS,
    ),
    _pixtral(False),
    _pixtral(True),
    Family(
        name="internvl",
        doc="""InternVL (3-hf layout): GOT-OCR2 image processor, 56-pixel tiles (a 56x56 image is one tile),
        ``image_seq_length=4``; ChatML, each image item ``<IMG_CONTEXT>\\n``.""",
        package="internvl",
        processor="InternVLProcessor",
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
        template=dict(CHATML, image="<IMG_CONTEXT>\n"),
        tokenizer=dict(
            bos=None,
            eos="<|im_end|>",
            pad="<|endoftext|>",
            extra={
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            },
        ),
        image_processor=("got_ocr2", "GotOcr2ImageProcessor", dict(size={"height": 56, "width": 56}, max_patches=12)),
        video=("internvl.video_processing_internvl", "InternVLVideoProcessor", {}),
        processor_kwargs=dict(image_seq_length=4),
        model=("internvl", "InternVLConfig", "InternVLForConditionalGeneration"),
        config=dict(
            text_config=dict(_TEXT_VOCAB, head_dim=8, model_type="qwen2", rope_parameters=_rope5()),
            vision_config=dict(**_VIT, image_size=[56, 56], patch_size=[14, 14]),
            image_token_id=Tok("<IMG_CONTEXT>"),
            image_seq_length=4,
            downsample_ratio=0.5,
            tie_word_embeddings=False,
        ),
        image_size=(56, 56),
        images_in_batch=_first_axis(),
        decode=_each_run,
        vision_prefixes=_TORCH_TOWERS,
        expanded_token="<IMG_CONTEXT>",
    ),
    Family(
        name="paddleocr_vl",
        doc="""PaddleOCR-VL: its image processor (56x56, patch 14, merge 2: 4 tokens), NaViT vision, ERNIE-4.5
        text. Hub template (PaddlePaddle/PaddleOCR-VL): ``<|begin_of_sentence|>User: `` +
        ``<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>`` per image (all first) + texts + ``\\n``;
        ``Assistant:\\n`` + text + ``<|end_of_sentence|>``.""",
        package="paddleocr_vl",
        processor="PaddleOCRVLProcessor",
        specials=(
            "<unk>",
            "<|begin_of_sentence|>",
            "</s>",
            "<|end_of_sentence|>",
            *_PADDLE,
            "<|VIDEO_PLACEHOLDER|>",
            "<pad>",
        ),
        template=dict(
            begin="<|begin_of_sentence|>",
            turn="('User: ' if message['role'] == 'user' else 'Assistant:\n' if message['role'] == 'assistant' else '')",
            end="('<|end_of_sentence|>' if message['role'] == 'assistant' else '\n')",
            image="".join(_PADDLE),
            images_first=True,
            gen="Assistant:\n",
        ),
        tokenizer=dict(
            bos="<|begin_of_sentence|>", eos="</s>", pad="<pad>", unk="<unk>", extra={"image_token": _PADDLE[1]}
        ),
        image_processor=(
            "paddleocr_vl",
            "PaddleOCRVLImageProcessor",
            dict(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=1),
        ),
        model=("paddleocr_vl", "PaddleOCRVLConfig", "PaddleOCRVLForConditionalGeneration"),
        config=dict(
            text_config=Rope(
                dict(
                    _TEXT,
                    vocab_size=VOCAB,
                    head_dim=8,
                    pad_token_id=Tok("<pad>"),
                    bos_token_id=Tok("<|begin_of_sentence|>"),
                    eos_token_id=Tok("</s>"),
                ),
                mrope=[1, 1, 2],
            ),
            vision_config=dict(**_VIT, patch_size=14, spatial_merge_size=2, image_size=56),
            image_token_id=Tok(_PADDLE[1]),
            video_token_id=Tok("<|VIDEO_PLACEHOLDER|>"),
            vision_start_token_id=Tok(_PADDLE[0]),
            vision_end_token_id=Tok(_PADDLE[2]),
            tie_word_embeddings=False,
        ),
        image_size=(56, 56),
        images_in_batch=_first_axis("image_grid_thw"),
        decode=_grid,  # (patches, 3, P, P), a grid row per image
        vision_prefixes=("model.visual.", "model.projector."),
        expanded_token=_PADDLE[1],
    ),
    Family(
        name="deepseek_ocr2",
        doc="""DeepSeek-OCR-2: its image processor (PIL), SAM + Qwen2 query encoder, DeepSeek-V2 MoE text.
        ``<image>\\n`` per image in a ``<|User|>`` / ``<|Assistant|>`` frame. The tiny vision tower emits
        144 query tokens for small images, so the processor is set to global = 144 (size 24, patch 2,
        downsample 1) and ``tile_size=768`` (no crops): each image is 145 ``<image>`` ids.""",
        package="deepseek_ocr2",
        processor="DeepseekOcr2Processor",
        specials=(*_DEEPSEEK, "<|User|>", "<|Assistant|>", "<image>", "<pad>"),
        template=dict(
            begin=_DEEPSEEK[0],
            turn="('<|User|>' if message['role'] == 'user' else '<|Assistant|>')",
            end="('" + _DEEPSEEK[1] + "' if message['role'] == 'assistant' else '')",
            image="<image>\n",
            gen="<|Assistant|>",
        ),
        tokenizer=dict(
            bos=_DEEPSEEK[0], eos=_DEEPSEEK[1], pad="<pad>", added=("\n",), extra={"image_token": "<image>"}
        ),
        image_processor=(
            "deepseek_ocr2",
            "DeepseekOcr2ImageProcessor",
            dict(size={"height": 24, "width": 24}, tile_size=768),
        ),
        processor_kwargs=dict(patch_size=2, downsample_ratio=1),
        model=("deepseek_ocr2", "DeepseekOcr2Config", "DeepseekOcr2ForConditionalGeneration"),
        config=dict(
            vision_config=dict(
                sam_config=dict(
                    hidden_size=16,
                    output_channels=8,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    num_channels=3,
                    image_size=24,
                    patch_size=2,
                    window_size=4,
                    global_attn_indexes=[0],
                    downsample_channels=[16, 32],
                ),
                encoder_config=Rope(
                    dict(
                        hidden_size=32,
                        intermediate_size=64,
                        num_hidden_layers=1,
                        num_attention_heads=2,
                        num_key_value_heads=2,
                        max_position_embeddings=512,
                    )
                ),
            ),
            text_config=Rope(
                dict(
                    vocab_size=VOCAB,
                    hidden_size=32,
                    intermediate_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    num_key_value_heads=4,
                    max_position_embeddings=1024,
                    bos_token_id=Tok(_DEEPSEEK[0]),
                    eos_token_id=Tok(_DEEPSEEK[1]),
                    pad_token_id=Tok("<pad>"),
                    n_routed_experts=4,
                    n_shared_experts=1,
                    mlp_layer_types=["dense", "sparse"],
                    moe_intermediate_size=16,
                    num_experts_per_tok=2,
                    tie_word_embeddings=False,
                )
            ),
            image_token_id=Tok("<image>"),
            tie_word_embeddings=False,
        ),
        image_size=(24, 24),
        images_in_batch=_first_axis(),
        decode=_each_image,
        vision_prefixes=_TORCH_TOWERS,
    ),
    Family(
        name="deepseek_vl",
        doc="""DeepSeek-VL (v1): its image processor (PIL, 28x28), SigLIP tower, Llama text.
        ``<image_placeholder>`` (the tokenizer's ``image_token``) per image, ``num_image_tokens=4`` copies.
        Format: ``User: <image_placeholder>...\\n\\nAssistant: ...``.""",
        package="deepseek_vl",
        processor="DeepseekVLProcessor",
        specials=(*_DEEPSEEK, "<image_placeholder>", "<pad>"),
        template=dict(
            begin=_DEEPSEEK[0],
            turn="(role | capitalize) + ': '",
            end="('" + _DEEPSEEK[1] + "' if message['role'] == 'assistant' else '\n\n')",
            image="<image_placeholder>",
            gen="Assistant:",
        ),
        tokenizer=dict(bos=_DEEPSEEK[0], eos=_DEEPSEEK[1], pad="<pad>", extra={"image_token": "<image_placeholder>"}),
        image_processor=("deepseek_vl", "DeepseekVLImageProcessor", dict(size={"height": 28, "width": 28})),
        processor_kwargs=dict(num_image_tokens=4),
        model=("deepseek_vl", "DeepseekVLConfig", "DeepseekVLForConditionalGeneration"),
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="llama")),
            vision_config=dict(_SIGLIP, image_size=28, patch_size=14),
            image_token_id=Tok("<image_placeholder>"),
            tie_word_embeddings=False,
        ),
        image_size=(28, 28),
        images_in_batch=_first_axis(),
        decode=_each_image,
        vision_prefixes=("model.vision_model.", "model.aligner."),
        expanded_token="<image_placeholder>",
    ),
    Family(
        name="minicpmv4_6",
        doc="""MiniCPM-V 4.6: its image processor (PIL; 32 pixels, patch 8, no slicing), SigLIP + window merger,
        Qwen3.5 text model (full-attention layers only here). The processor reads every marker from the
        tokenizer; ``image_token`` is ``<|image_pad|>`` as in openbmb/MiniCPM-V-4.6's Qwen3.5 tokenizer;
        default left padding.""",
        package="minicpmv4_6",
        processor="MiniCPMV4_6Processor",
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", *_MINICPM_MARKS.values()),
        template=dict(CHATML, image="<|image_pad|>"),
        tokenizer=dict(bos=None, eos="<|im_end|>", pad="<|endoftext|>", extra=_MINICPM_MARKS, added=("\n",)),
        image_processor=(
            "minicpmv4_6",
            "MiniCPMV4_6ImageProcessor",
            dict(scale_resolution=32, max_slice_nums=1, patch_size=8, slice_mode=False),
        ),
        video=("minicpmv4_6.video_processing_minicpmv4_6", "MiniCPMV4_6VideoProcessor", dict(slice_mode=False)),
        generic_video_attrs=dict(downsample_mode="16x", slice_mode=False),
        model=("minicpmv4_6", "MiniCPMV4_6Config", "MiniCPMV4_6ForConditionalGeneration"),
        config=dict(
            text_config=dict(
                model_type="qwen3_5_text",
                vocab_size=VOCAB,
                hidden_size=32,
                head_dim=8,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=1024,
                rope_parameters=_rope5(mrope_section=[1, 1, 0]),
                tie_word_embeddings=False,
                pad_token_id=Tok("<|endoftext|>"),
                eos_token_id=Tok("<|im_end|>"),
                layer_types=["full_attention"],
            ),
            vision_config=dict(
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                image_size=32,
                patch_size=8,
                num_channels=3,
            ),
            image_token_id=Tok("<|image_pad|>"),
            video_token_id=Tok("<|video_pad|>"),
            image_size=32,
            insert_layer_id=0,
            drop_vision_last_layer=False,
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=_first_axis("target_sizes"),
        decode=_navit,
        vision_prefixes=("model.vision_tower.", "model.vit_merger.", "model.merger."),
        expanded_token="<|image_pad|>",
    ),
    Family(
        name="aya_vision",
        doc="""Aya Vision: GOT-OCR2 image processor (PIL; 28-pixel tiles: a 28x28 image is the global tile only),
        SigLIP tower with pixel shuffle (downsample 2), Cohere2 text. Hub template:
        ``<|START_OF_TURN_TOKEN|><|USER_TOKEN|>`` + items in order, ``<image>`` per image, ``<|END_OF_TURN_TOKEN|>``.""",
        package="aya_vision",
        processor="AyaVisionProcessor",
        specials=(
            "<PAD>",
            "<BOS_TOKEN>",
            "<|END_OF_TURN_TOKEN|>",
            "<|START_OF_TURN_TOKEN|>",
            "<|USER_TOKEN|>",
            "<|CHATBOT_TOKEN|>",
            "<image>",
            "<|START_OF_IMG|>",
            "<|END_OF_IMG|>",
            "<|IMG_PATCH|>",
            "<|IMG_LINE_BREAK|>",
            "TILE",
            "TILE_GLOBAL",
            *[f"TILE_{i}" for i in range(1, 13)],
        ),
        template=dict(
            begin="<BOS_TOKEN>",
            turn="'<|START_OF_TURN_TOKEN|>' + ('<|USER_TOKEN|>' if role == 'user' else '<|CHATBOT_TOKEN|>')",
            end="'<|END_OF_TURN_TOKEN|>'",
            image="<image>",
            gen="<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        ),
        tokenizer=dict(bos="<BOS_TOKEN>", eos="<|END_OF_TURN_TOKEN|>", pad="<PAD>"),
        image_processor=(
            "got_ocr2",
            "GotOcr2ImageProcessor",
            dict(size={"height": 28, "width": 28}, crop_to_patches=True, min_patches=1, max_patches=12),
        ),
        processor_kwargs=dict(patch_size=7, img_size=28, downsample_factor=2),
        model=("aya_vision", "AyaVisionConfig", "AyaVisionForConditionalGeneration"),
        config=dict(
            text_config=Rope(
                dict(
                    _TEXT_VOCAB,
                    model_type="cohere2",
                    bos_token_id=BOS,
                    eos_token_id=EOS,
                    head_dim=8,
                    layer_types=["full_attention"],
                    sliding_window=64,
                )
            ),
            vision_config=dict(_SIGLIP, image_size=28, patch_size=7),
            downsample_factor=2,
            image_token_index=Tok("<|IMG_PATCH|>"),
            tie_word_embeddings=False,
        ),
        image_size=(28, 28),
        images_in_batch=_first_axis(),
        decode=_each_run,
        vision_prefixes=_TORCH_TOWERS,
        expanded_token="<|IMG_PATCH|>",
    ),
    Family(
        name="paligemma",
        doc="""PaliGemma: SigLIP image processor (PIL, 28x28), ``image_seq_length=4``, Gemma text. No Hub chat
        template (prefix / suffix training); a minimal one: every image first as ``<image>``, then the user
        text, then the answer. The processor inserts ``<bos>`` after the LAST ``<image>`` of each text and a
        newline at its end.""",
        package="paligemma",
        processor="PaliGemmaProcessor",
        specials=("<pad>", "<eos>", "<bos>", "<image>"),
        template=dict(
            turn="''", end="('<eos>' if message['role'] == 'assistant' else '\n')", image="<image>", images_first=True
        ),
        tokenizer=dict(
            bos="<bos>",
            eos="<eos>",
            pad="<pad>",
            added=("\n",),
            extra={"image_token": "<image>"},
            cls_4x=("gemma.tokenization_gemma_fast", "GemmaTokenizerFast"),
        ),
        image_processor=("siglip", "SiglipImageProcessor", dict(size={"height": 28, "width": 28})),
        ip_attrs=dict(image_seq_length=4),
        model=("paligemma", "PaliGemmaConfig", "PaliGemmaForConditionalGeneration"),
        config=dict(
            text_config=Rope(dict(_TEXT_VOCAB, model_type="gemma", head_dim=8)),
            vision_config=dict(_SIGLIP, image_size=28, patch_size=14, projection_dim=32),
            image_token_index=Tok("<image>"),
            projection_dim=32,
            hidden_size=32,
            vocab_size=VOCAB,
            tie_word_embeddings=False,
        ),
        image_size=(28, 28),
        images_in_batch=_first_axis(),
        decode=_each_image,
        vision_prefixes=_TORCH_TOWERS,
        notes="transformers 5.17.0 puts a text-only row's <bos> at character 6 of a mixed batch (upstream)",
    ),
    Family(
        name="llama4",
        doc="""Llama 4: ``Llama4ImageProcessor`` is a torchvision-backend class (no PIL variant in
        transformers 5.17.0), so this fixture builds only where torchvision imports (no CI row has it):
        56x56 tiles, patch 14, pixel-shuffle 0.5, the real Llama 4 chat template (``<|image|>`` per image).""",
        package="llama4",
        processor="Llama4Processor",
        checks=(lambda: _torchvision_only("llama4", "Llama4ImageProcessor"), lambda: _needs_tf5("llama4")),
        specials=_LLAMA4_SPECIALS,
        template=_upstream_template,
        tokenizer=dict(bos="<|begin_of_text|>", eos="<|eot|>", pad="<|finetune_right_pad|>"),
        image_processor=("llama4", "Llama4ImageProcessor", dict(size={"height": 56, "width": 56}, max_patches=4)),
        ip_direct=True,
        processor_kwargs=dict(patch_size=14, pixel_shuffle_ratio=0.5),
        model=("llama4", "Llama4Config", "Llama4ForConditionalGeneration"),
        config=dict(
            text_config=dict(
                _TEXT,
                head_dim=8,
                vocab_size=VOCAB,
                pad_token_id=Tok("<|finetune_right_pad|>"),
                bos_token_id=Tok("<|begin_of_text|>"),
                eos_token_id=Tok("<|eot|>"),
                intermediate_size_mlp=64,
                num_local_experts=2,
                num_experts_per_tok=1,
                attention_chunk_size=64,
                rope_parameters=_rope5(),
            ),
            vision_config=dict(
                hidden_size=16,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=56,
                patch_size=14,
                vision_output_dim=32,
                projector_input_dim=32,
                projector_output_dim=32,
                pixel_shuffle_ratio=0.5,
                rope_parameters=_rope5(),
            ),
            boi_token_index=Tok("<|image_start|>"),
            eoi_token_index=Tok("<|image_end|>"),
            image_token_index=Tok("<|patch|>"),
            tie_word_embeddings=False,
        ),
        image_size=(56, 56),
        images_in_batch=_first_axis(),
        decode=_each_run,
        vision_prefixes=("model.vision_model.", "vision_model."),
        expanded_token="<|patch|>",
    ),
    Family(
        name="lfm2_vl",
        doc="""LFM2-VL: ``Lfm2VlImageProcessor`` is a torchvision-backend class (no PIL variant in transformers
        5.17.0), so this fixture builds only where torchvision imports (no CI row has it): 32x32, encoder
        patch 4, downsample 2, no splitting; ChatML after ``<|startoftext|>``, ``<image>`` per image.""",
        package="lfm2_vl",
        processor="Lfm2VlProcessor",
        checks=(lambda: _torchvision_only("lfm2_vl", "Lfm2VlImageProcessor"), lambda: _needs_tf5("lfm2_vl")),
        specials=(
            "<|pad|>",
            "<|startoftext|>",
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<image>",
            "<|image_start|>",
            "<|image_end|>",
            "<|img_thumbnail|>",
            *[f"<|img_row_{r}_col_{c}|>" for r in range(1, 3) for c in range(1, 3)],
        ),
        template=dict(CHATML, begin="<|startoftext|>", image="<image>"),
        tokenizer=dict(bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>"),
        image_processor=(
            "lfm2_vl",
            "Lfm2VlImageProcessor",
            dict(
                encoder_patch_size=4,
                downsample_factor=2,
                min_image_tokens=4,
                max_image_tokens=16,
                do_image_splitting=False,
                tile_size=32,
            ),
        ),
        ip_direct=True,
        model=("lfm2_vl", "Lfm2VlConfig", "Lfm2VlForConditionalGeneration"),
        config=dict(
            text_config=dict(
                model_type="lfm2",
                vocab_size=VOCAB,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=2048,
                pad_token_id=PAD,
                bos_token_id=BOS,
                eos_token_id=EOS,
                layer_types=["conv", "full_attention"],
                tie_word_embeddings=False,
                rope_parameters=_rope5(),
            ),
            vision_config=dict(model_type="siglip2_vision_model", **_VIT, patch_size=4, num_patches=64),
            image_token_id=Tok("<image>"),
            projector_hidden_size=32,
            downsample_factor=2,
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=_first_axis(),
        decode=_masked,
        vision_prefixes=_TORCH_TOWERS,
    ),
)

#: family name -> builder of its Tiny (Mllama: the project's own tiny model; every other family: its
#: row of TABLE through the one builder), in the order the adapter table lists them
FAMILIES: dict[str, Callable[[], Tiny]] = {
    "mllama": _mllama,
    **{fam.name: functools.partial(_build_family, fam) for fam in TABLE},
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
