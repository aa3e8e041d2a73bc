"""The token report (``doctor --dataset FILE --max-seq-length N``): counts equal the real processor's,
and the rows it names as cut are exactly the rows the REAL unsloth_zoo collator refuses."""

from __future__ import annotations

import copy

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO
from unsloth_multiimage.errors import ImageCountError
from unsloth_multiimage.measure.tokens import TokenCounter, percentile, summarise
from unsloth_multiimage.rows.pipeline import prepare_batch

IMG = {"type": "image"}
WORDS = "which image has more red"


def row(make, n, size=(28, 28), words=WORDS, turns=1, seed=0):
    """``turns`` user turns of ``n`` images each and a question of ``words``."""
    messages = []
    for _ in range(turns):
        messages.append({"role": "user", "content": [IMG] * n + [{"type": "text", "text": words}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "the first"}]})
    return {"messages": messages, "images": [make(seed, i, size) for i in range(n * turns)]}


def test_percentile_is_nearest_rank():
    assert percentile([], 50) == 0
    assert [percentile(list(range(1, 101)), q) for q in (50, 95, 100)] == [50, 95, 100]
    assert percentile([7], 95) == 7


@pytest.fixture(scope="module")
def mllama_rows(tiny):
    long = " ".join([WORDS] * 6)
    return [
        row(tiny.make_tile_image, 0, words=long),
        row(tiny.make_tile_image, 1),
        row(tiny.make_tile_image, 3, words=long),
        row(tiny.make_tile_image, 2, turns=2, seed=3),
        row(tiny.make_tile_image, 1, words=long, seed=4),
    ]


def test_mllama_counts_from_headers_equal_the_processor(tiny, processor, mllama_rows):
    counter = TokenCounter(processor)
    assert counter.from_headers and "exact from image headers" in counter.method
    for k, r in enumerate(mllama_rows):
        got = counter.count_row(r, k)
        text = processor.apply_chat_template(r["messages"], tokenize=False)
        out = processor(text=[text], images=[r["images"]] if r["images"] else None, add_special_tokens=False)
        assert got.total == len(out["input_ids"][0]) and got.images == len(r["images"])
        ids = list(out["input_ids"][0])
        if r["images"]:
            assert got.image_end == max(i for i, t in enumerate(ids) if t == processor.image_token_id) + 1


@pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")
@pytest.mark.parametrize("strategy", ["native", "serial"])
def test_the_cut_rows_are_exactly_those_the_real_collator_refuses(tiny, processor, vision_utils, mllama_rows, strategy):
    import inspect

    if "max_seq_length" not in inspect.signature(vision_utils.UnslothVisionDataCollator.__init__).parameters:
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO}'s collator has no max_seq_length: it never truncates")
    unsloth_multiimage.configure(strategy=strategy)
    counter = TokenCounter(processor)
    rows = counter.count_rows(mllama_rows)
    model = tiny.build_model(processor, seed=0)
    totals = sorted({r.image_end for r in rows if r.images})
    checked = 0
    for n in {totals[0] - 1, totals[len(totals) // 2], totals[-1] - 1, max(r.total for r in rows)}:
        report = summarise(rows, n, counter)
        collator = vision_utils.UnslothVisionDataCollator(model, processor, max_seq_length=n)
        refused = {}
        for k, example in enumerate(mllama_rows):
            if not rows[k].images:
                continue  # no image tokens to cut (and older zoo releases cannot collate an image-less batch)
            try:
                collator([example])
            except ImageCountError as exc:  # alone in its batch: "sample 0"; the report names the dataset row
                refused[k] = str(exc).replace("sample 0", f"sample {k}")
        assert [r.row for r in report.cut] == list(refused), (n, report.cut)
        for r in report.cut:  # the very error training raises
            assert report.cut_message(r) == f"row {r.row}: training raises ImageCountError: {refused[r.row]}"
        checked += bool(refused)
    assert checked >= 2  # the lengths tried do cut some rows


def test_the_suggestions(tiny, processor, mllama_rows):
    counter = TokenCounter(processor)
    rows = counter.count_rows(mllama_rows)
    report = summarise(rows, 10, counter)
    assert report.p100 == max(r.total for r in rows)
    assert report.suggestions[0].startswith(f"max_seq_length={report.p100} fits every row")
    assert "does not shorten mllama rows" in report.suggestions[1]
    assert summarise(rows, report.p100, counter).suggestions == []
    with pytest.raises(ValueError, match="max_seq_length must be a positive integer"):
        summarise(rows, 0)


def test_a_bad_row_is_reported_not_counted(processor):
    counter = TokenCounter(processor)
    bad = {"messages": [{"role": "user", "content": [IMG, IMG]}], "images": []}
    got = counter.count_row(bad, 5)
    assert got.error is not None and "row 5" in got.error
    assert summarise([got], 4).p100 == 0


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "gemma3"])
def test_other_families_count_what_their_processor_makes(family):
    """Qwen from the image headers, Gemma 3 by running its processor: both equal the processor's output."""
    pytest.importorskip("transformers")
    from tests.support import tiny_vlms

    try:
        tiny = tiny_vlms.build(family)
    except tiny_vlms.Unavailable as exc:
        pytest.skip(f"{family} cannot be built offline here: {exc}")
    counter = TokenCounter(tiny.processor)
    assert counter.from_headers == family.startswith("qwen")
    for k, size in enumerate([(32, 32), (64, 48), (100, 30), (40, 120)]):
        r = row(tiny_vlms.make_tile_image, 2, size)
        got = counter.count_row(r, k)
        text = tiny.processor.apply_chat_template(r["messages"], tokenize=False)
        out = tiny.processor(text=[text], images=[r["images"]], add_special_tokens=False)
        assert got.total == len(out["input_ids"][0]), (size, got)
        assert 0 < got.image_end <= got.total and got.text + got.image == got.total


def test_the_pixel_budget_suggested_for_qwen_makes_every_row_fit():
    pytest.importorskip("transformers")
    from tests.support import tiny_vlms

    try:
        tiny = tiny_vlms.build("qwen3_vl")
    except tiny_vlms.Unavailable as exc:
        pytest.skip(f"qwen3_vl cannot be built offline here: {exc}")
    processor = copy.deepcopy(tiny.processor)  # a checkpoint whose min/max pixels leave sizes free
    ip = processor.image_processor
    ip.size = type(ip.size)(shortest_edge=16 * 16, longest_edge=128 * 128)
    if hasattr(ip, "min_pixels"):  # 4.x keeps them beside `size` too (as a checkpoint's config sets both)
        ip.min_pixels, ip.max_pixels = 16 * 16, 128 * 128
    rows = [row(tiny_vlms.make_tile_image, n, size) for n, size in ((1, (32, 32)), (3, (64, 64)), (2, (48, 96)))]
    counter = TokenCounter(processor)
    counted = counter.count_rows(rows)
    n = max(r.total for r in counted) - 20
    report = summarise(counted, n, counter)
    budget = [s for s in report.suggestions if s.startswith("max_pixels_per_example=")]
    assert budget, report.suggestions
    value = int(budget[0].split("=")[1].split()[0])
    for k, r in enumerate(rows):  # the counts under that budget, from the processor itself
        unsloth_multiimage.configure(max_pixels_per_example=value)
        got = TokenCounter(processor).count_row(r, k)
        (prepared,) = prepare_batch([r])
        text = processor.apply_chat_template(prepared.example["messages"], tokenize=False)
        out = processor(text=[text], images=[list(prepared.plan.images)], add_special_tokens=False)
        assert got.total == len(out["input_ids"][0]) <= n


def test_doctor_max_seq_length_names_the_cut_rows_and_exits_1(tmp_path, capsys):
    pytest.importorskip("transformers")
    import json

    from PIL import Image

    from unsloth_multiimage.tools import cli

    for k in range(3):
        Image.new("RGB", (30, 20), (60 * k, 0, 0)).save(tmp_path / f"{k}.png")
    rows = [
        {
            "messages": [
                {"role": "user", "content": [IMG] * n + [{"type": "text", "text": " ".join([WORDS] * n)}]},
                {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
            ],
            "images": [f"{k}.png" for k in range(n)],
        }
        for n in (0, 1, 3)
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["doctor", "--no-import", "--dataset", str(path)]
    assert cli.main([*argv, "--max-seq-length", "200"]) == 0
    out = capsys.readouterr().out
    assert "0 row(s) whose image tokens max_seq_length=200 cuts" in out and "exact from image headers" in out
    assert cli.main([*argv, "--max-seq-length", "6"]) == 1  # row 2's third image token is its 7th
    out = capsys.readouterr().out
    assert "row 2: training raises ImageCountError: unsloth_multiimage: sample 2 loses 1 of its 3" in out
    assert "1 row(s) whose image tokens max_seq_length=6 cuts" in out
    assert "would fit: max_seq_length=" in out
