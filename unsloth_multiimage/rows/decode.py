"""Turn what a dataset holds for an image into a PIL image, with errors that name the row.

Accepted: PIL images; ``bytes``; local paths (``str`` or ``os.PathLike``); dicts with ``bytes``
and/or ``path`` (the Hugging Face ``datasets`` Image layout); ``http(s)://`` URLs only when
``allow_urls`` is on (off by default: no network access behind the user's back); numpy arrays
and torch tensors (see :func:`array_to_image`).

Every image that is not already a plain RGB PIL image is normalised the way the Mllama image
processor would read it, minus its silent failures:

- EXIF orientation is applied (as a photo viewer shows the image), also for images that were
  already opened;
- palette / RGBA / LA images are composited on white (what ``convert_to_rgb`` of the
  transformers image processors does); CMYK, L, 1, YCbCr ... are converted to RGB;
- 16-bit and 32-bit integer images (``I;16*``, ``I``) are scaled to 8 bits (``v / 257``):
  the processors clip them to white;
- float images (``F``) with values in [0, 1] are scaled by 255; other ranges raise (ambiguous);
- an image with a side under :data:`MIN_SIDE` pixels (but not empty) is enlarged, nearest
  neighbour, to :data:`MIN_SIDE` on that side (logged once per process): a 1- or 3-pixel-high
  image is read channels-first by transformers 4.x (silently garbage), and every processor
  resizes anyway; an image with no pixels (a side of 0) raises: no image processor can take it.

Every failure raises :class:`ImageLoadError` (a ``ValueError``) naming the row and the image.

Arrays and tensors become PIL images the way transformers' image processors read arrays
(``infer_channel_dimension_format``: channels first when the first axis is 1, 3 or 4 channels,
else channels last), so that every collator release, which resizes PIL images, can take them:
``(H, W)``, ``(H, W, C)`` and ``(C, H, W)`` with C in 1, 3, 4; ``uint8`` as is, floating point in
[0, 1] scaled by 255 (the processors would rescale it a second time: a black image). Other
dtypes, value ranges and shapes raise.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from ..errors import ImageLoadError

__all__ = [
    "ImageLoadError",
    "array_to_image",
    "data_uri_bytes",
    "file_uri_path",
    "load_image",
    "needs_decoding",
    "to_rgb",
    "MIN_SIDE",
    "MAX_URL_BYTES",
]

#: Smallest width/height sent on: smaller sides are enlarged to it (see the module docstring).
MIN_SIDE = 4
#: Most bytes read from one opted-in URL.
MAX_URL_BYTES = 64 * 1024 * 1024

logger = logging.getLogger("unsloth_multiimage")

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


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
    """False only for an image every release reads as it is: an RGB PIL image with sides of at
    least :data:`MIN_SIDE` and no EXIF rotation. Anything else goes through :func:`load_image`
    (which loads, normalises, or raises naming the row)."""
    pil = _pil_image_class()
    if pil is not None and isinstance(obj, pil):
        return obj.mode != "RGB" or min(obj.size) < MIN_SIDE or _orientation(obj) != 1
    return True


def _where(row: int, index: int) -> str:
    return f"row {row}, image {index}"


def load_image(
    obj: Any, row: int, index: int, *, allow_urls: bool = False, timeout: float = 10.0, header_only: bool = False
) -> Any:
    """Load one image. Raises :class:`ImageLoadError` naming ``row`` and ``index`` on failure.

    With ``header_only`` an image file is opened but not decoded: the result has its ``size`` and
    ``mode`` (every check that needs no pixels ran) and cannot be drawn (a dry run of many rows).
    """
    from PIL import Image

    if isinstance(obj, Image.Image):
        return _normalise(obj, row, index)
    if _is_array(obj):
        return _normalise(array_to_image(obj, row, index), row, index)
    if isinstance(obj, Mapping):
        obj = _stored_value(obj, row, index)
    source, opener = _source(obj, row, index, allow_urls, timeout)
    return _decode(opener, source, row, index, header_only)


#: Opens the image file (or its bytes) for PIL.
_Opener = Callable[[], BinaryIO]


def _stored_value(obj: Mapping[str, Any], row: int, index: int) -> Any:
    """The ``bytes`` (else the ``path``) of a ``{"bytes", "path"}`` dict, as ``datasets`` stores an image."""
    stored, path = obj.get("bytes"), obj.get("path")
    if stored is not None:
        return stored
    if path is not None:
        return path
    held = [k for k in ("bytes", "path") if k in obj]
    found = (
        f"a dict whose {' and '.join(repr(k) for k in held)} {'are both' if len(held) == 2 else 'is'} None"
        if held
        else f"a dict without 'bytes' or 'path' (keys: {sorted(map(str, obj))})"
    )
    raise ImageLoadError(
        f"unsloth_multiimage: {_where(row, index)} is {found}. Fix: store the image bytes or a local file path.",
        row=row,
    )


def _source(obj: Any, row: int, index: int, allow_urls: bool, timeout: float) -> tuple[str, _Opener]:
    """Where the image comes from (said in errors) and how to open it, by the kind of ``obj``."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _bytes_source(bytes(obj), row, index)
    if isinstance(obj, (str, os.PathLike)):
        return _text_source(obj, row, index, allow_urls, timeout)
    raise ImageLoadError(
        f"unsloth_multiimage: {_where(row, index)} is a {type(obj).__name__}, not an image. Fix: use a PIL "
        f"image, bytes, a local path or a dict with 'bytes'/'path'.",
        row=row,
    )


def _bytes_source(data: bytes, row: int, index: int) -> tuple[str, _Opener]:
    if not data:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} is empty bytes. Fix: store the image file's bytes.", row=row
        )
    return f"{len(data)} bytes", lambda: io.BytesIO(data)


def _text_source(
    obj: str | os.PathLike[Any], row: int, index: int, allow_urls: bool, timeout: float
) -> tuple[str, _Opener]:
    """A path or URI: a ``file://`` URI is its local path; ``data:``, ``http(s)://`` and plain paths
    each have their own reader; any other scheme is refused."""
    text = os.fspath(obj)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    lowered = text[:16].lower()
    local = file_uri_path(text) if lowered.startswith("file://") else None
    if local is not None:
        text, lowered = local, ""
    if lowered.startswith("data:"):
        return _data_uri_source(text, row, index)
    if lowered.startswith(("http://", "https://")):
        return _url_source(text, row, index, allow_urls, timeout)
    if "://" in text[:16]:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} is an unsupported image reference ({text[:40]}...). "
            f"Fix: use a local path, bytes or a PIL image.",
            row=row,
        )
    return _file_source(text, row, index)


def _data_uri_source(text: str, row: int, index: int) -> tuple[str, _Opener]:
    try:
        data = data_uri_bytes(text)
    except ValueError as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} is {exc}. Fix: use data:image/png;base64,<base64 data>, "
            f"a local path or bytes.",
            row=row,
        ) from None
    return f"a data: URI of {len(data)} bytes", lambda: io.BytesIO(data)


def _url_source(text: str, row: int, index: int, allow_urls: bool, timeout: float) -> tuple[str, _Opener]:
    if not allow_urls:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} is a URL ({text[:80]}); URLs are not fetched unless "
            f"you opt in. Fix: download the images first, or set UNSLOTH_MULTIIMAGE_ALLOW_URLS=1 "
            f"(configure(allow_urls=True)).",
            row=row,
        )
    data = _fetch(text, timeout, row, index)
    return text, lambda: io.BytesIO(data)


def path_hint(path: str) -> str:
    """Where a path that does not exist was looked for, for the "no such file" errors (README,
    "Your data": the one rule for relative paths)."""
    if os.path.isabs(path):
        return (
            " (a path relative in a dataset file is read from the image root: the file's folder, or "
            "--image-root / image_root=; pass the folder the paths are relative to)"
        )
    return (
        f" (rows handed over in memory have their relative paths read from the working directory, {os.getcwd()!r}; "
        f"unsloth_multiimage.formats.resolve_paths joins them to a folder)"
    )


def _file_source(text: str, row: int, index: int) -> tuple[str, _Opener]:
    if not os.path.isfile(text):
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)}: no such image file {text!r}. Fix: correct the path"
            f"{path_hint(text)}.",
            row=row,
        )
    return text, lambda: open(text, "rb")


def _decode(opener: _Opener, source: str, row: int, index: int, header_only: bool) -> Any:
    """The image ``opener`` reads, decoded (only its header with ``header_only``) and normalised;
    ``source`` names it in the error when PIL cannot read it."""
    from PIL import Image, UnidentifiedImageError

    shown = source if len(source) < 80 else source[:77] + "..."
    try:
        with opener() as fh:
            image = Image.open(fh)
            if header_only:
                _refuse_empty(image, row, index)
                return image
            image.load()
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} ({shown}) is too large to decode safely: {exc}. Fix: "
            f"downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file.",
            row=row,
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} cannot be decoded from {shown}: "
            f"{_pil_reason(exc)}. Fix: re-encode or remove that image (and its placeholder).",
            row=row,
        ) from exc
    return _normalise(image, row, index)


def _pil_reason(exc: BaseException) -> str:
    """PIL's message without the repr of its in-memory file (an address that differs on every call)."""
    import re

    return re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)).strip()


def _refuse_empty(image: Any, row: int, index: int) -> None:
    width, height = image.size
    if not (width and height):
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} is {width}x{height} pixels: an image with no pixels, which "
            f"no image processor can take. Fix: remove that image (and its placeholder).",
            row=row,
        )


_enlarged_logged = threading.Event()


def _enlarge_small(image: Any, row: int, index: int) -> Any:
    """``image`` with every side under :data:`MIN_SIDE` enlarged to it, nearest neighbour (pixels
    copied, none invented); said once per process. Upstream trains on such an image on the
    releases whose processors read it right; the enlarged one is read right by every release."""
    from PIL import Image

    width, height = image.size
    if min(width, height) >= MIN_SIDE:
        return image
    size = (max(width, MIN_SIDE), max(height, MIN_SIDE))
    if not _enlarged_logged.is_set():
        _enlarged_logged.set()
        logger.warning(
            "unsloth_multiimage: %s is %dx%d pixels; enlarged to %dx%d (nearest neighbour), the smallest size every "
            "transformers release reads right (a 1- or 3-pixel side is misread as the channel axis by some); "
            "said once, other images this small are enlarged the same way",
            _where(row, index),
            width,
            height,
            *size,
        )
    return image.resize(size, Image.Resampling.NEAREST)


def file_uri_path(uri: str) -> str | None:
    """The local path of a ``file://`` URI (``file:///C:/x`` gives ``C:/x``); None for a remote host."""
    import re
    import urllib.parse

    parsed = urllib.parse.urlsplit(uri)
    if parsed.netloc not in ("", "localhost"):
        return None
    path = urllib.parse.unquote(parsed.path)
    return path[1:] if re.match(r"/[A-Za-z]:[/\\]", path) else path


def data_uri_bytes(uri: str) -> bytes:
    """The bytes of a ``data:`` URI (base64 or percent-encoded); ``ValueError`` saying what is wrong."""
    import base64
    import binascii
    import urllib.parse

    header, sep, data = uri.partition(",")
    if not sep:
        raise ValueError(f"a malformed data URI ({uri[:40]}...): no ','")
    if not header.lower().endswith(";base64"):
        return urllib.parse.unquote_to_bytes(data)
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"a data URI whose base64 data is invalid ({exc})") from None


def _normalise(image: Any, row: int, index: int) -> Any:
    """An RGB image as the processor should see it (see the module docstring), or raise."""
    from PIL import Image, ImageOps

    if _orientation(image) != 1:
        try:
            image = ImageOps.exif_transpose(image)
        except Exception as exc:
            raise ImageLoadError(
                f"unsloth_multiimage: {_where(row, index)} has an EXIF orientation that cannot be applied: {exc}. "
                f"Fix: re-save the image without EXIF orientation.",
                row=row,
            ) from exc
    _refuse_empty(image, row, index)
    image = _enlarge_small(image, row, index)
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
                    f"[{low:g}, {high:g}]; only [0, 1] has an unambiguous meaning. Fix: convert it to 8-bit RGB.",
                    row=row,
                )
            scaled = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
            return Image.fromarray(scaled, mode="L").convert("RGB")
        return to_rgb(image)
    except ImageLoadError:
        raise
    except (ValueError, OSError) as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)} has pixel mode {mode!r}, which cannot be converted to RGB: "
            f"{exc}. Fix: convert it to RGB yourself.",
            row=row,
        ) from exc


def to_rgb(image: Any) -> Any:
    """``image`` in RGB; transparent pixels composited on white (transformers' ``convert_to_rgb``)."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in _ALPHA or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


_CHANNELS = (1, 3, 4)


def array_to_image(obj: Any, row: int, index: int) -> Any:
    """A numpy array or torch tensor as a PIL image (see the module docstring), or raise."""
    import numpy as np
    from PIL import Image

    if hasattr(obj, "detach"):  # torch: bfloat16 and friends have no numpy twin
        tensor = obj.detach().cpu()
        obj = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    array = np.asarray(obj)
    shape = tuple(array.shape)
    what = f"{_where(row, index)} is an array of shape {shape} and dtype {array.dtype}"
    if array.ndim == 3 and shape[0] in _CHANNELS and shape[-1] not in _CHANNELS:
        array = np.moveaxis(array, 0, -1)  # channels first, as the image processors read it
    elif array.ndim == 3 and shape[0] in _CHANNELS and shape[-1] in _CHANNELS:
        raise ImageLoadError(
            f"unsloth_multiimage: {what}: both its first and last axes could be the channels. Fix: pass a PIL "
            f"image, or an array of shape (height, width, channels) with sides of at least {MIN_SIDE} pixels.",
            row=row,
        )
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in _CHANNELS) or 0 in shape:
        raise ImageLoadError(
            f"unsloth_multiimage: {what}, not an image. Fix: pass (height, width), (height, width, channels) or "
            f"(channels, height, width) with 1, 3 or 4 channels, or a PIL image.",
            row=row,
        )
    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        finite = bool(np.isfinite(array).all())
        low, high = (float(array.min()), float(array.max())) if finite else (float("nan"), float("nan"))
        if not finite or low < 0.0 or high > 1.0:
            raise ImageLoadError(
                f"unsloth_multiimage: {what} with values in [{low:g}, {high:g}]; floating-point images must hold "
                f"values in [0, 1]. Fix: scale it to [0, 1], or convert it to uint8.",
                row=row,
            )
        pixels = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageLoadError(
            f"unsloth_multiimage: {what}; only uint8 (0-255) and floating point in [0, 1] have an unambiguous "
            f"meaning. Fix: convert it to uint8, or to a PIL image.",
            row=row,
        )
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return Image.fromarray(np.ascontiguousarray(pixels))  # L, RGB or RGBA from the shape


def _fetch(url: str, timeout: float, row: int, index: int) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (opt-in only)
            data: bytes = response.read(MAX_URL_BYTES + 1)
    except Exception as exc:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)}: fetching {url[:80]} failed: {type(exc).__name__}: {exc}",
            row=row,
        ) from exc
    if len(data) > MAX_URL_BYTES:
        raise ImageLoadError(
            f"unsloth_multiimage: {_where(row, index)}: {url[:80]} is larger than {MAX_URL_BYTES} bytes. Fix: "
            f"download and downscale it first.",
            row=row,
        )
    return data
