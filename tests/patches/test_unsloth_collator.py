"""The UnslothVisionDataCollator patch against the REAL collator of the installed unsloth_zoo release."""

from __future__ import annotations

import inspect

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO, patches_off, upstream_pc_failure
from tests.support.facts import does, fix_native
from unsloth_multiimage.errors import ImageCountError

pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

ALL_IMAGES_NATIVE = fix_native("unsloth_collator", "all_column_images")
ALIGNED_ROWS_NATIVE = fix_native("unsloth_collator", "text_only_row_slots")
HAS_PC_PATH = does("unsloth_zoo", "pc_path")


@pytest.fixture
def make_collator(vision_utils, model, processor):
    cls = vision_utils.UnslothVisionDataCollator
    accepted = inspect.signature(cls.__init__).parameters

    def make(**kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        return cls(model, processor, **kwargs)

    make.accepts = lambda name: name in accepted
    return make


def user(*parts, text="which image has more red squares"):
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def assistant(text="the first", *parts):
    return {"role": "assistant", "content": [*parts, {"type": "text", "text": text}]}


IMG = {"type": "image"}


def column_row(tiny, row, n, size=(28, 28)):
    return {
        "messages": [user(*[IMG] * n), assistant()],
        "images": [tiny.make_tile_image(row, i, size) for i in range(n)],
    }


def decoded_slots(tiny, processor, batch, row):
    pv = batch["pixel_values"]
    out = []
    for slot in range(pv.shape[1]):
        if (pv[row, slot] == 0).all():
            continue
        out.append(tiny.decode_tile(pv[row, slot, 0], processor))
    return out


def test_the_patch_is_applied_to_the_real_class(vision_utils):
    import unsloth_multiimage

    call = vision_utils.UnslothVisionDataCollator.__dict__["__call__"]
    assert hasattr(call, "__wrapped__"), "the zoo class's __call__ is not wrapped"
    [st] = [s for s in unsloth_multiimage.status() if s.name == "unsloth_collator"]
    assert st.applied and st.decision == "apply"


def test_two_image_row_upstream_failure_and_the_fix(tiny, processor, make_collator):
    examples = [column_row(tiny, 0, 2), column_row(tiny, 1, 1)]
    collator = make_collator()
    with patches_off():
        if ALL_IMAGES_NATIVE:
            native = collator(examples)
            assert decoded_slots(tiny, processor, native, 0) == [(0, 0), (0, 1)]
        else:
            # The reported bug: only example["images"][0] reaches the processor.
            with pytest.raises(ValueError, match=r"(?i)image"):
                collator(examples)
    batch = collator(examples)
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1)]
    assert decoded_slots(tiny, processor, batch, 1) == [(1, 0)]
    assert "labels" in batch and batch["labels"].shape == batch["input_ids"].shape


def test_the_patched_batch_trains(tiny, processor, model, make_collator):
    import torch

    batch = make_collator()([column_row(tiny, 0, 3), column_row(tiny, 1, 1), column_row(tiny, 2, 2)])
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "vision_model" in n
    )
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "cross_attn" in n)


def test_text_only_rows_keep_their_slot(tiny, processor, make_collator):
    examples = [
        column_row(tiny, 0, 2),
        {"messages": [user(text="describe the image"), assistant()], "images": []},
        column_row(tiny, 2, 1),
        {"messages": [user(text="describe the image"), assistant()]},
    ]
    batch = make_collator()(examples)
    assert batch["input_ids"].shape[0] == 4
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1)]
    assert decoded_slots(tiny, processor, batch, 1) == []
    assert decoded_slots(tiny, processor, batch, 2) == [(2, 0)]
    assert decoded_slots(tiny, processor, batch, 3) == []
    assert (batch["cross_attention_mask"][[1, 3]] == 0).all()
    if not ALIGNED_ROWS_NATIVE:
        with patches_off():  # upstream crashes on [][0] or drops the rows and misaligns the batch
            with pytest.raises((ValueError, IndexError)):
                make_collator()(examples)


def test_images_in_message_content_and_multi_turn(tiny, processor, make_collator):
    img = lambda r, i: {"type": "image", "image": tiny.make_tile_image(r, i)}  # noqa: E731
    examples = [
        {"messages": [user(img(0, 0), text="describe the image"), assistant("red", img(0, 1)), user(img(0, 2))]},
        column_row(tiny, 1, 1),
    ]
    batch = make_collator()(examples)
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1), (0, 2)]
    assert decoded_slots(tiny, processor, batch, 1) == [(1, 0)]


def test_bare_placeholders_take_column_images_beside_filled_ones(tiny, processor, make_collator):
    filled = {"type": "image", "image": tiny.make_tile_image(0, 0)}
    example = {
        "messages": [user(filled, IMG, text="compare"), assistant(), user(IMG)],
        "images": [tiny.make_tile_image(0, 1), tiny.make_tile_image(0, 2)],
    }
    batch = make_collator()([example])
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1), (0, 2)]


def test_none_inside_an_images_list_names_the_row(tiny, make_collator):
    bad = column_row(tiny, 1, 2)
    bad["images"][1] = None
    with pytest.raises(ImageCountError, match=r"row 1 has None at position\(s\) \[1\]"):
        make_collator()([column_row(tiny, 0, 1), bad])


def test_whole_row_none_falls_back_to_content_images(tiny, processor, make_collator):
    example = {"messages": [user({"type": "image", "image": tiny.make_tile_image(0, 0)}), assistant()], "images": None}
    batch = make_collator()([example])
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0)]


def test_placeholder_count_mismatch_names_the_row(tiny, make_collator):
    bad = column_row(tiny, 1, 3)
    bad["messages"][0]["content"] = bad["messages"][0]["content"][1:]  # 2 placeholders, 3 images
    with pytest.raises(ImageCountError, match=r"row 1 has 3 image\(s\) in its `images` column but 2 bare"):
        make_collator()([column_row(tiny, 0, 1), bad])
    # Placeholders written as text (no image parts) are checked in the rendered chat.
    text_only_marks = column_row(tiny, 1, 3)
    text_only_marks["messages"][0]["content"] = [{"type": "text", "text": "<|image|><|image|>compare"}]
    with pytest.raises(ImageCountError, match=r"row 1 has 2 <\|image\|> token\(s\) in its text but 3 image\(s\)"):
        make_collator()([column_row(tiny, 0, 1), text_only_marks])


def test_resize_applies_to_every_image_of_the_row(tiny, processor, make_collator):
    if not make_collator.accepts("resize"):
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO} has no resize option")
    wide = {
        "messages": [user(IMG, IMG), assistant()],
        "images": [tiny.make_tile_image(0, i, (112, 28)) for i in range(2)],
    }
    as_is = make_collator(resize="max")([wide])
    squared = make_collator(resize=(28, 28))([wide])
    # A 4:1 image is tiled on a wide canvas; resized to 28x28 it needs one tile. Both images follow.
    assert (as_is["aspect_ratio_ids"][0] != as_is["aspect_ratio_ids"][0, 0]).sum() == 0
    assert (squared["aspect_ratio_ids"][0] == squared["aspect_ratio_ids"][0, 0]).all()
    assert (squared["aspect_ratio_ids"][0] != as_is["aspect_ratio_ids"][0]).all()
    assert decoded_slots(tiny, processor, squared, 0) == [(0, 0), (0, 1)]


def test_formatting_func_still_applies(tiny, processor, make_collator):
    if not make_collator.accepts("formatting_func"):
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO} has no formatting_func")
    raw = [
        {
            "question": "which image has more red squares",
            "pics": [tiny.make_tile_image(0, 0), tiny.make_tile_image(0, 1)],
        }
    ]

    def to_chat(example):
        return {
            "messages": [user(*[IMG] * len(example["pics"]), text=example["question"]), assistant()],
            "images": example["pics"],
        }

    batch = make_collator(formatting_func=to_chat)(raw)
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1)]


def test_train_on_responses_only_still_masks(tiny, processor, make_collator):
    if not make_collator.accepts("train_on_responses_only"):
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO} has no train_on_responses_only")
    collator = make_collator(
        train_on_responses_only=True,
        instruction_part="<|start_header_id|>user<|end_header_id|>\n\n",
        response_part="<|start_header_id|>assistant<|end_header_id|>\n\n",
    )
    batch = collator([column_row(tiny, 0, 2), column_row(tiny, 1, 1)])
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1)]
    labels, ids = batch["labels"], batch["input_ids"]
    image_positions = ids == processor.image_token_id
    assert (labels[image_positions] == -100).all()  # the user turn (with its images) is masked
    assert ((labels != -100).sum(dim=1) > 0).all()  # the answer is trained on


@pytest.mark.skipif(not HAS_PC_PATH, reason="prompt/completion collation arrived in unsloth_zoo 2025.9.3")
def test_prompt_completion_rows_keep_their_column_images(tiny, processor, make_collator):
    examples = [
        {
            "prompt": [user(IMG, IMG)],
            "completion": [assistant()],
            "images": [tiny.make_tile_image(0, i) for i in range(2)],
        },
        {"prompt": [user(IMG)], "completion": [assistant()], "images": [tiny.make_tile_image(1, 0)]},
    ]
    broken = upstream_pc_failure(make_collator(), tiny)
    if broken:
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO}'s own prompt/completion path fails on one embedded image: {broken}")
    batch = make_collator()(examples)
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1)]
    assert decoded_slots(tiny, processor, batch, 1) == [(1, 0)]


def test_deactivate_restores_the_original_method(vision_utils):
    import unsloth_multiimage

    cls = vision_utils.UnslothVisionDataCollator
    wrapped = cls.__dict__["__call__"]
    original = wrapped.__wrapped__
    unsloth_multiimage.deactivate()
    try:
        assert cls.__dict__["__call__"] is original
    finally:
        unsloth_multiimage.activate()
    assert cls.__dict__["__call__"].__wrapped__ is original


def test_an_image_in_a_completion_is_refused_naming_the_row(tiny, make_collator):
    examples = [
        {"prompt": [user(IMG)], "completion": [assistant()], "images": [tiny.make_tile_image(0, 0)]},
        {
            "prompt": [user(IMG)],
            "completion": [assistant("red", IMG)],
            "images": [tiny.make_tile_image(1, i) for i in range(2)],
        },
    ]
    with pytest.raises(ImageCountError, match=r"row 1 has 1 image part\(s\) in its completion"):
        make_collator()(examples)


def test_a_family_that_takes_one_image_per_row_refuses_a_multi_image_row_and_grid_fits_it(
    tiny, processor, make_collator, monkeypatch
):
    """An adapter with ``multi_image=False`` (a third party's, here): the collator names the row
    with several images and suggests the grid; with the grid strategy the row trains as one canvas."""
    from unsloth_multiimage.adapters import AdapterLookup, ModelAdapter
    from unsloth_multiimage.engine import activation

    single = ModelAdapter(
        name="one-image-vlm",
        placeholder="<|image|>",
        processor_classes=("MllamaProcessor",),
        multi_image=False,
        nesting="per_row",
    )
    monkeypatch.setattr(activation._load(), "adapters", AdapterLookup(lambda processor, config: single))
    activation.deactivate()
    activation.activate()  # the wrappers are rebuilt around the new lookup
    try:
        collator = make_collator()
        with pytest.raises(
            ValueError,
            match=r"row 1 has 2 images, but one-image-vlm models take one image per row\. "
            r"Fix: configure\(strategy=\"grid\"\)",
        ):
            collator([column_row(tiny, 0, 1), column_row(tiny, 1, 2)])
        unsloth_multiimage.configure(strategy="grid")
        batch = collator([column_row(tiny, 0, 1), column_row(tiny, 1, 2)])
        assert batch["pixel_values"].shape[1] == 1  # one canvas for the two-image row
    finally:
        monkeypatch.undo()
        activation.deactivate()
        activation.activate()


def _cuda_and_unsloth() -> bool:
    import importlib.util

    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


@pytest.mark.gpu
@pytest.mark.skipif(
    not _cuda_and_unsloth(), reason="needs a CUDA GPU and unsloth (on CPU unsloth's collator is a stand-in)"
)
def test_the_unsloth_subclass_sends_every_image(tiny, processor, model):
    import unsloth  # noqa: F401  (must come before unsloth_zoo)
    from unsloth.trainer import UnslothVisionDataCollator

    batch = UnslothVisionDataCollator(model, processor)([column_row(tiny, 0, 2), column_row(tiny, 1, 1)])
    assert decoded_slots(tiny, processor, batch, 0) == [(0, 0), (0, 1)]
    assert decoded_slots(tiny, processor, batch, 1) == [(1, 0)]
