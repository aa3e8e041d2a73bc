"""GRPO prompt rows and DPO preference rows from the layouts ``to_messages`` reads (pure Python),
and the real TRL DPO collator taking a converted row (its images where TRL looks for them)."""

from __future__ import annotations

import pytest

from unsloth_multiimage.errors import FormatError
from unsloth_multiimage.formats.preference import to_grpo_prompt, to_preference

IMAGE = {"type": "image", "text": None}


def _text(text):
    return {"type": "text", "text": text}


LLAVA = {
    "id": 7,
    "image": ["a.png", "b.png"],
    "conversations": [
        {"from": "human", "value": "<image>\n<image>\nWhich is red?"},
        {"from": "gpt", "value": "The first."},
    ],
}


def test_a_llava_row_becomes_a_grpo_prompt_with_its_answer():
    out = to_grpo_prompt(LLAVA, 3)
    assert out["prompt"] == [{"role": "user", "content": [IMAGE, IMAGE, _text("Which is red?")]}]
    assert out["images"] == ["a.png", "b.png"]
    assert out["answer"] == "The first."
    assert out["id"] == 7 and "conversations" not in out


def test_a_prompt_completion_row_keeps_its_prompt_and_answers_with_the_completion():
    row = {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count."}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": "1"}]}],
        "images": ["x.png"],
    }
    out = to_grpo_prompt(row)
    assert out["prompt"][0]["content"] == [IMAGE, _text("Count.")] and out["answer"] == "1"
    assert out["images"] == ["x.png"] and "completion" not in out


def test_an_image_in_the_answer_is_refused_naming_the_row():
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Draw"}]},
            {"role": "assistant", "content": [{"type": "image"}]},
        ],
        "images": ["x.png"],
    }
    with pytest.raises(FormatError, match="row 4 has an image after its last user turn"):
        to_grpo_prompt(row, 4)


@pytest.mark.parametrize(
    "chosen, rejected",
    [
        ("The first.", "The second."),
        ({"role": "assistant", "content": "The first."}, [{"role": "assistant", "content": "The second."}]),
    ],
)
def test_a_string_prompt_with_tags_becomes_a_dpo_row(chosen, rejected):
    row = {
        "prompt": "<image><image>Which is red?",
        "images": ["a.png", "b.png"],
        "chosen": chosen,
        "rejected": rejected,
    }
    out = to_preference(row, 0)
    assert out["prompt"] == [{"role": "user", "content": [IMAGE, IMAGE, _text("Which is red?")]}]
    assert out["images"] == ["a.png", "b.png"]
    assert out["chosen"] == [{"role": "assistant", "content": [_text("The first.")]}]
    assert out["rejected"] == [{"role": "assistant", "content": [_text("The second.")]}]


def test_whole_conversations_as_answers_keep_the_turns_after_the_prompt():
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which?"}]}]
    row = {
        "prompt": prompt,
        "images": ["a.png"],
        "chosen": [*prompt, {"role": "assistant", "content": [{"type": "text", "text": "Left."}]}],
        "rejected": [*prompt, {"role": "assistant", "content": [{"type": "text", "text": "Right."}]}],
    }
    out = to_preference(row, 2)  # the repeated prompt (its image part included) is dropped
    assert _texts(out["chosen"]) == ["Left."] and out["images"] == ["a.png"]
    row["chosen"] = [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "Left."}]}]
    with pytest.raises(FormatError, match="row 2: 'chosen' holds an image"):
        to_preference(row, 2)
    row["chosen"] = [{"role": "user", "content": "Which?"}, {"role": "assistant", "content": "Left."}]
    row["rejected"] = [{"role": "user", "content": "Which?"}, {"role": "assistant", "content": "Right."}]
    out = to_preference(row, 2)
    assert _texts(out["chosen"]) == ["Left."] and _texts(out["rejected"]) == ["Right."]


def _texts(turns):
    return [p["text"] for t in turns for p in t["content"] if p["type"] == "text"]


def test_a_llava_conversation_with_answers_in_columns_is_a_preference_prompt():
    row = {**LLAVA, "chosen": "The first.", "rejected": "The second."}
    out = to_preference(row, 1)
    assert out["prompt"] == [{"role": "user", "content": [IMAGE, IMAGE, _text("Which is red?")]}]
    assert out["images"] == ["a.png", "b.png"] and out["id"] == 7


@pytest.mark.parametrize(
    "row, match",
    [
        ({"prompt": "<image>Hi", "images": ["a.png"], "chosen": "x"}, "row 5 has no 'rejected' column"),
        ({"prompt": "<image>Hi", "images": ["a.png"], "chosen": "x", "rejected": ""}, "'rejected' has no answer text"),
        ({"prompt": "<image>Hi", "images": ["a.png"], "chosen": 3, "rejected": "y"}, "'chosen' is int"),
        ({"prompt": "<image><image>Hi", "images": ["a.png"], "chosen": "x", "rejected": "y"}, "row 5"),
    ],
)
def test_bad_preference_rows_name_the_row_and_the_fix(row, match):
    with pytest.raises(FormatError, match=match):
        to_preference(row, 5)


def test_trls_vision_preference_collator_takes_a_converted_row():
    """The real TRL collator (trl 1.x) on a converted row: both images reach its processor call."""
    pytest.importorskip("torch")
    dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    collator_cls = getattr(dpo, "DataCollatorForVisionPreference", None)
    if collator_cls is None:
        pytest.skip("this trl has no DataCollatorForVisionPreference (trl < 0.29)")
    from tests.support.facts import installed, supported

    if not supported("trl_dpo_collator"):
        pytest.skip(f"trl {installed('trl_dpo_collator')} is outside the trl_dpo_collator patch's supported range")
    from tests.support.tiles import make_tile_image
    from unsloth_multiimage import tiny_mllama

    processor = tiny_mllama.build_processor()
    row = {
        "prompt": "<image><image>Which is red?",
        "images": [make_tile_image(0, 0), make_tile_image(0, 1)],
        "chosen": "red",
        "rejected": "blue",
    }
    batch = collator_cls(processor)([to_preference(row, 0)])
    assert (batch["aspect_ratio_ids"] > 0).sum(dim=1).tolist() == [2, 2]  # chosen and rejected rows
    assert batch["cross_attention_mask"].shape[1] == batch["input_ids"].shape[1]
