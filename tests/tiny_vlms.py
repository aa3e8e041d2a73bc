"""Tiny, randomly initialised VLMs of several families, built OFFLINE in code (no Hub, no files).

Each family builder returns a :class:`Tiny` with the REAL processor class of the family (its real
image processor with tiny sizes, a ``tokenizers`` WordLevel tokenizer carrying the family's special
tokens wrapped in ``PreTrainedTokenizerFast``, and a chat template written for this project in the
family's format that renders every image item as the family's placeholder) and a ``make_model``
that builds the real ``...ForConditionalGeneration`` from a tiny config.

Families (name -> what is built):

* ``qwen2_vl`` / ``qwen2_5_vl``: ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` + Qwen2-VL image
  processor (``min_pixels = max_pixels = 56*56``: every image becomes a 1x4x4 grid, 4 tokens);
  ``<|vision_start|><|image_pad|><|vision_end|>`` per image. No video processor (it needs torchvision).
* ``gemma3``: ``Gemma3Processor`` + Gemma3 image processor (28x28), ``image_seq_length=4``;
  ``<start_of_image>`` per image, the tokenizer carries ``boi_token`` / ``eoi_token`` / ``image_token``.
* ``idefics3`` / ``smolvlm``: ``Idefics3Processor`` / ``SmolVLMProcessor``, no image splitting,
  56-pixel images, ``image_seq_len=4`` (scale factor 2); ``<image>`` per image.
* ``llava``: ``LlavaProcessor`` + CLIP image processor (28x28), patch 14,
  ``num_additional_image_tokens=1`` (CLS), strategy "default": 4 ``<image>`` tokens per image.
* ``pixtral``: ``PixtralProcessor`` + Pixtral image processor (longest edge 32, patch 16) and a
  ``LlavaForConditionalGeneration`` with a Pixtral vision tower (as Pixtral-12B ships);
  ``[IMG]`` per image, expanded into 2 rows of ``[IMG][IMG]`` + ``[IMG_BREAK]`` / ``[IMG_END]``.

A builder raises :class:`Unavailable` with the precise reason where the installed transformers
cannot build that family on this machine (e.g. a processor that requires torchvision).
"""

from __future__ import annotations

import contextlib
import importlib
from unittest import mock
from dataclasses import dataclass, field
from typing import Any, Callable

from unsloth_multiimage.tools.tiny_mllama import WORDS, make_tile_image

__all__ = ["FAMILIES", "Tiny", "Unavailable", "build", "make_tile_image"]


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
    #: words for the assistant turn mask (user / assistant headers as rendered)
    notes: str = ""


def _tf_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def _cls(module: str, name: str) -> Any:
    """A transformers class from its own module (not the lazy top-level placeholder)."""
    try:
        mod = importlib.import_module(f"transformers.models.{module}")
    except ImportError as e:  # e.g. a module that imports torchvision at its top
        raise Unavailable(f"transformers.models.{module} cannot be imported here: {e}") from e
    obj = getattr(mod, name, None)
    if obj is None:
        raise Unavailable(f"transformers.models.{module} has no {name}")
    return obj


def _image_processor(pkg: str, name: str, **kwargs: Any) -> Any:
    """The family's real image processor: the PIL backend on 5.x (where the default backend needs
    torchvision, which is not installed), the (slow, PIL/numpy) class on 4.x."""
    if _tf_major() >= 5:
        try:
            return _cls(f"{pkg}.image_processing_pil_{pkg}", f"{name}Pil")(**kwargs)
        except Unavailable:
            pass
    return _cls(f"{pkg}.image_processing_{pkg}", name)(**kwargs)


def _tokenizer(specials: list[str], *, template: str, bos: str | None, eos: str, pad: str, unk: str = "[UNK]",
               prepend_bos: bool = False, extra: dict | None = None, words: tuple = WORDS, cls: Any = None) -> Any:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    from unsloth_multiimage.tools.tiny_mllama import word_level_backend

    backend, vocab = word_level_backend(specials, words, unk)
    if prepend_bos and bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, vocab[bos])]
        )
    kwargs: dict[str, Any] = dict(
        tokenizer_object=backend, eos_token=eos, pad_token=pad, unk_token=unk, padding_side="right",
        model_input_names=["input_ids", "attention_mask"], chat_template=template,
    )
    if bos:
        kwargs["bos_token"] = bos
    if extra:
        kwargs["extra_special_tokens"] = extra
    tok = (cls or PreTrainedTokenizerFast)(**kwargs)
    tok.chat_template = template
    return tok


def _template(*, begin: str = "", turn: str, end: str, image: str, roles: dict | None = None, gen: str = "") -> str:
    """A chat template in a family's format: ``turn`` is a Jinja expression using ``role``."""
    roles = roles or {}
    role_map = "{%- set rmap = " + repr(roles) + " -%}"
    return (
        role_map
        + ("{{- '" + begin + "' -}}" if begin else "")
        + "{%- for message in messages -%}"
        "{%- set role = rmap.get(message['role'], message['role']) -%}"
        "{{- " + turn + " -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- elif message['content'] is not none -%}"
        "{%- for item in message['content'] -%}"
        "{%- if item['type'] in ('image', 'image_url') -%}{{- '" + image + "' -}}"
        "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{- '" + end + "' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + gen + "' -}}{%- endif -%}"
    )


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


def _seeded(build: Callable[[], Any], seed: int = 0) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    model.train()
    return model


_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=512, tie_word_embeddings=False)


def _video_processor() -> Any:
    """A video processor for processors that insist on one (no test sends videos).

    ``Qwen2VLVideoProcessor`` imports torchvision; without it, transformers' generic
    ``BaseVideoProcessor`` (which the processor's type check accepts) stands in."""
    try:
        return _cls("qwen2_vl.video_processing_qwen2_vl", "Qwen2VLVideoProcessor")()
    except Exception:
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


# --------------------------------------------------------------------------------------------- Qwen
def _qwen(v25: bool) -> Tiny:
    module = "qwen2_5_vl" if v25 else "qwen2_vl"
    proc_cls = _cls(f"{module}.processing_{module}", "Qwen2_5_VLProcessor" if v25 else "Qwen2VLProcessor")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    template = _template(turn="'<|im_start|>' + role + '\n'", end="<|im_end|>\n",
                         image="<|vision_start|><|image_pad|><|vision_end|>", gen="<|im_start|>assistant\n")
    tok_cls = None
    if _tf_major() < 5:  # 4.x processors type-check the tokenizer class (Qwen2TokenizerFast)
        tok_cls = _cls("qwen2.tokenization_qwen2_fast", "Qwen2TokenizerFast")
    tok = _tokenizer(specials, template=template, bos=None, eos="<|im_end|>", pad="<|endoftext|>", cls=tok_cls)
    ip = _image_processor("qwen2_vl", "Qwen2VLImageProcessor",
                          min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2)
    video = _video_processor()
    with _lenient_video_check(proc_cls, video):
        processor = proc_cls(image_processor=ip, tokenizer=tok, video_processor=video, chat_template=template)
    processor.chat_template = template

    def make_model() -> Any:
        cfg_cls = _cls(f"{module}.configuration_{module}", "Qwen2_5_VLConfig" if v25 else "Qwen2VLConfig")
        model_cls = _cls(f"{module}.modeling_{module}", "Qwen2_5_VLForConditionalGeneration" if v25 else "Qwen2VLForConditionalGeneration")
        ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
        text = _rope({**_TEXT, "vocab_size": len(tok), "pad_token_id": ids["<|endoftext|>"],
                      "eos_token_id": ids["<|im_end|>"], "bos_token_id": ids["<|endoftext|>"]}, mrope=[2, 1, 1])
        if v25:
            vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, patch_size=14,
                          spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0])
        else:
            vision = dict(depth=1, embed_dim=16, hidden_size=32, mlp_ratio=2, num_heads=2, patch_size=14,
                          spatial_merge_size=2, temporal_patch_size=2)
        kwargs = dict(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                      video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                      vision_end_token_id=ids["<|vision_end|>"])
        if _tf_major() < 5:
            kwargs.update(text)  # 4.x also reads the text settings at the top level
        config = cfg_cls(**kwargs)
        return _seeded(lambda: model_cls(config))

    return Tiny(
        family="qwen2_5_vl" if v25 else "qwen2_vl", processor=processor, make_model=make_model, image_size=(56, 56),
        images_in_batch=lambda b: int(b["image_grid_thw"].shape[0]) if "image_grid_thw" in b else 0,
    )


# -------------------------------------------------------------------------------------------- Gemma3
def _gemma3() -> Tiny:
    proc_cls = _cls("gemma3.processing_gemma3", "Gemma3Processor")
    boi, eoi, soft = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
    specials = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", boi, eoi, soft]
    template = _template(begin="<bos>", turn="'<start_of_turn>' + role + '\n'", end="<end_of_turn>\n", image=boi,
                         roles={"assistant": "model"}, gen="<start_of_turn>model\n")
    tok = _tokenizer(specials, template=template, bos="<bos>", eos="<eos>", pad="<pad>",
                     extra={"boi_token": boi, "eoi_token": eoi, "image_token": soft}, words=(*WORDS, "model"))
    ip = _image_processor("gemma3", "Gemma3ImageProcessor",
                          size={"height": 28, "width": 28}, do_pan_and_scan=False)
    processor = proc_cls(image_processor=ip, tokenizer=tok, chat_template=template, image_seq_length=4)
    processor.chat_template = template

    def make_model() -> Any:
        cfg_cls = _cls("gemma3.configuration_gemma3", "Gemma3Config")
        model_cls = _cls("gemma3.modeling_gemma3", "Gemma3ForConditionalGeneration")
        ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
        text = {**_TEXT, "vocab_size": len(tok), "head_dim": 8, "pad_token_id": ids["<pad>"], "eos_token_id": ids["<eos>"],
                "bos_token_id": ids["<bos>"], "sliding_window": 64}
        if _tf_major() < 5:
            text["rope_theta"] = 10000.0
        vision = dict(image_size=28, patch_size=14, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2)
        config = cfg_cls(text_config=text, vision_config=vision, mm_tokens_per_image=4, boi_token_index=ids[boi],
                         eoi_token_index=ids[eoi], image_token_index=ids[soft])
        return _seeded(lambda: model_cls(config))

    return Tiny(family="gemma3", processor=processor, make_model=make_model, image_size=(28, 28))


# ---------------------------------------------------------------------------------- Idefics3 / SmolVLM
def _idefics3(smol: bool) -> Tiny:
    module = "smolvlm" if smol else "idefics3"
    proc_cls = _cls(f"{module}.processing_{module}", "SmolVLMProcessor" if smol else "Idefics3Processor")
    rowcol = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    specials = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>", *rowcol]
    template = _template(begin="<|im_start|>", turn="(role | capitalize) + ':'", end="<end_of_utterance>\n", image="<image>",
                         gen="Assistant:")
    tok = _tokenizer(specials, template=template, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>")
    ip_name = "SmolVLMImageProcessor" if smol else "Idefics3ImageProcessor"
    ip = _image_processor(module, ip_name, do_image_splitting=False,
                          size={"longest_edge": 56}, max_image_size={"longest_edge": 56})
    kwargs = dict(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=template)
    video = _video_processor() if smol else None
    if smol:
        kwargs["video_processor"] = video
    try:
        with _lenient_video_check(proc_cls, video) if smol else contextlib.nullcontext():
            processor = proc_cls(**kwargs)
    except (TypeError, ValueError, ImportError) as e:
        raise Unavailable(f"{proc_cls.__name__}.__init__ fails here: {e}") from e
    processor.chat_template = template

    def make_model() -> Any:
        cfg_cls = _cls(f"{module}.configuration_{module}", "SmolVLMConfig" if smol else "Idefics3Config")
        model_cls = _cls(f"{module}.modeling_{module}", "SmolVLMForConditionalGeneration" if smol else "Idefics3ForConditionalGeneration")
        text = _rope({**_TEXT, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "model_type": "llama"})
        vision = dict(image_size=56, patch_size=14, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
        config = cfg_cls(text_config=text, vision_config=vision, scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
        return _seeded(lambda: model_cls(config))

    def images_in_batch(batch: Any) -> int:
        pv = batch.get("pixel_values")
        if pv is None:
            return 0
        # (batch, max images, C, H, W), zero-padded slots for rows with fewer images
        return int((pv.flatten(2).abs().sum(-1) > 0).sum())

    return Tiny(family="smolvlm" if smol else "idefics3", processor=processor, make_model=make_model,
                image_size=(56, 56), images_in_batch=images_in_batch)


# ---------------------------------------------------------------------------------------------- LLaVA
def _llava() -> Tiny:
    proc_cls = _cls("llava.processing_llava", "LlavaProcessor")
    specials = ["<s>", "</s>", "<pad>", "<image>"]
    template = _template(begin="<s>", turn="(role | upper) + ': '", end=" ", image="<image>\n", gen="ASSISTANT:")
    template = template.replace("{{- ' ' -}}{%- endfor -%}", "{{- '</s>' if message['role'] == 'assistant' else ' ' -}}{%- endfor -%}")
    tok = _tokenizer(specials, template=template, bos="<s>", eos="</s>", pad="<pad>")
    ip = _image_processor("clip", "CLIPImageProcessor", size={"shortest_edge": 28},
                          crop_size={"height": 28, "width": 28})
    processor = proc_cls(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                         chat_template=template, image_token="<image>", num_additional_image_tokens=1)
    processor.chat_template = template

    def make_model() -> Any:
        cfg_cls = _cls("llava.configuration_llava", "LlavaConfig")
        model_cls = _cls("llava.modeling_llava", "LlavaForConditionalGeneration")
        text = _rope({**_TEXT, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "model_type": "llama"})
        vision = dict(model_type="clip_vision_model", image_size=28, patch_size=14, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=2, num_attention_heads=2, projection_dim=16)
        config = cfg_cls(text_config=text, vision_config=vision, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False)
        return _seeded(lambda: model_cls(config))

    return Tiny(family="llava", processor=processor, make_model=make_model, image_size=(28, 28))


# -------------------------------------------------------------------------------------------- Pixtral
def _pixtral() -> Tiny:
    proc_cls = _cls("pixtral.processing_pixtral", "PixtralProcessor")
    specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "<pad>"]
    template = _template(begin="<s>", turn="'[INST]' if role == 'user' else ''", end="", image="[IMG]")
    template = template.replace("{{- '' -}}{%- endfor -%}",
                                "{{- '[/INST]' if message['role'] == 'user' else '</s>' -}}{%- endfor -%}")
    tok = _tokenizer(specials, template=template, bos="<s>", eos="</s>", pad="<pad>", unk="<unk>")
    ip = _image_processor("pixtral", "PixtralImageProcessor", size={"longest_edge": 32},
                          patch_size={"height": 16, "width": 16})
    try:
        processor = proc_cls(image_processor=ip, tokenizer=tok, patch_size=16, spatial_merge_size=1, chat_template=template)
    except ImportError as e:
        raise Unavailable(f"PixtralProcessor needs torchvision on this transformers: {str(e).strip().splitlines()[0]}") from e
    processor.chat_template = template

    def make_model() -> Any:
        cfg_cls = _cls("llava.configuration_llava", "LlavaConfig")
        model_cls = _cls("llava.modeling_llava", "LlavaForConditionalGeneration")
        text = _rope({**_TEXT, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "model_type": "mistral", "head_dim": 8})
        vision = _rope(dict(model_type="pixtral", image_size=32, patch_size=16, hidden_size=16, intermediate_size=32,
                            num_hidden_layers=1, num_attention_heads=2, head_dim=8))
        config = cfg_cls(text_config=text, vision_config=vision, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                         vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu",
                         tie_word_embeddings=False)
        return _seeded(lambda: model_cls(config))

    def images_in_batch(batch: Any) -> int:
        pv = batch.get("pixel_values")
        return 0 if pv is None else int(pv.shape[0])

    return Tiny(family="pixtral", processor=processor, make_model=make_model, image_size=(32, 32), images_in_batch=images_in_batch)


FAMILIES: dict[str, Callable[[], Tiny]] = {
    "qwen2_vl": lambda: _qwen(False),
    "qwen2_5_vl": lambda: _qwen(True),
    "gemma3": _gemma3,
    "idefics3": lambda: _idefics3(False),
    "smolvlm": lambda: _idefics3(True),
    "llava": _llava,
    "pixtral": _pixtral,
}


def build(family: str) -> Tiny:
    """Build the tiny processor of ``family`` (the model is built by ``Tiny.make_model()``)."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("4.56"):
        # Config and processor constructors of these families changed a lot before 4.56 (sub-configs
        # given as dicts have no to_dict on 4.46-4.50, SmolVLM lacks video_sampling on 4.50, ...).
        raise Unavailable(f"the tiny {family} fixture is written for transformers >= 4.56, not {transformers.__version__}")
    return FAMILIES[family]()
