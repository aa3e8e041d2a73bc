"""Built-in plugin: the two patches packed training batches need (:mod:`unsloth_multiimage.collate.packing`).

``trainer_packing`` wraps ``transformers.Trainer.get_train_dataloader``: under
``configure(packing=True)`` the training dataloader's ``collate_fn`` becomes a
:class:`~unsloth_multiimage.collate.train_packing.PackingCollate` that names the trainer's model
while it runs, so the patched zoo collator packs that batch for that model. Evaluation and
prediction dataloaders are not touched: their batches stay unpacked. With packing off the
dataloader is returned unchanged.

``mllama_packed_cross_attention`` wraps Mllama's ``_prepare_cross_attention_mask``: a token whose
cross-attention mask row is empty attends to every vision token of its batch row (upstream zeroes
the whole row of biases and gates only the MLP off), which in a packed row would be every
document's images. A packed batch marks each document's own slots
(:data:`~unsloth_multiimage.collate.pack_images.OWN_SLOT`); for such a token the wrapper keeps the
attention on exactly those, as in the padded batch. A mask without the mark (every unpacked
batch) goes to upstream untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..collate.pack_images import GUARD_MARK, OWN_SLOT
from ..collate.train_packing import PackingCollate
from ..engine.decision import Decision, StrEnum
from ..engine.patching import Patch, Wrapper, signature_accepts
from ..hooks import hookimpl
from ..settings import get_settings

__all__ = ["TrainerFix", "MllamaFix", "umi_patches"]

TRAINER_PATCH = "trainer_packing"
MLLAMA_PATCH = "mllama_packed_cross_attention"


class TrainerFix(StrEnum):
    """What ``trainer_packing`` adds (its version range: ``compat_table.toml``)."""

    PACKED_TRAIN_BATCHES = "packed_train_batches"


class MllamaFix(StrEnum):
    """What ``mllama_packed_cross_attention`` repairs (its version range: ``compat_table.toml``)."""

    PACKED_DOCUMENTS = "packed_documents"


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name=TRAINER_PATCH,
            module="transformers.trainer",
            attribute="Trainer.get_train_dataloader",
            make_wrapper=make_trainer_wrapper,
            shape_check=lambda call: signature_accepts(call),
            fixes=tuple(TrainerFix),
        ),
        Patch(
            name=MLLAMA_PATCH,
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
        if instance is None or not get_settings().packing:
            return loader
        # accelerate's prepared loader iterates the DataLoader it wraps (DataLoaderAdapter.base_dataloader).
        inner = loader
        while getattr(inner, "base_dataloader", None) is not None:
            inner = inner.base_dataloader
        collate_fn = getattr(inner, "collate_fn", None)
        if collate_fn is not None and not isinstance(collate_fn, PackingCollate):
            inner.collate_fn = PackingCollate(collate_fn, instance.model)
        return loader

    return wrapper


def _own_slots(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import torch

    mask = args[0] if args else kwargs.get("cross_attention_mask")
    if not isinstance(mask, torch.Tensor) or not bool((mask == OWN_SLOT).any()):
        return wrapped(*args, **kwargs)
    own_set = mask != 0  # the document's own slots: attended (1) or marked (OWN_SLOT)
    real = mask.masked_fill(mask == OWN_SLOT, 0)
    if args:
        args = (real, *args[1:])
    else:
        kwargs = {**kwargs, "cross_attention_mask": real}
    biases, full_row = wrapped(*args, **kwargs)
    vision_tokens = args[1] if len(args) > 1 else kwargs["num_vision_tokens"]
    rows, length = int(mask.shape[0]), int(mask.shape[1])
    own = own_set.repeat_interleave(int(vision_tokens), dim=3).reshape(rows, length, -1).unsqueeze(1)
    own = own.to(biases.device)
    restricted = torch.zeros_like(biases).masked_fill(~own, torch.finfo(biases.dtype).min)
    # Upstream zeroed the biases of a row with nothing to attend (attend everything); keep it on its own slots.
    empty = (full_row == 0) & own.any(dim=-1, keepdim=True)
    return torch.where(empty, restricted, biases), full_row


setattr(_own_slots, GUARD_MARK, True)


def make_mllama_wrapper(decision: Decision) -> Wrapper:
    """``_prepare_cross_attention_mask`` that keeps a packed document's empty mask rows on its own slots."""
    return _own_slots
