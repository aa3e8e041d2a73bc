"""Property tests: through the patched collator and processor, every image lands in its own row's
slot in placeholder order (with the cross-attention mask switching on at its token), or a
ValueError names a row that really is bad. Nothing else is allowed.

Images encode (row, index) in their pixels (tests/support/tiles.py: make_tile_image / decode_tile), so a
shifted, dropped, duplicated or swapped image is caught in the tensors the model would see.

Example counts: ``UMI_HYPOTHESIS_PROFILE=ci-full`` (set by the default CI session) runs 2,000
examples per property, anything else 300 (the version-row sessions on the 2-core CI machine).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import TRANSFORMERS
from tests.support.facts import does
from tests.support.rowgen import LAYOUTS, assert_names_a_bad_row, assert_row_ok, build_row, row_specs

PC_PATH = does("unsloth_zoo", "pc_path")  # prompt/completion collation

pytestmark = pytest.mark.skipif(TRANSFORMERS is None, reason="transformers is not installed on this row")

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("umi-ci-full", max_examples=2000, **_COMMON)
settings.register_profile("umi-quick", max_examples=300, **_COMMON)
PROFILE_NAME = "umi-ci-full" if os.environ.get("UMI_HYPOTHESIS_PROFILE", "").strip() == "ci-full" else "umi-quick"
PROFILE = settings.get_profile(PROFILE_NAME)


# ------------------------------------------------------------------ the patched collator (real unsloth_zoo)


@pytest.fixture(scope="module")
def collator(zoo_collator):
    return zoo_collator


def all_text_batch_refused(collator) -> bool:
    """True on releases (before 2025.11.1) that cannot collate a batch without any image; the patch
    then says so in a ValueError (test_bad_inputs.py::test_an_all_text_batch_collates)."""
    example = {"messages": [{"role": "user", "content": [{"type": "text", "text": "describe the image"}]}]}
    try:
        collator([example])
    except ValueError as exc:
        if "is text-only" in str(exc):
            return True
        raise
    return False


@st.composite
def batches(draw):
    """1-4 rows in one chat layout (the collator reads a batch the way its first row asks), each
    valid or with one fault; sometimes one row in the other layout (a batch-level fault)."""
    layout = draw(st.sampled_from(LAYOUTS))
    specs = draw(st.lists(row_specs(layout=layout), min_size=1, max_size=4))
    mismatch = None
    if len(specs) > 1 and draw(st.integers(0, 11)) == 0:
        mismatch = draw(st.integers(1, len(specs) - 1))
        other = "messages" if layout == "pc" else "pc"
        specs[mismatch] = draw(row_specs(allow_faults=False, layout=other))
    return specs, mismatch


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("umi_property_images")


@PROFILE
@given(case=batches())
def test_collator_puts_every_image_in_its_rows_slot_or_names_the_row(case, tiny, processor, collator, image_dir):
    specs, mismatch = case
    rows = [build_row(spec, r, image_dir) for r, spec in enumerate(specs)]
    examples = [example for example, _ in rows]
    bad = {r for r, spec in enumerate(specs) if spec["fault"] is not None}
    if mismatch is not None:
        bad.add(mismatch)
    if specs[0]["layout"] == "pc" and not PC_PATH:
        bad |= {r for r, spec in enumerate(specs) if spec["layout"] == "pc"}  # this release reads `messages` only
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
