"""The image tensors of a packed batch, laid out in document order.

Unit keys, per-image keys and count keys are concatenated document after document over the whole
batch (the order in which the model hands image features to image tokens). Slot keys give each
packed sequence its documents' slots side by side.

Mllama's cross-attention (``cross_attention_key``) needs more: a token whose mask row is empty
(every token before a row's first image, every token of a text-only row) is not left out of the
cross-attention but attends to EVERY vision token of its batch row (``_prepare_cross_attention_mask``
zeroes the whole mask row and gates only the MLP, on every supported release). In a padded
batch that row is the document's own images plus the row's empty padding slots; in a packed row it
would be every document's images. So each document gets, beside its own slots, as many copies of
the padded batch's empty slot as its padded row had, and its tokens mark all of those slots with
:data:`OWN_SLOT` where they do not attend; the ``mllama_packed_cross_attention`` patch keeps a token
with an empty mask row on exactly its marked slots (identical keys and values as in the padded row).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..adapters import PackingFacts
from ..engine.decision import StrEnum
from .pack_attention import PackingRefused
from .pack_context import packing_off
from .pack_plan import PackPlan
from .pack_split import RowShare

__all__ = [
    "OWN_SLOT",
    "MllamaFix",
    "place_slots",
    "place_images",
    "check_own_slots",
    "own_slots_guarded",
    "own_slot_cross_attention",
]


class MllamaFix(StrEnum):
    """What the ``mllama_packed_cross_attention`` patch repairs (``[patches.mllama_packed_cross_attention]``)."""

    PACKED_DOCUMENTS = "packed_documents"


#: cross-attention mask value of a slot that belongs to the token's document but is not attended:
#: where the token attends nothing, it attends these slots (the patch reads it)
OWN_SLOT = 2
#: the function of a cross-attention model module that turns the mask into attention biases
PREPARE = "_prepare_cross_attention_mask"
#: attribute the packing patch sets on its wrapper function
GUARD_MARK = "umi_own_slots"


def own_slots_guarded(function: Any) -> bool:
    """Whether ``function`` is wrapped by the patch that reads :data:`OWN_SLOT`."""
    return bool(getattr(getattr(function, "_self_wrapper", None), GUARD_MARK, False))


def check_own_slots(model: Any, family: str) -> None:
    """Refuse unless the model's cross-attention mask function is wrapped by the packing patch."""
    modules = {type(m).__module__ for m in model.modules()} if hasattr(model, "modules") else set()
    for name in sorted(modules):
        function = getattr(sys.modules.get(name), PREPARE, None)
        if function is not None:
            if own_slots_guarded(function):
                return
            break
    raise PackingRefused(
        f"unsloth_multiimage: packing {family} is refused: the mllama_packed_cross_attention patch is not in place "
        f"(disabled, or transformers' {PREPARE} not found), and without it a token before a document's first image "
        f"would attend to every document's images. Fix: leave that patch enabled (UNSLOTH_MULTIIMAGE_DISABLE_PATCHES), "
        f"or turn packing off ({packing_off()})."
    )


def _empty_slot(batch: Mapping[str, Any], keys: Sequence[str], shares: Sequence[RowShare]) -> dict[str, Any] | None:
    """One empty (padding) slot of the padded batch, per slot key; None when every slot is used."""
    width = int(batch[keys[0]].shape[1])
    for share in shares:
        free = [j for j in range(width) if j not in share.slots]
        if free:
            return {k: batch[k][share.row, free[0]] for k in keys}
    return None


def place_slots(
    batch: Mapping[str, Any], facts: PackingFacts, plan: PackPlan, shares: Sequence[RowShare], out: dict[str, Any]
) -> None:
    """Slot keys (and the cross-attention mask): each sequence's slots are its documents' slots, in order."""
    keys = [k for k in facts.slot_keys if batch.get(k) is not None]
    if not keys:
        return
    cross = facts.cross_attention_key if batch.get(facts.cross_attention_key or "") is not None else None
    padded_width = int(batch[keys[0]].shape[1])
    empty = _empty_slot(batch, keys, shares) if cross else None
    # Copies of the empty slot a sequence needs: its documents' padded rows had this many (see above).
    copies = [
        max((padded_width - len(shares[r].slots) for r in seq), default=0) if empty is not None else 0
        for seq in plan.sequences
    ]
    width = max(
        max((sum(len(shares[r].slots) for r in seq) + c for seq, c in zip(plan.sequences, copies)), default=0), 1
    )
    for key in keys:
        source = batch[key]
        packed = source.new_zeros((len(plan.sequences), width, *source.shape[2:]))
        for s, seq in enumerate(plan.sequences):
            at = 0
            for r in seq:
                slots = list(shares[r].slots)
                packed[s, at : at + len(slots)] = source[r, slots]
                at += len(slots)
            if empty is not None:
                packed[s, at : at + copies[s]] = empty[key]
        out[key] = packed
    if "aspect_ratio_mask" in out and "aspect_ratio_ids" in out:
        # The image processor marks tile 0 of every slot, empty slots included (Mllama): so do the new ones.
        out["aspect_ratio_mask"][..., 0][out["aspect_ratio_ids"] == 0] = 1
    if cross is not None:
        _place_cross_attention(batch, cross, plan, shares, out, width, padded_width, copies)


def _place_cross_attention(
    batch: Mapping[str, Any],
    key: str,
    plan: PackPlan,
    shares: Sequence[RowShare],
    out: dict[str, Any],
    width: int,
    padded_width: int,
    copies: Sequence[int],
) -> None:
    import torch

    source = batch[key]
    seq_len = int(out["input_ids"].shape[1])
    packed = source.new_zeros((len(plan.sequences), seq_len, width, *source.shape[3:]))
    for s, seq in enumerate(plan.sequences):
        slot_at = 0
        token = 0
        empty_at = sum(len(shares[r].slots) for r in seq)
        for r in seq:
            share, slots = shares[r], list(shares[r].slots)
            block = source[r, share.start : share.stop][:, slots]
            rows = slice(token, token + share.length)
            packed[s, rows, slot_at : slot_at + len(slots)] = torch.where(block > 0, block, OWN_SLOT)
            if copies[s]:
                packed[s, rows, empty_at : empty_at + padded_width - len(slots)] = OWN_SLOT
            slot_at += len(slots)
            token += share.length
    out[key] = packed


def place_images(
    batch: Mapping[str, Any], facts: PackingFacts, plan: PackPlan, shares: Sequence[RowShare], out: dict[str, Any]
) -> None:
    """Unit keys, per-image keys and count keys, in packed document order."""
    import torch

    order = [shares[r] for seq in plan.sequences for r in seq]
    for keys, span in ((facts.unit_keys, "units"), (facts.image_keys, "image_range")):
        for key in keys:
            source = batch.get(key)
            if source is None:
                continue
            parts = [source[getattr(sh, span)[0] : getattr(sh, span)[1]] for sh in order]
            out[key] = torch.cat(parts, dim=0) if parts else source[:0]
    for key in facts.count_keys:
        source = batch.get(key)
        if source is not None:
            out[key] = torch.tensor([sh.images for sh in order if sh.images], dtype=source.dtype)


def own_slot_cross_attention(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Mllama's ``_prepare_cross_attention_mask`` (wrapped) on a packed batch's mask: a token whose
    mask row is empty keeps to its own document's slots (:data:`OWN_SLOT` marks them), where
    upstream would let it attend every vision token of the packed row. A mask without the mark
    (every unpacked batch) goes to upstream untouched."""
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


setattr(own_slot_cross_attention, GUARD_MARK, True)
