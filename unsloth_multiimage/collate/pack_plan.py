"""The pack planner: which rows of a batch share one packed sequence (pure Python, no torch).

Token counts in, plan out: the collator plans from the lengths of the rows it just padded, and
a dry run (``doctor``) or a benchmark can plan from counted tokens without building a tensor.
First-fit decreasing: rows are taken longest first (ties by row order) and each goes into the
first sequence it fits, else opens a new one; a sequence then lists its rows in batch order, so a
packed batch keeps the batch's order of rows inside each sequence. FFD uses at most
``11/9 * OPT + 6/9`` sequences (Dósa 2007), and the plan is a pure function of the counts.
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
    sequence at most ``max_seq_length`` tokens.

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
            room.append(max_seq_length - counts[row])
    sequences = sorted((tuple(sorted(b)) for b in bins), key=lambda seq: seq[0])
    return PackPlan(sequences=tuple(sequences), lengths=tuple(counts), max_seq_length=max_seq_length)
