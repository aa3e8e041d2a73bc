"""Mllama's cross-attention mask, "latest" (upstream's) or "cumulative", as a pure function.

Upstream (``transformers.models.mllama.processing_mllama``: ``get_cross_attention_token_mask`` and
``convert_sparse_cross_attention_mask_to_dense``, the same on every supported release): image ``j`` (the
``j``-th ``<|image|>`` token of a row, at position ``p_j``) is attended from its own token up to
the next ``<|image|>`` token; a run of consecutive image tokens is a group that all attend up to
the next image token after the run; the last group attends to the end of the padded sequence
(trailing padding included); tokens before the first ``<|image|>`` attend to nothing; tiles past an
image's ``num_tiles`` are 0; a text-only row is all 0. So a question asked in a later turn than
an image does not see that image: only the **latest** group of images before it.

**Cumulative** (:func:`cumulative_cross_attention_mask`): token ``t`` attends every slot ``j``
whose ``<|image|>`` token is at ``p_j <= t``, on that slot's real tiles. Every text token sees
every image shown before it in the conversation.

For a row whose image tokens form one group of consecutive tokens (the usual single-turn prompt)
and for a text-only row, both masks are the same tensor: upstream gives slot ``j`` the range
``[p_j, seq_len)``, which is ``{t : t >= p_j}``; a text-only row has no slot and stays 0.

Generation keeps working: Mllama's ``_update_model_kwargs_for_generation`` extends the mask by
repeating its last position, which in the cumulative mask is "every image shown".

Only torch is needed (imported on call); numpy arrays and lists come back as numpy arrays.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LATEST", "CUMULATIVE", "cumulative_cross_attention_mask", "real_tiles"]

#: upstream's mask: each text token sees the latest group of images before it (the default).
LATEST = "latest"
#: every text token sees every image shown before it.
CUMULATIVE = "cumulative"


def real_tiles(aspect_ratio_ids: Any, aspect_ratio_mask: Any) -> Any:
    """``(batch, max_images, max_tiles)`` bool tensor: the real tiles of each image slot.

    ``aspect_ratio_mask`` alone is not enough: the image processor sets tile 0 for every slot,
    padded (empty) slots included; ``aspect_ratio_ids == 0`` marks an empty slot.
    """
    import torch

    return torch.as_tensor(aspect_ratio_mask).bool() & (torch.as_tensor(aspect_ratio_ids) > 0)[..., None]


def _ids_tensor(input_ids: Any, seq_len: int) -> Any:
    """``input_ids`` as a ``(batch, seq_len)`` long tensor; ragged lists (``padding=False``) are
    filled with -1 (never an image id) up to the mask's length, as upstream's dense mask is."""
    import torch

    if isinstance(input_ids, torch.Tensor):
        return input_ids.long()
    rows = [list(map(int, row)) for row in (input_ids.tolist() if hasattr(input_ids, "tolist") else input_ids)]
    if any(len(row) > seq_len for row in rows):
        raise ValueError(f"a row of input_ids is longer than the cross_attention_mask ({seq_len} positions)")
    return torch.tensor([row + [-1] * (seq_len - len(row)) for row in rows], dtype=torch.long).reshape(
        len(rows), seq_len
    )


def cumulative_cross_attention_mask(
    input_ids: Any, image_token_id: int, cross_attention_mask: Any, tiles: Any = None
) -> Any:
    """The cumulative cross-attention mask, same shape, dtype and type as ``cross_attention_mask``.

    Args:
        input_ids: ``(batch, seq_len)`` token ids as the processor returned them (any padding
            side; a tensor, an array, or lists, ragged when the processor did not pad).
        image_token_id: the id of ``<|image|>`` (``processor.image_token_id``).
        cross_attention_mask: upstream's ``(batch, seq_len, max_images, max_tiles)`` mask (a torch
            tensor or a numpy array).
        tiles: optional ``(batch, max_images, max_tiles)`` real-tile mask (:func:`real_tiles`).
            Default: read from ``cross_attention_mask`` at each slot's own image token, where
            upstream always marks exactly that slot's real tiles (so nothing else is needed).

    Slot ``j`` of a row is the row's ``j``-th ``<|image|>`` token (the processor's convention);
    image tokens past ``max_images`` are ignored and slots without a token stay 0.
    """
    import torch

    was_tensor = isinstance(cross_attention_mask, torch.Tensor)
    cam = cross_attention_mask if was_tensor else torch.as_tensor(cross_attention_mask)
    if cam.dim() != 4:
        raise ValueError(
            f"cross_attention_mask must be (batch, seq_len, max_images, max_tiles), got shape {tuple(cam.shape)}"
        )
    batch, seq_len, max_images, max_tiles = cam.shape
    ids = _ids_tensor(input_ids, seq_len).to(cam.device)
    if tuple(ids.shape) != (batch, seq_len):
        raise ValueError(f"input_ids {tuple(ids.shape)} does not match cross_attention_mask {tuple(cam.shape)}")

    is_image = ids == int(image_token_id)
    slot = is_image.long().cumsum(dim=1) - 1  # the slot of each image token
    rows, positions = is_image.nonzero(as_tuple=True)
    slots = slot[rows, positions]
    keep = slots < max_images
    rows, positions, slots = rows[keep], positions[keep], slots[keep]

    # p_j, the position of slot j's image token; seq_len ("never") for a slot without one.
    first = torch.full((batch, max_images), seq_len, dtype=torch.long, device=cam.device)
    first[rows, slots] = positions
    if tiles is None:
        real = torch.zeros((batch, max_images, max_tiles), dtype=torch.bool, device=cam.device)
        real[rows, slots] = cam[rows, positions, slots].bool()
    else:
        real = torch.as_tensor(tiles, device=cam.device).bool()
    seen = torch.arange(seq_len, device=cam.device)[None, :, None] >= first[:, None, :]  # (batch, seq, images)
    out = (seen[..., None] & real[:, None]).to(cam.dtype)
    return out if was_tensor else out.numpy()
