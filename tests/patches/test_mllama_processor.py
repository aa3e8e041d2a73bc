"""The MllamaProcessor patch, on the installed transformers release, with the tiny offline model."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import TRANSFORMERS, patches_off
from tests.support.facts import does, fix_native, fix_needed
from unsloth_multiimage.collate.mllama import nest_images
from unsloth_multiimage.engine.decision import Decision
from unsloth_multiimage.errors import ImageCountError
from unsloth_multiimage.patches.mllama_processor import make_wrapper

pytestmark = pytest.mark.skipif(TRANSFORMERS is None, reason="transformers is not installed on this row")

NATIVE_MIXED = fix_native("mllama_processor", "mixed_text_only_rows")
REJECTS_FLAT = does("transformers", "rejects_flat_images")


def chat(n_images: int, words: str = "describe the image") -> list:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": words}]
    return [
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
    ]


def texts_for(processor, counts):
    return [processor.apply_chat_template(chat(c), tokenize=False) for c in counts]


def images_for(tiny, counts, size=(28, 28)):
    return [[tiny.make_tile_image(r, i, size) for i in range(c)] for r, c in enumerate(counts)]


def call(processor, **kw):
    kw.setdefault("padding", True)
    kw.setdefault("return_tensors", "pt")
    return processor(**kw)


def assert_batches_equal(a, b):
    assert set(a.keys()) == set(b.keys())
    for key in a:
        assert a[key].shape == b[key].shape, key
        assert (a[key] == b[key]).all(), key


# ---------------------------------------------------------------- nest_images (pure)


def test_flat_list_is_regrouped_by_token_counts():
    assert nest_images(["a", "b", "c"], [2, 0, 1]) == [["a", "b"], [], ["c"]]


def test_nested_list_passes_and_dropped_text_rows_are_realigned():
    assert nest_images([["a"], [], ["b", "c"]], [1, 0, 2]) == [["a"], [], ["b", "c"]]
    assert nest_images([["a"], ["b", "c"]], [1, 0, 2]) == [["a"], [], ["b", "c"]]
    with pytest.raises(ImageCountError, match="2 image lists for 3 texts"):
        nest_images([["a"], ["b", "c"]], [1, 0, 2], realign=False)


@pytest.mark.parametrize(
    "images, counts, message",
    [
        (["a", "b"], [2, 1], r"\[2, 1\] <\|image\|> tokens \(3 in all\) but 2 images"),
        ([["a"], ["b"]], [1, 2], r"sample 1 has 2 <\|image\|> token\(s\) in its text but 1 image"),
        ([["a"], "b"], [1, 1], "mix sub-lists and bare images"),
    ],
)
def test_count_mismatches_name_the_sample(images, counts, message):
    with pytest.raises(ImageCountError, match=message):
        nest_images(images, counts)


# ---------------------------------------------------------------- the patched processor


def test_flat_list_with_a_batch_of_texts_matches_the_nested_call(tiny, processor):
    counts = [2, 1, 3]
    texts = texts_for(processor, counts)
    nested = images_for(tiny, counts)
    flat = [img for row in nested for img in row]
    got = call(processor, text=texts, images=flat)
    want = call(processor, text=texts, images=nested)
    assert_batches_equal(got, want)
    assert got["pixel_values"].shape[:2] == (3, 3)


def test_without_the_patch_a_flat_list_fails_as_upstream_does(tiny, processor):
    counts = [2, 1]
    texts = texts_for(processor, counts)
    flat = [img for row in images_for(tiny, counts) for img in row]
    with patches_off():
        if REJECTS_FLAT:
            with pytest.raises(ValueError, match="tokens"):
                call(processor, text=texts, images=flat)
        else:  # 4.45.2-4.49: silently one sample holding all images
            out = call(processor, text=texts, images=flat)
            assert out["pixel_values"].shape[0] == 1 and out["input_ids"].shape[0] == 2


def test_mixed_text_only_rows(tiny, processor):
    counts = [2, 0, 1, 0]
    texts = texts_for(processor, counts)
    imgs = images_for(tiny, counts)
    out = call(processor, text=texts, images=imgs)
    assert out["pixel_values"].shape[:2] == (4, 2)
    for row in (1, 3):
        assert (out["aspect_ratio_ids"][row] == 0).all()
        assert (out["pixel_values"][row] == 0).all()
        assert (out["cross_attention_mask"][row] == 0).all()
        assert (out["aspect_ratio_mask"][row, :, 0] == 1).all() and (out["aspect_ratio_mask"][row, :, 1:] == 0).all()
    # The image rows equal what the processor makes of them alone (up to padding length).
    alone = call(processor, text=[texts[0], texts[2]], images=[imgs[0], imgs[2]])
    assert (out["pixel_values"][[0, 2]] == alone["pixel_values"]).all()
    assert (out["aspect_ratio_ids"][[0, 2]] == alone["aspect_ratio_ids"]).all()
    length = alone["input_ids"].shape[1]
    assert (out["input_ids"][[0, 2], :length] == alone["input_ids"]).all()
    with patches_off():
        if NATIVE_MIXED:
            native = call(processor, text=texts, images=images_for(tiny, counts))
            assert_batches_equal(out, native)
        else:
            # 4.45.2-4.48 and 4.57+: the mixed-batch check; 4.49-4.56: empty sub-lists fail the nesting check.
            with pytest.raises(ValueError, match="at least one image per sample|Invalid input type"):
                call(processor, text=texts, images=images_for(tiny, counts))


@pytest.mark.skipif(not NATIVE_MIXED, reason="needs transformers >= 5.23, which builds mixed batches natively")
@pytest.mark.parametrize("side", ["right", "left"])
def test_our_mixed_batch_equals_transformers_5_23_native_output(tiny, processor, side):
    """Force our mixed-row path on a release that does it natively: the outputs must be identical."""
    counts = [0, 3, 1, 0, 2]
    texts = texts_for(processor, counts)
    texts[3] = processor.apply_chat_template(
        chat(0, " ".join(["red"] * 30)), tokenize=False
    )  # longest: image rows get padded
    with patches_off():
        native = call(processor, text=texts, images=images_for(tiny, counts), padding_side=side)
        forced = make_wrapper(Decision("apply", "test", True, fixes=frozenset({"mixed_text_only_rows"})))
        ours = forced(
            type(processor).__call__.__get__(processor),
            processor,
            (),
            dict(text=texts, images=images_for(tiny, counts), padding=True, return_tensors="pt", padding_side=side),
        )
    assert_batches_equal(ours, native)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mixed_batch_cross_attention_mask_is_the_one_pass_mask(tiny, processor, side):
    """On every release: the merged batch's mask is what upstream's own mask functions give for the
    merged ids in one pass (5.23+'s native batch), also where a text-only row is the longest row."""
    from transformers.models.mllama.processing_mllama import (
        convert_sparse_cross_attention_mask_to_dense,
        get_cross_attention_token_mask,
    )

    counts = [2, 0, 1, 0]
    texts = texts_for(processor, counts)
    two_groups = [{"type": "image"}, {"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]
    texts[0] = processor.apply_chat_template([{"role": "user", "content": two_groups}], tokenize=False)
    texts[1] = processor.apply_chat_template(chat(0, " ".join(["red"] * 30)), tokenize=False)
    out = call(processor, text=texts, images=images_for(tiny, counts, size=(56, 28)), padding_side=side)
    ids = out["input_ids"].tolist()
    sparse = [get_cross_attention_token_mask(row, processor.image_token_id) for row in ids]
    want = convert_sparse_cross_attention_mask_to_dense(sparse, [[2] * c for c in counts], 4, len(ids[0]))
    assert (out["cross_attention_mask"].numpy() == want).all()
    if side == "right":  # the image rows' padding attends their last group, as upstream's does
        pad = out["attention_mask"][0].tolist().index(0)
        assert (
            out["cross_attention_mask"][0, pad:, 1, :2].eq(1).all()
            and not out["cross_attention_mask"][0, pad:, 0].any()
        )


def test_count_mismatch_names_the_sample(tiny, processor):
    texts = texts_for(processor, [1, 2])
    with pytest.raises(ImageCountError, match=r"sample 1 has 2 <\|image\|> token\(s\) in its text but 1 image"):
        call(processor, text=texts, images=images_for(tiny, [1, 1]))


def test_truncation_that_cuts_image_tokens_is_reported_per_sample(tiny, processor):
    short = processor.apply_chat_template(chat(1), tokenize=False)
    long_text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": " ".join(["red"] * 40)}, {"type": "image"}]}],
        tokenize=False,
    )
    with pytest.raises(
        ValueError, match=r"sample 1 loses 1 of its 1 <\|image\|> token\(s\) to truncation at max_length=20"
    ):
        call(
            processor,
            text=[short, long_text],
            images=images_for(tiny, [1, 1]),
            truncation=True,
            max_length=20,
        )


# ---------------------------------------------------------------- unchanged where upstream is right


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    counts=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
    sizes=st.lists(st.sampled_from([(28, 28), (56, 28), (28, 84), (60, 40)]), min_size=12, max_size=12),
    side=st.sampled_from(["right", "left"]),
)
def test_patched_output_equals_upstream_where_upstream_is_right(tiny, processor, counts, sizes, side):
    texts = texts_for(processor, counts)
    it = iter(sizes)
    nested = [[tiny.make_tile_image(r, i, next(it)) for i in range(c)] for r, c in enumerate(counts)]
    got = call(processor, text=texts, images=nested, padding_side=side)
    with patches_off(), tokenizer_side(processor, side):  # upstream < 5.0 drops the argument
        want = call(processor, text=texts, images=nested, padding_side=side)
    assert_batches_equal(got, want)


@contextlib.contextmanager
def tokenizer_side(processor, side):
    before = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = side
    try:
        yield
    finally:
        processor.tokenizer.padding_side = before


DROPS_PADDING_SIDE = fix_needed("mllama_processor", "padding_side_kwarg")


def test_padding_side_argument_is_honoured(tiny, processor):
    """TRL 0.24 - 0.28 ask for left-padded generation prompts with ``padding_side="left"``; before 5.0
    ``MllamaProcessor`` drops the argument (padding_side_kwarg). The patched call pads on the side asked
    for, equal to upstream's output with its tokenizer set to that side, and leaves the tokenizer as it was."""
    counts = [1, 3]
    texts = texts_for(processor, counts)
    images = images_for(tiny, counts)
    side_before = processor.tokenizer.padding_side
    for side in ("left", "right"):
        got = call(processor, text=texts, images=images, padding_side=side)
        assert processor.tokenizer.padding_side == side_before
        short = got["attention_mask"][0]
        assert int(short[0 if side == "left" else -1]) == 0, f"row 0 is not padded on the {side}"
        with patches_off(), tokenizer_side(processor, side):
            assert_batches_equal(got, call(processor, text=texts, images=images))
    with patches_off():
        upstream = call(
            processor, text=texts, images=images, padding_side="left" if side_before == "right" else "right"
        )
    assert (int(upstream["attention_mask"][0, -1 if side_before == "right" else 0]) == 0) == DROPS_PADDING_SIDE


# ---------------------------------------------------------------- on the model


def test_images_land_in_their_own_slots_and_the_mask_follows_their_tokens(tiny, processor):
    counts = [3, 0, 1, 2]
    texts = [
        processor.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": [
                        c for k in range(n) for c in ({"type": "image"}, {"type": "text", "text": f"image {k}"})
                    ],
                }
            ],
            tokenize=False,
        )
        for n in counts
    ]
    out = call(processor, text=texts, images=images_for(tiny, counts, size=(40, 28)))
    pv, mask, ids = out["pixel_values"], out["cross_attention_mask"], out["input_ids"]
    for row, n in enumerate(counts):
        for slot in range(pv.shape[1]):
            if slot < n:
                assert tiny.decode_tile(pv[row, slot, 0], processor) == (row, slot)
            else:
                assert (pv[row, slot] == 0).all()
        positions = (ids[row] == processor.image_token_id).nonzero().flatten().tolist()
        assert len(positions) == n
        on = mask[row, :, :, 0]  # (tokens, slots), first tile
        for slot, pos in enumerate(positions):
            end = positions[slot + 1] if slot + 1 < n else int(out["attention_mask"][row].sum())
            assert (on[:pos, slot] == 0).all(), (row, slot)
            assert (on[pos:end, slot] == 1).all(), (row, slot)
            if slot + 1 < n:  # upstream lets the last image attend through the padding too
                assert (on[end:, slot] == 0).all(), (row, slot)
        if n == 0:
            assert (mask[row] == 0).all()


def test_rows_of_0_to_3_images_train_on_the_tiny_model(tiny, processor, model):
    import torch

    counts = [0, 1, 2, 3]
    texts = texts_for(processor, counts)
    batch = call(processor, text=texts, images=images_for(tiny, counts))
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    model.train()
    loss = model(**batch, labels=labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    vision = [g for n, g in grads.items() if "vision_model" in n]
    cross = [g for n, g in grads.items() if "cross_attn" in n]
    assert vision and any(g.abs().sum() > 0 for g in vision)
    assert cross and any(g.abs().sum() > 0 for g in cross)
