"""A tiny, randomly initialised Llama-3.2-Vision (Mllama) processor and model, built offline from
code: the renderer the commands use when the user gives no checkpoint (``doctor``, ``preview``), the
demo harness's model, and the test suite's Mllama fixture. No weights, no tokenizer files, no Hub.

The processor: a word-level tokenizer with the Llama 3 special tokens (``<|begin_of_text|>``,
``<|image|>``, ``<|eot_id|>`` ...), a Llama-3-style chat template, a post-processor that prepends
``<|begin_of_text|>`` like the real tokenizer, and the real ``MllamaImageProcessor`` with small tiles
(28 x 28 pixels by default, two 14-pixel patches per side). The model: the real
``MllamaForConditionalGeneration`` with a 3-layer text decoder (layer 1 is a cross-attention layer)
and a 2 + 1 layer vision tower; ``build_model`` sets Mllama's zero-initialised tanh gates to
``ZERO_GATE_INIT`` so that the images reach the logits (and every parameter gets gradient) from the
first step.

It builds on every transformers release of compat/matrix.toml (each row builds it). Differences
between releases are detected, not looked up: ``rope_scaling`` on 4.x (see ``build_config``) and
the ``chat_template`` argument of ``MllamaProcessor`` (absent on the oldest rows).

It imports nothing of the package, and the heavy libraries (torch, transformers, tokenizers) only
inside the functions, so importing it is cheap; only the commands and the demo harness use it
(tests/engine/test_layers.py), never the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor, PreTrainedTokenizerFast

__all__ = [
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "END_HEADER_TOKEN",
    "END_OF_TEXT_TOKEN",
    "EOT_TOKEN",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "PATCH_SIZE",
    "PYTHON_TAG_TOKEN",
    "SPECIAL_TOKENS",
    "START_HEADER_TOKEN",
    "UNK_TOKEN",
    "WORDS",
    "ZERO_GATE_INIT",
    "build_config",
    "build_image_processor",
    "build_model",
    "build_processor",
    "build_tokenizer",
    "processor_of",
    "word_level_backend",
]

BOS_TOKEN = "<|begin_of_text|>"
END_OF_TEXT_TOKEN = "<|end_of_text|>"
IMAGE_TOKEN = "<|image|>"
START_HEADER_TOKEN = "<|start_header_id|>"
END_HEADER_TOKEN = "<|end_header_id|>"
EOT_TOKEN = "<|eot_id|>"
PYTHON_TAG_TOKEN = "<|python_tag|>"
PAD_TOKEN = "<|finetune_right_pad_id|>"
UNK_TOKEN = "[UNK]"

#: The special tokens, in id order (ids 0..7). ``[UNK]`` gets id 8, then come the words.
SPECIAL_TOKENS: tuple[str, ...] = (
    BOS_TOKEN,
    END_OF_TEXT_TOKEN,
    IMAGE_TOKEN,
    START_HEADER_TOKEN,
    END_HEADER_TOKEN,
    EOT_TOKEN,
    PYTHON_TAG_TOKEN,
    PAD_TOKEN,
)

#: Plain vocabulary (the tokenizer lower-cases text before looking words up).
WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        # roles
        "system user assistant tool ipython "
        # digits (the pre-tokenizer splits numbers into single digits)
        "0 1 2 3 4 5 6 7 8 9 "
        "zero one two three four five six seven eight nine ten "
        "first second third fourth fifth last both neither either "
        # colours and shapes
        "red green blue yellow orange purple pink black white gray grey brown "
        "square squares circle circles triangle triangles shape shapes dot dots "
        "line lines stripe stripes colour colours color colors "
        # question / answer words
        "which what who where when why how many much more less fewer most fewest "
        "same different than and or not no yes none all any each every "
        "image images picture pictures photo photos tile tiles "
        "is are was were be has have had do does did can could "
        "the a an this that these those there here it its of in on at to for with from by as "
        "describe compare count answer question find show shows look see tell "
        "left right top bottom middle above below between next "
        "big small large larger smaller bigger biggest smallest "
        "i you we they he she me my your our their "
        "please thanks thank ok okay sure because so then also only just "
        "hello hi goodbye test sentence example sample caption text "
        # punctuation (isolated by the pre-tokenizer)
        ". , ? ! : ; ' \" - ( ) [ ] / * + = _ # % & < > | { } ~ ` @ $ ^ \\".split()
    )
)

#: Chat template written for this project, in the Llama 3 header format.
#: Content may be a string or a list of items; every ``{"type": "image", ...}`` item
#: (with or without an "image" / "url" / "path" key) renders ``<|image|>`` in place,
#: every ``{"type": "text", "text": ...}`` item renders its text. No system prompt is
#: injected and nothing raises on several images or on system messages.
CHAT_TEMPLATE: str = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] is not none -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}"
    "{{- '<|image|>' -}}"
    "{%- elif item['type'] == 'text' -%}"
    "{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}"
    "{%- endif -%}"
)


#: Patch size of the tiny vision tower; the tile size must be a multiple of it.
PATCH_SIZE = 14


def word_level_backend(
    specials: Sequence[str], words: Sequence[str], unk: str = UNK_TOKEN
) -> tuple[Any, dict[str, int]]:
    """A ``tokenizers`` WordLevel backend and its vocabulary: ``specials``, ``unk``, then ``words``.

    Lower-casing normaliser; the pre-tokenizer splits on whitespace, isolates punctuation and
    splits numbers into digits. The specials are special added tokens, matched before
    normalisation and pre-tokenisation, so each is one id even when glued to text.
    """
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab: dict[str, int] = {}
    for token in (*specials, unk, *words):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*specials, unk)])
    return backend, vocab


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the tiny word-level tokenizer, fully offline.

    The backend is a ``tokenizers`` ``WordLevel`` model (``[UNK]`` for unknown words)
    with a lower-casing normaliser and a pre-tokenizer that splits on whitespace,
    isolates every punctuation character and splits numbers into single digits. The
    Llama 3 special tokens are registered as special added tokens, so each of them is
    exactly one id even when glued to text (``"<|image|>What"`` gives two ids). Like
    the real Llama 3 tokenizer, encoding with ``add_special_tokens=True`` prepends
    ``<|begin_of_text|>``.

    Returns:
        A ``PreTrainedTokenizerFast`` (``TokenizersBackend`` on transformers 5.x) with
        ``bos_token="<|begin_of_text|>"``, ``eos_token="<|eot_id|>"`` (end of turn, as in
        the Instruct checkpoint), ``pad_token="<|finetune_right_pad_id|>"``,
        ``unk_token="[UNK]"``, right padding and ``chat_template=CHAT_TEMPLATE``.
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend, vocab = word_level_backend(SPECIAL_TOKENS, WORDS)
    bos_id = vocab[BOS_TOKEN]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOT_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_image_processor(tile_size: int = 28, max_image_tiles: int = 4) -> Any:
    """Build a real ``MllamaImageProcessor`` with small square tiles.

    Args:
        tile_size: tile height and width in pixels (the real checkpoint uses 560). Must be
            a multiple of the tiny vision tower's patch size (14).
        max_image_tiles: most tiles one image may be split into (the real value is 4).

    Returns:
        Whatever class ``transformers.MllamaImageProcessor`` resolves to on the installed
        release (on 5.x without torchvision transformers itself falls back to the PIL
        backend and says so).
    """
    if tile_size <= 0 or tile_size % PATCH_SIZE:
        raise ValueError(f"tile_size must be a positive multiple of {PATCH_SIZE}, got {tile_size}")
    if max_image_tiles < 1:
        raise ValueError(f"max_image_tiles must be >= 1, got {max_image_tiles}")
    from transformers import MllamaImageProcessor

    return MllamaImageProcessor(size={"height": tile_size, "width": tile_size}, max_image_tiles=max_image_tiles)


def build_processor(tile_size: int = 28, max_image_tiles: int = 4) -> MllamaProcessor:
    """Build a real ``MllamaProcessor`` from the tiny tokenizer and image processor.

    ``processor.apply_chat_template(messages, tokenize=False)`` renders ``CHAT_TEMPLATE``.

    Args:
        tile_size: see :func:`build_image_processor`.
        max_image_tiles: see :func:`build_image_processor`.
    """
    import inspect

    from transformers import MllamaProcessor

    image_processor = build_image_processor(tile_size=tile_size, max_image_tiles=max_image_tiles)
    tokenizer = build_tokenizer()
    if "chat_template" in inspect.signature(MllamaProcessor.__init__).parameters:
        processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    else:
        # The oldest releases: MllamaProcessor.__init__(image_processor, tokenizer) has no
        # chat_template argument; it copies tokenizer.chat_template instead.
        processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    processor.chat_template = CHAT_TEMPLATE
    return processor


def processor_of(model_path: str | None) -> Any:
    """The processor of the local checkpoint folder ``model_path`` (never downloaded), else the
    tiny one (:func:`build_processor`)."""
    if model_path is None:
        return build_processor()
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_path, local_files_only=True)


# ------------------------------------------------------------------------------------- the model
def _supported_aspect_ratios(max_image_tiles: int) -> list[list[int]]:
    """Same list, same order as ``get_all_supported_aspect_ratios`` in the image processor."""
    return [
        [width, height]
        for width in range(1, max_image_tiles + 1)
        for height in range(1, max_image_tiles + 1)
        if width * height <= max_image_tiles
    ]


def _image_processor_of(processor: Any) -> Any:
    return getattr(processor, "image_processor", processor)


def _tile_size_of(image_processor: Any) -> int:
    size = image_processor.size
    height = size["height"] if isinstance(size, dict) else size.height
    width = size["width"] if isinstance(size, dict) else size.width
    if height != width:
        raise ValueError(f"tiny Mllama needs square tiles, got {height}x{width}")
    return int(height)


def build_config(
    processor: Any | None = None,
    *,
    vision_image_size: int | None = None,
    text_hidden: int = 32,
    text_layers: int = 3,
    cross_attention_layers: Sequence[int] = (1,),
    heads: int = 4,
    kv_heads: int = 2,
    vision_hidden: int = 16,
    vision_layers: int = 2,
) -> MllamaConfig:
    """Build the ``MllamaConfig`` of the tiny model, matched to ``processor``.

    Text decoder (defaults): hidden 32, intermediate 2 x hidden, 3 layers (layer 1 is a
    cross-attention layer), 4 heads, 2 KV heads, vocabulary ``len(tokenizer)``. Vision tower:
    ``image_size`` = the processor's tile size, patch 14, hidden 16, intermediate 2 x hidden,
    2 local + 1 global layers, ``intermediate_layers_indices=[0]``, ``vision_output_dim`` =
    2 x hidden (32), ``max_num_tiles`` = the processor's ``max_image_tiles`` (and the matching
    aspect ratio list). ``image_token_index``, ``pad_token_id``, ``bos_token_id`` and
    ``eos_token_id`` come from the tokenizer.

    Args:
        processor: a processor from :func:`build_processor` (built with the defaults if
            ``None``).
        vision_image_size: override the vision tower's ``image_size`` (defaults to the tile
            size; a mismatch is only useful to test error handling).
        text_hidden, text_layers, heads, kv_heads: sizes of the text decoder
            (``text_layers`` counts the cross-attention layers too).
        cross_attention_layers: indices of the text layers that are cross-attention layers
            (the real 11B checkpoint has one every 5 layers, each followed by self-attention
            layers; ``(text_layers - 1,)`` puts the only one last).
        vision_hidden, vision_layers: sizes of the vision tower (``vision_layers`` local
            layers, plus 1 global layer).
    """
    cross = [int(i) for i in cross_attention_layers]
    if not cross or any(not 0 <= i < text_layers for i in cross):
        raise ValueError(
            f"cross_attention_layers must be indices in 0..{text_layers - 1}, got {list(cross_attention_layers)}"
        )
    from transformers import MllamaConfig

    if processor is None:
        processor = build_processor()
    tokenizer = processor.tokenizer
    image_processor = _image_processor_of(processor)
    tile_size = _tile_size_of(image_processor)
    max_image_tiles = int(image_processor.max_image_tiles)

    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    text_config: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": int(text_hidden),
        "intermediate_size": 2 * int(text_hidden),
        "num_hidden_layers": int(text_layers),
        "num_attention_heads": int(heads),
        "num_key_value_heads": int(kv_heads),
        "cross_attention_layers": cross,
        "max_position_embeddings": 1024,
        "rope_theta": 10000.0,
        "bos_token_id": tokenizer.convert_tokens_to_ids(BOS_TOKEN),
        "eos_token_id": [
            tokenizer.convert_tokens_to_ids(END_OF_TEXT_TOKEN),
            tokenizer.convert_tokens_to_ids(EOT_TOKEN),
        ],
        "pad_token_id": pad_id,
        "tie_word_embeddings": False,
    }
    if _needs_explicit_rope_scaling():
        # transformers 4.x (every 4.x row of the matrix): MllamaRotaryEmbedding reads
        # config.rope_scaling["rope_type"] with no fallback, so the config default
        # rope_scaling=None raises TypeError. 5.x uses rope_parameters, filled by default.
        text_config["rope_scaling"] = {"rope_type": "default"}
    vision_config: dict[str, Any] = {
        "image_size": int(vision_image_size) if vision_image_size is not None else tile_size,
        "patch_size": PATCH_SIZE,
        "hidden_size": int(vision_hidden),
        "intermediate_size": 2 * int(vision_hidden),
        "num_hidden_layers": int(vision_layers),
        "num_global_layers": 1,
        "num_attention_heads": 2,
        "intermediate_layers_indices": [0],
        "vision_output_dim": 2 * int(vision_hidden),
        "max_num_tiles": max_image_tiles,
        "supported_aspect_ratios": _supported_aspect_ratios(max_image_tiles),
    }
    config = MllamaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    config.pad_token_id = pad_id
    return config


def _needs_explicit_rope_scaling() -> bool:
    import transformers

    return int(transformers.__version__.split(".")[0]) < 5


def build_model(processor: Any | None = None, seed: int = 0, **sizes: Any) -> MllamaForConditionalGeneration:
    """Build the tiny, randomly initialised ``MllamaForConditionalGeneration``.

    The weights depend only on ``seed`` (the global torch RNG state is saved and
    restored around the initialisation). Mllama's zero-initialised tanh gates are set to
    ``ZERO_GATE_INIT`` so that images influence the output and the vision tower and the
    cross-attention layers get gradient from the first step. The model is returned in
    train mode, float32, on the CPU.

    Args:
        processor: the processor the model must match (built with the defaults if
            ``None``).
        seed: seed for the random initialisation.
        sizes: keyword sizes for :func:`build_config` (``text_hidden``, ``text_layers``,
            ``cross_attention_layers`` ...); the defaults give the model described above.
    """
    import torch
    from transformers import MllamaForConditionalGeneration

    config = build_config(processor, **sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MllamaForConditionalGeneration(config)
    _open_zero_gates(model)
    model.train()
    return model


#: Value given to the tanh gates that Mllama initialises to zero (see ``build_model``).
ZERO_GATE_INIT: float = 0.5


def _open_zero_gates(model: Any) -> None:
    """Set Mllama's zero-initialised scalar tanh gates to ``ZERO_GATE_INIT``.

    Mllama starts ``cross_attn_attn_gate`` / ``cross_attn_mlp_gate`` (text side) and the
    vision tower's tile / aspect-ratio embedding ``gate`` at 0, as the pre-trained
    checkpoint's training did. With tanh(0) = 0 the images cannot reach the logits, so
    the whole vision tower and the cross-attention projections would get exactly zero
    gradient on the first step and the tiny model could not tell one image from
    another. A fixed non-zero value keeps the model deterministic and makes every
    parameter matter from the first forward pass.
    """
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1].endswith("gate") and param.numel() == 1 and not param.any():
                param.fill_(ZERO_GATE_INIT)
