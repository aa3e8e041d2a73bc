"""The ``serial`` strategy: one user turn per image (pure rewrite, pipeline, dry run), then through the
REAL unsloth_zoo collator on the tiny Mllama (coded pixels prove the order; the cross-attention mask
proves what the question sees). The other families: tests/adapters/test_serial_families.py."""

from __future__ import annotations

import copy

import pytest
from PIL import Image

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO
from unsloth_multiimage.errors import ImageCountError
from unsloth_multiimage.rows.chat import image_parts, messages_of
from unsloth_multiimage.rows.pipeline import prepare_batch
from unsloth_multiimage.rows.plan import plan_row
from unsloth_multiimage.rows.policy import apply_policies
from unsloth_multiimage.rows.serial import consecutive_turns, needs_serial, serialise, template_refusal
from unsloth_multiimage.settings import Settings, get_settings

IMG = {"type": "image"}


def text(t):
    return {"type": "text", "text": t}


def colour(k, size=(8, 8)):
    return Image.new("RGB", size, (40 * k, 0, 0))


def texts(message):
    return [p.get("text") if p.get("type") == "text" else "<img>" for p in message["content"]]


# ---------------------------------------------------------------------------------- the rewrite
def test_a_three_image_turn_becomes_three_labelled_turns_with_the_question_last():
    row = {
        "messages": [
            {"role": "user", "content": [text("Look:"), IMG, text("then"), IMG, IMG, text("Which is red?")], "x": 1},
            {"role": "assistant", "content": [text("the first")]},
        ],
        "images": [colour(0), colour(1), colour(2)],
        "id": 7,
    }
    before = copy.deepcopy(row)
    out = serialise(row)
    assert row == before  # input untouched
    assert [m["role"] for m in out["messages"]] == ["user", "user", "user", "assistant"]
    assert [texts(m) for m in out["messages"][:3]] == [
        ["Look:", "Image 1:", "<img>"],
        ["then", "Image 2:", "<img>"],
        ["Image 3:", "<img>", "Which is red?"],
    ]
    assert all(m["x"] == 1 for m in out["messages"][:3])  # the message's other keys kept
    assert out["images"] is row["images"] and out["id"] == 7
    assert serialise(out) is out  # idempotent
    assert consecutive_turns(out) and not consecutive_turns(row)


def test_rows_with_one_image_per_turn_are_the_same_object():
    one = {"messages": [{"role": "user", "content": [IMG, text("q")]}], "images": [colour(0)]}
    multi_turn = {
        "messages": [
            {"role": "user", "content": [IMG]},
            {"role": "assistant", "content": [text("a")]},
            {"role": "user", "content": [IMG, text("q")]},
        ],
        "images": [colour(0), colour(1)],
    }
    for row in (one, multi_turn, {"messages": [{"role": "user", "content": "plain text"}]}):
        assert not needs_serial(row)
        assert serialise(row) is row
        out, plans = apply_policies([row], [plan_row(row, 0)], Settings(strategy="serial"))
        assert out[0] is row


def test_prompt_completion_and_list_rows():
    pc = {
        "prompt": [{"role": "user", "content": [IMG, IMG, text("q")]}],
        "completion": [{"role": "assistant", "content": [text("a")]}],
    }
    out = serialise(pc)
    assert [texts(m) for m in out["prompt"]] == [["Image 1:", "<img>"], ["Image 2:", "<img>", "q"]]
    assert out["completion"] == pc["completion"]
    listed = [
        {"role": "user", "content": [{"type": "image", "image": colour(0)}, {"type": "image", "image": colour(1)}]}
    ]
    assert len(serialise(listed)) == 2


def test_the_policies_keep_every_image_in_order_and_the_plan_agrees():
    images = [colour(k, (20, 10)) for k in range(4)]
    row = {
        "messages": [
            {"role": "user", "content": [IMG] * 4 + [text("q")]},
            {"role": "assistant", "content": [text("a")]},
        ],
        "images": images,
    }
    out, plans = apply_policies(
        [row],
        [plan_row(row, 0)],
        Settings(strategy="serial", max_images=3, on_excess="keep_last", max_pixels_per_example=300),
    )
    (example,), (plan,) = out, plans
    assert [len(image_parts([m])) for m in messages_of(example)] == [1, 1, 1, 0]
    assert [img.getpixel((0, 0)) for img in plan.images] == [(40, 0, 0), (80, 0, 0), (120, 0, 0)]
    assert sum(w * h for w, h in (img.size for img in plan.images)) <= 300
    fresh = plan_row(example, 0)
    assert (fresh.placeholders, fresh.upstream_count) == (3, 3)


def test_a_column_row_without_placeholders_cannot_be_serialised():
    row = {"messages": [{"role": "user", "content": "<|image|><|image|> q"}], "images": [colour(0), colour(1)]}
    with pytest.raises(ImageCountError, match='row 0 .* strategy="serial" cannot tell which placeholder'):
        apply_policies([row], [plan_row(row, 0)], Settings(strategy="serial"))


def test_the_dry_run_sees_the_serial_turns(tmp_path):
    paths = []
    for k in range(2):
        paths.append(str(tmp_path / f"{k}.png"))
        colour(k).save(paths[-1])
    row = {"messages": [{"role": "user", "content": [IMG, IMG, text("q")]}], "images": paths}
    (prepared,) = prepare_batch([row], Settings(strategy="serial"), headers_only=True)
    assert [texts(m) for m in messages_of(prepared.example)] == [["Image 1:", "<img>"], ["Image 2:", "<img>", "q"]]
    assert len(prepared.plan.images) == 2


def test_the_setting_and_its_environment_variable(monkeypatch):
    assert unsloth_multiimage.configure(strategy="serial").strategy == "serial"
    unsloth_multiimage.reset_settings()
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_STRATEGY", "serial")
    assert get_settings().strategy == "serial"


def test_template_refusal_probes_each_template_once():
    calls = []

    def alternating(chat):
        calls.append(1)
        roles = [m["role"] for m in chat]
        if any(a == b for a, b in zip(roles, roles[1:])):
            raise ValueError("Conversation roles must alternate user/assistant/user/assistant/...")
        return "ok"

    why = template_refusal(alternating, "test-alternating")
    assert why is not None and "roles must alternate" in why
    assert template_refusal(alternating, "test-alternating") == why and len(calls) == 1
    assert template_refusal(lambda chat: " ".join(str(m["content"]) for m in chat), "test-joins") is None
    assert "drops one" in template_refusal(lambda chat: str(chat[-1]["content"]), "test-drops")


# ------------------------------------------------------------------ the real collator, tiny Mllama
zoo_only = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")


def tile_row(tiny, row, n):
    return {
        "messages": [
            {"role": "user", "content": [IMG] * n + [text("which colour is in both ?")]},
            {"role": "assistant", "content": [text("red")]},
        ],
        "images": [tiny.make_tile_image(row, i) for i in range(n)],
    }


def slots(tiny, processor, batch, row):
    pv = batch["pixel_values"]
    return [tiny.decode_tile(pv[row, s, 0], processor) for s in range(pv.shape[1]) if not (pv[row, s] == 0).all()]


def question_sees(processor, batch, row):
    """The image slots the last token before the answer attends."""
    ids = batch["input_ids"][row].tolist()
    word = processor.tokenizer.convert_tokens_to_ids("?")
    q = max(i for i, t in enumerate(ids) if t == word)
    return batch["cross_attention_mask"][row, q].bool().any(dim=-1).nonzero().flatten().tolist()


@zoo_only
@pytest.mark.parametrize("mode, seen", [("latest", [2]), ("cumulative", [0, 1, 2])])
def test_mllama_serial_turns_through_the_real_collator(tiny, processor, zoo_collator, mode, seen):
    unsloth_multiimage.configure(strategy="serial", mllama_cross_attention=mode)
    examples = [tile_row(tiny, 0, 3), tile_row(tiny, 1, 1)]
    batch = zoo_collator(examples)
    assert slots(tiny, processor, batch, 0) == [(0, 0), (0, 1), (0, 2)]  # every image, in order
    assert slots(tiny, processor, batch, 1) == [(1, 0)]
    ids = batch["input_ids"][0].tolist()
    image = processor.image_token_id
    assert ids.count(image) == 3
    # three user turns: each image token is in its own turn (a turn header between any two)
    header = processor.tokenizer.convert_tokens_to_ids("<|start_header_id|>")
    at = [i for i, t in enumerate(ids) if t == image]
    assert all(header in ids[a:b] for a, b in zip(at, at[1:]))
    assert question_sees(processor, batch, 0) == seen  # latest: its own turn's image only
    assert question_sees(processor, batch, 1) == [0]


@zoo_only
def test_mllama_serial_row_trains(tiny, processor, model, zoo_collator):
    import torch

    unsloth_multiimage.configure(strategy="serial", mllama_cross_attention="cumulative")
    batch = zoo_collator([tile_row(tiny, 0, 2), tile_row(tiny, 1, 3)])
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_preview_draws_the_serial_turns_and_the_mask_the_question_gets(tiny, processor, tmp_path):
    from unsloth_multiimage.tools.preview import render_preview

    meta = render_preview(
        tile_row(tiny, 0, 3), processor, tmp_path / "serial.png", strategy="serial", cross_attention="cumulative"
    )
    assert meta["n_images"] == 3 and meta["strategy"] == "serial"
    assert [meta["text"].find(f"Image {i}:") for i in (1, 2, 3)] == sorted(
        meta["text"].find(f"Image {i}:") for i in (1, 2, 3)
    )
    assert meta["text"].count("<|start_header_id|>user") == 3
    assert meta["mask_kind"] == "cumulative"
