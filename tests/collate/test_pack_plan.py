"""The pack planner: first-fit decreasing over token counts for the number of sequences, balanced
for the least padding, pure (no torch), every row placed once."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unsloth_multiimage.collate.pack_plan import PackPlan, RowTooLongError, plan_packs


def test_first_fit_decreasing_finds_the_fewest_sequences_here():
    # longest first: 7 opens a sequence, 6 opens another, 4 joins... -> {7,3}, {6,4}, {5,5}
    plan = plan_packs([5, 7, 3, 6, 5, 4], 10)
    assert plan.sequences == ((0, 4), (1, 2), (3, 5))
    assert plan.sequence_lengths == (10, 10, 10)
    assert plan.fill == 1.0 and plan.padded_tokens == 30


def test_rows_keep_the_batch_order_inside_a_sequence_and_ties_go_by_row():
    plan = plan_packs([2, 2, 2, 2], 4)
    assert plan.sequences == ((0, 1), (2, 3))
    assert plan_packs([3, 1, 3], 10).sequences == ((0, 1, 2),)


def test_the_same_number_of_sequences_balanced_when_that_pads_less():
    # First fit: {7, 2}, {5, 4}, {2} -> longest 9, 27 padded slots; balanced: {7}, {5, 2}, {4, 2} -> 21.
    plan = plan_packs([7, 5, 4, 2, 2], 10)
    assert len(plan.sequences) == 3
    assert sorted(plan.sequence_lengths) == [6, 7, 7]
    assert plan.padded_tokens == 21 and plan.fill == pytest.approx(20 / 21)


def test_a_row_longer_than_a_sequence_is_an_error_naming_it_its_length_and_the_fix():
    with pytest.raises(RowTooLongError, match=r"row 2 has 12 tokens.*max_seq_length=10.*raise max_seq_length") as err:
        plan_packs([3, 10, 12, 1], 10)
    assert err.value.row == 2


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_max_seq_length_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_seq_length"):
        plan_packs([1], bad)


def test_fill_counts_the_padding_of_the_shorter_sequences():
    plan = plan_packs([6, 3], 8)
    assert plan.sequences == ((0,), (1,))
    assert plan.padded_tokens == 12 and plan.fill == pytest.approx(9 / 12)
    assert plan_packs([], 8) == PackPlan((), (), 8)


def _first_fit_count(lengths: list[int], limit: int) -> tuple[int, int]:
    """The test's own first-fit decreasing: (sequences, longest sequence)."""
    loads: list[int] = []
    for n in sorted(lengths, reverse=True):
        for b, load in enumerate(loads):
            if load + n <= limit:
                loads[b] += n
                break
        else:
            loads.append(n)
    return len(loads), max(loads, default=0)


@given(
    lengths=st.lists(st.integers(min_value=0, max_value=64), min_size=1, max_size=40),
    limit=st.integers(min_value=64, max_value=200),
)
def test_every_row_once_each_sequence_fits_as_few_as_first_fit_and_no_more_padding(lengths, limit):
    plan = plan_packs(lengths, limit)
    placed = sorted(r for seq in plan.sequences for r in seq)
    assert placed == list(range(len(lengths)))
    assert all(sum(lengths[r] for r in seq) <= limit for seq in plan.sequences)
    assert all(list(seq) == sorted(seq) for seq in plan.sequences)
    count, longest = _first_fit_count(lengths, limit)
    assert len(plan.sequences) == count
    assert max(plan.sequence_lengths, default=0) <= longest
    assert len(plan.sequences) <= max(1, math.ceil(2 * sum(lengths) / limit) + 1)
    assert plan_packs(lengths, limit) == plan  # a pure function of its input
