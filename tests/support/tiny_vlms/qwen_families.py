"""Qwen-like families (flattened patches with a ``(t, h, w)`` grid per image): Qwen2-VL, Qwen2.5-VL,
Qwen3-VL, GLM-4.1V / GLM-4.6V and PaddleOCR-VL."""

from __future__ import annotations

from .builder import TEXT, VIT, Family
from .chat import CHATML
from .decoders import first_axis, grid
from .markers import VOCAB, MRope, Rope, Tok

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
_PADDLE = ("<|IMAGE_START|>", "<|IMAGE_PLACEHOLDER|>", "<|IMAGE_END|>")  # start, image, end


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
                    TEXT,
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
        images_in_batch=first_axis("image_grid_thw"),
        decode=grid,
        vision_prefixes=("model.visual.", "visual."),
        expanded_token="<|image_pad|>",
    )


def _glm(v46: bool) -> Family:
    module = "glm46v" if v46 else "glm4v"
    text = dict(TEXT, head_dim=8, vocab_size=VOCAB, pad_token_id=Tok("<|endoftext|>"))
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
        images_in_batch=first_axis("image_grid_thw"),
        decode=grid,
        vision_prefixes=("model.visual.",),
        expanded_token="<|image|>",
    )


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
                dict(TEXT, head_dim=8, vocab_size=VOCAB, pad_token_id=Tok("<|endoftext|>")),
                rope=dict(mrope_section=[2, 1, 1], mrope_interleaved=True),
            ),
            vision_config=dict(_PATCH8_VISION, num_position_embeddings=16, deepstack_visual_indexes=[0]),
            **_QWEN_IDS,
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=first_axis("image_grid_thw"),
        decode=grid,
        vision_prefixes=("model.visual.",),
        expanded_token="<|image_pad|>",
    ),
    _glm(False),
    _glm(True),
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
                    TEXT,
                    vocab_size=VOCAB,
                    head_dim=8,
                    pad_token_id=Tok("<pad>"),
                    bos_token_id=Tok("<|begin_of_sentence|>"),
                    eos_token_id=Tok("</s>"),
                ),
                mrope=[1, 1, 2],
            ),
            vision_config=dict(**VIT, patch_size=14, spatial_merge_size=2, image_size=56),
            image_token_id=Tok(_PADDLE[1]),
            video_token_id=Tok("<|VIDEO_PLACEHOLDER|>"),
            vision_start_token_id=Tok(_PADDLE[0]),
            vision_end_token_id=Tok(_PADDLE[2]),
            tie_word_embeddings=False,
        ),
        image_size=(56, 56),
        images_in_batch=first_axis("image_grid_thw"),
        decode=grid,  # (patches, 3, P, P), a grid row per image
        vision_prefixes=("model.visual.", "model.projector."),
        expanded_token=_PADDLE[1],
    ),
)
