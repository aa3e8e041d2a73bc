"""LLaVA-like families (a vision tower's features in place of ``<image>`` tokens): LLaVA-1.5,
LLaVA-NeXT, LLaVA-OneVision, Idefics2, Idefics3, SmolVLM, Pixtral and Mistral 3."""

from __future__ import annotations

from typing import Any

from .builder import CLIP, SIGLIP, TEXT_VOCAB, TORCH_TOWERS, VIT, Family
from .decoders import count_slots, each_first_patch, each_image, first_axis, sized, slots
from .installed import tf_class, tf_major
from .markers import PAD, Rope, Tok
from .torchvision_stand_in import import_under_torchvision_stand_in

_LLAVA_TEMPLATE = dict(begin="<s>", turn="(role | upper) + ': '", image="<image>\n", gen="ASSISTANT:")
_LLAVA_SPECIALS = ("<s>", "</s>", "<pad>", "<image>")
_LLAVA_HEAD = dict(vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False)


def _pixtral_processor_class() -> Any:
    """``PixtralProcessor``. transformers 5.x: ``processing_pixtral.py`` does ``from
    .image_processing_pixtral import get_resize_output_image_size`` and that module (the torchvision
    image processor) starts with ``from torchvision.transforms.v2 import functional as tvF``. The
    function is pure Python (``get_image_size`` + arithmetic; the PIL module has a copy) and the
    processor uses it only in ``_get_num_multimodal_tokens`` (vLLM's helper), never in ``__call__``:
    the import-only stand-in, and the torchvision module is dropped again."""
    if tf_major() < 5:
        return tf_class("pixtral.processing_pixtral", "PixtralProcessor")
    mod = import_under_torchvision_stand_in(
        "transformers.models.pixtral.processing_pixtral", drop=("transformers.models.pixtral.image_processing_pixtral",)
    )
    return mod.PixtralProcessor


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
            text_config=Rope(dict(TEXT_VOCAB, model_type="llama")),
            vision_config=dict(image_size=56, patch_size=14, **VIT),
            scale_factor=2,
            image_token_id=Tok("<image>"),
            pad_token_id=PAD,
            tie_word_embeddings=False,
        ),
        image_size=(56, 56),
        images_in_batch=count_slots,
        decode=slots,
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
            text_config=Rope(dict(TEXT_VOCAB, model_type="mistral", head_dim=8)),
            vision_config=Rope(dict(model_type="pixtral", image_size=32, patch_size=patch, **VIT, head_dim=8)),
            image_token_index=Tok("[IMG]"),
            **head,
            tie_word_embeddings=False,
        ),
        image_size=(32, 32),
        images_in_batch=first_axis(),
        decode=sized,
        expanded_token="[IMG]",
        stand_ins="torchvision import-only stand-in while processing_pixtral is imported (transformers 5.x)",
    )


TABLE: tuple[Family, ...] = (
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
            text_config=Rope(dict(TEXT_VOCAB, model_type="mistral", head_dim=8)),
            vision_config=dict(image_size=28, patch_size=14, **VIT),
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
        images_in_batch=count_slots,
        decode=slots,
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
            text_config=Rope(dict(TEXT_VOCAB, model_type="llama")),
            vision_config=dict(CLIP, image_size=28, patch_size=14),
            image_token_index=Tok("<image>"),
            **_LLAVA_HEAD,
        ),
        image_size=(28, 28),
        decode=each_image,
        vision_prefixes=TORCH_TOWERS,
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
            text_config=Rope(dict(TEXT_VOCAB, model_type="llama")),
            vision_config=dict(CLIP, image_size=28, patch_size=14),
            image_token_index=Tok("<image>"),
            image_grid_pinpoints=[[28, 28], [28, 56], [56, 28]],
            **_LLAVA_HEAD,
        ),
        image_size=(28, 28),
        images_in_batch=first_axis(),
        decode=each_first_patch,  # (images, patches, 3, H, W)
        vision_prefixes=TORCH_TOWERS,
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
            text_config=Rope(dict(TEXT_VOCAB, model_type="qwen2")),
            vision_config=dict(SIGLIP, image_size=28, patch_size=14),
            image_token_index=Tok("<image>"),
            video_token_index=Tok("<video>"),
            image_grid_pinpoints=[[56, 56]],
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            tie_word_embeddings=False,
        ),
        image_size=(28, 28),
        images_in_batch=first_axis(),
        decode=each_first_patch,
        vision_prefixes=TORCH_TOWERS,
    ),
    _pixtral(False),
    _pixtral(True),
)
