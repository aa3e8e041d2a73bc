"""``unsloth-multiimage demo --compare`` on a small budget (the accuracy goal is benchmarks/compare_fusion.py's)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import run_cli

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"^compare: first_image=([\d.]+)% grid=([\d.]+)% every_image=([\d.]+)% every_image_cumulative=([\d.]+)% "
    r"serial=([\d.]+)% \(chance ([\d.]+)%, (\d+) held-out rows\)$"
)


# ------------------------------------------------------------------ pure helpers


def test_task_rows_need_both_images_and_use_known_words(tiny):
    from unsloth_multiimage.demo import compare_data

    rows = compare_data.make_rows(30, seed=4)
    assert [r["messages"] for r in rows] == [r["messages"] for r in compare_data.make_rows(30, seed=4)]
    assert sum(r["kind"] == "later_turn" for r in rows) == 10
    words = set(tiny.WORDS)
    for row in rows:
        assert len(row["images"]) == 2 and row["answer"] in compare_data.PALETTE
        assert compare_data.answer_of(row) == row["answer"]
        assert compare_data.image_groups(row) == (2 if row["kind"] == "later_turn" else 1)
        for m in row["messages"]:
            for part in m["content"]:
                if part["type"] == "text":
                    assert set(part["text"].split()) <= words, part["text"]
    text_between = {
        "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a"}, {"type": "image"}]}]
    }
    assert compare_data.image_groups(text_between) == 2 and compare_data.row_kind(text_between) == "later_turn"


def test_answer_spans_find_the_last_answer(tiny, processor):
    from unsloth_multiimage.demo import compare, compare_data
    from unsloth_multiimage.demo.training import SimpleCollator

    rows = [compare_data.with_answer(r, a) for r, a in zip(compare_data.make_rows(3, seed=0), ["red", "white", "blue"])]
    batch = SimpleCollator(processor)(rows)
    spans = compare.answer_spans(batch, processor)
    tokens = [processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][r, a:b]) for r, (a, b) in enumerate(spans)]
    assert tokens == [["red"], ["white"], ["blue"]]
    labels = compare.answer_labels(batch, processor)
    assert [int((row != -100).sum()) for row in labels] == [1, 1, 1]


# ------------------------------------------------------------------ the command


@pytest.mark.heavy
def test_compare_runs_every_arm_and_plots(tmp_path):
    pytest.importorskip("transformers")
    from PIL import Image

    png = tmp_path / "compare.png"
    proc = run_cli("demo", "--compare", "--steps", "20", "--eval-rows", "24", "--plot", str(png))
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = out.strip().splitlines()
    m = SUMMARY.match(lines[-1])
    assert m, lines[-1]
    values = [float(v) for v in m.groups()[:6]]
    assert all(0 <= v <= 100 for v in values) and abs(values[5] - 100 / 6) < 0.1 and m.group(7) == "24"
    for arm in ("first_image", "grid", "every_image", "every_image_cumulative", "serial"):
        assert re.search(rf"^{arm}\s+[\d.]+%\s+[\d.]+%\s+[\d.]+%", out, re.M), out
    # beside the likelihood accuracy: exact match by generation (prepare_inputs + generate)
    assert re.search(r"^arm\s+accuracy\s+generated\s", out, re.M), out
    # the real collator where unsloth_zoo imports on CPU (2026.5+), else the named fallback
    assert "the real UnslothVisionDataCollator" in out or "a minimal chat-template collator" in out, out
    assert "the cross-attention layer is last" in out
    # the arms got what their settings say: 1 image slot per row, 1 grid canvas, 2 images
    slots = dict(re.findall(r"^  (\w+)\s+[\d.]+%.*?([\d.]+) image slot", out, re.M))
    assert slots == {
        "first_image": "1.0",
        "grid": "1.0",
        "every_image": "2.0",
        "every_image_cumulative": "2.0",
        "serial": "2.0",
    }, out
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] >= 600


@pytest.mark.heavy
def test_compare_with_a_local_model_and_a_dataset(tiny, processor, tmp_path):
    """--model PATH and --dataset FILE (a foreign layout): candidates are the held-out answers."""
    import json

    from unsloth_multiimage.demo import compare_data, demo_data

    model = tiny.build_model(processor, seed=0)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    rows = compare_data.make_rows(24, seed=1)
    path = demo_data.to_jsonl(
        tmp_path / "rows.jsonl", [{"messages": r["messages"], "images": r["images"]} for r in rows], tmp_path / "img"
    )
    llava = tmp_path / "llava.jsonl"  # the same rows as LLaVA / ShareGPT conversations
    with open(path) as src, open(llava, "w") as dst:
        for line in src:
            row = json.loads(line)
            conv = []
            for m in row["messages"]:
                value = "".join("<image>" if p["type"] == "image" else p["text"] for p in m["content"])
                conv.append({"from": "human" if m["role"] == "user" else "gpt", "value": value})
            dst.write(json.dumps({"image": row["images"], "conversations": conv}) + "\n")
    proc = run_cli(
        "demo",
        "--compare",
        "--model",
        str(tmp_path / "model"),
        "--dataset",
        str(llava),
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--eval-rows",
        "8",
        "--arms",
        "first_image,every_image_cumulative",
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    m = re.search(r"(\d+) distinct held-out answers\): 16 training rows, 8 held-out rows", out)
    assert m, out
    assert f"local weights at {tmp_path / 'model'}" in out
    last = out.strip().splitlines()[-1]
    m2 = re.match(
        r"^compare: first_image=[\d.]+% every_image_cumulative=[\d.]+% \(chance ([\d.]+)%, 8 held-out rows\)$", last
    )
    assert m2, last
    assert abs(float(m2.group(1)) - 100 / int(m.group(1))) < 0.1


@pytest.mark.heavy
def test_compare_names_a_bad_arm():
    proc = run_cli("demo", "--compare", "--arms", "every_image,all_images", "--steps", "2")
    assert proc.returncode == 1 and "--arms: unknown arm(s) all_images. Fix:" in proc.stderr, proc.stdout + proc.stderr


# ------------------------------------------------------------------ the honest A/B


@pytest.fixture(scope="module")
def compare_model(tiny, processor):
    from unsloth_multiimage.demo import compare

    layers, cross, _ = compare.LAYOUTS["cross-last"]
    return tiny.build_model(processor, seed=0, text_hidden=64, text_layers=layers, cross_attention_layers=cross).eval()


@pytest.mark.parametrize("arm", ["first_image", "grid", "every_image", "every_image_cumulative", "serial"])
def test_each_arms_generation_gets_exactly_the_prompt_its_training_collator_built(
    arm, compare_model, processor, monkeypatch
):
    """The generated score of an arm reads the model on the inputs its collator trained it on: for a
    held-out row (same-turn and later-turn), the inputs ``generate`` gets equal the collator's batch
    for that row cut where the answer starts (before: generation resized the grid canvas to one tile
    while training did not, and scored grid 36 % generated against 88 % by likelihood)."""
    import torch

    from unsloth_multiimage.demo import compare, compare_data
    from unsloth_multiimage.demo.training import load_zoo_collator
    from unsloth_multiimage.inference import generation
    from unsloth_multiimage.settings import overriding

    assert arm in compare.ARMS
    rows = compare_data.make_rows(6, seed=1)
    held = [next(r for r in rows if r["kind"] == kind) for kind in ("same_turn", "later_turn")]
    seen = []
    real = generation.prepare_prompt

    def spy(*args, **kwargs):
        prompt = real(*args, **kwargs)
        seen.append(prompt.inputs)
        return prompt

    monkeypatch.setattr(generation, "prepare_prompt", spy)
    zoo_cls, _why = load_zoo_collator()
    with overriding(**{**compare._ARM_DEFAULTS, **compare.ARM_SETTINGS[arm]}):
        collator = compare._collator(compare_model, processor, zoo_cls)
        compare.generated_answers(compare_model, processor, held)
        assert len(seen) == len(held)
        for row, inputs in zip(held, seen):
            batch = collator([row])
            (start, _end) = compare.answer_spans(batch, processor)[0]
            assert inputs["input_ids"].shape[1] == start, (arm, row["kind"])
            assert set(inputs) == set(batch) - {"labels"}, (sorted(inputs), sorted(batch))
            for key in inputs:
                want = (
                    batch[key][:, :start]
                    if key in ("input_ids", "attention_mask", "cross_attention_mask")
                    else batch[key]
                )
                assert want.shape == inputs[key].shape and torch.equal(want, inputs[key]), (arm, row["kind"], key)
