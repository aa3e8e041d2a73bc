"""Which batch is packed, for which model, and who asked: the context the collator's packing reads.

A collator call is a packed training batch when a model is named for it (:func:`packing_for`: the
``trainer_packing`` patch names the trainer's model inside its training dataloader, unsloth's
``UnslothVisionDataCollator(padding_free=True)`` names the model it was built with, a custom loop
names its own) and packing is asked for (``configure(packing=True)``, or that collator's
``padding_free=True``). Refusals name the switch the user turned on (:func:`packing_off`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from ..settings import get_settings

__all__ = ["packing_for", "packing_model", "packing_requested", "packing_off"]

_MODEL: contextvars.ContextVar[Any] = contextvars.ContextVar("umi_packing_model", default=None)
_PADDING_FREE: contextvars.ContextVar[bool] = contextvars.ContextVar("umi_padding_free", default=False)


def packing_model() -> Any:
    """The model a training batch is being collated for, or None outside a training dataloader."""
    return _MODEL.get()


@contextlib.contextmanager
def packing_for(model: Any, *, padding_free: bool = False) -> Iterator[None]:
    """Collator calls inside the block are training batches for ``model``: packed under
    ``configure(packing=True)``, or always with ``padding_free=True`` (unsloth's collator asked)."""
    model_token = _MODEL.set(model)
    asked_token = _PADDING_FREE.set(padding_free)
    try:
        yield
    finally:
        _PADDING_FREE.reset(asked_token)
        _MODEL.reset(model_token)


def packing_requested() -> bool:
    """True when the batch being collated is to be packed."""
    return _MODEL.get() is not None and (_PADDING_FREE.get() or get_settings().packing)


def packing_off() -> str:
    """The switch that turns this packing off, for the ``Fix:`` of a refusal."""
    if _PADDING_FREE.get():
        return "UnslothVisionDataCollator(padding_free=False)"
    return "configure(packing=False)"
