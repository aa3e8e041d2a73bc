"""Which mechanism keeps packed documents apart, per family and transformers release, and the
named refusals where none can.

The expectations are written by hand from each pinned release's code: ``masking_utils`` builds
per-document masks from position ids since 4.56 (``find_packed_sequence_indices``; 4.46 - 4.50 have
no ``masking_utils`` packing); Mllama (4.56, 4.57) and PaliGemma (4.57) still build their masks in
``_update_causal_mask``, which ignores positions; GLM-4V takes text positions beside its M-RoPE rows
only from 5.x (4.57 hands its three M-RoPE rows to the mask); PaliGemma's prefix overlay spans a
whole packed row on every release; transformers 5.25 calls mask functions at per-document positions
in packed rows (``remap_positions_for_packed_sequence``), which reads Gemma 3's and Gemma 4's
sliding-layer image blocks at the wrong tokens.
"""

from __future__ import annotations

import pytest

from tests.support import TRANSFORMERS
from tests.support.packing_cases import families, model_for, tiny_family

pytest.importorskip("torch")
pytest.importorskip("transformers")


def expected_mechanism(family: str) -> str:
    if TRANSFORMERS.major == 4 and TRANSFORMERS.minor < 56:
        return "block_mask"
    if family == "paligemma":
        return "block_mask"
    if TRANSFORMERS.major == 4 and family in ("mllama", "glm4v", "glm46v"):
        return "block_mask"
    if (TRANSFORMERS.major, TRANSFORMERS.minor) >= (5, 25) and family in ("gemma3", "gemma4"):
        return "block_mask"
    return "positions"


@pytest.mark.parametrize("family", families())
def test_the_mechanism_is_the_one_the_release_allows(family):
    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.pack_attention import choose_attention

    tiny = tiny_family(family)
    adapter = find_adapter(tiny.processor)
    if adapter.packing is None:
        pytest.skip(f"{family} has no packing facts")
    for implementation in ("eager", "sdpa"):
        chosen = choose_attention(model_for(tiny, implementation), adapter.name, adapter.packing)
        assert (chosen.mechanism, chosen.implementation) == (expected_mechanism(family), implementation), chosen.reason


@pytest.mark.parametrize("family", ["mllama", "qwen2_vl", "paligemma"])
def test_flash_attention_packs_from_positions_or_is_refused_by_name(family, monkeypatch):
    """Flash attention has no 4D mask: where positions cannot isolate documents, a refusal that
    names the implementation and the fix; elsewhere the one-row variable-length layout."""
    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate import pack_attention

    if family not in families():
        pytest.skip(f"{family} does not run on this row")
    tiny = tiny_family(family)
    adapter = find_adapter(tiny.processor)
    model = model_for(tiny, "sdpa")
    monkeypatch.setattr(pack_attention, "implementation", lambda model: "flash_attention_2")
    if expected_mechanism(family) == "positions":
        assert pack_attention.choose_attention(model, adapter.name, adapter.packing).mechanism == "varlen"
    else:
        with pytest.raises(pack_attention.PackingRefused, match=r"flash_attention_2.*attn_implementation=\"sdpa\""):
            pack_attention.choose_attention(model, adapter.name, adapter.packing)
    monkeypatch.setattr(pack_attention, "implementation", lambda model: "flex_attention")
    with pytest.raises(pack_attention.PackingRefused, match=r"'flex_attention'.*eager, sdpa and flash"):
        pack_attention.choose_attention(model, adapter.name, adapter.packing)


def test_a_block_mask_is_refused_when_a_document_outgrows_the_sliding_window():
    from unsloth_multiimage.collate.pack_attention import PackingRefused, check_window, sliding_window

    if "gemma3" not in families():
        pytest.skip("gemma3 does not run on this row")
    model = model_for(tiny_family("gemma3"), "sdpa")
    window = sliding_window(model)
    assert isinstance(window, int) and window > 0
    check_window(model, "gemma3", [window])
    with pytest.raises(PackingRefused, match=rf"{window + 1} tokens, more than the sliding window \({window}\)"):
        check_window(model, "gemma3", [3, window + 1])


def test_mllama_packing_is_refused_while_its_cross_attention_patch_is_off():
    import unsloth_multiimage
    from unsloth_multiimage.collate.pack_attention import PackingRefused
    from unsloth_multiimage.collate.pack_images import check_own_slots

    model = model_for(tiny_family("mllama"), "sdpa")
    check_own_slots(model, "mllama")  # the patch is in place
    unsloth_multiimage.deactivate()
    try:
        with pytest.raises(PackingRefused, match="mllama_packed_cross_attention patch is not in place"):
            check_own_slots(model, "mllama")
    finally:
        unsloth_multiimage.activate()
    check_own_slots(model, "mllama")


def test_the_cross_attention_patch_leaves_unpacked_masks_to_upstream():
    """A mask without the packed mark gives upstream's tensors, identically."""
    import torch
    from transformers.models.mllama import modeling_mllama

    mask = torch.tensor([[[[0, 0], [0, 0]], [[1, 1], [0, 0]], [[1, 0], [1, 1]]]])  # (1, 3 tokens, 2 slots, 2 tiles)
    wrapped = modeling_mllama._prepare_cross_attention_mask
    original = wrapped.__wrapped__
    got = wrapped(mask, num_vision_tokens=3, dtype=torch.float32)
    want = original(mask, num_vision_tokens=3, dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # Marked: the empty first row keeps to its own slot 1 (both tiles, 3 vision tokens each).
    marked = mask.clone()
    marked[0, 0, 1] = 2
    biases, full_row = wrapped(marked, num_vision_tokens=3, dtype=torch.float32)
    assert torch.equal(full_row, want[1])
    row0 = biases[0, 0, 0]
    assert torch.equal(row0[6:], torch.zeros(6)) and bool((row0[:6] == torch.finfo(torch.float32).min).all())
    assert torch.equal(biases[0, 0, 1:], want[0][0, 0, 1:])
