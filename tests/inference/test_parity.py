"""``prepare_inputs`` sees exactly what training saw: for a training row, the tensors it returns for
the row's prompt equal the REAL unsloth_zoo collator's batch for the same row cut where the answer
starts (``input_ids``, ``attention_mask``, the pixel tensors, the family's image-size tensors and,
for Llama 3.2 Vision, the cross-attention mask), on every family of tests/support/tiny_vlms/, under every
strategy and policy (native, grid, serial where the settings have it, the pixel budget, the
``max_images`` cap both ways) and both ``mllama_cross_attention`` modes. Where the collator refuses
a row, ``prepare_inputs`` refuses the prompt with the same error class.

Hypothesis varies the row (1-3 coded images, their width, so the collator's resize acts, and the
layout: ``messages``, prompt/completion where the release collates it, LLaVA given to
``prepare_inputs`` as is and to the collator converted); few examples (one model per family, shared).
"""

from __future__ import annotations

import os
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO
from tests.support.facts import does
from tests.support.inference_cases import EXPECTED, IMG, assistant, model_of, tiny_family, upstream_failure, user
from unsloth_multiimage.settings import Strategy

PC_PATH = does("unsloth_zoo", "pc_path")
#: The collator's resize in training: prepare_inputs follows the rule of unsloth_zoo's own resize
#: (``own_resize``, ``resize="min"``); releases before ``resize_images`` resize nothing
#: (``resize="max"``); those between resize by an inline rule of their own, which prepare_inputs
#: does not follow (None).
if UNSLOTH_ZOO is None or does("unsloth_zoo", "own_resize"):
    RESIZE: str | None = "min"
elif not does("unsloth_zoo", "resize_images"):
    RESIZE = "max"
else:
    RESIZE = None
FULL = os.environ.get("UMI_HYPOTHESIS_PROFILE", "").strip() == "ci-full"
EXAMPLES = 3 if FULL else 1

POLICIES: dict[str, dict[str, Any]] = {
    "native": {},
    "grid": {"strategy": "grid"},
    "pixel_budget": {"max_pixels_per_example": 1500},
    "max_images_keep_first": {"max_images": 2, "on_excess": "keep_first"},
    "max_images_keep_last": {"max_images": 1, "on_excess": "keep_last"},
}
if "serial" in get_args(Strategy):
    POLICIES["serial"] = {"strategy": "serial"}
#: keys shaped (batch, seq_len, ...): cut at the prompt's length
SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "cross_attention_mask")

pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

_collators: dict[str, Any] = {}


def collator_of(tiny: Any) -> Any:
    """The real collator of the family's tiny model, built once."""
    if tiny.family not in _collators:
        from tests.support.zoo import load_vision_utils

        _collators[tiny.family] = load_vision_utils()[0].UnslothVisionDataCollator(model_of(tiny), tiny.processor)
    return _collators[tiny.family]


def make_row(tiny: Any, n: int, wide: bool, layout: str) -> tuple[dict, dict]:
    """(the row prepare_inputs gets, the row the collator gets): ``n`` coded images."""
    from tests.support.tiny_vlms import make_tile_image

    w, h = tiny.image_size
    images = [make_tile_image(0, i, (w * 2 if wide else w, h)) for i in range(n)]
    question = "which image has more red"
    if layout == "llava":
        tags = "<image>\n" * n
        given = {
            "conversations": [{"from": "human", "value": tags + question}, {"from": "gpt", "value": "the first"}],
            "images": images,
        }
        return given, unsloth_multiimage.formats.to_messages(given)
    if layout == "prompt_completion":
        row = {"prompt": [user(*[IMG] * n, text=question)], "completion": [assistant()], "images": images}
        return row, row
    row = {"messages": [user(*[IMG] * n, text=question), assistant()], "images": images}
    return row, row


def same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def assert_prompt_of(batch: Any, inputs: Any) -> None:
    """``inputs`` is ``batch`` (one row) cut at the prompt's length, key by key."""
    n = inputs["input_ids"].shape[1]
    assert batch["input_ids"].shape[1] > n, "the collator's row should continue with the answer"
    expected = {k for k in batch if k != "labels"}
    assert set(inputs) == expected, (sorted(inputs), sorted(expected))
    for key in expected:
        want = batch[key][:, :n] if key in SEQUENCE_KEYS else batch[key]
        assert same(want, inputs[key]), key


def outcome(call: Any) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except ValueError as exc:  # RowError and the processors' own refusals
        return None, exc


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("family", list(EXPECTED))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    n=st.integers(1, 3),
    wide=st.booleans(),
    layout=st.sampled_from(["messages", "prompt_completion", "llava"] if PC_PATH else ["messages", "llava"]),
)
def test_the_prompt_is_the_training_batch_cut_where_the_answer_starts(family, policy, n, wide, layout):
    tiny = tiny_family(family)
    known = upstream_failure(family)
    if known:
        pytest.skip(known[1])
    if RESIZE is None:
        if policy == "grid":  # the canvas is wider than the model's image size
            pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO} resizes wide images by its own inline rule (not followed)")
        wide = False
    collator, model = collator_of(tiny), model_of(tiny)
    given_row, trained_row = make_row(tiny, n, wide, layout)
    modes = ("latest", "cumulative") if family == "mllama" else ("latest",)
    for mode in modes:
        unsloth_multiimage.reset_settings()
        configured = unsloth_multiimage.configure(mllama_cross_attention=mode, **POLICIES[policy])
        batch, refused = outcome(lambda: collator([trained_row]))
        inputs, refused_too = outcome(
            lambda: unsloth_multiimage.prepare_inputs(tiny.processor, given_row, model=model, resize=RESIZE)
        )
        if refused is not None and "upstream code" in str(refused) and refused_too is None:
            continue  # upstream's own limit (PaliGemma's processor refuses the text-only completion call)
        if refused is not None:
            assert refused_too is not None, f"the collator refuses the row ({refused}), prepare_inputs does not"
            assert type(refused_too) is type(refused) or "unsloth_multiimage" not in str(refused), (
                refused,
                refused_too,
            )
            continue
        assert refused_too is None, f"prepare_inputs refuses what the collator takes: {refused_too}"
        assert_prompt_of(batch, inputs)
        # the settings passed explicitly give the same tensors as the settings in force
        unsloth_multiimage.reset_settings()
        explicit = unsloth_multiimage.prepare_inputs(
            tiny.processor, given_row, model=model, settings=configured, resize=RESIZE
        )
        assert all(same(inputs[k], explicit[k]) for k in inputs)
