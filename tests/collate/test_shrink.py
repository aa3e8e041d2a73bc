"""``on_overflow="shrink"`` through the REAL zoo collator: a Qwen2-VL row longer than one packed
sequence is shrunk before upstream collates (the largest per-row pixel budget, counted exactly; a
video's frames dropped evenly where pixels alone cannot do it), warned about once per batch with
its counts, and trains one packed step; ``error`` keeps the planner's error; Llama 3.2 Vision
(one token per image) and rows that cannot fit are refused naming the row, its length and the fix.
"""

from __future__ import annotations

import re
import types
import warnings

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO
from tests.support.family_cases import tiny_of
from tests.support.packing_cases import sized_processor

pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

IMG = {"type": "image"}


def _row(row, sizes, text="which image has more red"):
    from tests.support.tiles import make_tile_image

    return {
        "messages": [
            {"role": "user", "content": [*([IMG] * len(sizes)), {"type": "text", "text": text}]},
            {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
        ],
        "images": [make_tile_image(row, i, size) for i, size in enumerate(sizes)],
    }


@pytest.fixture(scope="module")
def qwen():
    """The tiny Qwen2-VL with a real checkpoint's free image sizes, its own model (a training step
    changes it) and the real collator of the installed unsloth_zoo."""
    from tests.support.zoo import load_vision_utils

    tiny = tiny_of("qwen2_vl")
    processor = sized_processor(tiny)
    model = tiny.make_model()
    collator = load_vision_utils()[0].UnslothVisionDataCollator(model, processor)
    return types.SimpleNamespace(tiny=tiny, processor=processor, model=model, collator=collator)


@pytest.fixture(scope="module")
def mixed(qwen):
    """Three rows (1, 3 and 2 images); the 3-image one is far longer than the others; their lengths
    in the collated, unpacked batch; and a max_seq_length between."""
    rows = [
        _row(0, [(56, 56)]),
        _row(1, [(224, 224)] * 3),
        _row(2, [(112, 84), (84, 112)]),
    ]
    plain = qwen.collator(rows)
    lengths = [int(n) for n in plain["attention_mask"].sum(1)]
    longest_other = max(lengths[0], lengths[2])
    assert lengths[1] > 2 * longest_other, lengths  # the middle row alone overflows
    return types.SimpleNamespace(rows=rows, lengths=lengths, limit=(lengths[1] + longest_other) // 2)


def _shrink_warnings(record):
    return [str(w.message) for w in record if 'on_overflow="shrink"' in str(w.message)]


def test_a_too_long_qwen2_vl_row_fits_after_shrink_and_trains_one_packed_step(qwen, mixed):
    import torch

    from unsloth_multiimage.collate.train_packing import packing_for

    unsloth_multiimage.configure(packing=True, packing_max_seq_length=mixed.limit, on_overflow="shrink")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with packing_for(qwen.model):
            batch = qwen.collator(mixed.rows)
    messages = _shrink_warnings(record)
    assert len(messages) == 1, messages  # once per batch
    found = re.search(r"row 1 \([^)]*\): (\d+) -> (\d+) tokens, ([\d,]+) -> ([\d,]+) px", messages[0])
    assert found, messages[0]
    before, after, px_before, px_after = (int(g.replace(",", "")) for g in found.groups())
    pad = qwen.processor.tokenizer.pad_token_id
    real = int((batch["input_ids"] != pad).sum())
    assert before == mixed.lengths[1]  # the row's length as upstream collates it unshrunk
    assert after == real - mixed.lengths[0] - mixed.lengths[2] <= mixed.limit  # its length in this batch
    assert px_before == 3 * 224 * 224 > px_after
    assert "row 0" not in messages[0] and "row 2" not in messages[0]  # only the row too long
    assert batch["input_ids"].shape[1] <= mixed.limit and batch["use_cache"] is False
    grids = batch["image_grid_thw"].tolist()
    assert len(grids) == 6 and all(g[1] * g[2] < 16 * 16 for g in grids[1:4])  # 224 px is a 16x16 grid

    qwen.model.train()
    qwen.model.zero_grad(set_to_none=True)
    weights = {n: p.detach().clone() for n, p in qwen.model.named_parameters()}
    optimizer = torch.optim.SGD(qwen.model.parameters(), lr=1e-2)
    loss = qwen.model(**batch).loss
    loss.backward()
    optimizer.step()
    qwen.model.zero_grad(set_to_none=True)
    assert torch.isfinite(loss)
    changed = [n for n, p in qwen.model.named_parameters() if not torch.equal(p.detach(), weights[n])]
    assert any(n.startswith(("model.visual.", "visual.")) for n in changed), changed  # the images trained too


def test_the_budget_is_the_largest_at_which_the_row_fits_counted_exactly(qwen, mixed):
    """The search's budget, checked against the processor itself: at it the row fits with the
    counted length, one pixel more and it does not."""
    from unsloth_multiimage import find_adapter, get_settings
    from unsloth_multiimage.collate.shrink import RowShrinker
    from unsloth_multiimage.collate.token_count import SizeCounter
    from unsloth_multiimage.collate.zoo_collator import render_row
    from unsloth_multiimage.rows.pipeline import prepare_batch
    from unsloth_multiimage.rows.policy import budget_sizes

    processor = qwen.processor
    decision = types.SimpleNamespace(version="installed")
    counter = SizeCounter(processor, find_adapter(processor))
    shrinker = RowShrinker(
        counter, lambda e, r: render_row(processor, e, r, decision), mixed.limit, get_settings(), None
    )
    (prepared,) = prepare_batch([mixed.rows[1]])
    sizes = [img.size for img in prepared.plan.images]
    decided = shrinker.decide(prepared.example, 0, sizes)
    assert decided is not None and decided.budget is not None and decided.frames_before == 0

    def length(budget):
        images = [img.resize(size) for img, size in zip(prepared.plan.images, budget_sizes(sizes, budget))]
        text = processor.apply_chat_template(prepared.example["messages"], tokenize=False)
        return len(processor(text=[text], images=[images], add_special_tokens=False)["input_ids"][0])

    assert length(decided.budget) == decided.tokens_after <= mixed.limit
    assert length(decided.budget + 1) > mixed.limit
    assert shrinker.decide(prepared.example, 0, budget_sizes(sizes, decided.budget)) is None  # fits as it is


def test_with_on_overflow_error_the_too_long_row_raises_the_planners_error(qwen, mixed):
    from unsloth_multiimage.collate.pack_plan import RowTooLongError
    from unsloth_multiimage.collate.train_packing import packing_for

    unsloth_multiimage.configure(packing=True, packing_max_seq_length=mixed.limit)
    assert unsloth_multiimage.get_settings().on_overflow == "error"  # the default
    with warnings.catch_warnings(record=True) as record, packing_for(qwen.model):
        warnings.simplefilter("always")
        with pytest.raises(RowTooLongError) as caught:
            qwen.collator(mixed.rows)
    assert caught.value.message == (
        f"unsloth_multiimage: row 1 has {mixed.lengths[1]} tokens, more than one packed sequence holds "
        f"(max_seq_length={mixed.limit}). Fix: raise max_seq_length to at least {mixed.lengths[1]} (or "
        f"packing_max_seq_length when the collator has none), shrink the row's images "
        f"(configure(max_pixels_per_example=...)), or leave the row out."
    )
    assert not _shrink_warnings(record)


def test_shrink_applies_to_packed_batches_only(qwen, mixed, monkeypatch):
    """Outside a training dataloader (no packing) the rows reach upstream untouched."""
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ON_OVERFLOW", "shrink")
    unsloth_multiimage.configure(packing=True, packing_max_seq_length=mixed.limit)
    assert unsloth_multiimage.get_settings().on_overflow == "shrink"
    plain = qwen.collator(mixed.rows)
    assert [int(n) for n in plain["attention_mask"].sum(1)] == mixed.lengths


def test_a_video_row_drops_frames_evenly(qwen):
    """Eight coded frames, too many tokens even at the smallest size: the frames kept are spread
    evenly (first and last kept), decoded back from the packed batch in order."""
    from tests.support.tiles import make_tile_image
    from unsloth_multiimage.collate.train_packing import packing_for
    from unsloth_multiimage.rows.shrink import kept_frames

    tiny = qwen.tiny
    frames = [make_tile_image(0, i, (112, 112)) for i in range(8)]
    video = {
        "messages": [
            {"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "what"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
        ]
    }
    other = _row(1, [(56, 56)])
    unsloth_multiimage.configure(video="frames", video_sampling="uniform")
    plain = qwen.collator([video, other])
    assert tiny.decode(plain) == [*((0, i) for i in range(8)), (1, 0)]
    unsloth_multiimage.configure(packing=True, packing_max_seq_length=30, on_overflow="shrink")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with packing_for(qwen.model):
            batch = qwen.collator([video, other])
    (message,) = _shrink_warnings(record)
    found = re.search(r"frames 8 -> (\d+) \((\d+) dropped evenly\)", message)
    assert found, message
    kept, dropped = int(found.group(1)), int(found.group(2))
    assert 1 < kept < 8 and kept + dropped == 8
    assert tiny.decode(batch) == [*((0, i) for i in kept_frames(8, kept)), (1, 0)]
    assert kept_frames(8, kept)[0] == 0 and kept_frames(8, kept)[-1] == 7
    assert batch["input_ids"].shape[1] <= 30


def test_llama_3_2_vision_is_refused_by_name(tiny, processor, model, vision_utils):
    """One <|image|> token per image whatever its size: no budget shortens the row."""
    from unsloth_multiimage.collate.pack_plan import RowTooLongError
    from unsloth_multiimage.collate.train_packing import packing_for

    collator = vision_utils.UnslothVisionDataCollator(model, processor)
    rows = [_row(0, [(28, 28)]), _row(1, [(28, 28)] * 6, text=" ".join(["which is red"] * 8))]
    lengths = [int(n) for n in collator(rows)["attention_mask"].sum(1)]
    limit = lengths[1] - 1
    unsloth_multiimage.configure(packing=True, packing_max_seq_length=limit, on_overflow="shrink")
    with packing_for(model), pytest.raises(RowTooLongError) as caught:
        collator(rows)
    message = caught.value.message
    assert caught.value.row == 1
    assert message.startswith(
        f"unsloth_multiimage: row 1 has {lengths[1]} tokens, more than one packed sequence holds "
        f'(max_seq_length={limit}), and on_overflow="shrink" cannot make it fit: mllama\'s image tokens do not '
        f"depend on the image size (one <|image|> token per image, whatever its size)"
    ), message
    assert f"Fix: raise max_seq_length to at least {lengths[1]}" in message and "max_images" in message


def test_a_row_whose_text_alone_is_too_long_is_refused(qwen):
    from unsloth_multiimage.collate.pack_plan import RowTooLongError
    from unsloth_multiimage.collate.train_packing import packing_for

    rows = [_row(0, [(56, 56)]), _row(1, [(56, 56)], text=" ".join(["which is red"] * 20))]
    lengths = [int(n) for n in qwen.collator(rows)["attention_mask"].sum(1)]
    unsloth_multiimage.configure(packing=True, packing_max_seq_length=lengths[1] - 3, on_overflow="shrink")
    with packing_for(qwen.model), pytest.raises(RowTooLongError) as caught:
        qwen.collator(rows)
    message = caught.value.message
    assert caught.value.row == 1 and f"row 1 has {lengths[1]} tokens" in message
    assert re.search(r"even with every image at the smallest size it is (\d+) tokens", message), message
    assert int(re.search(r"smallest size it is (\d+) tokens", message).group(1)) > lengths[1] - 3


def test_the_token_report_shows_what_shrink_does_as_training_does_it(qwen, mixed):
    """``doctor --max-seq-length`` under shrink: the report's counts for the row too long are those
    the packed training batch warns about (tokens before and after, pixels)."""
    from unsloth_multiimage.collate.train_packing import packing_for
    from unsloth_multiimage.measure.tokens import TokenCounter, summarise

    unsloth_multiimage.configure(packing=True, packing_max_seq_length=mixed.limit, on_overflow="shrink")
    counter = TokenCounter(qwen.processor, max_seq_length=mixed.limit)
    report = summarise(counter.count_rows(mixed.rows), mixed.limit, counter)
    assert report.shrinking and [r.row for r in report.shrunk] == [1] and not report.refused
    lines = report.shrink_lines()
    assert lines[0].endswith("1 row(s) shrunk to fit, 0 refused") and lines[1].startswith("  shrunk row 1: ")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with packing_for(qwen.model):
            qwen.collator(mixed.rows)
    (message,) = _shrink_warnings(record)
    trained = re.search(r"row 1 \([^)]*\): (.*? px)", message).group(1)
    assert lines[1] == f"  shrunk row 1: {trained}"
    assert summarise(counter.count_rows(mixed.rows), mixed.limit + 1, counter).shrink_lines() == []


def test_a_family_not_counted_from_sizes_is_refused_after_collation_saying_why():
    """LLaVA's tokens are counted only by its processor: shrink leaves its rows alone, and the
    planner's error says why shrink did not help."""
    from tests.support.family_cases import model_of
    from tests.support.zoo import load_vision_utils
    from unsloth_multiimage.collate.pack_plan import RowTooLongError
    from unsloth_multiimage.collate.train_packing import packing_for

    tiny = tiny_of("llava")
    model = model_of(tiny)
    collator = load_vision_utils()[0].UnslothVisionDataCollator(model, tiny.processor)
    rows = [_row(0, [tiny.image_size]), _row(1, [tiny.image_size], text=" ".join(["which is red"] * 12))]
    lengths = [int(n) for n in collator(rows)["attention_mask"].sum(1)]
    unsloth_multiimage.configure(packing=True, packing_max_seq_length=lengths[1] - 1, on_overflow="shrink")
    with packing_for(model), pytest.raises(RowTooLongError) as caught:
        collator(rows)
    assert caught.value.row == 1
    assert caught.value.message.startswith(
        f"unsloth_multiimage: row 1 has {lengths[1]} tokens, more than one packed sequence holds "
        f'(max_seq_length={lengths[1] - 1}), and on_overflow="shrink" cannot make it fit: it shrinks rows of '
        f"families whose image tokens are counted exactly from the image size (qwen2_vl, qwen3_vl), and "
        f"llava's are not. Fix: raise max_seq_length to at least {lengths[1]}"
    ), caught.value.message
