"""Small videos made in code with PyAV (the ``[video]`` extra): each frame a solid colour that codes
``(row, frame index)`` the way :func:`tiles.make_tile_image` codes ``(row, image index)``, so
the family tests' pixel decoders read the frames back from a batch in order.

``lossless`` videos (FFV1 in Matroska, RGB) keep the colours exactly; ``mp4`` (H.264, YUV 4:2:0)
is what datasets ship, and moves colours by a few units (read them back with :func:`nearest_code`).
"""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

av = pytest.importorskip("av", reason="PyAV (the [video] extra) is not installed on this row")
Image = pytest.importorskip("PIL.Image")

#: (container format, codec, pixel format) of each kind of test video
KINDS = {"lossless": ("matroska", "ffv1", "bgr0"), "mp4": ("mp4", "libx264", "yuv420p")}
SUFFIX = {"lossless": ".mkv", "mp4": ".mp4"}


def frame_colour(row: int, index: int) -> tuple[int, int, int]:
    """The colour of frame ``index`` of a video in row ``row`` (make_tile_image's code: red 8 + 8*row,
    green 8 + 8*index, blue 200)."""
    return 8 + 8 * row, 8 + 8 * index, 200


def encode(
    n_frames: int = 8, size: tuple[int, int] = (64, 48), rate: int = 4, row: int = 0, kind: str = "lossless"
) -> bytes:
    """A video of ``n_frames`` solid frames (``size`` = width, height) at ``rate`` frames a second."""
    import numpy as np

    container_format, codec, pix_fmt = KINDS[kind]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        for i in range(n_frames):
            pixels = np.zeros((size[1], size[0], 3), np.uint8)
            pixels[...] = frame_colour(row, i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def write(folder: Any, name: str = "clip", kind: str = "lossless", **kwargs: Any) -> str:
    """:func:`encode` written to ``folder/name<suffix>``; returns the path."""
    path = os.path.join(os.fspath(folder), name + SUFFIX[kind])
    with open(path, "wb") as fh:
        fh.write(encode(kind=kind, **kwargs))
    return path


def code_of(image: Any) -> tuple[int, int]:
    """``(row, index)`` of a decoded frame, exactly (lossless videos)."""
    r, g, b = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert b == 200, (r, g, b)
    return (r - 8) // 8, (g - 8) // 8


def nearest_code(image: Any) -> tuple[int, int]:
    """``(row, index)`` of a decoded frame of a lossy video: the nearest code."""
    r, g, _b = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    return round((r - 8) / 8), round((g - 8) / 8)
