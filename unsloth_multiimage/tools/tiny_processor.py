"""The tiny offline Llama-3.2-Vision (Mllama) processor, built from code: the renderer the
commands use when the user gives no checkpoint (``doctor``, ``preview``).

A word-level tokenizer with the Llama 3 special tokens (``<|begin_of_text|>``, ``<|image|>``,
``<|eot_id|>`` ...), a Llama-3-style chat template, a post-processor that prepends
``<|begin_of_text|>`` like the real tokenizer, and the real ``MllamaImageProcessor`` with small
tiles (28 x 28 pixels by default). No weights, no tokenizer files, no Hub access. The tiny *model*
that goes with it is the demo harness's (:mod:`unsloth_multiimage.demo.tiny_mllama`), which
re-exports everything here.

Heavy libraries (transformers, tokenizers) are imported inside the functions, so importing this
module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import MllamaProcessor, PreTrainedTokenizerFast

__all__ = [
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "EOT_TOKEN",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "PATCH_SIZE",
    "SPECIAL_TOKENS",
    "UNK_TOKEN",
    "WORDS",
    "build_image_processor",
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
        # transformers 4.46.x: MllamaProcessor.__init__(image_processor, tokenizer) has no
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
