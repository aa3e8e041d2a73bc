"""What ``demo`` and ``demo --compare`` share: the collator they train with (the real
``UnslothVisionDataCollator`` when ``unsloth_zoo`` imports, else :class:`SimpleCollator`), a
banner line that says truly which one runs and whether the plugin patches it, and the model.

``UNSLOTH_ZOO_DISABLE_GPU_INIT=1`` is set before ``unsloth_zoo`` is imported: its package
``__init__`` refuses to start on a CPU-only machine otherwise (and, on a GPU, without ``unsloth``
imported first); the demo needs the collator only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..tools.common import adds_special_tokens, prepare_rows

__all__ = [
    "SimpleCollator",
    "build_model_and_processor",
    "collator_description",
    "load_zoo_collator",
    "make_collator",
    "mllama_processor_of",
]


def load_zoo_collator() -> tuple[Any | None, str]:
    """``(UnslothVisionDataCollator class or None, why)``; never raises."""
    os.environ.setdefault("UNSLOTH_ZOO_DISABLE_GPU_INIT", "1")
    try:
        import unsloth_zoo.vision_utils as vision_utils
    except Exception as exc:  # ImportError, or a zoo release refusing to start without a GPU
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    cls = getattr(vision_utils, "UnslothVisionDataCollator", None)
    if cls is None:
        return None, "unsloth_zoo.vision_utils has no UnslothVisionDataCollator"
    return cls, "unsloth_zoo " + _version("unsloth_zoo")


def _version(dist: str) -> str:
    from ..engine.compat import installed_version

    return installed_version(dist) or "?"


def _patch_state(name: str) -> str:
    """How the plugin stands on patch ``name``, in words for the banner: the truth under
    ``UNSLOTH_MULTIIMAGE_DISABLE=1`` or a pending/unsupported decision too."""
    from ..engine import activation

    if activation.is_disabled():
        return "NOT patched: the plugin is disabled (UNSLOTH_MULTIIMAGE_DISABLE=1)"
    for st in activation.status():
        if st.name == name:
            if st.applied:
                return "patched by unsloth_multiimage"
            return f"NOT patched ({st.decision}: {st.reason})"
    return f"NOT patched (no {name} patch is registered)"


def collator_description(zoo_cls: Any | None, zoo_why: str) -> str:
    """The banner's ``collator`` line: which collator runs, and whether the plugin patches it.

    Without a usable ``unsloth_zoo`` the advice depends on why: when no ``unsloth_zoo`` is
    installed, the ``demo`` extra installs the pinned one; when one is installed (e.g. a pinned
    older release that refuses to import here), installing the extra would replace it, so the
    line only says what runs instead.
    """
    if zoo_cls is not None:
        return f"the real UnslothVisionDataCollator ({zoo_why}), {_patch_state('unsloth_collator')}"
    fallback = (
        "a minimal chat-template collator + MllamaProcessor "
        f"({_patch_state('mllama_processor').replace('patched by', 'its processor patched by')})"
    )
    installed = _installed("unsloth_zoo")
    if installed is None:
        return f'{fallback}: unsloth_zoo is not installed; `pip install "unsloth-multiimage[demo]"` installs it'
    return f"{fallback}: the installed unsloth_zoo {installed} cannot be imported here ({zoo_why})"


def _installed(dist: str) -> str | None:
    from ..engine.compat import installed_version

    return installed_version(dist)


class SimpleCollator:
    """A minimal vision collator: per-row images (plan_row + decode + policies), the processor's
    chat template, one image list per row to the processor (its special tokens added as the
    installed unsloth_zoo's collator adds them), labels = input ids with padding and image tokens
    ignored. What the plugin's per-row logic makes possible without Unsloth."""

    def __init__(self, processor: Any, ignore_index: int = -100) -> None:
        self.processor = processor
        self.ignore_index = ignore_index

    def __call__(self, examples: Sequence[Any]) -> Any:
        examples, plans, texts = prepare_rows(examples, self.processor)
        images = [[_rgb(img) for img in p.images] for p in plans]
        kwargs: dict[str, Any] = {
            "text": texts,
            "return_tensors": "pt",
            "padding": True,
            "add_special_tokens": adds_special_tokens(self.processor, texts),
        }
        if any(images):
            kwargs["images"] = images
        batch = self.processor(**kwargs)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = self.ignore_index
        image_id = getattr(self.processor, "image_token_id", None)
        if image_id is not None:
            labels[labels == image_id] = self.ignore_index
        batch["labels"] = labels
        return batch


def _rgb(img: Any) -> Any:
    return img.convert("RGB") if getattr(img, "mode", "RGB") != "RGB" else img


def make_collator(model: Any, processor: Any, zoo_cls: Any | None, **zoo_kwargs: Any) -> Callable[[Sequence[Any]], Any]:
    """The real collator (``zoo_cls(model, processor, **zoo_kwargs)``), else :class:`SimpleCollator`."""
    if zoo_cls is not None:
        collator: Callable[[Sequence[Any]], Any] = zoo_cls(model, processor, **zoo_kwargs)
        return collator
    return SimpleCollator(processor)


def mllama_processor_of(model_path: str) -> Any:
    """The processor of the local Llama 3.2 Vision checkpoint ``model_path``, after checking that
    the folder holds one (its config's ``model_type``), before any weight is read.

    Raises:
        CommandError: naming ``--model`` and the fix.
    """
    from ..errors import CommandError, first_line
    from ..tools.common import load_processor

    processor = load_processor(model_path, required=True)[0]
    try:
        from transformers import AutoConfig

        model_type = getattr(AutoConfig.from_pretrained(model_path, local_files_only=True), "model_type", None)
    except (OSError, ValueError, KeyError) as exc:
        first = first_line(exc)
        raise CommandError(
            f"--model {model_path}: no model config loads from it ({first}). Fix: give the folder of a Llama 3.2 "
            f"Vision checkpoint (model.save_pretrained(DIR))."
        ) from None
    if model_type != "mllama":
        raise CommandError(
            f"--model {model_path}: a {model_type} checkpoint; the demo trains Llama 3.2 Vision (mllama) only. "
            f"Fix: give the folder of an Mllama checkpoint."
        )
    return processor


def build_model_and_processor(model_path: str | None, seed: int) -> tuple[Any, Any, str]:
    """``(model, processor, description)``: the tiny offline Mllama, or local weights at ``model_path``."""
    from .. import tiny_mllama

    if model_path is None:
        processor = tiny_mllama.processor_of(None)
        return tiny_mllama.build_model(processor, seed=seed), processor, "tiny offline Mllama (random weights)"
    processor = mllama_processor_of(model_path)
    from transformers import MllamaForConditionalGeneration

    model = MllamaForConditionalGeneration.from_pretrained(model_path, local_files_only=True)
    return model, processor, f"local weights at {model_path}"
