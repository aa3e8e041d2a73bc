"""``doctor --dataset FILE --max-seq-length N --packing --batch-size B`` end to end on a small JSONL
dataset (the tiny Llama 3.2 Vision processor): its figures equal a plan made from the lengths the
processor itself gives each row; under ``on_overflow="shrink"`` it names the rows refused."""

from __future__ import annotations

import json
import re

import pytest

import unsloth_multiimage

pytest.importorskip("PIL")

IMG = {"type": "image"}
#: images per row: LLaVA-like single images among Mantis-like 2-8 image rows
IMAGES = (1, 1, 2, 8, 1, 3, 1, 5, 1, 1, 2, 6, 1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("packing")
    for k in range(8):
        Image.new("RGB", (30 + 7 * k, 20 + 3 * k), (30 * k, 0, 0)).save(folder / f"{k}.png")
    rows = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [IMG] * n + [{"type": "text", "text": "which image has more red " * (1 + i % 4)}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
            ],
            "images": [f"{k}.png" for k in range(n)],
        }
        for i, n in enumerate(IMAGES)
    ]
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def _lengths(processor, rows, folder):
    """Each row's length as the processor itself makes it (images decoded)."""
    from PIL import Image

    out = []
    for r in rows:
        text = processor.apply_chat_template(r["messages"], tokenize=False)
        images = [Image.open(folder / p).convert("RGB") for p in r["images"]]
        out.append(len(processor(text=[text], images=[images], add_special_tokens=False)["input_ids"][0]))
    return out


def test_doctor_packing_reports_the_plan_of_the_counted_rows(dataset, processor, capsys):
    from unsloth_multiimage.collate.pack_plan import plan_packs
    from unsloth_multiimage.tools import cli

    path, rows = dataset
    lengths = _lengths(processor, rows, path.parent)
    limit, batch = max(lengths) + 10, 4
    argv = ["doctor", "--no-import", "--dataset", str(path), "--max-seq-length", str(limit)]
    assert cli.main([*argv, "--packing", "--batch-size", str(batch)]) == 0
    out = capsys.readouterr().out.split("Packing plan", 1)[1]
    sequences, padded, packed = [], 0, 0
    for start in range(0, len(lengths), batch):
        chunk = lengths[start : start + batch]
        plan = plan_packs(chunk, limit)
        sequences.append(len(plan.sequences))
        padded += len(chunk) * max(chunk)
        packed += plan.padded_tokens
    real = sum(lengths)
    assert f"{len(rows)} row(s) in {len(sequences)} batch(es); {real:,} real tokens" in out
    mean = sum(sequences) / len(sequences)
    assert f"sequences per batch: {mean:.2f} (min {min(sequences)}, max {max(sequences)}) for {batch} rows" in out
    assert f"pack fill: {real / (sum(sequences) * limit):.1%}" in out
    assert (
        f"padding share: padded {1 - real / padded:.1%} ({padded:,} slots) -> packed {1 - real / packed:.1%} "
        f"({packed:,} slots)" in out
    )
    assert "rows shrunk: 0; 0 row(s) refused" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith(("Pack: ", "Packing saves little here")), last


def test_doctor_packing_under_shrink_names_the_llama_rows_it_refuses(dataset, processor, capsys):
    from unsloth_multiimage.tools import cli

    path, rows = dataset
    lengths = _lengths(processor, rows, path.parent)
    limit = sorted(lengths)[-3]  # the two longest rows do not fit
    too_long = sorted(k for k, n in enumerate(lengths) if n > limit)
    unsloth_multiimage.configure(on_overflow="shrink")
    argv = ["doctor", "--no-import", "--dataset", str(path), "--max-seq-length", str(limit), "--packing"]
    cli.main(argv)
    out = capsys.readouterr().out
    report, plan = out.split("Packing plan", 1)
    assert f'on_overflow="shrink" (packed training batches, max_seq_length={limit}): 0 row(s) shrunk to fit, ' in report
    for k in too_long:
        assert re.search(
            rf"refused row {k}: unsloth_multiimage: row {k} has {lengths[k]} tokens, .*mllama's image tokens do not "
            rf"depend on the image size",
            report,
        ), report
    assert f'on_overflow="shrink": 0 row(s) shrunk; {len(too_long)} row(s) refused' in plan
    assert plan.strip().splitlines()[-1].startswith(f"Fix first: {len(too_long)} row(s) are longer than")


def test_doctor_packing_needs_a_length(dataset, capsys):
    from unsloth_multiimage.tools import cli

    path, _rows = dataset
    assert cli.main(["doctor", "--no-import", "--dataset", str(path), "--packing"]) == 2
    captured = capsys.readouterr()
    assert not captured.out
    assert "--packing needs --max-seq-length" in captured.err
    assert "Fix: add --max-seq-length" in captured.err
