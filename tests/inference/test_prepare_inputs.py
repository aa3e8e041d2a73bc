"""``prepare_inputs`` on the tiny Llama-3.2-Vision processor (no model, no collator: fast): the inputs
it accepts (a chat + images, a dataset row in another layout, a prompt/completion row), where it
cuts the answer off, the errors it raises (the training pipeline's, naming the row), the collator's
resize rule, the settings given for one call, and what ``describe`` reports."""

from __future__ import annotations

import pytest

import unsloth_multiimage
from unsloth_multiimage.errors import ImageCountError, RowShapeError
from unsloth_multiimage.inference import collator_image_size, resize_like_collator
from unsloth_multiimage.settings import Settings

IMG = {"type": "image"}


def _chat(n: int, question: str = "which image is red") -> list[dict]:
    return [{"role": "user", "content": [*[IMG] * n, {"type": "text", "text": question}]}]


def _answer(text: str = "the first") -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


@pytest.fixture
def images(tiny):
    return [tiny.make_tile_image(0, i) for i in range(3)]


def test_every_accepted_input_gives_the_same_tensors(processor, images):
    want = unsloth_multiimage.prepare_inputs(processor, _chat(2), images[:2])
    rows = [
        {"messages": [*_chat(2), _answer()], "images": images[:2]},  # the answer is cut off
        {"prompt": _chat(2), "completion": [_answer()], "images": images[:2]},
        {
            "conversations": [
                {"from": "human", "value": "<image>\n<image>\nwhich image is red"},
                {"from": "gpt", "value": "the first"},
            ],
            "images": images[:2],
        },
    ]
    for row in rows:
        got = unsloth_multiimage.prepare_inputs(processor, row)
        assert set(got) == set(want)
        assert all(got[k].equal(want[k]) for k in want), row
    text = unsloth_multiimage.prepare_prompt(processor, rows[0]).text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n") and "the first" not in text
    # without a generation prompt: the whole training chat, whichever layout holds it
    whole = [unsloth_multiimage.prepare_inputs(processor, row, add_generation_prompt=False) for row in rows[:2]]
    assert whole[0]["input_ids"].equal(whole[1]["input_ids"])
    assert whole[0]["input_ids"].shape[1] > want["input_ids"].shape[1]


def test_images_of_the_cut_answer_turn_leave_with_it(processor, images):
    row = {
        "messages": [*_chat(1), {"role": "assistant", "content": [IMG, {"type": "text", "text": "this one"}]}],
        "images": images[:2],
    }
    prompt = unsloth_multiimage.prepare_prompt(processor, row)
    assert len(prompt.images) == 1 and prompt.text.count("<|image|>") == 1


def test_bad_prompts_are_refused_naming_the_row(processor, images):
    with pytest.raises(ImageCountError, match=r"row 7 has 3 image\(s\) in its `images` column but 2 bare"):
        unsloth_multiimage.prepare_inputs(processor, _chat(2), images, row=7)
    with pytest.raises(TypeError, match="a dataset row carries its own images"):
        unsloth_multiimage.prepare_inputs(processor, {"messages": _chat(1), "images": images[:1]}, images[:1])
    with pytest.raises(RowShapeError, match="only assistant turns"):
        unsloth_multiimage.prepare_inputs(processor, [_answer()])
    with pytest.raises(TypeError, match="must be a list of"):
        unsloth_multiimage.prepare_inputs(processor, "which image is red")
    with pytest.raises(ImageCountError, match="row 0"):  # above the cap, as in training
        unsloth_multiimage.prepare_inputs(processor, _chat(3), images, settings=Settings(max_images=2))


def test_settings_for_one_call_leave_the_settings_in_force_alone(processor, images):
    unsloth_multiimage.configure(mllama_cross_attention="latest")
    chat = [{"role": "user", "content": [IMG, {"type": "text", "text": "first"}, IMG, {"type": "text", "text": "red"}]}]
    cumulative = unsloth_multiimage.prepare_inputs(
        processor, chat, images[:2], settings=Settings(mllama_cross_attention="cumulative")
    )
    latest = unsloth_multiimage.prepare_inputs(processor, chat, images[:2])
    assert unsloth_multiimage.get_settings().mllama_cross_attention == "latest"
    last = cumulative["cross_attention_mask"][0, -1, :, 0].tolist()
    assert last == [1, 1] and latest["cross_attention_mask"][0, -1, :, 0].tolist() == [0, 1]
    # and the other way round: "latest" asked while "cumulative" is in force
    unsloth_multiimage.configure(mllama_cross_attention="cumulative")
    again = unsloth_multiimage.prepare_inputs(processor, chat, images[:2], settings=Settings())
    assert again["cross_attention_mask"].equal(latest["cross_attention_mask"])


def test_the_collator_resize_rule(tiny):
    from PIL import Image

    wide, small = Image.new("RGB", (40, 28)), Image.new("RGB", (20, 28))
    out = resize_like_collator([wide, small], 28)
    assert out[0].size == (28, 20) and out[1] is small  # width capped, rounded; within the size: untouched
    assert resize_like_collator([small], (10, 12))[0].size == (10, 12)
    assert resize_like_collator([wide], None)[0] is wide
    assert collator_image_size(None) is None and collator_image_size(None, "max") is None
    assert collator_image_size(None, 64) == 64 and collator_image_size(None, (3, 4)) == (3, 4)
    model = type("M", (), {"config": type("C", (), {"vision_config": type("V", (), {"image_size": [56, 48]})()})()})()
    assert collator_image_size(model) == (56, 48)
    with pytest.raises(ValueError, match="resize must be"):
        collator_image_size(model, "biggest")


def test_describe_says_what_shaped_the_prompt(processor, images):
    prompt = unsloth_multiimage.prepare_prompt(
        processor, _chat(3), images, settings=Settings(strategy="grid", max_pixels_per_example=2000), resize=28
    )
    lines = prompt.describe()
    assert "adapter: mllama" in lines and "strategy: grid" in lines and "collator resize: 28" in lines
    assert "pixel budget: 2,000 pixels per example" in lines and "mllama_cross_attention: latest" in lines
    assert any(line.startswith("images: 3 given, 1 sent (") for line in lines), lines
