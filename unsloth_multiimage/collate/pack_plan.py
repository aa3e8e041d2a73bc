"""The pack planner: which rows of a batch share one packed sequence (pure Python, no torch).

Token counts in, plan out: the collator plans from the lengths of the rows it just padded, and
a dry run (``doctor``) or a benchmark can plan from counted tokens without building a tensor.

1. How many sequences: first-fit decreasing (rows longest first, ties by row order, each into the
   first sequence it fits, else a new one), at most ``11/9 * OPT + 6/9`` sequences (Dósa 2007).
2. Which rows share one: every sequence of a batch is padded to the longest, so the same number
   of sequences is balanced (longest row first into the least-filled sequence it fits, LPT) and
   kept when its longest sequence is shorter than first fit's: less padding and shorter attention.

A sequence lists its rows in batch order; the plan is a pure function of the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import RowTooLongError

__all__ = ["PackPlan", "RowTooLongError", "plan_packs"]


@dataclass(frozen=True)
class PackPlan:
    """The rows of each packed sequence, in batch order, and every row's token count.

    Attributes:
        sequences: one tuple of row indices per packed sequence (each in ascending order; the
            sequences are ordered by their first row).
        lengths: the token count of every row of the batch, as planned.
        max_seq_length: the most tokens one sequence may hold.
    """

    sequences: tuple[tuple[int, ...], ...]
    lengths: tuple[int, ...]
    max_seq_length: int

    @property
    def sequence_lengths(self) -> tuple[int, ...]:
        """Tokens in each packed sequence."""
        return tuple(sum(self.lengths[r] for r in seq) for seq in self.sequences)

    @property
    def padded_tokens(self) -> int:
        """Tokens of the packed batch, padding included (sequences padded to the longest)."""
        return len(self.sequences) * max(self.sequence_lengths, default=0)

    @property
    def fill(self) -> float:
        """Real tokens over the tokens of the packed batch (1.0: no padding at all)."""
        total = self.padded_tokens
        return sum(self.lengths) / total if total else 1.0


def plan_packs(lengths: Sequence[int], max_seq_length: int) -> PackPlan:
    """The fewest sequences first-fit decreasing finds for rows of ``lengths`` tokens, each
    sequence at most ``max_seq_length`` tokens, balanced when that shortens the longest one.

    Raises:
        RowTooLongError: a row alone is longer than ``max_seq_length`` (the first such row).
        ValueError: ``max_seq_length`` is not a positive integer, or a length is negative.
    """
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 1:
        raise ValueError(f"max_seq_length must be a positive integer, got {max_seq_length!r}")
    counts = [int(n) for n in lengths]
    for row, n in enumerate(counts):
        if n < 0:
            raise ValueError(f"row {row} has a negative token count ({n})")
        if n > max_seq_length:
            raise RowTooLongError(
                f"unsloth_multiimage: row {row} has {n} tokens, more than one packed sequence holds "
                f"(max_seq_length={max_seq_length}). Fix: raise max_seq_length to at least {n} (or "
                f"packing_max_seq_length when the collator has none), shrink the row's images "
                f"(configure(max_pixels_per_example=...)), or leave the row out.",
                row=row,
            )
    order = sorted(range(len(counts)), key=lambda r: (-counts[r], r))
    bins = _first_fit(order, counts, max_seq_length)
    balanced = _least_filled(order, counts, max_seq_length, len(bins))
    if balanced is not None and _longest(balanced, counts) < _longest(bins, counts):
        bins = balanced
    sequences = sorted((tuple(sorted(b)) for b in bins), key=lambda seq: seq[0])
    return PackPlan(sequences=tuple(sequences), lengths=tuple(counts), max_seq_length=max_seq_length)


def _first_fit(order: Sequence[int], counts: Sequence[int], limit: int) -> list[list[int]]:
    bins: list[list[int]] = []
    room: list[int] = []
    for row in order:
        for b, free in enumerate(room):
            if counts[row] <= free:
                bins[b].append(row)
                room[b] -= counts[row]
                break
        else:
            bins.append([row])
            room.append(limit - counts[row])
    return bins


def _least_filled(order: Sequence[int], counts: Sequence[int], limit: int, k: int) -> list[list[int]] | None:
    """``k`` sequences, each row (longest first) into the least-filled one it fits; None when a row
    fits in none (first fit's plan stands)."""
    bins: list[list[int]] = [[] for _ in range(k)]
    load = [0] * k
    for row in order:
        fitting = [b for b in range(k) if load[b] + counts[row] <= limit]
        if not fitting:
            return None
        b = min(fitting, key=lambda b: (load[b], b))
        bins[b].append(row)
        load[b] += counts[row]
    return [b for b in bins if b]


def _longest(bins: Sequence[Sequence[int]], counts: Sequence[int]) -> int:
    return max((sum(counts[r] for r in b) for b in bins), default=0)
