"""Llama-like families: Llama 3.2 Vision (the project's own tiny Mllama, ``unsloth_multiimage.tiny_mllama``)
and Llama 4."""

from __future__ import annotations

import sys
from typing import Any

from tests.support.tiles import decode_tile

from .builder import TEXT, Family, Tiny
from .decoders import each_run, first_axis
from .installed import needs_tf5, torchvision_only
from .markers import VOCAB, Tok, rope5


def mllama() -> Tiny:
    """Llama 3.2 Vision: the project's own tiny Mllama (``unsloth_multiimage.tiny_mllama``):
    ``<|image|>`` per image (not expanded), (rows, images, tiles, C, H, W) pixel values."""
    import transformers.models.mllama.processing_mllama  # noqa: F401  (the project's patch lands on import)

    from unsloth_multiimage import tiny_mllama

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


def _upstream_template(proc_cls: Any) -> str:
    """The chat template the processing module ships (Llama 4's real one)."""
    return sys.modules[proc_cls.__module__].chat_template


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

TABLE: tuple[Family, ...] = (
    Family(
        name="llama4",
        doc="""Llama 4: ``Llama4ImageProcessor`` is a torchvision-backend class (no PIL variant in
        transformers 5.17.0), so this fixture builds only where torchvision imports (no CI row has it):
        56x56 tiles, patch 14, pixel-shuffle 0.5, the real Llama 4 chat template (``<|image|>`` per image).""",
        package="llama4",
        processor="Llama4Processor",
        checks=(lambda: torchvision_only("llama4", "Llama4ImageProcessor"), lambda: needs_tf5("llama4")),
        specials=_LLAMA4_SPECIALS,
        template=_upstream_template,
        tokenizer=dict(bos="<|begin_of_text|>", eos="<|eot|>", pad="<|finetune_right_pad|>"),
        image_processor=("llama4", "Llama4ImageProcessor", dict(size={"height": 56, "width": 56}, max_patches=4)),
        ip_direct=True,
        processor_kwargs=dict(patch_size=14, pixel_shuffle_ratio=0.5),
        model=("llama4", "Llama4Config", "Llama4ForConditionalGeneration"),
        config=dict(
            text_config=dict(
                TEXT,
                head_dim=8,
                vocab_size=VOCAB,
                pad_token_id=Tok("<|finetune_right_pad|>"),
                bos_token_id=Tok("<|begin_of_text|>"),
                eos_token_id=Tok("<|eot|>"),
                intermediate_size_mlp=64,
                num_local_experts=2,
                num_experts_per_tok=1,
                attention_chunk_size=64,
                rope_parameters=rope5(),
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
                rope_parameters=rope5(),
            ),
            boi_token_index=Tok("<|image_start|>"),
            eoi_token_index=Tok("<|image_end|>"),
            image_token_index=Tok("<|patch|>"),
            tie_word_embeddings=False,
        ),
        image_size=(56, 56),
        images_in_batch=first_axis(),
        decode=each_run,
        vision_prefixes=("model.vision_model.", "vision_model."),
        expanded_token="<|patch|>",
    ),
)
