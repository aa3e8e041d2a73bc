"""Early fusion: compose the images of one example into a single canvas (PIL only, imported lazily).

Layout (:func:`grid_layout`): near-square, filled row by row, left to right:
``cols = ceil(sqrt(n))``, ``rows = ceil(n / cols)``. So 2 -> 2x1, 3 -> 2x2 (last cell empty),
4 -> 2x2, 5 -> 3x2, 6 -> 3x2, 7..9 -> 3x3.

Cells (:func:`compose_grid`): every cell has the size of the bounding box of the images
(``max width`` x ``max height``), so no image is ever scaled, up or down: each is pasted at its
own size, centred in its cell, aspect ratio untouched. The canvas therefore holds at least the
pixels of its images; the model's processor then resizes the whole canvas to its own budget
(Mllama: at most 4 tiles of 560 px), which is where the memory saving of early fusion comes from.
Use ``max_pixels_per_example`` (applied before the grid) to bound the canvas itself.
Cells are separated by ``gap`` pixels; the background (gaps, empty cells, the margins around
smaller images) is black. Images are converted to RGB first (transparent pixels are composited
on white, as ``transformers``' ``convert_to_rgb`` does).

With ``labels=True`` each cell gets its 1-based index, drawn in the top-left corner in white on
a small black box with PIL's default font (about 1/12 of the cell tall, 10 px at least; clipped
to the cell).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .decode import to_rgb

__all__ = ["grid_layout", "compose_grid", "cell_boxes"]

BACKGROUND = (0, 0, 0)
LABEL_COLOUR = (255, 255, 255)


def grid_layout(n: int) -> tuple[int, int]:
    """``(cols, rows)`` of the near-square grid for ``n`` images (``n >= 1``)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"grid_layout needs at least one image, got {n!r}")
    cols = math.isqrt(n - 1) + 1  # ceil(sqrt(n)), exact in integers
    return cols, -(-n // cols)


def cell_boxes(
    sizes: Sequence[tuple[int, int]], gap: int = 4
) -> tuple[tuple[int, int], list[tuple[int, int, int, int]]]:
    """The canvas size and, per image, the ``(left, top, right, bottom)`` box it is pasted into.

    ``sizes`` are the images' ``(width, height)``; boxes follow the order of ``sizes``.
    """
    if not sizes:
        raise ValueError("cell_boxes needs at least one image size")
    if not isinstance(gap, int) or gap < 0:
        raise ValueError(f"gap must be a non-negative integer, got {gap!r}")
    cols, rows = grid_layout(len(sizes))
    cell_w = max(w for w, _ in sizes)
    cell_h = max(h for _, h in sizes)
    canvas = (cols * cell_w + (cols - 1) * gap, rows * cell_h + (rows - 1) * gap)
    boxes = []
    for k, (w, h) in enumerate(sizes):
        r, c = divmod(k, cols)
        x0 = c * (cell_w + gap) + (cell_w - w) // 2
        y0 = r * (cell_h + gap) + (cell_h - h) // 2
        boxes.append((x0, y0, x0 + w, y0 + h))
    return canvas, boxes


def compose_grid(images: Sequence[Any], gap: int = 4, labels: bool = False) -> Any:
    """One RGB ``PIL.Image`` holding ``images`` in a near-square grid (see the module docstring).

    Args:
        images: loaded PIL images, in order (cell 1 is the top-left one, then row by row).
        gap: pixels between neighbouring cells (not around the border).
        labels: draw each cell's 1-based index in its top-left corner.

    Raises:
        ValueError: no images, or a negative ``gap``.
        TypeError: an item is not a PIL image.
    """
    from PIL import Image

    images = list(images)
    if not images:
        raise ValueError("compose_grid needs at least one image")
    for k, img in enumerate(images):
        if not isinstance(img, Image.Image):
            raise TypeError(f"compose_grid: image {k} is a {type(img).__name__}, not a PIL image")
    canvas_size, boxes = cell_boxes([img.size for img in images], gap)
    canvas = Image.new("RGB", canvas_size, BACKGROUND)
    for img, box in zip(images, boxes):
        canvas.paste(to_rgb(img), box[:2])
    if labels:
        _draw_labels(canvas, [img.size for img in images], gap)
    return canvas


def _label_font(cell: int) -> Any:
    """PIL's default font, about a twelfth of the cell tall (10 px at least), so the label survives
    the processor's downscaling of a large canvas; the fixed-size bitmap font where Pillow has no
    FreeType support."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(10, cell // 12))
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def _draw_labels(canvas: Any, sizes: Sequence[tuple[int, int]], gap: int) -> None:
    from PIL import ImageDraw

    cols, _ = grid_layout(len(sizes))
    cell_w = max(w for w, _ in sizes)
    cell_h = max(h for _, h in sizes)
    font = _label_font(min(cell_w, cell_h))
    for k in range(len(sizes)):
        r, c = divmod(k, cols)
        x0, y0 = c * (cell_w + gap), r * (cell_h + gap)
        # Drawn on a crop of the cell, so a label never spills into a neighbour of a tiny cell.
        cell = canvas.crop((x0, y0, x0 + cell_w, y0 + cell_h))
        draw = ImageDraw.Draw(cell)
        text = str(k + 1)
        _left, _top, right, bottom = draw.textbbox((2, 2), text, font=font)
        draw.rectangle((0, 0, right + 1, bottom + 1), fill=BACKGROUND)
        draw.text((2, 2), text, fill=LABEL_COLOUR, font=font)
        canvas.paste(cell, (x0, y0))
