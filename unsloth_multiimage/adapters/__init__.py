"""Model adapters: what the patches need to know about one processor family.

A plugin answers the ``umi_model_adapter(processor, config)`` hook with a :class:`ModelAdapter`
for the processors it knows. Each built-in family is its own plugin module in this package,
registered through the ``unsloth_multiimage`` entry points like a third party's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ["ModelAdapter", "adapter_for", "processor_is", "id_list", "token_id"]

logger = logging.getLogger("unsloth_multiimage")
_warned: set[str] = set()


@dataclass(frozen=True)
class ModelAdapter:
    """What the patches need to know about one processor family.

    Attributes:
        name: family name shown by ``doctor`` (e.g. ``"mllama"``).
        placeholder: the string one image leaves in the rendered chat text, before the
            processor expands it (``"<|image|>"`` for Mllama).
        count_in_ids: optional ``count_in_ids(processor, ids) -> int``: images represented in
            one row of ``input_ids`` after processing (used to catch truncation).
        multi_image: whether the model takes several images per sample natively.
        nesting: how the processor wants a batch's images: ``"per_row"`` (one list per text,
            ``[]`` for a text-only row), ``"flat"`` (every image in placeholder order, one list),
            or None (keep the layout the installed collator release uses).
        notes: family quirks, for humans.
    """

    name: str
    placeholder: str
    count_in_ids: Optional[Callable[[Any, Any], int]] = None
    multi_image: bool = True
    nesting: Optional[str] = None
    notes: str = ""


def processor_is(processor: Any, *class_names: str) -> bool:
    """True if ``processor``'s class or a base class has one of ``class_names`` (no import needed)."""
    return any(cls.__name__ in class_names for cls in type(processor).__mro__)


def id_list(ids: Any) -> list[int]:
    """One row of ``input_ids`` (tensor, array or list) as a list of ints."""
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def token_id(processor: Any, id_attr: str, token: str) -> int:
    """``processor.<id_attr>`` when the processor has it, else the tokenizer's id for ``token``."""
    found = getattr(processor, id_attr, None)
    if found is not None:
        return found
    return getattr(processor, "tokenizer", processor).convert_tokens_to_ids(token)


def adapter_for(processor: Any, config: Any = None) -> ModelAdapter | None:
    """The adapter for ``processor``: a plugin's answer, else ``processor.image_token`` as the
    placeholder, else None (the per-row token check is then skipped, with one warning)."""
    from ..activation import plugin_manager

    found = plugin_manager().hook.umi_model_adapter(processor=processor, config=config)
    if found is not None:
        return found
    token = getattr(processor, "image_token", None)
    if isinstance(token, str) and token:
        return ModelAdapter(name=f"fallback:{type(processor).__name__}", placeholder=token)
    name = type(processor).__name__
    if name not in _warned:
        _warned.add(name)
        logger.warning(
            "unsloth_multiimage: no model adapter knows %s and it has no image_token; the per-row check of "
            "image placeholders is skipped for it (images are still aligned per row)",
            name,
        )
    return None
