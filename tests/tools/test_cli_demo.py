"""The user-facing commands: ``demo`` (trains), ``preview`` (PNG of one row), ``doctor --dataset``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import run_cli

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ data


def test_demo_data_answers_need_several_images_and_words_are_known(tiny):
    from unsloth_multiimage.demo import demo_data
    from unsloth_multiimage.rows.plan import plan_row

    rows = demo_data.make_rows(16, seed=3)
    again = demo_data.make_rows(16, seed=3)
    assert [r["messages"] for r in rows] == [r["messages"] for r in again]
    assert all(
        list(a.tobytes() for a in plan_row(r, i).images) == list(b.tobytes() for b in plan_row(s, i).images)
        for i, (r, s) in enumerate(zip(rows, again))
    )
    kinds = {demo_data.row_kind(i) for i in range(len(rows))}
    assert kinds == {"column", "embedded", "multi_turn", "text_only"}
    words = set(tiny.WORDS)
    for i, row in enumerate(rows):
        plan = plan_row(row, i)
        for m in row["messages"]:
            for part in m["content"]:
                if part["type"] == "text":
                    assert set(part["text"].split()) <= words, part["text"]
        if demo_data.row_kind(i) != "text_only":
            assert len(plan.images) >= 2
            answer = row["messages"][-1]["content"][0]["text"]
            assert answer in {f"the {o}" for o in demo_data.ORDINALS}


# ------------------------------------------------------------------------------------------ demo


def _losses(stdout: str) -> tuple[float, float]:
    m = re.search(r"loss: first \d+ steps ([\d.]+) -> last \d+ steps ([\d.]+)", stdout)
    assert m, stdout
    return float(m.group(1)), float(m.group(2))


def test_demo_trains_and_the_loss_falls():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    proc = run_cli("demo", "--steps", "8")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, last = _losses(proc.stdout)
    assert last < first
    m = re.search(r"images sent to the model: (\d+) of (\d+)", proc.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 0, proc.stdout
    # after training: held-out multi-image questions answered through prepare_inputs + generate
    answered = r"    ([23]) images: '.+' -> '.*' \(expected 'the (?:first|second|third)': (?:right|wrong)\)"
    answers = re.findall(answered, proc.stdout)
    assert len(answers) == 3, proc.stdout
    assert "demo OK" in proc.stdout


@pytest.mark.heavy
def test_demo_grid_strategy():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    proc = run_cli("demo", "--steps", "8", "--strategy", "grid")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, last = _losses(proc.stdout)
    assert last < first


# ------------------------------------------------------------------------------------------ preview


def _check_heatmap(png: Path, meta: dict, expected) -> None:
    from PIL import Image

    from unsloth_multiimage.tools.preview import MASK_OFF, MASK_ON

    img = Image.open(png).convert("RGB")
    assert img.size == tuple(meta["size"])
    x0, y0, x1, y1 = meta["mask_box"]
    cw, ch = meta["cell_size"]
    seq, slots = expected.shape
    assert (x1 - x0, y1 - y0) == (slots * cw, seq * ch)
    assert 0 <= x0 < x1 <= img.size[0] and 0 <= y0 < y1 <= img.size[1]
    bright = sum(MASK_ON) / 3
    dark = sum(MASK_OFF) / 3
    ones = 0
    for i in range(seq):
        for s in range(slots):
            px = img.getpixel((x0 + s * cw + cw // 2, y0 + i * ch + ch // 2))
            level = sum(px) / 3
            if expected[i, s] == 1:
                ones += 1
                assert abs(level - bright) < 10, (i, s, px)
            else:
                assert abs(level - dark) < 10, (i, s, px)
    assert ones > 0


@pytest.mark.parametrize("row", [0, 3])  # a column row; a multi-turn row (images in two turns)
def test_preview_png_matches_the_mask_tensor(tmp_path, processor, tiny, row):
    from unsloth_multiimage.demo import demo_data
    from unsloth_multiimage.demo.training import SimpleCollator
    from unsloth_multiimage.rows.plan import plan_row
    from unsloth_multiimage.tools.preview import render_preview

    example = demo_data.make_rows(8, seed=0)[row]
    n_images = len(plan_row(example, 0).images)
    out = tmp_path / "p.png"
    meta = render_preview(example, processor, out, strategy="native")
    batch = SimpleCollator(processor)([example])  # the same row through the same code path
    cam = batch["cross_attention_mask"]
    assert meta["mask_shape"] == tuple(cam.shape)
    assert cam.shape[2] == n_images == meta["n_images"]
    assert meta["text"].count("<|image|>") == n_images
    _check_heatmap(out, meta, cam[0, :, :, 0])


@pytest.mark.heavy
def test_preview_cli_on_a_jsonl_row(tmp_path):
    pytest.importorskip("transformers")
    from PIL import Image

    from unsloth_multiimage.demo import demo_data

    path = demo_data.to_jsonl(tmp_path / "d.jsonl", demo_data.make_rows(4, seed=1), tmp_path / "img")
    out = tmp_path / "preview.png"
    proc = run_cli("preview", "--dataset", str(path), "--row", "2", "--out", str(out))  # row 2: images in content
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(out) in proc.stdout
    assert Image.open(out).size[0] > 100


def test_preview_grid(tmp_path, processor):
    from unsloth_multiimage.demo import demo_data
    from unsloth_multiimage.tools.preview import render_preview

    meta = render_preview(demo_data.make_rows(2)[0], processor, tmp_path / "g.png", strategy="grid")
    assert meta["n_images"] == 1 and meta["mask_shape"][2] == 1


def test_preview_draws_the_cumulative_mask_when_configured(tmp_path, processor):
    import unsloth_multiimage
    from unsloth_multiimage.collate.cross_attention import cumulative_cross_attention_mask
    from unsloth_multiimage.demo import demo_data
    from unsloth_multiimage.demo.training import SimpleCollator
    from unsloth_multiimage.tools.preview import render_preview

    example = demo_data.make_rows(8, seed=0)[3]  # multi_turn: an image in turn one, the others with the question
    assert demo_data.row_kind(3) == "multi_turn"
    latest = SimpleCollator(processor)([example])["cross_attention_mask"]
    cumulative = cumulative_cross_attention_mask(
        SimpleCollator(processor)([example])["input_ids"], processor.image_token_id, latest
    )
    assert not (latest == cumulative).all()
    meta = render_preview(example, processor, tmp_path / "latest.png")
    assert meta["mask_kind"] == "latest" and "mask latest" in meta["title"]
    _check_heatmap(tmp_path / "latest.png", meta, latest[0, :, :, 0])
    unsloth_multiimage.configure(mllama_cross_attention="cumulative")  # the setting in force
    meta = render_preview(example, processor, tmp_path / "cumulative.png")
    assert meta["mask_kind"] == "cumulative" and "mask cumulative" in meta["title"]
    _check_heatmap(tmp_path / "cumulative.png", meta, cumulative[0, :, :, 0])
    unsloth_multiimage.reset_settings()
    meta = render_preview(example, processor, tmp_path / "c2.png", cross_attention="cumulative")  # or per call
    assert meta["mask_kind"] == "cumulative" and unsloth_multiimage.get_settings().mllama_cross_attention == "latest"
    one_group = render_preview(demo_data.make_rows(2)[0], processor, tmp_path / "one.png", cross_attention="cumulative")
    assert one_group["mask_kind"] == "same"
