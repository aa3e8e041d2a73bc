"""What the family tests expect of each fixture of tests/support/tiny_vlms/, and the shared builders.

``EXPECTED`` is written by hand (not derived from the adapter table): family -> (the adapter that
must claim its processor, the placeholder one image leaves in the rendered chat). Every family test
(test_adapters.py, test_families.py) is parametrized over it. The processors and the tiny models
are built once per test session (a family's model is shared by its tests; every test that runs a
backward pass zeroes the gradients first) to keep CI on 2 cores fast.
"""

from __future__ import annotations

from typing import Any

import pytest

EXPECTED: dict[str, tuple[str, str]] = {
    "mllama": ("mllama", "<|image|>"),
    "qwen2_vl": ("qwen2_vl", "<|vision_start|><|image_pad|><|vision_end|>"),
    "qwen2_5_vl": ("qwen2_vl", "<|vision_start|><|image_pad|><|vision_end|>"),
    "qwen3_vl": ("qwen3_vl", "<|vision_start|><|image_pad|><|vision_end|>"),
    "glm4v": ("glm4v", "<|begin_of_image|><|image|><|end_of_image|>"),
    "glm46v": ("glm4v", "<|begin_of_image|><|image|><|end_of_image|>"),
    "gemma3": ("gemma3", "<start_of_image>"),
    "gemma3n": ("gemma3n", "<image_soft_token>"),
    "gemma4": ("gemma4", "<|image|>"),
    "idefics2": ("idefics2", "<image>"),
    "idefics3": ("idefics3", "<image>"),
    "smolvlm": ("idefics3", "<image>"),
    "llava": ("llava", "<image>"),
    "llava_next": ("llava_next", "<image>"),
    "llava_onevision": ("llava_onevision", "<image>"),
    "pixtral": ("pixtral", "[IMG]"),
    "mistral3": ("pixtral", "[IMG]"),
    "internvl": ("internvl", "<IMG_CONTEXT>"),
    "paddleocr_vl": ("paddleocr_vl", "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>"),
    "deepseek_ocr2": ("deepseek_ocr2", "<image>"),
    "deepseek_vl": ("deepseek_vl", "<image_placeholder>"),
    "minicpmv4_6": ("minicpmv4_6", "<|image_pad|>"),
    "aya_vision": ("aya_vision", "<image>"),
    "paligemma": ("paligemma", "<image>"),
    "llama4": ("llama4", "<|image|>"),
    "lfm2_vl": ("lfm2_vl", "<image>"),
}

#: family -> the processor class its fixture builds (the table is checked against it even where the
#: fixture cannot be built on a row)
PROCESSOR_CLASSES: dict[str, str] = {
    "mllama": "MllamaProcessor",
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "glm4v": "Glm4vProcessor",
    "glm46v": "Glm46VProcessor",
    "gemma3": "Gemma3Processor",
    "gemma3n": "Gemma3nProcessor",
    "gemma4": "Gemma4Processor",
    "idefics2": "Idefics2Processor",
    "idefics3": "Idefics3Processor",
    "smolvlm": "SmolVLMProcessor",
    "llava": "LlavaProcessor",
    "llava_next": "LlavaNextProcessor",
    "llava_onevision": "LlavaOnevisionProcessor",
    "pixtral": "PixtralProcessor",
    "mistral3": "PixtralProcessor",
    "internvl": "InternVLProcessor",
    "paddleocr_vl": "PaddleOCRVLProcessor",
    "deepseek_ocr2": "DeepseekOcr2Processor",
    "deepseek_vl": "DeepseekVLProcessor",
    "minicpmv4_6": "MiniCPMV4_6Processor",
    "aya_vision": "AyaVisionProcessor",
    "paligemma": "PaliGemmaProcessor",
    "llama4": "Llama4Processor",
    "lfm2_vl": "Lfm2VlProcessor",
}

IMG = {"type": "image"}


def upstream_failure(family: str) -> tuple[str, str] | None:
    """(message pattern, why) where the installed unsloth_zoo's collator itself fails on the family's
    batches, with or without the plugin (upstream's limit, recorded, not the plugin's job)."""
    from packaging.version import Version

    from tests.support import UNSLOTH_ZOO

    if family == "internvl" and UNSLOTH_ZOO is not None and UNSLOTH_ZOO < Version("2026.9"):
        return (
            "not supported between instances of 'int' and 'list'",
            f"unsloth_zoo {UNSLOTH_ZOO} keeps InternVL's vision_config.image_size, a list ([56, 56] here, [448, 448] "
            f"for the real checkpoints), and compares it with an int in _resize_images_inplace (TypeError); "
            f"2026.9.7 turns it into a tuple",
        )
    return None


def skip_if_mixed_rows_unsupported(tiny: Any) -> None:
    """Before 4.57, transformers' image nesting rejects an empty image list, so per-row families
    (Gemma 3, Idefics2/3, PaliGemma ...) cannot take a batch mixing text-only and image rows at all;
    that is upstream's limit, not the collator's (Mllama has its own patch for it; LLaVA-OneVision's
    processor takes the empty list)."""
    import transformers
    from packaging.version import Version

    from unsloth_multiimage import find_adapter

    version = Version(transformers.__version__)
    if (
        find_adapter(tiny.processor).nesting == "per_row"
        and tiny.family not in ("mllama", "llava_onevision")
        and version < Version("4.57")
    ):
        pytest.skip(f"transformers {version} rejects empty image lists: {tiny.family} cannot mix text-only rows")


_built: dict[str, Any] = {}
_models: dict[str, Any] = {}


def tiny_of(family: str) -> Any:
    """The family's tiny processor (``tiny_vlms.Tiny``), built once; skips with the exact reason."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.support import tiny_vlms

    if family not in _built:
        try:
            _built[family] = tiny_vlms.build(family)
        except tiny_vlms.Unavailable as e:
            _built[family] = e
    got = _built[family]
    if isinstance(got, Exception):
        pytest.skip(f"{family} cannot be built offline here: {got}")
    return got


def model_of(tiny: Any) -> Any:
    """The family's tiny model, built once, gradients zeroed."""
    if tiny.family not in _models:
        _models[tiny.family] = tiny.make_model()
    model = _models[tiny.family]
    model.zero_grad(set_to_none=True)
    return model


def user(*parts: Any, text: str = "which image has more red") -> dict:
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def assistant(text: str = "the first") -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def column_row(tiny: Any, row: int, n: int) -> dict:
    """A TRL-layout row: ``n`` bare image parts and an ``images`` column of coded images."""
    from tests.support.tiny_vlms import make_tile_image

    return {
        "messages": [user(*[IMG] * n), assistant()],
        "images": [make_tile_image(row, i, tiny.image_size) for i in range(n)],
    }


def text_row() -> dict:
    return {"messages": [user(text="describe the text"), assistant()], "images": []}


def counts(tiny: Any, batch: Any) -> list[int]:
    from unsloth_multiimage import find_adapter

    adapter = find_adapter(tiny.processor)
    return [adapter.count_in_ids(tiny.processor, ids) for ids in batch["input_ids"]]


def vision_gradient(tiny: Any, model: Any) -> bool:
    """Whether some parameter of the vision tower got a non-zero gradient."""
    params = [p for n, p in model.named_parameters() if n.startswith(tiny.vision_prefixes)]
    assert params, f"no parameter of {type(model).__name__} is named like {tiny.vision_prefixes}"
    return any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in params)
