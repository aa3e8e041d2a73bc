"""Gemma-like families: Gemma 3, Gemma 3n (a timm vision tower, imported under the torchvision
stand-in), Gemma 4 and PaliGemma."""

from __future__ import annotations

import importlib.util
from typing import Any

from unsloth_multiimage.tiny_mllama import WORDS

from .builder import SIGLIP, TEXT, TEXT_VOCAB, TORCH_TOWERS, VIT, Family
from .decoders import each_image, first_axis, positioned
from .installed import Unavailable, needs_tf5
from .markers import BOS, EOS, PAD, VOCAB, Lazy, Rope, Tf4Extra, Tok, rope5
from .torchvision_stand_in import import_under_torchvision_stand_in

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


TABLE: tuple[Family, ...] = (
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
                    TEXT,
                    vocab_size=VOCAB,
                    head_dim=8,
                    pad_token_id=Tok("<pad>"),
                    eos_token_id=Tok("<eos>"),
                    bos_token_id=Tok("<bos>"),
                    sliding_window=64,
                ),
                extra=dict(rope_theta=10000.0),
            ),
            vision_config=dict(image_size=28, patch_size=14, **VIT),
            mm_tokens_per_image=4,
            boi_token_index=Tok(_GEMMA3[0]),
            eoi_token_index=Tok(_GEMMA3[1]),
            image_token_index=Tok(_GEMMA3[2]),
        ),
        after_init=_gemma3_projection_init,
        image_size=(28, 28),
        decode=each_image,
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
        checks=(_import_timm, lambda: needs_tf5("gemma3n")),
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
        images_in_batch=first_axis(),
        decode=each_image,
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
                TEXT,
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
                rope_parameters={"sliding_attention": rope5(), "full_attention": rope5()},
            ),
            vision_config=dict(
                **VIT,
                num_key_value_heads=2,
                head_dim=8,
                patch_size=4,
                pooling_kernel_size=3,
                position_embedding_size=64,
                rope_parameters=rope5(),
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
        images_in_batch=first_axis(),
        decode=positioned,
        vision_prefixes=("model.vision_tower.", "model.embed_vision."),
        expanded_token=_GEMMA4[2],
        stand_ins="torchvision import-only stand-in while processing_gemma4 is imported",
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
            text_config=Rope(dict(TEXT_VOCAB, model_type="gemma", head_dim=8)),
            vision_config=dict(SIGLIP, image_size=28, patch_size=14, projection_dim=32),
            image_token_index=Tok("<image>"),
            projection_dim=32,
            hidden_size=32,
            vocab_size=VOCAB,
            tie_word_embeddings=False,
        ),
        image_size=(28, 28),
        images_in_batch=first_axis(),
        decode=each_image,
        vision_prefixes=TORCH_TOWERS,
        notes="transformers 5.17.0 puts a text-only row's <bos> at character 6 of a mixed batch (upstream)",
    ),
)
