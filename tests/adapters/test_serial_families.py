"""``strategy="serial"`` through the REAL unsloth_zoo collator on every family of tests/support/tiny_vlms/:
each image in its own user turn, in order (coded pixels), and a template that refuses two user
turns in a row named before upstream runs."""

from __future__ import annotations

import copy

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO
from tests.support.family_cases import EXPECTED, IMG, assistant, column_row, counts, model_of, tiny_of, upstream_failure
from unsloth_multiimage.errors import RowShapeError
from unsloth_multiimage.rows.serial import serialise


@pytest.fixture(scope="module")
def vision_utils():
    if UNSLOTH_ZOO is None:
        pytest.skip("unsloth_zoo is not installed on this row")
    from tests.support.zoo import load_vision_utils

    return load_vision_utils()[0]


@pytest.mark.parametrize("family", list(EXPECTED))
def test_every_family_gets_each_image_in_its_own_turn_in_order(family, vision_utils):
    from unsloth_multiimage import find_adapter

    tiny = tiny_of(family)
    adapter = find_adapter(tiny.processor)
    if not adapter.multi_image:
        pytest.skip(f"{family} takes one image per row: serial still leaves it several (grid is its way)")
    known = upstream_failure(family)
    if known:
        pytest.skip(known[1])
    row = column_row(tiny, 0, 3)
    rendered = tiny.processor.apply_chat_template(serialise(row)["messages"], tokenize=False)
    labels = [rendered.find(f"Image {i}:") for i in (1, 2, 3)]
    assert -1 not in labels and labels == sorted(labels)
    assert rendered.count(adapter.placeholder) == 3
    unsloth_multiimage.configure(strategy="serial")
    batch = vision_utils.UnslothVisionDataCollator(model_of(tiny), tiny.processor)([row])
    assert counts(tiny, batch) == [3]
    assert tiny.decode(batch) == [(0, 0), (0, 1), (0, 2)]  # every image, in its turn's order


def test_a_template_that_refuses_consecutive_user_turns_names_the_row(vision_utils):
    """Gemma's and Mistral's Hub templates raise on two user turns in a row: the collator says so
    before upstream runs, naming the row (the tiny Gemma 3 template with that rule added)."""
    from tests.support.tiny_vlms import make_tile_image

    tiny = tiny_of("gemma3")
    processor = copy.deepcopy(tiny.processor)
    processor.chat_template = (
        "{% for m in messages %}{% if loop.index0 > 0 and m['role'] == messages[loop.index0 - 1]['role'] %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% endfor %}" + processor.chat_template
    )
    collator = vision_utils.UnslothVisionDataCollator(model_of(tiny), processor)
    one = {
        "messages": [{"role": "user", "content": [IMG, {"type": "text", "text": "q"}]}, assistant()],
        "images": [make_tile_image(0, 0, tiny.image_size)],
    }
    unsloth_multiimage.configure(strategy="serial")
    collator([one])  # a one-image row is not split: the template is never asked
    with pytest.raises(RowShapeError, match=r"row 1 was split into one user turn per image .*roles must alternate"):
        collator([one, column_row(tiny, 1, 2)])
