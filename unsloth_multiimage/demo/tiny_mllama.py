"""A tiny, randomly initialised Llama-3.2-Vision (Mllama) model and processor, built offline.

This module is used by the demo harness and by the test suite. Everything is built
from code (the processor comes from :mod:`unsloth_multiimage.tools.tiny_processor`, the
commands' default renderer, and is re-exported here): no weights, no tokenizer files, no Hub
access. Building the processor and the model takes tens of milliseconds once transformers' Mllama modules are imported
(that first import costs seconds, mostly on 5.x, and is transformers' own cost).

The tiny model keeps the *shape* of Llama-3.2-Vision:

* a word-level tokenizer with the Llama 3 special tokens (``<|begin_of_text|>``,
  ``<|image|>``, ``<|eot_id|>`` ...), a Llama-3-style chat template, and a post-processor
  that prepends ``<|begin_of_text|>`` like the real tokenizer does;
* the real ``MllamaImageProcessor`` with small tiles (28 x 28 pixels by default, so two
  14-pixel patches per side) and the usual ``max_image_tiles`` tiling;
* the real ``MllamaForConditionalGeneration`` with a 3-layer text decoder (layer 1 is a
  cross-attention layer) and a 2 + 1 layer vision tower.

``build_model`` sets Mllama's zero-initialised tanh gates to ``ZERO_GATE_INIT`` so that
the images reach the logits (and every parameter gets gradient) from the first step.

Supported transformers releases: 4.46.3 to 5.24.0 (checked on 4.46.3, 4.49.0, 4.51.3,
4.52.1, 4.57.6, 5.0.0, 5.10.1, 5.17.0, 5.22.0, 5.23.0 and 5.24.0 with torch 2.13.0 CPU).
Version branches: ``rope_scaling`` on 4.x (see ``build_config``) and the
``chat_template`` argument of ``MllamaProcessor`` (absent on 4.46).

Heavy libraries (torch, transformers, tokenizers, PIL, numpy) are imported lazily inside
the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..tools.tiny_processor import (
    BOS_TOKEN,
    CHAT_TEMPLATE,
    END_HEADER_TOKEN,
    END_OF_TEXT_TOKEN,
    EOT_TOKEN,
    IMAGE_TOKEN,
    PAD_TOKEN,
    PATCH_SIZE,
    PYTHON_TAG_TOKEN,
    SPECIAL_TOKENS,
    START_HEADER_TOKEN,
    UNK_TOKEN,
    WORDS,
    build_image_processor,
    build_processor,
    build_tokenizer,
    processor_of,
    word_level_backend,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import MllamaConfig, MllamaForConditionalGeneration

__all__ = [
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "END_HEADER_TOKEN",
    "END_OF_TEXT_TOKEN",
    "EOT_TOKEN",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
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
    "processor_of",
    "word_level_backend",
    "build_tokenizer",
]


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
        # transformers 4.x (checked 4.46.3 .. 4.57.6): MllamaRotaryEmbedding reads
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
