"""Model adapters: what the patches need to know about one processor family.

Each built-in family is a small data module in this package (``ADAPTER = ModelAdapter(...)``),
listed once in :mod:`unsloth_multiimage.adapters.table`, which answers the ``umi_model_adapter``
hook through this package's entry point like a third party's plugin would. The engine hands the
patches an :class:`AdapterLookup` over that hook: nothing here reaches into the activation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

__all__ = ["ModelAdapter", "AdapterLookup", "Nesting", "processor_is", "id_list", "token_id"]

logger = logging.getLogger("unsloth_multiimage")

#: How a processor wants a batch's images: one list per text row, or one flat list.
Nesting = Literal["per_row", "flat"]


@dataclass(frozen=True)
class ModelAdapter:
    """What the patches need to know about one processor family.

    Attributes:
        name: family name shown by ``doctor`` (e.g. ``"mllama"``).
        placeholder: the string one image leaves in the rendered chat text, before the
            processor expands it (``"<|image|>"`` for Mllama).
        processor_classes: class names of the processors of this family (matched on the
            processor's class and its bases, most derived first; no transformers import).
        count_in_ids: optional ``count_in_ids(processor, ids) -> int``: images represented in
            one row of ``input_ids`` after processing (used to catch truncation).
        multi_image: whether the model takes several images per row; when False the collator
            refuses a row with more than one image (naming it, suggesting the grid strategy).
        nesting: how the processor wants a batch's images: ``"per_row"`` (one list per text,
            ``[]`` for a text-only row), ``"flat"`` (every image in placeholder order, one list),
            or None (keep the layout the installed collator release uses).
    """

    name: str
    placeholder: str
    processor_classes: tuple[str, ...] = ()
    count_in_ids: Optional[Callable[[Any, Any], int]] = None
    multi_image: bool = True
    nesting: Optional[Nesting] = None


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
        return int(found)
    return int(getattr(processor, "tokenizer", processor).convert_tokens_to_ids(token))


class AdapterLookup:
    """Finds the adapter of a processor: the plugins' answer (``umi_model_adapter``), else
    ``processor.image_token`` as the placeholder, else None (the per-row check of placeholders is
    then skipped, with one warning per processor class).

    The engine builds it around the hook caller (``pm.hook.umi_model_adapter``) and hands it to
    the patches that ask for ``adapters``.
    """

    def __init__(self, hook: Callable[..., Optional[ModelAdapter]]) -> None:
        self._hook = hook
        self._warned: set[str] = set()

    def __call__(self, processor: Any, config: Any = None) -> Optional[ModelAdapter]:
        found = self._hook(processor=processor, config=config)
        if found is not None:
            return found
        token = getattr(processor, "image_token", None)
        if isinstance(token, str) and token:
            return ModelAdapter(name=f"fallback:{type(processor).__name__}", placeholder=token)
        name = type(processor).__name__
        if name not in self._warned:
            self._warned.add(name)
            logger.warning(
                "unsloth_multiimage: no model adapter knows %s and it has no image_token; the per-row check of "
                "image placeholders is skipped for it (images are still aligned per row)",
                name,
            )
        return None
