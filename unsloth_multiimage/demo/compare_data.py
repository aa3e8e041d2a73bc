"""The synthetic task of ``demo --compare``: "which colour is in both images ?".

Every image is a 28 x 28 picture of k equal stripes (k = ``colours_per_image``, default 3),
vertical or horizontal at random, each stripe one colour of PALETTE in random order, with a little colour jitter (so no two images are identical). A row shows two images A
and B that share exactly one colour: A = {shared, a1..}, B = {shared, b1..}, 2k-1 different
colours in all. The answer is the shared colour: one word of PALETTE, so the candidate answers
are the 6 colour words and chance is 1/6.

Why this question:
* it needs BOTH images: one image alone leaves k equally good answers, so a model that sees
  only one image is capped at 1/k (33 % for k = 3);
* it does not need to know which image is first: Mllama's text tokens see the images they
  attend to as an unordered bag of tiles, and the answer is simply the colour with the most
  area in that bag (2 stripes out of 2k), a linear read-out of a mean over tiles.

Row kinds (all in the TRL/Unsloth "column" layout: bare ``{"type": "image"}`` parts and an
``images`` list):
* ``same_turn``: one user turn ``<|image|><|image|>which colour is in both images ?``.
  Mllama's native mask lets the question see both images (one group of consecutive images).
* ``later_turn``: turn 1 ``<|image|>look at this image .`` / assistant ``ok``; turn 2
  ``<|image|>which colour is in both images ?``. The question is asked in a later turn than
  image A. The native mask lets the question see only B (A attends only up to B's token); the
  cumulative mask lets it see A and B.

Every word is in ``tiny_mllama.WORDS`` (no [UNK]). Deterministic in ``seed``. Needs Pillow
(imported lazily).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "PALETTE",
    "QUESTION",
    "LOOK",
    "answer_of",
    "image_groups",
    "as_chat",
    "make_image",
    "make_row",
    "make_rows",
    "row_kind",
    "with_answer",
]

#: Colour words (all in tiny_mllama.WORDS) and their RGB values. Black is avoided: it is the
#: grid canvas background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 40),
    "purple": (140, 40, 170),
    "white": (245, 245, 245),
}
QUESTION = "which colour is in both images ?"
LOOK = "look at this image ."
IMAGE_SIZE = 28  # one 28-px tile of the processor
_JITTER = 20  # +/- per channel, per half


def _jitter(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-_JITTER, _JITTER))) for c in rgb)  # type: ignore[return-value]


def make_image(colours: Sequence[str], rng: random.Random, size: int = IMAGE_SIZE) -> Any:
    """An RGB image of ``len(colours)`` equal stripes, one per colour, in random order and random
    orientation (vertical or horizontal). Two colours: two halves."""
    from PIL import Image, ImageDraw

    colours = list(colours)
    rng.shuffle(colours)
    vertical = rng.random() < 0.5
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    k = len(colours)
    for i, colour in enumerate(colours):
        lo, hi = round(i * size / k), round((i + 1) * size / k) - 1
        box = (lo, 0, hi, size - 1) if vertical else (0, lo, size - 1, hi)
        draw.rectangle(box, fill=_jitter(PALETTE[colour], rng))
    return image


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def make_row(kind: str, rng: random.Random, colours_per_image: int = 3) -> dict[str, Any]:
    """One row of ``kind``. Extra keys ``kind`` / ``answer`` / ``candidates`` describe it.

    Images A and B each show ``colours_per_image`` colours; exactly one colour is in both."""
    k = colours_per_image
    if not 2 <= k <= (len(PALETTE) + 1) // 2:
        raise ValueError(f"colours_per_image must be 2..{(len(PALETTE) + 1) // 2}, got {k}")
    shared, *others = rng.sample(list(PALETTE), 2 * k - 1)
    images = [make_image([shared, *others[: k - 1]], rng), make_image([shared, *others[k - 1 :]], rng)]
    answer = [{"role": "assistant", "content": [_text(shared)]}]
    if kind == "same_turn":
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, _text(QUESTION)]}]
    elif kind == "later_turn":
        messages = [
            {"role": "user", "content": [{"type": "image"}, _text(LOOK)]},
            {"role": "assistant", "content": [_text("ok")]},
            {"role": "user", "content": [{"type": "image"}, _text(QUESTION)]},
        ]
    else:
        raise ValueError(f"unknown row kind {kind!r}")
    return {
        "messages": messages + answer,
        "images": images,
        "kind": kind,
        "answer": shared,
        "candidates": list(PALETTE),
    }


def make_rows(n: int, seed: int, later_turn_share: float = 1 / 3, colours_per_image: int = 3) -> list[dict[str, Any]]:
    """``n`` rows; a fixed share of ``later_turn`` rows (interleaved, so every batch mixes kinds)."""
    rng = random.Random(seed)
    n_later = round(n * later_turn_share)
    kinds = ["later_turn"] * n_later + ["same_turn"] * (n - n_later)
    rng.shuffle(kinds)
    return [make_row(kind, rng, colours_per_image) for kind in kinds]


# ------------------------------------------------------------------------------------------ rows of any dataset


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or () if isinstance(p, Mapping) and p.get("type") == "text")


def answer_of(row: Mapping[str, Any]) -> str:
    """The text of the row's last message, which must be the assistant's answer."""
    messages = row.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("the row does not end with an assistant message (its answer)")
    return _text_of(messages[-1].get("content")).strip()


def with_answer(row: Mapping[str, Any], answer: str) -> dict[str, Any]:
    """A copy of ``row`` whose last assistant message says ``answer``."""
    messages = list(row["messages"])
    messages[-1] = {**messages[-1], "content": [{"type": "text", "text": answer}]}
    return {**row, "messages": messages}


def image_groups(row: Mapping[str, Any]) -> int:
    """How many groups of consecutive image placeholders the row's chat has (a text part or a new
    message ends a group). 0: text-only; 1: the latest-group mask shows the question every image."""
    groups, in_group = 0, False
    for message in row.get("messages") or ():
        content = message.get("content")
        in_group = False
        if isinstance(content, str):
            continue
        for part in content or ():
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "image":
                groups += not in_group
                in_group = True
            elif kind == "text" and (part.get("text") or ""):
                in_group = False
    return groups


def row_kind(row: Mapping[str, Any]) -> str:
    """``later_turn`` when an image comes before the question's group of images, else ``same_turn``."""
    kind = row.get("kind")
    if kind in ("same_turn", "later_turn"):
        return str(kind)
    return "later_turn" if image_groups(row) >= 2 else "same_turn"


def as_chat(row: dict[str, Any]) -> dict[str, Any]:
    """A prepared row (:mod:`unsloth_multiimage.formats.source`) as one chat: a prompt/completion
    row's two lists joined into ``messages``. Raises for a row without a final answer."""
    if "messages" not in row and "prompt" in row:
        row = {**row, "messages": list(row.pop("prompt")) + list(row.pop("completion", None) or [])}
    answer_of(row)
    return row
