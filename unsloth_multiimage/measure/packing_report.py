"""Will packing pay on this dataset? ``doctor --dataset FILE --max-seq-length N --packing``.

From the token report's counted rows (:mod:`.tokens`: each row's length in ``input_ids``, image
tokens from the image headers where the family allows, nothing decoded), the batches training
forms are planned by the packer's own planner
(:func:`~unsloth_multiimage.collate.pack_plan.plan_packs`: first-fit decreasing, balanced), as the collator
plans a training batch under ``configure(packing=True)``:

- **batches**: ``batch_size`` rows at a time, in dataset order (a shuffling sampler mixes other
  rows together; the totals over an epoch differ little when the lengths are spread alike);
- **sequences per batch**: how many packed sequences each batch becomes;
- **pack fill**: real tokens over the sequences' slots (``sequences * max_seq_length``);
- **padding share**, padded vs packed: the share of the token slots the model computes that are
  padding: a padded batch pads every row to its longest row, a packed batch every sequence to its
  longest sequence;
- rows **shrunk** (``on_overflow="shrink"``: planned at their length after shrinking) and rows
  **refused** (longer than ``max_seq_length`` and not shrunk: a packed batch raises on them; left
  out of the plan, and of the padded figures too, so both sides plan the same rows);
- a last line the user can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..collate.pack_plan import plan_packs
from .tokens import RowTokens, TokenReport

__all__ = ["PackingReport", "packing_report"]

_SHOWN = 20


@dataclass
class PackingReport:
    """What packing does to a dataset's batches (see the module docstring).

    Attributes:
        max_seq_length: the longest packed sequence.
        batch_size: rows per training batch.
        rows: rows planned (counted, not refused).
        batches: batches planned.
        sequences: packed sequences per batch, in order.
        real_tokens: the planned rows' tokens.
        padded_slots: token slots of the padded batches (rows times the batch's longest row).
        packed_slots: token slots of the packed batches (sequences times the longest sequence).
        capacity_slots: ``sequences * max_seq_length`` over every batch.
        shrunk: rows ``on_overflow="shrink"`` shrinks to fit.
        refused: rows longer than ``max_seq_length`` that a packed batch refuses.
        errors: rows the row pipeline refuses (not counted; the dataset check names them).
        shrinking: ``on_overflow="shrink"`` is configured.
        method: how the image tokens were counted.
    """

    max_seq_length: int
    batch_size: int
    rows: int = 0
    batches: int = 0
    sequences: list[int] = field(default_factory=list)
    real_tokens: int = 0
    padded_slots: int = 0
    packed_slots: int = 0
    capacity_slots: int = 0
    shrunk: list[RowTokens] = field(default_factory=list)
    refused: list[RowTokens] = field(default_factory=list)
    errors: int = 0
    shrinking: bool = False
    method: str = ""
    longest: int = 0
    mean_length: float = 0.0

    @property
    def sequences_per_batch(self) -> float:
        return sum(self.sequences) / len(self.sequences) if self.sequences else 0.0

    @property
    def fill(self) -> float:
        """Real tokens over the packed sequences' slots (1.0: every sequence full)."""
        return self.real_tokens / self.capacity_slots if self.capacity_slots else 0.0

    @property
    def padding_padded(self) -> float:
        """The share of a padded batch's token slots that are padding."""
        return 1 - self.real_tokens / self.padded_slots if self.padded_slots else 0.0

    @property
    def padding_packed(self) -> float:
        """The share of a packed batch's token slots that are padding."""
        return 1 - self.real_tokens / self.packed_slots if self.packed_slots else 0.0

    def advice(self) -> str:
        """The one thing to do, in one line."""
        if self.refused:
            need = max(r.total for r in self.refused)
            if self.shrinking:
                return (
                    f"Fix first: {len(self.refused)} row(s) are longer than max_seq_length={self.max_seq_length} even "
                    f"shrunk (or of a family shrink does not shrink): raise --max-seq-length to {need}, or leave them "
                    f"out (rows {', '.join(str(r.row) for r in self.refused[:_SHOWN])})."
                )
            return (
                f"Fix first: {len(self.refused)} row(s) are longer than max_seq_length={self.max_seq_length} (the "
                f"longest {need} tokens) and a packed batch raises on them: raise --max-seq-length to {need}, or "
                f'configure(on_overflow="shrink") (UNSLOTH_MULTIIMAGE_ON_OVERFLOW=shrink) to shrink their images '
                f"(Qwen2-VL, Qwen2.5-VL, Qwen3-VL)."
            )
        if not self.rows:
            return "Nothing to plan: no row was counted (see the dataset check above)."
        before, after = self.padding_padded, self.padding_packed
        turn_on = (
            f"configure(packing=True, packing_max_seq_length={self.max_seq_length}) (or UNSLOTH_MULTIIMAGE_PACKING=1 "
            f"and the collator's max_seq_length={self.max_seq_length})"
        )
        if before - after < 0.05:
            return (
                f"Packing saves little here: padding {before:.0%} -> {after:.0%} (the rows of a batch are of similar "
                f"length already); train unpacked."
            )
        line = f"Pack: {turn_on} cuts the padding from {before:.0%} to {after:.0%} of the token slots"
        per_sequence = int(self.max_seq_length // self.mean_length) if self.mean_length else 0
        if self.sequences_per_batch <= 1.0 and self.fill < 0.5 and per_sequence > self.batch_size:
            line += (
                f"; each batch fills one sequence to {self.fill:.0%} only: --batch-size (per_device_train_batch_size) "
                f"about {per_sequence} fills it"
            )
        return line + "."

    def lines(self) -> list[str]:
        """The report, line by line (the last one: :meth:`advice`)."""
        seqs = self.sequences
        out = [
            f"Packing plan (max_seq_length={self.max_seq_length}, batch size {self.batch_size}, batches in dataset "
            f"order; planned on counted tokens as the collator packs)",
        ]
        if self.method:
            out.append(f"image tokens: {self.method}")
        out += [
            f"{self.rows} row(s) in {self.batches} batch(es); {self.real_tokens:,} real tokens"
            + (f"; {self.errors} row(s) not counted (errors above)" if self.errors else ""),
            f"sequences per batch: {self.sequences_per_batch:.2f} (min {min(seqs, default=0)}, max "
            f"{max(seqs, default=0)}) for {self.batch_size} rows",
            f"pack fill: {self.fill:.1%} (real tokens / {sum(seqs)} sequence(s) x {self.max_seq_length} slots)",
            f"padding share: padded {self.padding_padded:.1%} ({self.padded_slots:,} slots) -> packed "
            f"{self.padding_packed:.1%} ({self.packed_slots:,} slots)",
        ]
        shrink = f'on_overflow="shrink": {len(self.shrunk)} row(s) shrunk' if self.shrinking else "rows shrunk: 0"
        out.append(f"{shrink}; {len(self.refused)} row(s) refused (longer than max_seq_length)")
        out += [f"  shrunk {r.shrunk.describe()}" for r in self.shrunk[:_SHOWN] if r.shrunk is not None]
        for r in self.refused[:_SHOWN]:
            out.append(
                f"  refused row {r.row}: {r.refused}" if r.refused else f"  refused row {r.row}: {r.total} tokens"
            )
        out.append(self.advice())
        return out

    def format(self) -> str:
        return "\n".join(self.lines())


def _planned_length(r: RowTokens, max_seq_length: int) -> int | None:
    """The row's length in a packed batch, or None when a packed batch refuses it."""
    if r.shrunk is not None:
        return r.shrunk.tokens_after
    if r.refused is not None or r.total > max_seq_length:
        return None
    return r.total


def packing_report(report: TokenReport, batch_size: int = 8) -> PackingReport:
    """The packing plan of the token report's rows in batches of ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    longest = report.max_seq_length
    out = PackingReport(longest, batch_size, shrinking=report.shrinking, method=report.method)
    counted = [r for r in report.rows if r.error is None]
    out.errors = len(report.rows) - len(counted)
    lengths: list[int] = []
    for r in counted:
        n = _planned_length(r, longest)
        if n is None:
            out.refused.append(r)
            continue
        if r.shrunk is not None:
            out.shrunk.append(r)
        lengths.append(n)
    for start in range(0, len(counted), batch_size):
        batch = [n for r in counted[start : start + batch_size] if (n := _planned_length(r, longest)) is not None]
        if batch:
            _add_batch(out, batch)
    out.rows = len(lengths)
    out.longest = max(lengths, default=0)
    out.mean_length = sum(lengths) / len(lengths) if lengths else 0.0
    return out


def _add_batch(out: PackingReport, lengths: Sequence[int]) -> None:
    plan = plan_packs(lengths, out.max_seq_length)
    out.batches += 1
    out.sequences.append(len(plan.sequences))
    out.real_tokens += sum(lengths)
    out.padded_slots += len(lengths) * max(lengths)
    out.packed_slots += plan.padded_tokens
    out.capacity_slots += len(plan.sequences) * out.max_seq_length
