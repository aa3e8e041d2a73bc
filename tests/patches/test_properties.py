"""Property tests: through the patched collator and processor, every image lands in its own row's
slot in placeholder order (with the cross-attention mask switching on at its token), or a
ValueError names a row that really is bad. Nothing else is allowed.

Images encode (row, index) in their pixels (tiny_mllama.make_tile_image / decode_tile), so a
shifted, dropped, duplicated or swapped image is caught in the tensors the model would see.

Example counts: ``UMI_HYPOTHESIS_PROFILE=ci-full`` (set by the default CI session) runs 2,000
examples per property, anything else ~200 (the version-row sessions on the 2-core CI machine).
"""

from __future__ import annotations

import functools
import io
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import TRANSFORMERS

pytestmark = pytest.mark.skipif(TRANSFORMERS is None, reason="transformers is not installed on this row")

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("umi-ci-full", max_examples=2000, **_COMMON)
settings.register_profile("umi-quick", max_examples=200, **_COMMON)
PROFILE_NAME = "umi-ci-full" if os.environ.get("UMI_HYPOTHESIS_PROFILE", "").strip() == "ci-full" else "umi-quick"
PROFILE = settings.get_profile(PROFILE_NAME)

ROW_NAMED = re.compile(r"\b(?:row|sample) (\d+)\b")
SIZES = [(28, 28), (28, 28), (28, 28), (56, 28), (28, 56)]
REPRS = ["pil", "pil", "pil", "pil", "png", "dict_bytes", "dict_path", "path", "rgba", "palette"]


# ------------------------------------------------------------------ images in every representation


@functools.lru_cache(maxsize=None)
def _png(row: int, index: int, size: tuple) -> bytes:
    from unsloth_multiimage.tools import tiny_mllama

    buf = io.BytesIO()
    tiny_mllama.make_tile_image(row, index, size).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("umi_property_images")


def make_image(kind: str, row: int, index: int, size: tuple, folder) -> object:
    """An image that decodes to (row, index), in the representation ``kind``."""
    from PIL import Image

    from unsloth_multiimage.tools import tiny_mllama

    if kind == "pil":
        return tiny_mllama.make_tile_image(row, index, size)
    if kind == "rgba":  # opaque alpha: composited on white it is the same colour
        return tiny_mllama.make_tile_image(row, index, size).convert("RGBA")
    if kind == "palette":  # a solid image quantizes exactly
        return tiny_mllama.make_tile_image(row, index, size).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    data = _png(row, index, size)
    if kind == "png":
        return data
    if kind == "dict_bytes":
        return {"bytes": data, "path": None}
    path = folder / f"r{row}_i{index}_{size[0]}x{size[1]}.png"
    if not path.exists():
        path.write_bytes(data)
    return {"bytes": None, "path": str(path)} if kind == "dict_path" else str(path)


CORRUPT = b"\x89PNG\r\n\x1a\n this is not an image"


# ------------------------------------------------------------------ row specs (pure data, shrink well)

FAULTS_BY_KIND = {
    "text": [None],
    "column": [None, "none_entry", "extra_image", "missing_image", "corrupt"],
    "content": [None, "bare_no_column", "corrupt"],
    "mixed": [None, "none_entry", "missing_image", "corrupt"],
}


@st.composite
def row_specs(draw, allow_faults: bool = True):
    kind = draw(st.sampled_from(["text", "column", "column", "content", "mixed"]))
    pairs = draw(st.integers(1, 3))
    n = 0 if kind == "text" else draw(st.integers(1, 6))
    turns = sorted(draw(st.lists(st.integers(0, 2 * pairs - 1), min_size=n, max_size=n)))
    if kind == "column":
        filled = [False] * n
    elif kind == "content":
        filled = [True] * n
    else:
        filled = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    reprs = draw(st.lists(st.sampled_from(REPRS), min_size=n, max_size=n))
    sizes = draw(st.lists(st.sampled_from(SIZES), min_size=n, max_size=n))
    text_first = draw(st.lists(st.booleans(), min_size=2 * pairs, max_size=2 * pairs))
    if kind == "text":
        images_key = draw(st.sampled_from(["absent", "none", "empty"]))
    elif kind == "content":
        images_key = draw(st.sampled_from(["absent", "none", "empty"]))
    elif kind == "column" and n == 1:
        images_key = draw(st.sampled_from(["list", "single"]))
    else:
        images_key = "list"
    fault = draw(st.sampled_from(FAULTS_BY_KIND[kind])) if allow_faults and draw(st.integers(0, 9)) == 0 else None
    if fault in ("none_entry", "missing_image") and not any(not f for f in filled):
        fault = None  # a mixed row whose parts all carry their image has no column entry to spoil
    fault_at = draw(st.integers(0, 5))
    return dict(kind=kind, pairs=pairs, turns=turns, filled=filled, reprs=reprs, sizes=sizes,
                text_first=text_first, images_key=images_key, fault=fault, fault_at=fault_at)


def build_row(spec: dict, row: int, folder) -> tuple[dict, int]:
    """(the example, how many images it must show); images are numbered in placeholder order."""
    n = len(spec["turns"])
    images = [make_image(spec["reprs"][k], row, k, spec["sizes"][k], folder) for k in range(n)]
    filled = list(spec["filled"])
    fault, at = spec["fault"], spec["fault_at"]
    if fault == "corrupt" and n:
        images[at % n] = CORRUPT
    if fault == "bare_no_column" and n:
        filled[at % n] = False
    messages = []
    for turn in range(2 * spec["pairs"]):
        role = "user" if turn % 2 == 0 else "assistant"
        parts = [
            {"type": "image", "image": images[k]} if filled[k] else {"type": "image"}
            for k in range(n)
            if spec["turns"][k] == turn
        ]
        text = {"type": "text", "text": "describe the image" if role == "user" else "the first"}
        messages.append({"role": role, "content": [text, *parts] if spec["text_first"][turn] else [*parts, text]})
    example: dict = {"messages": messages}
    column = [images[k] for k in range(n) if not filled[k]]
    if spec["kind"] in ("column", "mixed"):
        if fault == "none_entry" and column:
            column[at % len(column)] = None
        if fault == "extra_image":
            column.append(make_image("pil", row, n, (28, 28), folder))
        if fault == "missing_image" and column:
            column.pop()
        if spec["images_key"] == "single" and len(column) == 1:
            example["images"] = column[0]
        else:
            example["images"] = column
    elif spec["images_key"] == "none":
        example["images"] = None
    elif spec["images_key"] == "empty":
        example["images"] = []
    return example, n


# ------------------------------------------------------------------ the invariant


def _decoded(tiny, processor, batch, row: int, n: int) -> list:
    pv = batch["pixel_values"]
    got = [tiny.decode_tile(pv[row, k, 0], processor) for k in range(min(n, pv.shape[1]))]
    if n > pv.shape[1]:
        got.append(f"only {pv.shape[1]} slots for {n} images")
    return got


def assert_row_ok(tiny, processor, batch, row: int, n: int) -> None:
    """Row ``row`` shows exactly its ``n`` images (row, 0..n-1) in slot order, nothing else, and the
    cross-attention mask switches image k on at its token (never before), off for empty slots."""
    import torch

    ids = batch["input_ids"][row]
    positions = (ids == processor.image_token_id).nonzero().flatten().tolist()
    assert len(positions) == n, f"row {row}: {len(positions)} image tokens for {n} images"
    if n:
        assert _decoded(tiny, processor, batch, row, n) == [(row, k) for k in range(n)], f"row {row}"
    if "pixel_values" in batch:
        assert (batch["pixel_values"][row, n:] == 0).all(), f"row {row}: data in a slot past its {n} images"
    cam = batch.get("cross_attention_mask")
    if cam is None:
        assert n == 0
        return
    on = cam[row].bool().any(-1)  # (seq, slots)
    assert not on[:, n:].any(), f"row {row}: cross-attention to an empty slot"
    attention = batch["attention_mask"][row].bool()
    for k, p in enumerate(positions):
        assert not on[:p, k].any(), f"row {row}: image {k} visible before its token"
        assert on[p, k], f"row {row}: image {k} not visible at its token"
    if n:
        # Every real token after the first image sees the most recent image before it.
        pos = torch.tensor(positions)
        for t in range(positions[0], ids.shape[0]):
            if attention[t]:
                latest = int((pos <= t).sum()) - 1
                assert on[t, latest], f"row {row}: token {t} does not see image {latest}"


def assert_names_a_bad_row(exc: BaseException, bad: set) -> None:
    named = {int(m) for m in ROW_NAMED.findall(str(exc))}
    assert named, f"the error names no row: {exc}"
    assert named <= bad, f"the error names rows {sorted(named)}, the bad rows are {sorted(bad)}: {exc}"


# ------------------------------------------------------------------ the patched collator (real unsloth_zoo)


@pytest.fixture(scope="module")
def collator(zoo_collator):
    return zoo_collator


def all_text_batch_refused(collator) -> bool:
    """True on releases (before 2025.9.3) that cannot collate a batch without any image; the patch
    then says so in a ValueError (test_bad_inputs.py::test_an_all_text_batch_collates)."""
    example = {"messages": [{"role": "user", "content": [{"type": "text", "text": "describe the image"}]}]}
    try:
        collator([example])
    except ValueError as exc:
        if "is text-only" in str(exc):
            return True
        raise
    return False


@PROFILE
@given(specs=st.lists(row_specs(), min_size=1, max_size=8))
def test_collator_puts_every_image_in_its_rows_slot_or_names_the_row(specs, tiny, processor, collator, image_dir):
    rows = [build_row(spec, r, image_dir) for r, spec in enumerate(specs)]
    bad = {r for r, spec in enumerate(specs) if spec["fault"] is not None}
    examples = [example for example, _ in rows]
    if not bad and all(n == 0 for _, n in rows) and all_text_batch_refused(collator):
        with pytest.raises(ValueError, match="is text-only"):
            collator(examples)
        return
    if bad:
        with pytest.raises(ValueError) as info:
            collator(examples)
        assert_names_a_bad_row(info.value, bad)
        return
    batch = collator(examples)
    assert batch["input_ids"].shape[0] == len(rows)
    for r, (_, n) in enumerate(rows):
        assert_row_ok(tiny, processor, batch, r, n)


# ------------------------------------------------------------------ the patched MllamaProcessor (no zoo needed)


@st.composite
def processor_cases(draw):
    counts = draw(st.lists(st.integers(0, 6), min_size=1, max_size=8))
    layout = draw(st.sampled_from(["nested", "nested", "flat", "dropped_text_rows", "single"]))
    if layout == "dropped_text_rows" and (all(counts) or not any(counts)):
        layout = "nested"
    fault = draw(st.sampled_from([None] * 8 + ["extra", "missing"]))
    if fault == "missing" and not any(counts):
        fault = None
    fault_row = draw(st.integers(0, len(counts) - 1))
    if layout == "dropped_text_rows" and fault == "extra" and counts[fault_row] == 0:
        fault = None  # that row's list is left out of the call: nothing wrong reaches the processor
    if layout == "single" and (counts != [1] or fault is not None):
        layout = "nested"
    if fault == "missing":
        fault_row = [r for r, c in enumerate(counts) if c][fault_row % sum(1 for c in counts if c)]
    turns = [sorted(draw(st.lists(st.integers(0, 3), min_size=c, max_size=c))) for c in counts]
    return dict(counts=counts, layout=layout, fault=fault, fault_row=fault_row, turns=turns)


def _chat_text(processor, turns: list) -> str:
    messages = []
    for turn in range(4):
        role = "user" if turn % 2 == 0 else "assistant"
        parts = [{"type": "image"} for t in turns if t == turn]
        messages.append({"role": role, "content": [*parts, {"type": "text", "text": "describe the image"}]})
    return processor.apply_chat_template(messages, tokenize=False)


@PROFILE
@given(case=processor_cases())
def test_processor_puts_every_image_in_its_samples_slot_or_names_the_sample(case, tiny, processor):
    counts = case["counts"]
    texts = [_chat_text(processor, t) for t in case["turns"]]
    nested = [[tiny.make_tile_image(r, k) for k in range(c)] for r, c in enumerate(counts)]
    fault, fr = case["fault"], case["fault_row"]
    if fault == "extra":
        nested[fr].append(tiny.make_tile_image(fr, counts[fr]))
    elif fault == "missing":
        nested[fr].pop()
    layout = case["layout"]
    if layout == "flat":
        images = [img for group in nested for img in group]
    elif layout == "dropped_text_rows":
        images = [g for g, c in zip(nested, counts) if c]
    elif layout == "single":
        images = nested[0][0] if nested[0] else []
    else:
        images = nested
    call = lambda: processor(text=texts, images=images, padding=True, return_tensors="pt")  # noqa: E731
    if fault is not None:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        if layout == "flat":
            # A flat list cannot say whose image is missing: the message gives every sample's count.
            assert str(list(counts)) in message and "flat list" in message, message
        else:
            assert_names_a_bad_row(info.value, {fr})
        return
    batch = call()
    assert batch["input_ids"].shape[0] == len(counts)
    for r, c in enumerate(counts):
        assert_row_ok(tiny, processor, batch, r, c)
