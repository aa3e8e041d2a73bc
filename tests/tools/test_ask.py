"""``unsloth-multiimage ask`` on the tiny Llama-3.2-Vision checkpoint saved to disk, offline: images
given as files, a dataset row in another layout (LLaVA), the settings that shaped the input printed,
and the answer equal to ``generate_answer`` on the same prompt in this process."""

from __future__ import annotations

import json

import pytest

import unsloth_multiimage
from unsloth_multiimage.tools import cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny, processor):
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    model = tiny.build_model(processor, seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for i in range(2):
        tiny.make_tile_image(0, i, (40, 28)).save(folder / f"img{i}.png")  # wider than 28: the collator resize acts
    row = {
        "conversations": [
            {"from": "human", "value": "<image>\n<image>\nwhich image is red"},
            {"from": "gpt", "value": "the first"},
        ],
        "images": ["img0.png", "img1.png"],
    }
    (folder / "rows.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return folder


def test_ask_with_image_files_prints_the_answer_and_the_settings(checkpoint, capsys):
    images = [str(checkpoint / f"img{i}.png") for i in range(2)]
    argv = ["ask", "--model", str(checkpoint), "--max-new-tokens", "3", "which image is red"]
    assert cli.main([*argv[:3], "--image", images[0], "--image", images[1], *argv[3:]]) == 0
    out = capsys.readouterr().out
    assert "asked: 'which image is red'" in out
    assert "adapter: mllama" in out and "strategy: native" in out and "mllama_cross_attention: latest" in out
    assert "images: 2 given, 2 sent (28x20, 28x20)" in out and "collator resize: 28" in out

    from unsloth_multiimage.tools.ask import load_checkpoint

    model, processor = load_checkpoint(str(checkpoint))
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "which image is red"}],
        }
    ]
    answer = unsloth_multiimage.generate_answer(model, processor, messages, images, max_new_tokens=3)
    assert f"answer: {answer.text}\n" in out


def test_ask_a_dataset_row_under_the_options_given(checkpoint, capsys):
    argv = ["ask", "--model", str(checkpoint), "--dataset", str(checkpoint / "rows.jsonl"), "--row", "0"]
    assert cli.main([*argv, "--strategy", "grid", "--cross-attention", "cumulative", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert f"asked: row 0 of {checkpoint / 'rows.jsonl'}" in out
    assert "strategy: grid" in out and "images: 2 given, 1 sent" in out and "mllama_cross_attention: cumulative" in out


def test_ask_names_what_is_wrong(checkpoint, capsys):
    assert cli.main(["ask", "--model", str(checkpoint), "--dataset", str(checkpoint / "rows.jsonl"), "--row", "5"]) == 1
    assert "has no row 5" in capsys.readouterr().err
    argv = ["ask", "--model", str(checkpoint), "--image", str(checkpoint / "img0.png"), "--image", "nope.png", "q"]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2 and "argument --image: 'nope.png': no such file" in capsys.readouterr().err
    argv = ["ask", "--model", str(checkpoint), "--dataset", str(checkpoint / "rows.jsonl"), "which image is red"]
    assert cli.main(argv) == 2
    assert "--dataset and question cannot be given together" in capsys.readouterr().err
