"""Every family of the adapter table through the REAL ``UnslothVisionDataCollator`` of the installed
unsloth_zoo: one batch holding a 3-image row and a text-only row (TRL layout, ``"images": []``), in
both orders. Checked per family: each row's images counted back from ``input_ids`` by the adapter
([3, 0]), the three coded images decoded from the pixel tensor in their slots and in order, the
rendered placeholders per row, a finite loss and a non-zero gradient into the vision tower, and that
``count_in_ids`` sees a row truncated inside its last image. Plus: the table and the fixtures agree
(completeness), video frames are not counted as images, the Idefics2 image-row-first permutation,
and the torchvision import-only stand-in leaves nothing behind.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from tests.support import UNSLOTH_ZOO, patches_off
from tests.support.family_cases import (
    EXPECTED,
    PROCESSOR_CLASSES,
    column_row,
    counts,
    model_of,
    skip_if_mixed_rows_unsupported,
    text_row,
    tiny_of,
    upstream_failure,
    vision_gradient,
)

#: the families the through-the-collator test runs (the completeness test checks it covers the table)
COLLATOR_FAMILIES = list(EXPECTED)
ORDERS = {"image-row-first": True, "text-row-first": False}


@pytest.fixture(scope="module")
def vision_utils():
    if UNSLOTH_ZOO is None:
        pytest.skip("unsloth_zoo is not installed on this row")
    from tests.support.zoo import load_vision_utils

    return load_vision_utils()[0]


# ----------------------------------------------------------------------------------- completeness
def test_every_table_entry_has_a_fixture_and_a_collator_case():
    from tests.support import tiny_vlms
    from unsloth_multiimage.adapters import table

    assert set(EXPECTED) == set(tiny_vlms.FAMILIES), "EXPECTED and tiny_vlms.FAMILIES name different families"
    assert set(COLLATOR_FAMILIES) == set(tiny_vlms.FAMILIES)
    by_name = {a.name: a for a in table.BUILTIN_ADAPTERS}
    assert len(by_name) == len(table.BUILTIN_ADAPTERS), "two built-in adapters share a name"
    assert {name for name, _ in EXPECTED.values()} == set(by_name), (
        "an adapter without a fixture, or a fixture without one"
    )
    for family, (name, placeholder) in EXPECTED.items():
        assert by_name[name].placeholder == placeholder, family
        assert "transformers" not in vars(importlib.import_module(f"unsloth_multiimage.adapters.{name}")), name
    claimed = [cls for a in table.BUILTIN_ADAPTERS for cls in a.processor_classes]
    assert len(claimed) == len(set(claimed)), "a processor class is claimed by two adapters"
    assert set(PROCESSOR_CLASSES) == set(EXPECTED)
    for family, class_name in PROCESSOR_CLASSES.items():  # also for fixtures this row cannot build
        assert table.adapter_for_class(type(class_name, (), {})).name == EXPECTED[family][0], family


def test_every_family_the_readme_lists_has_an_adapter_a_fixture_and_a_ci_row():
    """README's families table names each adapter (in parentheses); each is in the table, has a
    fixture, and is proven through the collator on a CI row unless the table says why not."""
    import re
    from pathlib import Path

    from unsloth_multiimage.adapters import table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("| family | processor class") : readme.index("An unknown processor falls back")]
    rows = [
        line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| family") and "---" not in line
    ]
    listed = {re.search(r"\((\w+)\)", row.split("|")[1]).group(1): row for row in rows}
    assert set(listed) == {a.name for a in table.BUILTIN_ADAPTERS}, "README families table and the adapter table differ"
    fixtures = {name for name, _ in EXPECTED.values()}
    for name, row in listed.items():
        assert name in fixtures, f"{name}: no fixture"
        proven = row.split("|")[6].strip()
        assert proven != "none" or "not proven offline" in row, (
            f"{name}: not proven on any CI row, and the README does not say why"
        )


@pytest.mark.parametrize("family", COLLATOR_FAMILIES)
def test_the_fixture_processor_is_claimed_by_exactly_the_expected_adapter(family):
    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.adapters import table

    tiny = tiny_of(family)
    assert type(tiny.processor).__name__ == PROCESSOR_CLASSES[family]
    mro = {cls.__name__ for cls in type(tiny.processor).__mro__}
    claiming = [a.name for a in table.BUILTIN_ADAPTERS if mro & set(a.processor_classes)]
    assert claiming == [EXPECTED[family][0]], claiming
    assert find_adapter(tiny.processor).name == EXPECTED[family][0]
    assert find_adapter(tiny.processor).placeholder == EXPECTED[family][1]


def test_an_adapter_with_placeholder_attr_answers_with_the_processors_own_token():
    """MiniCPM-V 4.6, DeepSeek-VL, DeepSeek-OCR-2 and InternVL read their placeholder off the
    tokenizer: the adapter answers with the processor's ``image_token``, else its default."""
    from unsloth_multiimage import find_adapter

    own = type("MiniCPMV4_6Processor", (), {"image_token": "<|my_image|>"})()
    bare = type("MiniCPMV4_6Processor", (), {})()
    assert find_adapter(own).name == "minicpmv4_6" and find_adapter(own).placeholder == "<|my_image|>"
    assert find_adapter(bare).placeholder == "<|image_pad|>"


# ------------------------------------------------------------------------------ the real collator
def _rows(tiny, image_first: bool) -> tuple[list[dict], list[int], int]:
    """(examples, images per row, the image row's number)."""
    if image_first:
        return [column_row(tiny, 0, 3), text_row()], [3, 0], 0
    return [text_row(), column_row(tiny, 1, 3)], [0, 3], 1


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("family", COLLATOR_FAMILIES)
def test_three_images_and_a_text_row_through_the_real_collator(family, order, vision_utils):
    import torch

    from unsloth_multiimage import find_adapter

    tiny = tiny_of(family)
    skip_if_mixed_rows_unsupported(tiny)
    adapter = find_adapter(tiny.processor)
    model = model_of(tiny)
    examples, per_row, image_row = _rows(tiny, ORDERS[order])
    rendered = [tiny.processor.apply_chat_template(e["messages"], tokenize=False) for e in examples]
    assert [t.count(adapter.placeholder) for t in rendered] == per_row
    collator = vision_utils.UnslothVisionDataCollator(model, tiny.processor)
    known = upstream_failure(family)
    if known:
        with pytest.raises(Exception) as failed:
            collator(examples)
        chain = [failed.value]
        while chain[-1].__cause__ is not None:
            chain.append(chain[-1].__cause__)
        assert any(known[0] in str(e) for e in chain), chain
        pytest.skip(known[1])

    batch = collator(examples)

    assert batch["input_ids"].shape[0] == 2
    assert counts(tiny, batch) == per_row
    assert tiny.images_in_batch(batch) == 3
    assert tiny.decode(batch) == [(image_row, i) for i in range(3)]  # each image in its slot, in order
    assert (batch["labels"] != -100).any()
    loss = model(**batch).loss
    assert torch.isfinite(loss), loss
    loss.backward()
    assert vision_gradient(tiny, model), "no gradient reached the vision tower"

    # truncation inside the image row's last image: count_in_ids must see fewer than 3 images
    ids = batch["input_ids"][image_row].tolist()
    expanded = tiny.processor.tokenizer.convert_tokens_to_ids(tiny.expanded_token)
    last = max(i for i, t in enumerate(ids) if t == expanded)
    first_of_run = last
    while first_of_run and ids[first_of_run - 1] == expanded:
        first_of_run -= 1
    assert adapter.count_in_ids(tiny.processor, ids[:first_of_run]) < 3  # the last run cut off
    inside = adapter.count_in_ids(tiny.processor, ids[:last])  # one token of the last image cut off
    assert inside < 3 if tiny.sees_cut else inside == 3  # LLaVA-NeXT: the per-image length is not in the ids


def test_a_text_row_first_idefics2_batch_is_permuted_and_put_back(vision_utils):
    """transformers' Idefics2 image processor reads ``images[0][0]``: without the plugin a batch whose
    first row is text-only raises IndexError; with it, the processor sees the image row first and
    every output comes back in the caller's order."""
    tiny = tiny_of("idefics2")
    skip_if_mixed_rows_unsupported(tiny)
    collator = vision_utils.UnslothVisionDataCollator(model_of(tiny), tiny.processor)
    text_first = collator([text_row(), column_row(tiny, 1, 3)])
    image_first = collator([column_row(tiny, 1, 3), text_row()])
    assert counts(tiny, text_first) == [0, 3] and tiny.decode(text_first) == [(1, 0), (1, 1), (1, 2)]
    for key in ("input_ids", "attention_mask", "labels", "pixel_values", "pixel_attention_mask"):
        assert text_first[key].shape == image_first[key].shape, key
        assert text_first[key][0].equal(image_first[key][1]) and text_first[key][1].equal(image_first[key][0]), key
    # upstream alone: IndexError (images[0][0]) where the text-only row keeps its empty slot (2026.10),
    # ValueError where the release leaves that slot out (2025.9.3-2026.9.7: 2 texts, 1 image list)
    with patches_off(), pytest.raises((IndexError, ValueError)):
        collator([text_row(), column_row(tiny, 1, 3)])


# --------------------------------------------------------------------------------- video frames
VIDEO_THEN_IMAGE = {
    "qwen3_vl": [
        "<|vision_start|>",
        "<|video_pad|>",
        "<|vision_end|>",
        "<|vision_start|>",
        "<|image_pad|>",
        "<|vision_end|>",
    ],
    "glm4v": [
        "<|begin_of_video|>",
        "<|begin_of_image|>",
        "<|image|>",
        "<|end_of_image|>",
        "<|end_of_video|>",
        "<|begin_of_image|>",
        "<|image|>",
        "<|end_of_image|>",
    ],
    "gemma4": ["<|image>", "<|video|>", "<image|>", "<|image>", "<|image|>", "<image|>"],
}


@pytest.mark.parametrize("family", sorted(VIDEO_THEN_IMAGE))
def test_count_in_ids_does_not_count_video_frames(family):
    """Where video frames reuse an image marker, one video + one image counts 1 image."""
    from unsloth_multiimage import find_adapter

    tiny = tiny_of(family)
    ids = tiny.processor.tokenizer.convert_tokens_to_ids(VIDEO_THEN_IMAGE[family])
    assert find_adapter(tiny.processor).count_in_ids(tiny.processor, ids) == 1


# ------------------------------------------------------------------- the import-only stand-in
STAND_IN_USERS = ("pixtral", "mistral3", "gemma4", "gemma3n")


def test_the_torchvision_stand_in_leaves_nothing_behind(tmp_path, monkeypatch):
    """A module that imports torchvision names at its top imports under the stand-in; afterwards no
    stand-in module is in ``sys.modules``, the dropped modules are gone, and calling a stand-in name
    raises. The fixtures that use it leave the same state behind."""
    pytest.importorskip("transformers")
    from transformers.utils import import_utils

    from tests.support import tiny_vlms

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed on this row: the stand-in is never used")
    (tmp_path / "umi_tv_user.py").write_text(
        textwrap.dedent(
            """
        from torchvision.transforms.v2 import functional as tvF
        from torchvision.ops.misc import FrozenBatchNorm2d
        import umi_tv_helper

        MODE = tvF.InterpolationMode.BILINEAR
        """
        )
    )
    (tmp_path / "umi_tv_helper.py").write_text("import torchvision\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        mod = tiny_vlms.import_under_torchvision_stand_in("umi_tv_user", drop=("umi_tv_helper",))
        assert mod.MODE.value == "bilinear"
        with pytest.raises(RuntimeError, match="import-only stand-in"):
            mod.FrozenBatchNorm2d(4)
        assert "umi_tv_helper" not in sys.modules
    finally:
        sys.modules.pop("umi_tv_user", None)
    for family in STAND_IN_USERS:
        try:
            tiny_vlms.build(family)
        except tiny_vlms.Unavailable:
            pass
    left = [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]
    assert not left, left
    for dropped in (
        "transformers.models.pixtral.image_processing_pixtral",
        "transformers.models.gemma4.image_processing_gemma4",
    ):
        module = sys.modules.get(dropped)  # on 4.x image_processing_pixtral is the PIL one, imported for real
        assert module is None or not isinstance(vars(module).get("tvF"), tiny_vlms.StandIn), dropped
    assert import_utils.is_torchvision_available() is False
