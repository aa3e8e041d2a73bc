"""The built-in adapter table, and the plugin that answers ``umi_model_adapter`` from it.

One entry per family module of this package. A processor is matched on its class and then its
base classes, most derived first, so a subclass family (SmolVLM over Idefics3) wins over its
base. The hook implementation runs last (``trylast``): a third party's adapter for the same
processor class wins over the built-in one. The lookup (``AdapterLookup``) reads an adapter's
``placeholder_attr`` off the processor, whichever plugin answered (:func:`~unsloth_multiimage.adapters.resolve`).

Mistral 3 has no entry of its own: its processor is ``PixtralProcessor`` (the pixtral adapter).
"""

from __future__ import annotations

from typing import Any

from ..hooks import hookimpl
from . import (
    ModelAdapter,
    aya_vision,
    deepseek_ocr2,
    deepseek_vl,
    gemma3,
    gemma3n,
    gemma4,
    glm4v,
    idefics2,
    idefics3,
    internvl,
    lfm2_vl,
    llama4,
    llava,
    llava_next,
    llava_onevision,
    minicpmv4_6,
    mllama,
    paddleocr_vl,
    paligemma,
    pixtral,
    qwen2_vl,
    qwen3_vl,
)

__all__ = ["BUILTIN_ADAPTERS", "adapter_for_class", "umi_model_adapter"]

#: Every built-in adapter, in the order ``doctor`` lists them.
BUILTIN_ADAPTERS: tuple[ModelAdapter, ...] = (
    mllama.ADAPTER,
    qwen2_vl.ADAPTER,
    gemma3.ADAPTER,
    idefics3.ADAPTER,
    llava.ADAPTER,
    pixtral.ADAPTER,
    qwen3_vl.ADAPTER,
    glm4v.ADAPTER,
    internvl.ADAPTER,
    gemma4.ADAPTER,
    gemma3n.ADAPTER,
    llama4.ADAPTER,
    lfm2_vl.ADAPTER,
    llava_next.ADAPTER,
    llava_onevision.ADAPTER,
    idefics2.ADAPTER,
    paddleocr_vl.ADAPTER,
    deepseek_ocr2.ADAPTER,
    minicpmv4_6.ADAPTER,
    deepseek_vl.ADAPTER,
    aya_vision.ADAPTER,
    paligemma.ADAPTER,
)

_BY_CLASS = {cls: adapter for adapter in BUILTIN_ADAPTERS for cls in adapter.processor_classes}


def adapter_for_class(cls: type) -> ModelAdapter | None:
    """The built-in adapter of a processor class (or of its nearest base class that has one)."""
    for klass in cls.__mro__:
        found = _BY_CLASS.get(klass.__name__)
        if found is not None:
            return found
    return None


@hookimpl(trylast=True)
def umi_model_adapter(processor: Any, config: Any) -> ModelAdapter | None:
    return adapter_for_class(type(processor))
