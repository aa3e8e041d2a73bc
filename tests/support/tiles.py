"""Coded test images: a solid-colour image whose pixels say ``(row, index)``, and the decoder that
reads those numbers back from a ``pixel_values`` tile, so a test can check which image landed in
which slot after the processor's resize, rescale and normalisation (of the tiny Mllama's processor,
``unsloth_multiimage.tiny_mllama``; tiny_vlms.decode_colour reads them for every other family).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["TILE_MAX_CODE", "decode_tile", "make_tile_image"]

# Pixel encoding used by make_tile_image / decode_tile (0..255 scale).
_TILE_BASE = 8
_TILE_STEP = 8
_TILE_MARKER_BLUE = 200
#: Largest ``row`` / ``index`` that ``make_tile_image`` can encode.
TILE_MAX_CODE: int = (255 - _TILE_BASE) // _TILE_STEP  # 30
# OpenAI CLIP statistics: the MllamaImageProcessor defaults on every release.
_DEFAULT_MEAN = (0.48145466, 0.4578275, 0.40821073)
_DEFAULT_STD = (0.26862954, 0.26130258, 0.27577711)


def _image_processor_of(processor: Any) -> Any:
    return getattr(processor, "image_processor", processor)


def make_tile_image(row: int, index: int, size: tuple[int, int] = (28, 28)):
    """Make a solid-colour RGB image whose colour encodes ``(row, index)``.

    Red = 8 + 8*row, green = 8 + 8*index, blue = 200 (a marker that tells a real image
    from the processor's zero padding). A solid colour survives any resize, the rescale
    and the normalisation exactly, so :func:`decode_tile` can recover both numbers from
    the first tile of any slot.

    Args:
        row: batch row (sample) number, 0..TILE_MAX_CODE.
        index: image number inside the row, 0..TILE_MAX_CODE.
        size: ``(width, height)`` in pixels, as PIL uses it.
    """
    from PIL import Image

    for name, value in (("row", row), ("index", index)):
        if not 0 <= int(value) <= TILE_MAX_CODE:
            raise ValueError(f"{name} must be in 0..{TILE_MAX_CODE}, got {value}")
    colour = (_TILE_BASE + _TILE_STEP * int(row), _TILE_BASE + _TILE_STEP * int(index), _TILE_MARKER_BLUE)
    return Image.new("RGB", (int(size[0]), int(size[1])), colour)


def decode_tile(
    pixel_values_tile: Any,
    processor: Any | None = None,
    *,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> tuple[int, int]:
    """Recover ``(row, index)`` from a tile of an image made by :func:`make_tile_image`.

    Args:
        pixel_values_tile: ``pixel_values[b, slot, tile]`` (normally ``tile=0``), shape
            ``(3, H, W)``; a torch tensor or anything ``numpy.asarray`` accepts.
        processor: an ``MllamaProcessor`` or ``MllamaImageProcessor`` whose
            ``image_mean`` / ``image_std`` (and ``rescale_factor``) undo the normalisation.
            Defaults to the CLIP statistics that ``MllamaImageProcessor`` uses.
        image_mean: explicit per-channel mean (overrides ``processor``).
        image_std: explicit per-channel std (overrides ``processor``).

    Raises:
        ValueError: the tile is padding (all zeros before de-normalisation) or was not
            made by :func:`make_tile_image`.
    """
    import numpy as np

    tile = pixel_values_tile
    if hasattr(tile, "detach"):
        tile = tile.detach().to("cpu").float().numpy()
    arr = np.asarray(tile, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tile, got shape {arr.shape}")

    rescale = 1.0 / 255.0
    mean: Sequence[float] = _DEFAULT_MEAN
    std: Sequence[float] = _DEFAULT_STD
    if processor is not None:
        ip = _image_processor_of(processor)
        mean = getattr(ip, "image_mean", None) or mean
        std = getattr(ip, "image_std", None) or std
        rescale = float(getattr(ip, "rescale_factor", None) or rescale)
    if image_mean is not None:
        mean = image_mean
    if image_std is not None:
        std = image_std
    mean_a = np.asarray(mean, dtype=np.float64).reshape(3)
    std_a = np.asarray(std, dtype=np.float64).reshape(3)

    # Top-left corner: always image content (Mllama pads to the right and bottom).
    height, width = arr.shape[1], arr.shape[2]
    corner = arr[:, : max(1, height // 4), : max(1, width // 4)].reshape(3, -1)
    normalised = np.median(corner, axis=1)
    pixel = (normalised * std_a + mean_a) / rescale  # back to the 0..255 scale
    red, green, blue = (float(v) for v in pixel)

    not_ours = f"tile was not made by make_tile_image (pixel {red:.1f}, {green:.1f}, {blue:.1f})"
    if abs(blue - _TILE_MARKER_BLUE) > _TILE_STEP / 2:
        if np.allclose(arr, 0.0):
            raise ValueError("tile is padding (all zeros): no image in this slot/tile")
        raise ValueError(not_ours)
    codes = []
    for value in (red, green):
        code = (value - _TILE_BASE) / _TILE_STEP
        nearest = round(code)
        if abs(code - nearest) > 0.25 or not 0 <= nearest <= TILE_MAX_CODE:
            raise ValueError(not_ours)
        codes.append(nearest)
    return codes[0], codes[1]
