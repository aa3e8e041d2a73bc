"""A chat template that writes image placeholders side by side (``<image><image><image>``): the
processor expands them into ONE run of image ids. A valid batch must collate with the plugin exactly
as without it (LLaVA-NeXT, whose per-image length is not in the ids: the adapter reads it off the
processor), and truncation is named only when it was in force and cut an image.
"""

from __future__ import annotations

import copy

import pytest

from tests.support import UNSLOTH_ZOO, patches_off
from tests.support.family_cases import column_row, model_of, text_row, tiny_of


@pytest.fixture(scope="module")
def vision_utils():
    if UNSLOTH_ZOO is None:
        pytest.skip("unsloth_zoo is not installed on this row")
    from tests.support.zoo import load_vision_utils

    return load_vision_utils()[0]


@pytest.fixture(scope="module")
def side_by_side():
    """The tiny LLaVA-NeXT processor with a template that renders each image as a bare ``<image>``."""
    from tests.support import tiny_vlms

    tiny = tiny_of("llava_next")
    processor = copy.copy(tiny.processor)
    processor.chat_template = tiny_vlms.chat_template(
        begin="<s>",
        turn="(role | upper) + ': '",
        end="('</s>' if message['role'] == 'assistant' else ' ')",
        image="<image>",
        images_first=True,
        gen="ASSISTANT:",
    )
    return tiny, processor


def _upstream_sends_every_image() -> bool:
    """False on releases the collator patch repairs for dropped column images or text-only rows
    (there upstream alone cannot collate this batch, so there is nothing to be equal to)."""
    import unsloth_multiimage

    [collator] = [s for s in unsloth_multiimage.status() if s.name == "unsloth_collator"]
    return not {"all_column_images", "text_only_row_slots"} & set(collator.fixes)


def test_side_by_side_placeholders_collate_as_upstream_does(side_by_side, vision_utils):
    import torch

    tiny, processor = side_by_side
    examples = [column_row(tiny, 0, 3), text_row(), column_row(tiny, 2, 1)]
    assert "<image><image><image>" in processor.apply_chat_template(examples[0]["messages"], tokenize=False)
    collator = vision_utils.UnslothVisionDataCollator(model_of(tiny), processor)
    patched = collator(examples)  # was: "row 0 has 3 image(s) but only 1 survive ... truncation cut"
    assert tiny.decode(patched) == [(0, 0), (0, 1), (0, 2), (2, 0)]
    if not _upstream_sends_every_image():
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO} drops column images or text-only rows: no upstream batch to compare")
    with patches_off():
        upstream = collator(examples)
    assert set(patched) == set(upstream)
    for key, value in patched.items():
        assert torch.equal(value, upstream[key]), key


def _batch(side_by_side):
    from unsloth_multiimage import find_adapter
    from unsloth_multiimage.collate.proxy import BatchImages
    from unsloth_multiimage.rows.plan import plan_row

    tiny, processor = side_by_side
    examples = [column_row(tiny, 0, 3), column_row(tiny, 1, 1)]
    texts = [processor.apply_chat_template(e["messages"], tokenize=False) for e in examples]
    aligned = [list(e["images"]) for e in examples]
    out = processor(text=texts, images=[img for row in aligned for img in row], return_tensors="pt", padding=True)
    adapter = find_adapter(processor)
    batch = BatchImages([plan_row(e, i) for i, e in enumerate(examples)], collator=None, adapter=adapter)
    return processor, adapter, batch, out, aligned


def test_the_adapter_counts_each_side_by_side_image_by_its_length(side_by_side):
    """One run of ids holds the three images: by run they count 1, by length 3."""
    processor, adapter, batch, out, aligned = _batch(side_by_side)
    lengths = adapter.image_lengths(processor, out)
    assert len(lengths) == 4 and all(n > 0 for n in lengths)
    image = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert out["input_ids"][0].tolist().count(image) == sum(lengths[:3])
    assert adapter.count_in_ids(processor, out["input_ids"][0]) == 1  # the runs merge: why lengths are needed
    batch.check_truncation(processor, out, aligned, 4096, True)  # intact: every image counted


def test_truncation_is_named_only_when_it_was_in_force_and_cut_an_image(side_by_side):
    from unsloth_multiimage.errors import ImageCountError

    processor, adapter, batch, out, aligned = _batch(side_by_side)
    image = processor.tokenizer.convert_tokens_to_ids("<image>")
    ids = out["input_ids"][0].tolist()
    last = max(i for i, t in enumerate(ids) if t == image)
    cut = dict(out)
    cut["input_ids"] = [ids[:last], out["input_ids"][1].tolist()]  # one id of the third image cut off
    with pytest.raises(
        ImageCountError, match=r"row 0 has 3 image\(s\) but only 2 survive .*max_length=64\): truncation"
    ):
        batch.check_truncation(processor, cut, aligned, 64, True)
    # Without truncation in force nothing can have been cut: no claim of truncation.
    batch.check_truncation(processor, cut, aligned, None, False)
    batch.check_truncation(processor, cut, aligned, 64, False)
