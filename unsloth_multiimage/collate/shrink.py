"""``on_overflow="shrink"``: a row longer than one packed sequence made to fit, before upstream collates.

For a batch the collator is about to pack (:mod:`.train_packing`), every row is counted exactly
from its rendered chat and its images' sizes (:mod:`.token_count`, the counting of the token
report), in the row pipeline's stage after the pixel budget
(:func:`~unsloth_multiimage.rows.pipeline.prepare_batch`'s ``fit_row``). A row longer than
``max_seq_length``:

1. of a family whose image tokens do not follow the image size (Llama 3.2 Vision: one
   ``<|image|>`` per image) is refused: :class:`~.pack_plan.RowTooLongError` naming the row, its
   length, the max and the fix;
2. else gets ONE search over a per-row pixel budget: the largest budget at which the row fits
   (a binary search over budgets from 1 pixel to the row's own pixels, every candidate counted
   exactly; the sizes are those ``max_pixels_per_example`` gives:
   :func:`~unsloth_multiimage.rows.policy.budget_sizes`), then its images are downsized to it
   (:func:`~unsloth_multiimage.rows.shrink.fit_pixels`);
3. where even the smallest budget (sides held at MIN_SIDE px; the image processor's own minimum
   then applies) leaves it too long, its videos' frames are dropped evenly: the most frames per
   video at which it fits at the smallest budget (binary search, each candidate rendered and
   counted), then step 2 with those frames;
4. where one frame per video at the smallest size is still too long, it is refused (as in 1).

Frames are dropped only under ``strategy="native"`` (a grid makes a video one canvas, which the
budget shrinks; serial turns number their images). One warning per batch (logging and
``warnings``) gives each shrunk row's counts: its place, tokens before and after (after: its
length in the collated batch), pixels before and after, frames before and after.

Families whose image tokens only their processor can count (every family without
:class:`~unsloth_multiimage.adapters.ImageTokens`) are not shrunk: a row too long there is refused
after upstream collates, by the planner, with the reason (:func:`shrink_refused`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..rows.plan import RowPlan
from ..rows.policy import budget_sizes
from ..rows.shrink import fit_pixels, frame_groups, keep_frames, keep_frames_of, unmark
from ..settings import Settings
from .pack_plan import RowTooLongError
from .token_count import SizeCounter

__all__ = ["Shrunk", "RowShrinker", "not_shrunk", "shrink_refused", "warn_shrunk", "shrinkable_families"]

logger = logging.getLogger("unsloth_multiimage")

_FIX = "raise max_seq_length to at least {n} (or packing_max_seq_length when the collator has none)"


@dataclass(frozen=True)
class Shrunk:
    """What shrinking did to one row (counted; the collated length is the batch's).

    Attributes:
        row: the row's number (in its batch, or in its dataset for the token report).
        tokens_before, tokens_after: its length in ``input_ids`` before and after.
        pixels_before, pixels_after: its images' pixels in all, before and after.
        budget: the per-row pixel budget its images were downsized to (None: pixels untouched).
        frames_before, frames_after: its video frames before and after (0 without a video).
        identity: what identifies the row in its dataset (``"its `id` is 17"``), when known.
    """

    row: int
    tokens_before: int
    tokens_after: int
    pixels_before: int
    pixels_after: int
    budget: int | None
    frames_before: int = 0
    frames_after: int = 0
    frame_limit: int | None = None
    identity: str | None = None

    @property
    def frames_dropped(self) -> int:
        """Video frames the row lost."""
        return self.frames_before - self.frames_after

    def describe(self, tokens_after: int | None = None) -> str:
        """One clause: ``row 3: 1203 -> 1010 tokens, 2,457,600 -> 401,408 px, frames 16 -> 8 (8 dropped evenly)``."""
        where = f"row {self.row}" + (f" ({self.identity})" if self.identity else "")
        after = self.tokens_after if tokens_after is None else tokens_after
        text = f"{where}: {self.tokens_before} -> {after} tokens, {self.pixels_before:,} -> {self.pixels_after:,} px"
        if self.frames_before:
            text += f", frames {self.frames_before} -> {self.frames_after}"
            if self.frames_dropped:
                text += f" ({self.frames_dropped} dropped evenly)"
        return text


def shrinkable_families() -> list[str]:
    """The built-in families ``on_overflow="shrink"`` shrinks (image tokens known from the size)."""
    from ..adapters.table import BUILTIN_ADAPTERS

    return [a.name for a in BUILTIN_ADAPTERS if a.image_tokens is not None and a.image_tokens.follows_size]


def _refusal(row: int, tokens: int, max_seq_length: int, why: str, fix: str = "") -> RowTooLongError:
    return RowTooLongError(
        f"unsloth_multiimage: row {row} has {tokens} tokens, more than one packed sequence holds "
        f'(max_seq_length={max_seq_length}), and on_overflow="shrink" cannot make it fit: {why}. Fix: '
        f"{_FIX.format(n=tokens)}, {fix}shorten the row's text, or leave the row out.",
        row=row,
    )


def not_shrunk(row: int, family: str, tokens: int, max_seq_length: int, declared: bool = False) -> RowTooLongError:
    """The error for a row too long of a family ``on_overflow="shrink"`` does not shrink (``declared``:
    its adapter declares its image tokens, but the installed image processor cannot count them)."""
    why = (
        f"{family}'s image processor on this transformers cannot count an image's tokens from its size"
        if declared
        else f"it shrinks rows of families whose image tokens are counted exactly from the image size "
        f"({', '.join(shrinkable_families())}), and {family}'s are not"
    )
    return _refusal(row, tokens, max_seq_length, why, "downsize the images (configure(max_pixels_per_example=...)), ")


def shrink_refused(
    exc: RowTooLongError, family: str, tokens: int, max_seq_length: int, declared: bool = False
) -> RowTooLongError:
    """The planner's error ``exc`` for a row of a family that is not shrunk, under ``on_overflow="shrink"``."""
    return not_shrunk(exc.row if exc.row is not None else -1, family, tokens, max_seq_length, declared)


class RowShrinker:
    """Counts rows and shrinks those longer than ``max_seq_length`` (see the module docstring).

    Args:
        counter: the counting core for the processor (:class:`~.token_count.SizeCounter`).
        render: ``render(example, row) -> text``: the row's chat as the collator renders it.
        max_seq_length: the most tokens one packed sequence holds.
        settings: the policies in force (the downsizing of ``max_pixels_per_example``).
        identity: ``identity(row) -> str | None``: what names the row in its dataset (warnings).
    """

    def __init__(
        self,
        counter: SizeCounter,
        render: Callable[[Any, int], str],
        max_seq_length: int,
        settings: Settings,
        identity: Callable[[int], str | None] | None = None,
    ) -> None:
        if counter.per_image is None:
            raise ValueError(f"{counter.adapter.name}: image tokens are not counted from sizes with this processor")
        self.counter = counter
        self.render = render
        self.max_seq_length = max_seq_length
        self.settings = settings
        self.identity = identity
        #: the rows shrunk so far, in order
        self.shrunk: list[Shrunk] = []

    @property
    def family(self) -> str:
        return self.counter.adapter.name

    def _ids(self, example: Any, row: int) -> list[int]:
        return self.counter.ids(self.render(unmark(example), row))

    def decide(self, example: Any, row: int, sizes: Sequence[tuple[int, int]]) -> Shrunk | None:
        """What shrinking does to the row whose images have ``sizes`` (None: it fits as it is).

        Raises:
            RowTooLongError: the row is too long and cannot be shrunk to fit (the reason named).
        """
        search = _Search(self, example, row, [(int(w), int(h)) for w, h in sizes])
        before = search.length(None, None)
        if before <= self.max_seq_length:
            return None
        self._check_shrinkable(row, before, search.sizes)
        limit = search.frame_limit(before)
        budget = search.largest_budget(limit)
        kept_ids, kept_sizes = search.variant(limit)
        final = budget_sizes(kept_sizes, budget) if budget is not None else kept_sizes
        frames = sum(len(g) for g in search.groups)
        return Shrunk(
            row=row,
            tokens_before=before,
            tokens_after=self.counter.total(kept_ids, final),
            pixels_before=sum(w * h for w, h in search.sizes),
            pixels_after=sum(w * h for w, h in final),
            budget=budget,
            frames_before=frames,
            frames_after=frames - (len(search.sizes) - len(kept_sizes)),
            frame_limit=limit,
            identity=self.identity(row) if self.identity is not None else None,
        )

    def _check_shrinkable(self, row: int, before: int, sizes: Sequence[tuple[int, int]]) -> None:
        """Refuse a row whose length no pixel budget changes (no image; a family with fixed counts)."""
        if not sizes:
            raise _refusal(row, before, self.max_seq_length, "it has no image to shrink (it is all text)")
        if not self.counter.follows_size:
            known = self.counter.adapter.image_tokens
            how = known.how if known is not None else "not counted from sizes"
            raise _refusal(
                row,
                before,
                self.max_seq_length,
                f"{self.family}'s image tokens do not depend on the image size ({how}), so no pixel budget "
                f"shortens the row",
                "keep fewer images (configure(max_images=...)), ",
            )

    def fit(self, example: Any, plan: RowPlan) -> tuple[Any, RowPlan]:
        """The row pipeline's ``fit_row``: the row shrunk to fit (its images loaded), or as it is."""
        decided = self.decide(example, plan.row, [tuple(img.size) for img in plan.images])
        if decided is None:
            return example, plan
        if decided.frame_limit is not None:
            example, plan, _dropped = keep_frames(example, plan, decided.frame_limit)
        if decided.budget is not None:
            example, plan = fit_pixels(example, plan, decided.budget, self.settings)
        self.shrunk.append(decided)
        # The processor gets these very images (upstream's own resizing of content images, e.g. a
        # video's frames, could make more tokens than counted); the release's resize still applies.
        return example, replace(plan, own_images=True)


class _Search:
    """The candidates of one row's search: at most ``limit`` frames per video (None: all), images
    at a pixel budget (None: as they are), each counted exactly (its text rendered once per limit)."""

    def __init__(self, shrinker: RowShrinker, example: Any, row: int, sizes: list[tuple[int, int]]) -> None:
        self.shrinker, self.example, self.row, self.sizes = shrinker, example, row, sizes
        self.groups = frame_groups(example)
        self._variants: dict[int | None, tuple[list[int], list[tuple[int, int]]]] = {}

    def variant(self, limit: int | None) -> tuple[list[int], list[tuple[int, int]]]:
        """The row's ids and image sizes with at most ``limit`` frames per video."""
        if limit not in self._variants:
            example, kept = (self.example, None) if limit is None else keep_frames_of(self.example, limit)
            sizes = self.sizes if kept is None else [self.sizes[k] for k in kept]
            self._variants[limit] = (self.shrinker._ids(example, self.row), sizes)
        return self._variants[limit]

    def length(self, limit: int | None, budget: int | None) -> int:
        ids, sizes = self.variant(limit)
        return self.shrinker.counter.total(ids, sizes if budget is None else budget_sizes(sizes, budget))

    def fits(self, limit: int | None, budget: int | None) -> bool:
        return self.length(limit, budget) <= self.shrinker.max_seq_length

    def frame_limit(self, before: int) -> int | None:
        """None when the row fits at some budget with every frame; else the most frames per video at
        which it fits at the smallest budget (raises when one frame per video does not)."""
        if self.fits(None, 1):
            return None
        longest = max((len(g) for g in self.groups), default=0)
        if longest <= 1 or not self.fits(1, 1):
            fewest = 1 if longest > 1 else None
            note = " and one frame per video" if longest > 1 else ""
            raise _refusal(
                self.row,
                before,
                self.shrinker.max_seq_length,
                f"even with every image at the smallest size{note} it is {self.length(fewest, 1)} tokens",
            )
        return _largest(1, longest - 1, lambda limit: self.fits(limit, 1))

    def largest_budget(self, limit: int | None) -> int | None:
        """The largest pixel budget at which the row (``limit`` frames per video) fits; None when it
        fits with its images as they are."""
        pixels = sum(w * h for w, h in self.variant(limit)[1])
        if self.fits(limit, None):
            return None
        return _largest(1, max(1, pixels - 1), lambda budget: self.fits(limit, budget))


def _largest(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """The largest ``n`` in ``[low, high]`` with ``ok(n)``, by bisection, ``ok(low)`` being known true
    and ``ok(high + 1)`` false: the answer fits and one more does not."""
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


def warn_shrunk(shrunk: Sequence[Shrunk], max_seq_length: int, lengths: Sequence[int] | None = None) -> str:
    """Warn once (logging and ``warnings``) about the rows of one batch that were shrunk; ``lengths``:
    every row's length in the collated batch (then the tokens after are those). Returns the message."""
    clauses = "; ".join(s.describe(lengths[s.row] if lengths is not None else None) for s in shrunk)
    message = (
        f'unsloth_multiimage: on_overflow="shrink": {len(shrunk)} row(s) of this batch were longer than '
        f"max_seq_length={max_seq_length} and were shrunk to fit (images downsized, video frames dropped "
        f"evenly): {clauses}."
    )
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=2)
    return message
