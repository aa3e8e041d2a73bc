"""The collator's post-processor check: each row's images must still have their tokens in input_ids."""

from __future__ import annotations

import pytest

from unsloth_multiimage.adapters import ModelAdapter
from unsloth_multiimage.collate.proxy import BatchImages
from unsloth_multiimage.errors import ImageCountError
from unsloth_multiimage.rows.plan import plan_row

IMAGE_ID = 9
ADAPTER = ModelAdapter("toy", "<img>", count_in_ids=lambda processor, ids: list(ids).count(IMAGE_ID))


def rows(*counts):
    return [
        {"messages": [{"role": "user", "content": [{"type": "image"}] * n}], "images": list(range(n))} for n in counts
    ]


def test_a_row_whose_image_tokens_were_cut_is_named():
    batch = BatchImages([plan_row(r, i) for i, r in enumerate(rows(1, 2))], collator=None, adapter=ADAPTER)
    out = {"input_ids": [[1, IMAGE_ID, 2], [1, IMAGE_ID, 3]]}  # row 1 lost one of its two image tokens
    with pytest.raises(ImageCountError, match=r"row 1 has 2 image\(s\) but only 1 survive .*max_length=3"):
        batch.check_truncation(None, out, [[0], [0, 1]], 3)


def test_intact_rows_and_adapters_without_a_counter_pass():
    plans = [plan_row(r, i) for i, r in enumerate(rows(1, 2))]
    out = {"input_ids": [[IMAGE_ID, 2], [IMAGE_ID, IMAGE_ID]]}
    BatchImages(plans, collator=None, adapter=ADAPTER).check_truncation(None, out, [[0], [0, 1]], None)
    uncounted = ModelAdapter("toy", "<img>")
    BatchImages(plans, collator=None, adapter=uncounted).check_truncation(
        None, {"input_ids": [[], []]}, [[0], [0, 1]], 1
    )
