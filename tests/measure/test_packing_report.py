"""The packing plan of counted rows (measure/packing_report.py): its figures, by hand."""

from __future__ import annotations

import pytest

from unsloth_multiimage.collate.shrink import Shrunk
from unsloth_multiimage.measure.packing_report import packing_report
from unsloth_multiimage.measure.tokens import RowTokens, TokenReport


def _report(totals, max_seq_length, **extra):
    rows = [RowTokens(k, images=1, text=n - 1, image=1, total=n, image_end=1) for k, n in enumerate(totals)]
    for k, fields in extra.items():
        rows[int(k[1:])] = RowTokens(**{**rows[int(k[1:])].__dict__, **fields})
    return TokenReport(rows, max_seq_length)


def test_the_figures_of_a_plan_by_hand():
    # batches [10, 30] -> one sequence of 40; [20, 40] -> two (60 > 50); [5] -> one
    plan = packing_report(_report([10, 30, 20, 40, 5], 50), batch_size=2)
    assert (plan.rows, plan.batches, plan.sequences, plan.real_tokens) == (5, 3, [1, 2, 1], 105)
    assert plan.padded_slots == 2 * 30 + 2 * 40 + 5
    assert plan.packed_slots == 1 * 40 + 2 * 40 + 5
    assert plan.capacity_slots == 4 * 50
    assert plan.fill == pytest.approx(105 / 200)
    assert plan.padding_padded == pytest.approx(1 - 105 / 145)
    assert plan.padding_packed == pytest.approx(1 - 105 / 125)
    text = plan.format()
    assert "sequences per batch: 1.33 (min 1, max 2) for 2 rows" in text
    assert "padding share: padded 27.6% (145 slots) -> packed 16.0% (125 slots)" in text
    assert text.splitlines()[-1].startswith("Pack: configure(packing=True, packing_max_seq_length=50)")


def test_rows_too_long_are_refused_and_named_in_the_last_line():
    plan = packing_report(_report([10, 70, 20], 50), batch_size=8)
    assert [r.row for r in plan.refused] == [1] and plan.rows == 2 and plan.real_tokens == 30
    last = plan.lines()[-1]
    assert last.startswith("Fix first: 1 row(s) are longer than max_seq_length=50 (the longest 70 tokens)")
    assert 'on_overflow="shrink"' in last


def test_shrunk_rows_are_planned_at_their_length_after_shrinking():
    shrunk = Shrunk(row=1, tokens_before=70, tokens_after=48, pixels_before=9000, pixels_after=4000, budget=4000)
    report = _report([10, 70, 20], 50, r1={"shrunk": shrunk})
    report.shrinking = True
    plan = packing_report(report, batch_size=8)
    assert [r.row for r in plan.shrunk] == [1] and not plan.refused
    assert plan.real_tokens == 10 + 48 + 20 and plan.sequences == [2]
    assert any(line == "  shrunk row 1: 70 -> 48 tokens, 9,000 -> 4,000 px" for line in plan.lines())


def test_one_half_empty_sequence_per_batch_suggests_a_larger_batch():
    plan = packing_report(_report([10, 12, 11, 9], 400), batch_size=2)
    assert plan.sequences == [1, 1] and plan.fill < 0.5
    assert "--batch-size (per_device_train_batch_size) about 38 fills it" in plan.lines()[-1]


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        packing_report(_report([10], 50), batch_size=0)
