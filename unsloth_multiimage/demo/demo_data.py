"""A synthetic multi-image dataset, built in code, whose answers need more than one image.

Each image row shows 2 or 3 pictures, each with a different number of red squares (plus a few
blue distractors); the question is "which image has more red squares ?" and the answer is
"the first" / "the second" / "the third". A model that sees only one image of the row cannot
answer it. Every word used is in :data:`unsloth_multiimage.tiny_mllama.WORDS`, so the tiny
offline tokenizer has no unknown words.

The rows use the layouts TRL and Unsloth accept, mixed on purpose:

* ``column``: bare ``{"type": "image"}`` placeholders in the user turn and an ``images`` list;
* ``embedded``: no ``images`` key, each content part carries its image (``"image": <PIL>``);
* ``multi_turn``: images in two different user turns, one ``images`` list for the whole chat;
* ``text_only``: no image at all (``"images": []``).

Everything is deterministic for a given seed. Needs Pillow (imported lazily).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from typing import Any

__all__ = ["ORDINALS", "QUESTION", "make_image", "make_rows", "row_kind", "to_jsonl"]

ORDINALS = ("first", "second", "third")
QUESTION = "which image has more red squares ?"
IMAGE_SIZE = 56  # two 28-pixel tiles per side for the tiny processor
_SQUARE = 8
_KINDS = ("column", "column", "embedded", "multi_turn", "column", "text_only", "column", "embedded")
_TEXT_ONLY = (
    ("what colour is a red square ?", "red"),
    ("how many images are there in this question ?", "none"),
    ("is a square a circle ?", "no"),
    ("what is one and one ?", "two"),
)


def row_kind(index: int) -> str:
    """The layout of row ``index`` (a fixed cycle, so every batch of 8 holds every layout)."""
    return _KINDS[index % len(_KINDS)]


def make_image(n_red: int, rng: random.Random, size: int = IMAGE_SIZE, n_blue: int | None = None) -> Any:
    """A white RGB image with ``n_red`` red squares and a few blue ones, at distinct grid cells."""
    from PIL import Image, ImageDraw

    cells_per_side = max(2, size // (_SQUARE + 4))
    cells = [(x, y) for x in range(cells_per_side) for y in range(cells_per_side)]
    n_blue = rng.randint(0, 2) if n_blue is None else n_blue
    if n_red + n_blue > len(cells):
        raise ValueError(f"{n_red} red + {n_blue} blue squares do not fit in a {size} px image")
    chosen = rng.sample(cells, n_red + n_blue)
    step = size / cells_per_side
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, (cx, cy) in enumerate(chosen):
        x0, y0 = int(cx * step + (step - _SQUARE) / 2), int(cy * step + (step - _SQUARE) / 2)
        colour = (220, 20, 20) if k < n_red else (20, 40, 220)
        draw.rectangle([x0, y0, x0 + _SQUARE - 1, y0 + _SQUARE - 1], fill=colour)
    return image


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image_row(kind: str, rng: random.Random, size: int) -> dict[str, Any]:
    n = rng.choice((2, 2, 3))
    counts = rng.sample(range(0, 6), n)  # distinct, so exactly one image has the most
    images = [make_image(c, rng, size) for c in counts]
    answer = [_text(f"the {ORDINALS[counts.index(max(counts))]}")]
    if kind == "column":
        user = [*({"type": "image"} for _ in images), _text(QUESTION)]
        return {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
            "images": images,
        }
    if kind == "embedded":
        user = [*({"type": "image", "image": img} for img in images), _text(QUESTION)]
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
    # multi_turn: the first image in turn one, the others with the question in turn two.
    return {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, _text("look at this image .")]},
            {"role": "assistant", "content": [_text("ok")]},
            {"role": "user", "content": [*({"type": "image"} for _ in images[1:]), _text(QUESTION)]},
            {"role": "assistant", "content": answer},
        ],
        "images": images,
    }


def make_rows(n: int = 64, seed: int = 0, size: int = IMAGE_SIZE) -> list[dict[str, Any]]:
    """``n`` rows of the synthetic dataset (see the module docstring), deterministic in ``seed``."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = row_kind(i)
        if kind == "text_only":
            question, answer = _TEXT_ONLY[rng.randrange(len(_TEXT_ONLY))]
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": [_text(question)]},
                        {"role": "assistant", "content": [_text(answer)]},
                    ],
                    "images": [],
                }
            )
        else:
            rows.append(_image_row(kind, rng, size))
    return rows


def _is_pil(obj: Any) -> bool:
    return hasattr(obj, "save") and hasattr(obj, "size") and hasattr(obj, "mode")


def to_jsonl(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], image_dir: str | os.PathLike[str]) -> str:
    """Write ``rows`` as JSONL with every PIL image saved as a PNG under ``image_dir``.

    Images become file paths relative to the JSONL file's folder (absolute when that is not
    possible, e.g. another drive); non-image values are written as they are. Returns ``path``.
    """
    path = os.fspath(path)
    image_dir = os.fspath(image_dir)
    os.makedirs(image_dir, exist_ok=True)
    base = os.path.dirname(os.path.abspath(path))

    def save(img: Any, row: int, k: int) -> Any:
        if not _is_pil(img):
            return img
        target = os.path.join(image_dir, f"row{row:04d}_img{k}.png")
        img.save(target, format="PNG")
        try:
            return os.path.relpath(os.path.abspath(target), base)
        except ValueError:
            return os.path.abspath(target)

    with open(path, "w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            counter = iter(range(10**6))
            out = dict(row)
            messages = []
            for message in row.get("messages", []):
                content = message.get("content")
                if isinstance(content, list):
                    content = [
                        {**part, "image": save(part["image"], i, next(counter))}
                        if isinstance(part, dict) and part.get("image") is not None
                        else part
                        for part in content
                    ]
                messages.append({**message, "content": content})
            out["messages"] = messages
            if out.get("images") is not None:
                out["images"] = [save(img, i, next(counter)) for img in out["images"]]
            fh.write(json.dumps(out) + "\n")
    return path
