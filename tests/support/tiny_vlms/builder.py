"""The one builder: a family's row of the table (:class:`Family`) -> a :class:`Tiny`, with the
family's REAL processor class (its real image processor with tiny sizes, a WordLevel tokenizer with
its special tokens, a template in its format) and a maker of its real model on a tiny config; and
the config pieces several families share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from .chat import chat_template, tokenizer_class_4x, word_level_tokenizer
from .installed import Unavailable, pil_image_processor, require_package, tf_class, tf_major
from .markers import PAD, VOCAB, resolve


@dataclass
class Tiny:
    """A family's tiny processor, the maker of its tiny model, and how to read its batches."""

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


#: a decoder factory: the family's image processor -> ``Tiny.decode``
Decoder = Callable[[Any], Callable[[Any], list]]


@dataclass(frozen=True)
class Family:
    """How to build one family's tiny processor and model: everything :func:`build_family` needs.

    ``processor`` is the class name in ``transformers.models.<package>.processing_<package>``, or a
    loader returning the class. ``template`` are :func:`.chat.chat_template`'s arguments, or a
    function of the processor class returning the template (the upstream one). ``tokenizer`` are
    :func:`.chat.word_level_tokenizer`'s arguments (``cls_4x``: the ``(module, class)`` a 4.x
    processor type-checks for). ``image_processor`` is ``(package, class, kwargs)`` through
    :func:`.installed.pil_image_processor` (``ip_direct``: the class itself, no PIL variant).
    ``model`` is ``(package, config class, model class)`` and ``config`` its settings (markers
    resolved, see :mod:`.markers`). ``checks`` run first and raise :class:`Unavailable`."""

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


# ---------------------------------------------------------------------------------------- the builder
def _processor_class(fam: Family) -> Any:
    if callable(fam.processor):
        return fam.processor()
    return tf_class(f"{fam.package}.processing_{fam.package}", fam.processor)


def _build_processor(fam: Family, proc_cls: Any, template: str, tok: Any, ip: Any) -> Any:
    kwargs = dict(image_processor=ip, tokenizer=tok, chat_template=template, **fam.processor_kwargs)
    if fam.feature_extractor:
        kwargs["feature_extractor"] = tf_class(*fam.feature_extractor)()
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
        settings = resolve(fam.config, tok)
        if fam.text_top_level_4x and tf_major() < 5:
            settings.update(settings["text_config"])
        cfg = tf_class(f"{module}.configuration_{module}", config_name)(**settings)
        model_cls = tf_class(f"{module}.modeling_{module}", model_name)

        def init() -> Any:
            model = model_cls(cfg)
            if fam.after_init is not None:
                fam.after_init(model)
            return model

        return _seeded(init)

    return make_model


def build_family(fam: Family) -> Tiny:
    """The one builder: the family's real processor class with its real image processor, a
    WordLevel tokenizer with its special tokens and a template in its format, and its model maker."""
    require_package(fam.package)
    for check in fam.checks:
        check()
    proc_cls = _processor_class(fam)
    template = fam.template(proc_cls) if callable(fam.template) else chat_template(**fam.template)
    tok_kwargs = dict(fam.tokenizer)
    if "cls_4x" in tok_kwargs:
        tok_kwargs["cls"] = tokenizer_class_4x(*tok_kwargs.pop("cls_4x"))
    tok = word_level_tokenizer(list(fam.specials), template=template, **tok_kwargs)
    pkg, ip_name, ip_kwargs = fam.image_processor
    if fam.ip_direct:
        ip = tf_class(f"{pkg}.image_processing_{pkg}", ip_name)(**ip_kwargs)
    else:
        ip = pil_image_processor(pkg, ip_name, **ip_kwargs)
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


def _seeded(build: Callable[[], Any], seed: int = 0) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    model.train()
    return model


# ------------------------------------------- video processors (the processors that insist on one)
def _video_processor(module: str, name: str, **kwargs: Any) -> Any:
    """A video processor for processors that insist on one (no test sends videos): the family's own
    where it builds here (they need torchvision), else transformers' generic ``BaseVideoProcessor``."""
    try:
        return tf_class(module, name)(**kwargs)
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


# ------------------------------------------------------------- config pieces several families share
#: a one-layer text decoder
TEXT = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)
#: a text config on top of TEXT: the tokenizer's vocabulary and pad id
TEXT_VOCAB = dict(TEXT, vocab_size=VOCAB, pad_token_id=PAD)
CLIP = dict(
    model_type="clip_vision_model",
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    projection_dim=16,
)
VIT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)  # one layer
SIGLIP = dict(VIT, model_type="siglip_vision_model")
#: parameter-name prefixes of a vision tower and projector named as LLaVA names them
TORCH_TOWERS = ("model.vision_tower.", "model.multi_modal_projector.")
