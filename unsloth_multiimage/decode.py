"""Turn what a dataset holds for an image into a PIL image, with errors that name the row.

Accepted: PIL images; ``bytes``; local paths (``str`` or ``os.PathLike``); dicts with ``bytes``
and/or ``path`` (the Hugging Face ``datasets`` Image layout); ``http(s)://`` URLs only when
``allow_urls`` is on (off by default: no network access behind the user's back).
Decoded images are EXIF-transposed, as a photo viewer shows them.
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping

from .images import ImageCountError

__all__ = ["ImageLoadError", "load_image", "needs_decoding"]


class ImageLoadError(ValueError):
    """An image of an example could not be loaded (the message names the row and position)."""


def needs_decoding(obj: Any) -> bool:
    """True for anything but an already-loaded image object."""
    return isinstance(obj, (str, bytes, bytearray, os.PathLike, Mapping))


def _where(row: int, index: int) -> str:
    return f"row {row}, image {index}"


def load_image(obj: Any, row: int, index: int, *, allow_urls: bool = False, timeout: float = 10.0) -> Any:
    """Load one image. Raises :class:`ImageLoadError` naming ``row`` and ``index`` on failure."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(obj, Image.Image):
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
                f"{sorted(obj)}). Fix: store the image bytes or a local file path."
            )
    if isinstance(obj, (bytes, bytearray)):
        source, opener = "bytes", lambda: io.BytesIO(obj)
    elif isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        if text.startswith(("http://", "https://")):
            if not allow_urls:
                raise ImageLoadError(
                    f"unsloth_multiimage: {_where(row, index)} is a URL ({text[:80]}); URLs are not fetched unless "
                    f"you opt in. Fix: download the images first, or set UNSLOTH_MULTIIMAGE_ALLOW_URLS=1 "
                    f"(configure(allow_urls=True))."
                )
            source, opener = text, lambda: _fetch(text, timeout, row, index)
        elif text.startswith("data:") or "://" in text[:16]:
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
    try:
        with opener() as fh:
            image = Image.open(fh)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} cannot be decoded from {source if len(source) < 80 else source[:77] + '...'}: "
            f"{exc}. Fix: re-encode or remove that image (and its placeholder)."
        ) from exc
    return ImageOps.exif_transpose(image)


def _fetch(url: str, timeout: float, row: int, index: int) -> io.BytesIO:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (opt-in only)
            return io.BytesIO(response.read())
    except Exception as exc:
        raise ImageLoadError(f"unsloth_multiimage: {_where(row, index)}: fetching {url} failed: {exc}") from exc


# Re-exported so callers can catch every per-row error with one class.
RowError = (ImageCountError, ImageLoadError)
