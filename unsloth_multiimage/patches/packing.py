"""Built-in plugin: the two patches packed training batches need (the work:
:mod:`unsloth_multiimage.collate.train_packing` and :mod:`unsloth_multiimage.collate.pack_images`).

``trainer_packing`` wraps ``Trainer.get_train_dataloader``: under ``configure(packing=True)`` the
training batches are collated for the trainer's model, so the patched zoo collator packs them;
evaluation and prediction dataloaders stay unpacked. ``mllama_packed_cross_attention`` wraps
Mllama's ``_prepare_cross_attention_mask`` so a packed document's tokens never attend another
document's images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..collate.pack_images import MllamaFix, own_slot_cross_attention
from ..collate.train_packing import TrainerFix, packing_train_loader
from ..plugin import Decision, Patch, Wrapper, hookimpl, signature_accepts

__all__ = ["umi_patches"]


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name="trainer_packing",
            module="transformers.trainer",
            attribute="Trainer.get_train_dataloader",
            make_wrapper=make_trainer_wrapper,
            shape_check=lambda call: signature_accepts(call),
            fixes=tuple(TrainerFix),
        ),
        Patch(
            name="mllama_packed_cross_attention",
            module="transformers.models.mllama.modeling_mllama",
            attribute="_prepare_cross_attention_mask",
            make_wrapper=make_mllama_wrapper,
            shape_check=lambda call: signature_accepts(call, "num_vision_tokens", "dtype", positional=1),
            fixes=tuple(MllamaFix),
        ),
    ]


def make_trainer_wrapper(decision: Decision) -> Wrapper:
    """``get_train_dataloader`` whose loader packs its batches while packing is configured."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loader = wrapped(*args, **kwargs)
        return packing_train_loader(loader, getattr(instance, "model", None))

    return wrapper


def make_mllama_wrapper(decision: Decision) -> Wrapper:
    """``_prepare_cross_attention_mask`` that keeps a packed document's empty mask rows on its own slots."""
    return own_slot_cross_attention
