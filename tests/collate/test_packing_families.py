"""Packing is exact, family by family: the packed batch gives the padded batch's loss, per-document
losses and gradients (float32, rtol 1e-5), and every image reaches its own document.

Per family with a tiny model (tests/support/tiny_vlms/), on eager and sdpa: the REAL collator of the
installed unsloth_zoo (the processor alone on the row without it) collates 4 rows of 2, 0, 3 and 1
coded images (tests/support/tiles.py); :func:`pack_batch` packs them into one sequence and into several
(padded, the rows reordered by first-fit decreasing), with the mechanism the installed transformers
allows (tests/collate/test_packing_attention.py pins which). The coded images are decoded back from
the packed batch in the order the model consumes them. The default row runs every family; the
other rows one family per mechanism and layout (tests/support/packing_cases.py, OTHER_ROW_FAMILIES).
"""

from __future__ import annotations

import pytest

from tests.support import TRANSFORMERS, UNSLOTH_ZOO
from tests.support.packing_cases import (
    IMPLEMENTATIONS,
    RTOL,
    families,
    gradient_difference,
    images_per_row,
    model_for,
    padded_batch,
    relative,
    run,
    tiny_family,
)

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def collator_cls():
    """The installed zoo collator class, else one that calls the processor (the row without unsloth_zoo)."""
    if UNSLOTH_ZOO is not None:
        from tests.support.zoo import load_vision_utils

        return load_vision_utils()[0].UnslothVisionDataCollator
    return ProcessorCollator


class ProcessorCollator:
    """The processor on the rendered rows, labels = ids with padding ignored (no unsloth_zoo here)."""

    def __init__(self, model, processor):
        self.processor = processor

    def __call__(self, rows):
        texts = [self.processor.apply_chat_template(r["messages"], tokenize=False) for r in rows]
        images = [r["images"] for r in rows]
        kwargs = {"images": images} if any(images) else {}
        # Right padding, as the zoo collator pads for training (left padding would shift the padded
        # rows' positions in models that count them from the row's start).
        batch = self.processor(text=texts, return_tensors="pt", padding=True, padding_side="right", **kwargs)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch


def _spans(plan, lengths):
    """(sequence, start, stop) of every row in the packed batch, in row order."""
    spans = {}
    for s, seq in enumerate(plan.sequences):
        at = 0
        for r in seq:
            spans[r] = (s, at, at + lengths[r])
            at += lengths[r]
    return [spans[r] for r in range(len(lengths))]


def _plans(lengths):
    from unsloth_multiimage.collate.pack_plan import plan_packs

    several = plan_packs(lengths, max(max(lengths), (sum(lengths) + 1) // 2))
    assert len(several.sequences) > 1
    return {"one sequence": plan_packs(lengths, sum(lengths)), "several sequences": several}


def _check_exact(tiny, model, batch):
    """Pack ``batch`` both ways and compare with the padded run; returns the packed batches."""
    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.pack_split import locate_rows
    from unsloth_multiimage.collate.packing import pack_batch

    adapter = find_adapter(tiny.processor)
    layout = images_per_row(tiny)
    shares = locate_rows(batch, adapter.packing, layout, model)
    lengths = [s.length for s in shares]
    padded = run(model, batch, [(r, s.start, s.stop) for r, s in enumerate(shares)])
    assert padded.targets > 0
    out = {}
    for name, plan in _plans(lengths).items():
        packed_batch = pack_batch(batch, plan, adapter, model, layout)
        assert packed_batch["use_cache"] is False
        packed = run(model, packed_batch, _spans(plan, lengths))
        assert packed.targets == padded.targets, name
        assert relative(packed.loss, padded.loss) <= RTOL, (name, float(packed.loss), float(padded.loss))
        assert relative(packed.documents, padded.documents) <= RTOL, (name, packed.documents, padded.documents)
        worst, parameter = gradient_difference(packed.grads, padded.grads)
        assert worst <= RTOL, (name, parameter, worst)
        order = [r for seq in plan.sequences for r in seq]
        assert tiny.decode(packed_batch) == [(r, i) for r in order for i in range(layout[r])], name
        out[name] = (plan, packed_batch)
    return out


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", families())
def test_the_packed_batch_trains_exactly_like_the_padded_one(family, implementation, collator_cls):
    tiny = tiny_family(family)
    from unsloth_multiimage import find_adapter

    if find_adapter(tiny.processor).packing is None:
        pytest.skip(
            f"{family}: no packing facts (its refusal: test_a_family_without_facts_is_refused_naming_it_and_the_fallback)"
        )
    model = model_for(tiny, implementation)
    batch = padded_batch(tiny, model, collator_cls)
    if family == "paligemma" and TRANSFORMERS.major < 5 and "token_type_ids" not in batch:
        _check_refused_without_token_types(tiny, model, batch)
        return
    _check_exact(tiny, model, batch)


def _check_refused_without_token_types(tiny, model, batch):
    """transformers 4.x PaliGemma given no token_type_ids (the zoo collator there passes none) builds
    its non-training mask: every token attends to its whole row both ways. No packed batch is that."""
    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.pack_plan import plan_packs
    from unsloth_multiimage.collate.packing import PackingRefused, pack_batch

    plan = plan_packs([int(n) for n in batch["attention_mask"].sum(1)], 10_000)
    with pytest.raises(PackingRefused, match=r"paligemma .* no token_type_ids.*PaliGemmaModel"):
        pack_batch(batch, plan, find_adapter(tiny.processor), model, images_per_row(tiny))


@pytest.mark.parametrize("mode", ["latest", "cumulative"])
def test_mllama_documents_attend_only_their_own_images(mode, collator_cls):
    """Each document's tokens attend (mask 1) only to slots holding its own images, under either
    cross-attention mode; a token with nothing to attend has exactly its own slots marked."""
    import unsloth_multiimage
    from tests.support.tiles import decode_tile
    from unsloth_multiimage.collate.pack_images import OWN_SLOT

    tiny = tiny_family("mllama")
    unsloth_multiimage.configure(mllama_cross_attention=mode)
    model = model_for(tiny, "sdpa")
    for plan, packed in _check_exact(tiny, model, padded_batch(tiny, model, collator_cls)).values():
        cam, ids = packed["cross_attention_mask"], packed["aspect_ratio_ids"]
        lengths = plan.lengths
        for s, seq in enumerate(plan.sequences):
            at = 0
            for r in seq:
                rows = cam[s, at : at + lengths[r]]
                seen = sorted({int(j) for j in (rows == 1).any(-1).nonzero()[:, 1].tolist()})
                owners = {decode_tile(packed["pixel_values"][s, j, 0], tiny.processor)[0] for j in seen}
                assert owners <= {r}, (s, r, seen, owners)
                assert len(seen) == images_per_row(tiny)[r] and all(int(ids[s, j]) > 0 for j in seen)
                marked = (rows == OWN_SLOT).any(-1).any(0).nonzero().flatten().tolist()
                real_marked = [j for j in marked if int(ids[s, j]) > 0]
                assert {decode_tile(packed["pixel_values"][s, j, 0], tiny.processor)[0] for j in real_marked} <= {r}
                at += lengths[r]


def test_a_family_without_facts_is_refused_naming_it_and_the_fallback(collator_cls):
    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.pack_plan import plan_packs
    from unsloth_multiimage.collate.packing import PackingRefused, pack_batch

    tiny = tiny_family("minicpmv4_6")
    adapter = find_adapter(tiny.processor)
    assert adapter.packing is None
    model = model_for(tiny, "sdpa")
    batch = padded_batch(tiny, model, collator_cls)
    plan = plan_packs([int(n) for n in batch["attention_mask"].sum(1)], 10_000)
    with pytest.raises(PackingRefused, match=r"refused for minicpmv4_6.*configure\(packing=False\)"):
        pack_batch(batch, plan, adapter, model, images_per_row(tiny))


def test_a_key_no_fact_places_is_refused_naming_it(collator_cls):
    """A batch key the family's facts do not lay out (a video here) is never dropped or guessed."""
    import torch

    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.pack_plan import plan_packs
    from unsloth_multiimage.collate.packing import PackingRefused, pack_batch

    tiny = tiny_family("qwen2_vl" if "qwen2_vl" in families() else "mllama")
    model = model_for(tiny, "sdpa")
    batch = padded_batch(tiny, model, collator_cls)
    batch["pixel_values_videos"] = torch.zeros(4, 8)
    plan = plan_packs([int(n) for n in batch["attention_mask"].sum(1)], 10_000)
    with pytest.raises(PackingRefused, match=r"\['pixel_values_videos'\]"):
        pack_batch(batch, plan, find_adapter(tiny.processor), model, images_per_row(tiny))


def _flash_attention_ready() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not _flash_attention_ready(), reason="needs a CUDA GPU and flash-attn (flash_attention_2)")
@pytest.mark.parametrize("family", ["mllama", "qwen2_vl"])
def test_flash_attention_varlen_packing_matches_the_padded_batch(family, collator_cls):
    """flash_attention_2 reads document boundaries from position ids (one row): bfloat16 on CUDA,
    per-document losses within 2e-2 of the padded flash batch (bfloat16 kernels of other shapes)."""
    import torch

    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.pack_plan import plan_packs
    from unsloth_multiimage.collate.pack_split import locate_rows
    from unsloth_multiimage.collate.packing import pack_batch

    tiny = tiny_family(family)
    model = tiny.make_model().to("cuda", torch.bfloat16)
    model.set_attn_implementation("flash_attention_2")
    model.train()
    batch = {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in padded_batch(tiny, model, collator_cls).items()}
    for key in ("pixel_values",):
        batch[key] = batch[key].to(torch.bfloat16)
    adapter = find_adapter(tiny.processor)
    shares = locate_rows(batch, adapter.packing, images_per_row(tiny), model)
    lengths = [s.length for s in shares]
    plan = plan_packs(lengths, sum(lengths))
    packed = pack_batch(batch, plan, adapter, model, images_per_row(tiny))
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    packed = {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in packed.items()}
    padded = run(model, batch, [(r, s.start, s.stop) for r, s in enumerate(shares)])
    result = run(model, packed, _spans(plan, lengths))
    assert relative(result.documents, padded.documents) <= 2e-2
