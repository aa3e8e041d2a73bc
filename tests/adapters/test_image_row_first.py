"""``ModelAdapter.image_row_first`` (Idefics2): the processor proxy calls a processor that needs an
image row first with the rows permuted, then puts every output back in the caller's order; where an
output is not batch-first it makes the call in the caller's order (and the processor fails as it does
upstream). A fake processor stands in for the family here; the real Idefics2 runs in test_families.py.
"""

from __future__ import annotations

import pytest

from unsloth_multiimage.adapters import ModelAdapter
from unsloth_multiimage.collate.proxy import BatchImages, ProcessorProxy
from unsloth_multiimage.rows.plan import plan_row

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

ADAPTER = ModelAdapter("toy", "<img>", nesting="per_row", image_row_first=True)


class ImageRowFirstProcessor:
    """Fails like Idefics2 when row 0 has no image; returns one output row per text row."""

    def __init__(self, extra_not_batch_first: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.extra = extra_not_batch_first

    def __call__(self, text, images=None, **kwargs):
        self.calls.append(list(text))
        if images is not None and not images[0]:
            raise IndexError("list index out of range (images[0][0])")
        out = {
            "input_ids": torch.tensor([[len(t), t.count("<img>")] for t in text]),
            "pixel_values": np.array([[len(row)] for row in images]),
            "image_names": [list(row) for row in images],
        }
        if self.extra:
            out["pooled"] = torch.zeros(len(text) + 1)
        return out


def rows(*counts):
    return [
        {
            "messages": [{"role": "user", "content": [{"type": "image"}] * n}],
            "images": [f"img{r}.{i}" for i in range(n)],
        }
        for r, n in enumerate(counts)
    ]


def call(processor, counts, texts):
    examples = rows(*counts)
    batch = BatchImages([plan_row(e, i) for i, e in enumerate(examples)], collator=None, adapter=ADAPTER)
    images = [list(e["images"]) for e in examples]
    return ProcessorProxy(processor, batch)(text=texts, images=images, padding=True)


def test_a_text_only_first_row_is_permuted_for_the_call_and_put_back():
    processor = ImageRowFirstProcessor()
    texts = ["text only", "<img><img>", "plain", "<img>"]
    out = call(processor, [0, 2, 0, 1], texts)
    assert processor.calls == [["<img><img>", "text only", "plain", "<img>"]]
    assert out["input_ids"].tolist() == [[len(t), t.count("<img>")] for t in texts]
    assert out["pixel_values"].tolist() == [[0], [2], [0], [1]]
    assert out["image_names"] == [[], ["img1.0", "img1.1"], [], ["img3.0"]]


def test_an_image_row_first_batch_is_not_permuted():
    processor = ImageRowFirstProcessor()
    call(processor, [1, 0], ["<img>", "text only"])
    assert processor.calls == [["<img>", "text only"]]


def test_an_output_that_is_not_batch_first_stops_the_permutation():
    processor = ImageRowFirstProcessor(extra_not_batch_first=True)
    with pytest.raises(IndexError, match=r"images\[0\]\[0\]"):
        call(processor, [0, 1], ["text only", "<img>"])
    assert processor.calls == [["<img>", "text only"], ["text only", "<img>"]]
