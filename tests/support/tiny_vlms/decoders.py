"""Pixel decoders: ``Tiny.decode(batch)`` reads the coded images of ``tiles.make_tile_image`` back
from a family's batch (the processor's normalisation undone), in the order the model consumes them,
as ``[(row, index), ...]``; and ``Tiny.images_in_batch`` counters. A family's row of the table names
its decoder factory (image processor -> decoder)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: make_tile_image's code (tests/support/tiles.py): channel value 8 + 8 * code, blue 200
_BASE, _STEP, _BLUE = 8, 8, 200


# ------------------------------------------------------------------ generic decoders and counters
def _stats(ip: Any) -> tuple[list, list, float]:
    """(mean, std, rescale) with which ``ip`` normalised (identity where it does not normalise)."""
    mean = ip.image_mean if isinstance(ip.image_mean, (list, tuple)) else [ip.image_mean] * 3
    std = ip.image_std if isinstance(ip.image_std, (list, tuple)) else [ip.image_std] * 3
    if not getattr(ip, "do_normalize", True):
        mean, std = [0.0] * 3, [1.0] * 3
    rescale = float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0
    return list(mean), list(std), rescale


def decode_colour(values: Any, ip: Any) -> tuple[int, int]:
    """``(row, index)`` of a ``tiles.make_tile_image`` image from its pixels ``values`` shaped
    (3, ...) as ``ip`` normalised them: the channel medians, de-normalised, decoded. Raises
    ValueError for anything else (padding, a mix of two images)."""
    import torch

    t = torch.as_tensor(values).detach().float().reshape(3, -1)
    mean, std, rescale = _stats(ip)
    rgb = [(float(t[c].median()) * float(std[c]) + float(mean[c])) / rescale for c in range(3)]
    if abs(rgb[2] - _BLUE) > _STEP / 2:
        raise ValueError(f"not a coded image (pixel {[round(v, 1) for v in rgb]})")
    codes = []
    for v in rgb[:2]:
        c = (v - _BASE) / _STEP
        if abs(c - round(c)) > 0.3:
            raise ValueError(f"not a coded image (pixel {[round(v, 1) for v in rgb]})")
        codes.append(int(round(c)))
    return codes[0], codes[1]


def _runs(codes: list) -> list:
    """Consecutive tiles / views of one image decode to the same code: one entry per run."""
    return [c for i, c in enumerate(codes) if i == 0 or codes[i - 1] != c]


def each(key: str, ip: Any, runs: bool = False, view: Callable[[Any], Any] = lambda img: img) -> Callable[[Any], list]:
    """Decoder for a pixel tensor with one entry (image, tile or view) per first-axis index."""

    def decode(batch: Any) -> list:
        pv = batch.get(key)
        codes = [] if pv is None else [decode_colour(view(img), ip) for img in pv]
        return _runs(codes) if runs else codes

    return decode


def grid(ip: Any, grid_key: str = "image_grid_thw", channels_first: bool = True) -> Callable[[Any], list]:
    """Decoder for Qwen2-VL-style flattened patches: image i owns ``grid[i].prod()`` rows."""

    def decode(batch: Any) -> list:
        pv, grid = batch.get("pixel_values"), batch.get(grid_key)
        out, start = [], 0
        for thw in [] if grid is None else grid.tolist():
            n = thw[0] * thw[1] * thw[2]
            rows = pv[start : start + n].float()
            values = rows.reshape(n, 3, -1).transpose(0, 1) if channels_first else rows.transpose(0, 1)
            out.append(decode_colour(values, ip))
            start += n
        return out

    return decode


def slots(ip: Any) -> Callable[[Any], list]:
    """Decoder for (rows, most images in a row, C, H, W) with zero-padded slots (Idefics2/3, SmolVLM)."""

    def decode(batch: Any) -> list:
        pv = batch.get("pixel_values")
        if pv is None:
            return []
        return [
            decode_colour(pv[r, s], ip)
            for r in range(pv.shape[0])
            for s in range(pv.shape[1])
            if pv[r, s].abs().sum() > 0
        ]

    return decode


def count_slots(batch: Any) -> int:
    pv = batch.get("pixel_values")
    return 0 if pv is None else int((pv.flatten(2).abs().sum(-1) > 0).sum())


def first_axis(key: str = "pixel_values") -> Callable[[Any], int]:
    return lambda batch: 0 if batch.get(key) is None else int(batch[key].shape[0])


# -------------------------------------------------------------------------- decoders of one family
def _first_patch(img: Any) -> Any:
    """LLaVA-NeXT / OneVision: patch 0 of an image is the whole image resized."""
    return img[0]


def each_image(ip: Any) -> Callable[[Any], list]:
    return each("pixel_values", ip)


def each_run(ip: Any) -> Callable[[Any], list]:
    """Tiles / views of one image in a row of the first axis: one entry per run."""
    return each("pixel_values", ip, runs=True)


def each_first_patch(ip: Any) -> Callable[[Any], list]:
    return each("pixel_values", ip, view=_first_patch)


def sized(ip: Any) -> Callable[[Any], list]:
    """Pixtral: (images, 3, H, W) padded, ``image_sizes`` the true sizes."""

    def decode(batch: Any) -> list:
        pv, sizes = batch.get("pixel_values"), batch.get("image_sizes")
        if pv is None:
            return []
        return [decode_colour(img[:, :h, :w], ip) for img, (h, w) in zip(pv, sizes.tolist())]

    return decode


def positioned(ip: Any) -> Callable[[Any], list]:
    """Gemma 4: (images, max patches, P*P*C) channels last, padded patches at position -1."""

    def decode(batch: Any) -> list:
        pv, pos = batch.get("pixel_values"), batch.get("image_position_ids")
        if pv is None:
            return []
        return [decode_colour(img[(p >= 0).all(-1)].reshape(-1, 3).T, ip) for img, p in zip(pv, pos)]

    return decode


def masked(ip: Any) -> Callable[[Any], list]:
    """LFM2-VL: (tiles, max patches, P*P*C) channels last, padded patches masked out."""

    def decode(batch: Any) -> list:
        pv, mask = batch.get("pixel_values"), batch.get("pixel_attention_mask")
        if pv is None:
            return []
        return _runs([decode_colour(img[m.bool()].reshape(-1, 3).T, ip) for img, m in zip(pv, mask)])

    return decode


def navit(ip: Any) -> Callable[[Any], list]:
    """MiniCPM-V 4.6 NaViT packing: pixel_values (1, 3, patch, total_L), each block a (h * w * patch)
    stretch of the last axis; ``target_sizes`` one (h_patches, w_patches) row per block, in order."""

    def decode(batch: Any) -> list:
        pv, sizes = batch.get("pixel_values"), batch.get("target_sizes")
        out, at = [], 0
        for h, w in [] if sizes is None else sizes.tolist():
            n = h * w * pv.shape[2]
            out.append(decode_colour(pv[0, :, :, at : at + n], ip))
            at += n
        return out

    return decode
