"""The cumulative cross-attention mask (``configure(mllama_cross_attention="cumulative")``), on every row.

Which token attends which image on hand-built chats; tensor equality with upstream for rows with
one group of images and text-only rows; the setting through configure() and the environment;
the mask in the real collator's batches; a training step with it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unsloth_multiimage
from tests.support import TRANSFORMERS, UNSLOTH_ZOO, patches_off
from unsloth_multiimage import _env
from unsloth_multiimage.collate.cross_attention import cumulative_cross_attention_mask, real_tiles
from unsloth_multiimage.engine.decision import Decision
from unsloth_multiimage.patches.mllama_processor import make_wrapper
from unsloth_multiimage.tools.doctor import cross_attention_report

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(TRANSFORMERS is None, reason="transformers is not installed on this row")

IMG = "<|image|>"


@pytest.fixture
def cumulative():
    unsloth_multiimage.configure(mllama_cross_attention="cumulative")
    yield
    unsloth_multiimage.reset_settings()


def upstream_mask(input_ids, image_id, num_tiles, max_tiles=4):
    """Upstream's own functions on these exact ids: what transformers 5.23+ builds in one pass."""
    from transformers.models.mllama.processing_mllama import (
        convert_sparse_cross_attention_mask_to_dense,
        get_cross_attention_token_mask,
    )

    ids = input_ids.tolist()
    sparse = [get_cross_attention_token_mask(row, image_id) for row in ids]
    return torch.as_tensor(convert_sparse_cross_attention_mask_to_dense(sparse, num_tiles, max_tiles, len(ids[0])))


def attends(mask, row):
    """For each token of ``row``: the image slots it attends (on any tile)."""
    m = mask[row].bool().any(dim=-1)
    return [torch.nonzero(m[t]).flatten().tolist() for t in range(m.shape[0])]


def by_token(processor, batch, row, mask):
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][row])
    return list(zip(tokens, attends(mask, row)))


def at(table, token, occurrence=0):
    return [slots for tok, slots in table if tok == token][occurrence]


# ------------------------------------------------------------------ hand-built chats


def test_which_token_attends_which_image(tiny, processor, cumulative):
    red, wide, big = (tiny.make_tile_image(0, k, size) for k, size in enumerate([(28, 28), (56, 28), (56, 56)]))
    texts = [
        f"{IMG}a{IMG}question",  # two groups
        f"hello{IMG}{IMG}question",  # one group
        f"{IMG}look . ok {IMG}{IMG}which ? {IMG}answer",  # three groups
        "text only",
    ]
    images = [[red, wide], [big, red], [red, wide, big, red], []]
    got = processor(text=texts, images=images, padding=True, return_tensors="pt")
    with patches_off():
        want = processor(text=texts[:3], images=images[:3], padding=True, return_tensors="pt")
    latest = [by_token(processor, want, r, want["cross_attention_mask"]) for r in range(3)]
    cum = [by_token(processor, got, r, got["cross_attention_mask"]) for r in range(4)]

    assert at(latest[0], "a") == at(cum[0], "a") == [0]
    assert at(latest[0], "question") == [1] and at(cum[0], "question") == [0, 1]
    assert at(latest[0], "<|begin_of_text|>") == at(cum[0], "<|begin_of_text|>") == []
    assert at(cum[1], "hello") == [] and at(latest[1], "question") == at(cum[1], "question") == [0, 1]
    assert at(latest[2], "ok") == at(cum[2], "ok") == [0]
    assert at(latest[2], "which") == [1, 2] and at(cum[2], "which") == [0, 1, 2]
    assert at(latest[2], "answer") == [3] and at(cum[2], "answer") == [0, 1, 2, 3]
    assert not got["cross_attention_mask"][3].any()
    # Real tiles only: 1, 2, 4 and 1 tiles for 28x28, 56x28, 56x56, 28x28.
    answer = [t for t, (tok, _) in enumerate(cum[2]) if tok == "answer"][0]
    assert got["cross_attention_mask"][2, answer].sum(-1).tolist() == [1, 2, 4, 1]
    # Right padding after the last image: every image shown so far.
    pad = got["attention_mask"][0].tolist().index(0)
    assert attends(got["cross_attention_mask"], 0)[pad] == [0, 1]
    # The one-group row is upstream's tensor (up to the batch's extra slots and length).
    length, slots = want["input_ids"].shape[1], want["cross_attention_mask"].shape[2]
    assert torch.equal(got["cross_attention_mask"][1, :length, :slots], want["cross_attention_mask"][1])


def test_left_padding_and_the_default_tiles(tiny, processor, cumulative):
    img = tiny.make_tile_image(0, 0, (56, 28))
    texts = [f"{IMG}look . ok {IMG}which ?", f"{IMG}a"]
    before, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "left"  # 4.x ignores padding_side=
    try:
        out = processor(text=texts, images=[[img, img], [img]], padding=True, return_tensors="pt")
    finally:
        processor.tokenizer.padding_side = before
    cam = out["cross_attention_mask"]
    table = by_token(processor, out, 0, cam)
    assert at(table, "which") == [0, 1] and at(table, "ok") == [0]
    padded = by_token(processor, out, 1, cam)
    assert padded[0] == ("<|finetune_right_pad_id|>", [])
    assert torch.equal(
        cam,
        cumulative_cross_attention_mask(
            out["input_ids"],
            processor.image_token_id,
            cam,
            real_tiles(out["aspect_ratio_ids"], out["aspect_ratio_mask"]),
        ),
    )


def test_without_the_setting_the_output_is_upstreams(tiny, processor):
    texts = [f"{IMG}a{IMG}question", f"{IMG}b"]
    images = [[tiny.make_tile_image(0, 0), tiny.make_tile_image(0, 1)], [tiny.make_tile_image(1, 0)]]
    got = processor(text=texts, images=images, padding=True, return_tensors="pt")
    with patches_off():
        want = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert torch.equal(got["cross_attention_mask"], want["cross_attention_mask"])


# ------------------------------------------------------------------ equal to upstream where both agree


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.lists(st.sampled_from(["hi", "look", "red", "?"]), max_size=3),
            st.lists(st.sampled_from(["which", "is", "red", "?"]), max_size=5),
        ),
        min_size=1,
        max_size=4,
    ),
    sizes=st.lists(st.sampled_from([(28, 28), (56, 28), (56, 56)]), min_size=12, max_size=12),
    side=st.sampled_from(["right", "left"]),
)
def test_one_group_and_text_only_rows_equal_upstream(tiny, processor, rows, sizes, side):
    """Any padded batch of rows whose images form one group (text-only rows mixed in): the
    cumulative mask is the tensor upstream's one-pass mask gives (5.23+'s, on every release)."""
    if not any(n for n, _, _ in rows):
        rows = [(1, [], ["which"]), *rows]
    texts = [f"{' '.join(pre)} {IMG * n}{' '.join(post)}" for n, pre, post in rows]
    it = iter(sizes)
    images = [[tiny.make_tile_image(r, k, next(it)) for k in range(n)] for r, (n, _, _) in enumerate(rows)]
    unsloth_multiimage.configure(mllama_cross_attention="cumulative")
    try:
        out = processor(text=texts, images=images, padding=True, padding_side=side, return_tensors="pt")
    finally:
        unsloth_multiimage.reset_settings()
    num_tiles = [[{(28, 28): 1, (56, 28): 2, (56, 56): 4}[img.size] for img in row] for row in images]
    want = upstream_mask(out["input_ids"], processor.image_token_id, num_tiles)
    assert torch.equal(out["cross_attention_mask"], want.to(out["cross_attention_mask"].dtype))


def reference(ids, image_id, num_tiles, max_images, max_tiles, length):
    """The definition, one token at a time: token t sees slot j iff p_j <= t, on its real tiles."""
    out = torch.zeros(length, max_images, max_tiles, dtype=torch.long)
    positions = [i for i, tok in enumerate(ids) if tok == image_id][:max_images]
    for t in range(length):
        for j, p in enumerate(positions):
            if p <= t:
                out[t, j, : num_tiles[j]] = 1
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data(), length=st.integers(1, 20), n_rows=st.integers(1, 3))
def test_pure_function_equals_the_definition(data, length, n_rows):
    from transformers.models.mllama.processing_mllama import (
        convert_sparse_cross_attention_mask_to_dense,
        get_cross_attention_token_mask,
    )

    image_id, pad = 2, 7
    batch_ids, tiles = [], []
    for _ in range(n_rows):
        n = data.draw(st.integers(0, length))
        ids = data.draw(st.lists(st.sampled_from([image_id, 20, 21]), min_size=n, max_size=n)) + [pad] * (length - n)
        batch_ids.append(ids)
        tiles.append([data.draw(st.integers(1, 4)) for t in ids if t == image_id])
    sparse = [get_cross_attention_token_mask(ids, image_id) for ids in batch_ids]
    max_images = max(len(s) for s in sparse)
    if max_images == 0:
        return
    up = torch.as_tensor(convert_sparse_cross_attention_mask_to_dense(sparse, tiles, 4, length))
    got = cumulative_cross_attention_mask(torch.tensor(batch_ids), image_id, up)
    assert got.dtype == up.dtype and got.shape == up.shape
    for r, ids in enumerate(batch_ids):
        assert torch.equal(got[r], reference(ids, image_id, tiles[r] + [0] * max_images, max_images, 4, length))
        positions = [i for i, t in enumerate(ids) if t == image_id]
        if not positions or positions == list(range(positions[0], positions[0] + len(positions))):
            assert torch.equal(got[r], up[r])  # one group, or text only: upstream's
    as_np = cumulative_cross_attention_mask(batch_ids, image_id, up.numpy())  # lists and numpy in, numpy out
    assert type(as_np).__name__ == "ndarray" and (as_np == got.numpy()).all()


def test_ragged_ids_and_numpy_output(tiny, processor, cumulative):
    texts = [f"{IMG}look . ok {IMG}which", f"{IMG}a"]
    img = tiny.make_tile_image(0, 0)
    out = processor(text=texts, images=[[img, img], [img]])  # no padding, no tensors: lists and a numpy mask
    cam = out["cross_attention_mask"]
    assert type(cam).__name__ == "ndarray"
    assert isinstance(out["input_ids"][0], list) and len(out["input_ids"][0]) != len(out["input_ids"][1])
    which = processor.tokenizer.convert_ids_to_tokens(out["input_ids"][0]).index("which")
    assert cam[0, which, :, 0].tolist() == [1, 1]


# ------------------------------------------------------------------ the setting


def test_configure_and_the_environment_variable(tiny, processor, monkeypatch):
    texts = [f"{IMG}a{IMG}question"]
    images = [[tiny.make_tile_image(0, 0), tiny.make_tile_image(0, 1)]]
    q = processor.tokenizer.convert_ids_to_tokens(processor(text=texts, images=images)["input_ids"][0]).index(
        "question"
    )

    def question_sees():
        return processor(text=texts, images=images, return_tensors="pt")["cross_attention_mask"][0, q, :, 0].tolist()

    assert unsloth_multiimage.get_settings().mllama_cross_attention == "latest"
    assert question_sees() == [0, 1]
    monkeypatch.setenv(_env.MLLAMA_CROSS_ATTENTION.name, "cumulative")
    assert unsloth_multiimage.get_settings().mllama_cross_attention == "cumulative"
    assert question_sees() == [1, 1]
    assert (
        unsloth_multiimage.configure(mllama_cross_attention="latest").mllama_cross_attention == "latest"
    )  # configure wins
    assert question_sees() == [0, 1]
    unsloth_multiimage.reset_settings()
    with pytest.raises(ValueError, match="mllama_cross_attention must be one of"):
        unsloth_multiimage.configure(mllama_cross_attention="all")
    monkeypatch.setenv(_env.MLLAMA_CROSS_ATTENTION.name, "everything")
    with pytest.raises(ValueError, match="mllama_cross_attention must be one of"):
        unsloth_multiimage.get_settings()
    assert (
        _env.MLLAMA_CROSS_ATTENTION in _env.VARIABLES
        and _env.MLLAMA_CROSS_ATTENTION.setting == "mllama_cross_attention"
    )


def test_the_mask_does_not_depend_on_the_active_fixes(tiny, processor, cumulative):
    """Built wherever the wrapper runs: with no fix active at all, and with only the mixed-row fix."""
    texts = [f"{IMG}a{IMG}question", "text only"]
    images = [[tiny.make_tile_image(0, 0), tiny.make_tile_image(0, 1)], []]
    with patches_off():
        call = type(processor).__call__.__get__(processor)
        alone = make_wrapper(Decision("apply", "test", True, fixes=frozenset()))(
            call, processor, (), dict(text=texts[:1], images=images[:1], return_tensors="pt")
        )
        mixed = make_wrapper(Decision("apply", "test", True, fixes=frozenset({"mixed_text_only_rows"})))(
            call, processor, (), dict(text=texts, images=images, padding=True, return_tensors="pt")
        )
    for out in (alone, mixed):
        q = processor.tokenizer.convert_ids_to_tokens(out["input_ids"][0]).index("question")
        assert out["cross_attention_mask"][0, q, :, 0].tolist() == [1, 1]
    assert not mixed["cross_attention_mask"][1].any()


def test_doctor_line_says_whether_the_mask_is_built(monkeypatch):
    assert cross_attention_report().startswith("mllama_cross_attention: latest")
    unsloth_multiimage.configure(mllama_cross_attention="cumulative")
    assert "built by the mllama_processor patch" in cross_attention_report()
    unsloth_multiimage.deactivate()
    try:
        monkeypatch.setenv(_env.DISABLE_PATCHES.name, "mllama_processor")
        unsloth_multiimage.activate()
        line = cross_attention_report()
        assert "not applied" in line and "blocked" in line and "stays upstream's" in line
    finally:
        unsloth_multiimage.deactivate()
        monkeypatch.delenv(_env.DISABLE_PATCHES.name)
        unsloth_multiimage.activate()


def test_the_patch_is_applied_on_every_matrix_row_and_beyond():
    """The cumulative mask needs the wrapper: the patch must never be `native` (see the patch
    module's docstring). A table edit that makes it native somewhere fails here on purpose."""
    import sys

    from unsloth_multiimage.engine import compat

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from tests.support import REPO

    matrix = tomllib.loads((REPO / "compat" / "matrix.toml").read_text(encoding="utf-8"))
    versions = {row["transformers"] for row in matrix["rows"].values()} | {"99.0.0"}
    for version in sorted(versions):
        decision = compat.decide("mllama_processor", version)
        assert decision.applies and decision.state != "native", (version, decision)


# ------------------------------------------------------------------ through the collator, and training


def _multi_turn_rows(tiny):
    def row(r):
        return {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "look at this image ."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": "which colour is in both images ?"}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
            ],
            "images": [tiny.make_tile_image(r, 0), tiny.make_tile_image(r, 1, (56, 28))],
        }

    text_only = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ],
        "images": [],
    }
    return [row(0), text_only, row(1)]


@pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")
def test_the_real_collator_hands_the_model_the_cumulative_mask(tiny, processor, zoo_collator, cumulative):
    batch = zoo_collator(_multi_turn_rows(tiny))
    cam = batch["cross_attention_mask"]
    assert torch.equal(cam, cumulative_cross_attention_mask(batch["input_ids"], processor.image_token_id, cam))
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert cam[0, tokens.index("which"), :, 0].tolist() == [1, 1]
    assert not cam[1].any()


def test_a_training_step_with_the_cumulative_mask(tiny, processor, model, cumulative):
    from unsloth_multiimage.demo.training import SimpleCollator

    batch = SimpleCollator(processor)(_multi_turn_rows(tiny))
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][2])
    assert batch["cross_attention_mask"][2, tokens.index("which"), :, 0].tolist() == [1, 1]
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    cross = [p.grad for n, p in model.named_parameters() if "cross_attn" in n and p.grad is not None]
    assert cross and any(g.abs().sum() > 0 for g in cross)
    with torch.no_grad():  # the mask reaches the model: the latest-group mask gives other logits
        unsloth_multiimage.configure(mllama_cross_attention="latest")
        latest = SimpleCollator(processor)(_multi_turn_rows(tiny))
        assert not torch.equal(latest["cross_attention_mask"], batch["cross_attention_mask"])
        assert not torch.allclose(model(**latest).logits, model(**batch).logits)
