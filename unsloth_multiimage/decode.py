"""Turn what a dataset holds for an image into a PIL image, with errors that name the row.

Accepted: PIL images; ``bytes``; local paths (``str`` or ``os.PathLike``); dicts with ``bytes``
and/or ``path`` (the Hugging Face ``datasets`` Image layout); ``http(s)://`` URLs only when
``allow_urls`` is on (off by default: no network access behind the user's back); numpy arrays
and torch tensors are passed on as they are (the processor reads them).

Every image that is not already a plain RGB PIL image is normalised the way the Mllama image
processor would read it, minus its silent failures:

- EXIF orientation is applied (as a photo viewer shows the image), also for images that were
  already opened;
- palette / RGBA / LA images are composited on white (what ``convert_to_rgb`` of the
  transformers image processors does); CMYK, L, 1, YCbCr ... are converted to RGB;
- 16-bit and 32-bit integer images (``I;16*``, ``I``) are scaled to 8 bits (``v / 257``):
  the processors clip them to white;
- float images (``F``) with values in [0, 1] are scaled by 255; other ranges raise (ambiguous);
- an image with a side under :data:`MIN_SIDE` pixels raises (0x0 fails deep in the processor;
  a 1- or 3-pixel-high image is read channels-first by transformers 4.x: silently garbage).

Every failure raises :class:`ImageLoadError` (a ``ValueError``) naming the row and the image.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Mapping


__all__ = ["ImageLoadError", "load_image", "needs_decoding", "MIN_SIDE", "MAX_URL_BYTES"]

#: Smallest width/height accepted (see the module docstring).
MIN_SIDE = 4
#: Most bytes read from one opted-in URL.
MAX_URL_BYTES = 64 * 1024 * 1024

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageLoadError(ValueError):
    """An image of an example could not be loaded (the message names the row and position)."""


def _pil_image_class() -> Any:
    module = sys.modules.get("PIL.Image")
    return getattr(module, "Image", None) if module is not None else None


def _is_array(obj: Any) -> bool:
    kind = type(obj)
    return (kind.__module__ == "numpy" and kind.__name__ == "ndarray") or (
        kind.__module__.startswith("torch") and kind.__name__ == "Tensor"
    )


def _orientation(image: Any) -> int:
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # unreadable EXIF: nothing to apply
        return 1


def needs_decoding(obj: Any) -> bool:
    """False only for an image the processor reads as it is: an RGB PIL image with sides of at
    least :data:`MIN_SIDE` and no EXIF rotation, or a non-empty 2-D/3-D array. Anything else goes
    through :func:`load_image` (which loads, normalises, or raises naming the row)."""
    pil = _pil_image_class()
    if pil is not None and isinstance(obj, pil):
        return obj.mode != "RGB" or min(obj.size) < MIN_SIDE or _orientation(obj) != 1
    if _is_array(obj):
        shape = tuple(obj.shape)
        return len(shape) not in (2, 3) or 0 in shape
    return True


def _where(row: int, index: int) -> str:
    return f"row {row}, image {index}"


def load_image(obj: Any, row: int, index: int, *, allow_urls: bool = False, timeout: float = 10.0) -> Any:
    """Load one image. Raises :class:`ImageLoadError` naming ``row`` and ``index`` on failure."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(obj, Image.Image):
        return _normalise(obj, row, index)
    if _is_array(obj):
        shape = tuple(obj.shape)
        if len(shape) not in (2, 3) or 0 in shape:
            raise ImageLoadError(
                f"unsloth_multiimage: {_where(row, index)} is an array of shape {shape}, not an image. Fix: pass "
                f"a (height, width[, channels]) array with no empty side, or a PIL image."
            )
        return obj
    if isinstance(obj, Mapping):
        data, path = obj.get("bytes"), obj.get("path")
        if data is not None:
            obj = data
        elif path is not None:
            obj = path
        else:
            raise ImageLoadError(
                f"unsloth_multiimage: {_where(row, index)} is a dict without 'bytes' or 'path' (keys: "
                f"{sorted(map(str, obj))}). Fix: store the image bytes or a local file path."
            )
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        if not data:
            raise ImageLoadError(f"unsloth_multiimage: {_where(row, index)} is empty bytes. Fix: store the image file's bytes.")
        source, opener = f"{len(data)} bytes", lambda: io.BytesIO(data)
    elif isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        lowered = text[:16].lower()
        if lowered.startswith(("http://", "https://")):
            if not allow_urls:
                raise ImageLoadError(
                    f"unsloth_multiimage: {_where(row, index)} is a URL ({text[:80]}); URLs are not fetched unless "
                    f"you opt in. Fix: download the images first, or set UNSLOTH_MULTIIMAGE_ALLOW_URLS=1 "
                    f"(configure(allow_urls=True))."
                )
            data = _fetch(text, timeout, row, index)
            source, opener = text, lambda: io.BytesIO(data)
        elif lowered.startswith("data:") or "://" in text[:16]:
            raise ImageLoadError(
                f"unsloth_multiimage: {_where(row, index)} is an unsupported image reference ({text[:40]}...). "
                f"Fix: use a local path, bytes or a PIL image."
            )
        else:
            if not os.path.isfile(text):
                raise ImageLoadError(
                    f"unsloth_multiimage: {_where(row, index)}: no such image file {text!r}. Fix: correct the path "
                    f"(relative paths are read from {os.getcwd()!r})."
                )
            source, opener = text, lambda: open(text, "rb")
    else:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} is a {type(obj).__name__}, not an image. Fix: use a PIL "
            f"image, bytes, a local path or a dict with 'bytes'/'path'."
        )
    shown = source if len(source) < 80 else source[:77] + "..."
    try:
        with opener() as fh:
            image = Image.open(fh)
            image.load()
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} ({shown}) is too large to decode safely: {exc}. Fix: "
            f"downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} cannot be decoded from {shown}: "
            f"{exc}. Fix: re-encode or remove that image (and its placeholder)."
        ) from exc
    return _normalise(image, row, index)


def _normalise(image: Any, row: int, index: int) -> Any:
    """An RGB image as the processor should see it (see the module docstring), or raise."""
    from PIL import Image, ImageOps

    if _orientation(image) != 1:
        try:
            image = ImageOps.exif_transpose(image)
        except Exception as exc:
            raise ImageLoadError(
                f"unsloth_multiimage: {_where(row, index)} has an EXIF orientation that cannot be applied: {exc}. "
                f"Fix: re-save the image without EXIF orientation."
            ) from exc
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} is {width}x{height} pixels; images need at least "
            f"{MIN_SIDE} pixels per side (an empty image fails in the processor and a 1- or 3-pixel-high one is "
            f"misread by some transformers releases). Fix: remove that image (and its placeholder) or fix it."
        )
    mode = image.mode
    if mode == "RGB":
        return image
    try:
        if mode in _SIXTEEN_BIT:
            import numpy as np

            values = np.asarray(image).astype(np.float64)
            scaled = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
            return Image.fromarray(scaled, mode="L").convert("RGB")
        if mode == "F":
            import numpy as np

            values = np.asarray(image, dtype=np.float64)
            low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
            if not np.isfinite(values).all() or low < 0.0 or high > 1.0:
                raise ImageLoadError(
                    f"unsloth_multiimage: {_where(row, index)} is a floating-point image with values in "
                    f"[{low:g}, {high:g}]; only [0, 1] has an unambiguous meaning. Fix: convert it to 8-bit RGB."
                )
            scaled = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
            return Image.fromarray(scaled, mode="L").convert("RGB")
        if mode in _ALPHA or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except ImageLoadError:
        raise
    except (ValueError, OSError) as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} has pixel mode {mode!r}, which cannot be converted to RGB: "
            f"{exc}. Fix: convert it to RGB yourself."
        ) from exc


def _fetch(url: str, timeout: float, row: int, index: int) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (opt-in only)
            data = response.read(MAX_URL_BYTES + 1)
    except Exception as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)}: fetching {url[:80]} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if len(data) > MAX_URL_BYTES:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)}: {url[:80]} is larger than {MAX_URL_BYTES} bytes. Fix: "
            f"download and downscale it first."
        )
    return data

