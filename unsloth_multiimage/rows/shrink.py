"""Shrinking one row: its videos' frames dropped evenly, its images downsized to a pixel budget.

What ``on_overflow="shrink"`` does to a row once it knows how far (the exact search that decides is
:mod:`unsloth_multiimage.collate.shrink`):

- **frames**: while the row pipeline runs with a row fitter, each frame's image part and its label
  carry :data:`~.video.FRAME_KEY` (``strategy="native"`` only: a grid makes a video one canvas, and
  serial turns number their images). :func:`frame_groups` reads them; :func:`keep_frames` keeps at
  most ``limit`` frames of every video, spread evenly over the frames it had (first and last kept,
  as :func:`~.video.sample_indices` samples), each dropped frame taking its label with it; the kept
  labels keep their number and time in the video. :func:`unmark` removes the keys.
- **pixels**: :func:`fit_pixels` is the ``max_pixels_per_example`` policy for one row at one
  budget (:func:`~.policy.apply_policies`: the sizes :func:`~.policy.budget_sizes` gives, LANCZOS).

Inputs are never modified; an unchanged row comes back as the very same objects. Pure Python + PIL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..settings import Settings
from .chat import chat_sides, content_parts, image_parts, messages_of, rewrite_contents
from .plan import RowPlan, plan_row
from .policy import apply_policies
from .video import FRAME_KEY, sample_indices

__all__ = ["frame_groups", "kept_frames", "keep_frames_of", "keep_frames", "fit_pixels", "unmark", "marked"]


def frame_groups(example: Any) -> list[list[int]]:
    """Per video of the row, in order, the indices (among the row's images, in placeholder order)
    of its frames."""
    groups: dict[int, list[int]] = {}
    for k, part in enumerate(image_parts(messages_of(example))):
        tag = part.get(FRAME_KEY)
        if tag is not None:
            groups.setdefault(tag[0], []).append(k)
    return [groups[v] for v in sorted(groups)]


def kept_frames(count: int, limit: int) -> list[int]:
    """Which of a video's ``count`` frames stay under ``limit`` (0-based, increasing): evenly spread,
    first and last included."""
    if count <= limit:
        return list(range(count))
    return sample_indices([float(i) for i in range(count)], fps=1.0, max_frames=limit, sampling="uniform")


def keep_frames_of(example: Any, limit: int) -> tuple[Any, list[int]]:
    """The row with at most ``limit`` frames per video (see the module docstring), and the indices
    of the images it keeps (among the row's images before, in placeholder order)."""
    if limit < 1:
        raise ValueError(f"a video keeps at least one frame, got limit={limit}")
    parts = image_parts(messages_of(example))
    gone: set[int] = set()
    for group in frame_groups(example):
        stay = {group[i] for i in kept_frames(len(group), limit)}
        gone |= set(group) - stay
    if not gone:
        return example, list(range(len(parts)))
    tags = {parts[k][FRAME_KEY] for k in gone}

    def without(content: Sequence[Any]) -> list[Any]:
        return [p for p in content if not (isinstance(p, Mapping) and p.get(FRAME_KEY) in tags)]

    return rewrite_contents(example, without), [k for k in range(len(parts)) if k not in gone]


def keep_frames(example: Any, plan: RowPlan, limit: int) -> tuple[Any, RowPlan, int]:
    """``(example, plan, dropped)``: the row with at most ``limit`` frames per video (see the module
    docstring), its plan (the images it keeps, as loaded), and how many frames it lost."""
    new, kept = keep_frames_of(example, limit)
    if new is example:
        return example, plan, 0
    images = tuple(plan.images[k] for k in kept)
    new_plan = plan_row(new, plan.row)
    if len(new_plan.images) != len(images):  # pragma: no cover - an internal invariant
        raise RuntimeError(
            f"unsloth_multiimage: internal error: row {plan.row} kept {len(new_plan.images)} image part(s) for "
            f"{len(images)} image(s) after dropping frames; please report this"
        )
    return new, replace(new_plan, images=images), len(plan.images) - len(images)


def fit_pixels(example: Any, plan: RowPlan, budget: int, settings: Settings) -> tuple[Any, RowPlan]:
    """The row with its images downsized to hold at most ``budget`` pixels in all, exactly as
    ``max_pixels_per_example=budget`` downsizes a row (the cap, grid and serial already ran)."""
    only = replace(settings, max_images=None, strategy="native", max_pixels_per_example=budget)
    [new], [new_plan] = apply_policies([example], [plan], only)
    return new, new_plan


def marked(example: Any) -> bool:
    """Whether a part of the row carries :data:`~.video.FRAME_KEY`."""
    return any(FRAME_KEY in p for _key, chat in chat_sides(example) for p in content_parts(chat))


def unmark(example: Any) -> Any:
    """The row without :data:`~.video.FRAME_KEY` on its parts (the very same object when none has it)."""
    if not marked(example):
        return example

    def clean(content: Sequence[Any]) -> list[Any]:
        return [
            {k: v for k, v in p.items() if k != FRAME_KEY} if isinstance(p, Mapping) and FRAME_KEY in p else p
            for p in content
        ]

    return rewrite_contents(example, clean)
