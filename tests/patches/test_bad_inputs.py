"""Every kind of bad or unusual input of docs/bad-inputs.md, through the REAL patched collator.

Each either reaches the model correctly (coded pixels decoded back from ``pixel_values``) or
raises a ``ValueError`` that names the row, what was found and the fix; never an exception from
inside upstream. docs/bad-inputs.md names the test of each line (keep them in sync).
"""

from __future__ import annotations

import inspect
import re

import pytest

from tests.support import TRANSFORMERS, UNSLOTH_ZOO
from tests.support.imagekit import exif_rotated, png_bytes, serve_png, solid
from unsloth_multiimage.engine import compat
from unsloth_multiimage.errors import BatchError

Image = pytest.importorskip("PIL.Image")
np = pytest.importorskip("numpy")


@pytest.fixture
def http_server():
    yield from serve_png()


needs_zoo = pytest.mark.skipif(
    UNSLOTH_ZOO is None or TRANSFORMERS is None, reason="unsloth_zoo is not installed on this row"
)


@pytest.fixture(scope="module")
def collator(zoo_collator):
    return zoo_collator


def chat(n_images: int, *, filled=()):
    parts = [{"type": "image", "image": filled[k]} if k < len(filled) else {"type": "image"} for k in range(n_images)]
    return [
        {"role": "user", "content": [*parts, {"type": "text", "text": "describe the image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
    ]


def good_row(tiny, row, n=1):
    return {"messages": chat(n), "images": [tiny.make_tile_image(row, k) for k in range(n)]}


def first_pixel(batch, processor, row, slot):
    import torch

    ip = processor.image_processor
    px = batch["pixel_values"][row, slot, 0, :, 0, 0].float()
    return [
        round(float(v)) for v in (px * torch.tensor(ip.image_std) + torch.tensor(ip.image_mean)) / ip.rescale_factor
    ]


BAD_FOR_COLLATOR = {
    "corrupt-bytes": (b"\x89PNG\r\n\x1a\n garbage", r"row 1, image 1 cannot be decoded"),
    "missing-path": ("/nonexistent/cat.png", r"row 1, image 1: no such image file"),
    "int": (7, r"row 1, image 1 is a int, not an image"),
    "url": ("https://example.com/cat.png", r"row 1, image 1 is a URL"),
    "0x0": ("0x0", r"row 1, image 1 is 0x0 pixels: an image with no pixels"),
    "float-out-of-range": ("F", r"row 1, image 1 is a floating-point image"),
    "dict-without-bytes-or-path": (
        {"bytes": None, "path": None},
        r"row 1, image 1 is a dict whose 'bytes' and 'path' are both None",
    ),
}


@needs_zoo
@pytest.mark.parametrize("where", ["column", "content"])
@pytest.mark.parametrize("name", sorted(BAD_FOR_COLLATOR))
def test_bad_images_through_the_collator_name_the_row(name, where, tiny, collator, monkeypatch):
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used without opt-in"))
    obj, message = BAD_FOR_COLLATOR[name]
    if obj == "0x0":
        obj = solid(size=(0, 0))
    elif obj == "F":
        obj = Image.fromarray(np.full((28, 28), 3.0, dtype=np.float32))
    images = [tiny.make_tile_image(1, 0), obj]
    bad = {"messages": chat(2), "images": images} if where == "column" else {"messages": chat(2, filled=images)}
    with pytest.raises(ValueError, match=message):
        collator([good_row(tiny, 0), bad, good_row(tiny, 2)])


@needs_zoo
def test_a_tiny_image_is_enlarged_and_collates_as_upstream_does(tiny, collator, unpatched, monkeypatch, caplog):
    """Upstream trains on a 1x1 image (Mllama); the plugin sends it enlarged to 4x4, nearest
    neighbour (read right by every release), and says so once: the same tensors as upstream's,
    on the raw image and on the enlarged one."""
    import torch

    from unsloth_multiimage.rows import decode

    monkeypatch.setattr(decode, "_enlarged_logged", __import__("threading").Event())
    caplog.set_level("WARNING", logger="unsloth_multiimage")
    one = Image.new("RGB", (1, 1), (200, 30, 90))
    rows = [{"messages": chat(1), "images": [one]}]  # one row: old releases pad a batch differently (fixed)
    patched = collator(rows)
    collator(rows)
    said = [r.getMessage() for r in caplog.records if "enlarged to 4x4" in r.getMessage()]
    assert len(said) == 1 and "row 0, image 0 is 1x1 pixels" in said[0]
    with unpatched():
        enlarged = collator([{"messages": chat(1), "images": [one.resize((4, 4), Image.Resampling.NEAREST)]}])
        try:
            raw = collator(rows)
        except ValueError:  # transformers 4.46 reads a 1-pixel side as the channel axis: only 4x4 trains there
            raw = None
    for upstream in (raw, enlarged) if raw is not None else (enlarged,):
        assert set(patched) == set(upstream)
        for key, value in patched.items():
            assert torch.equal(value, upstream[key]), key


@needs_zoo
def test_unusual_modes_through_the_collator_reach_the_model_correctly(tiny, processor, collator, tmp_path):
    rgba = tiny.make_tile_image(0, 0).convert("RGBA")
    palette = tiny.make_tile_image(0, 1).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    sixteen = Image.fromarray(np.full((28, 28), 0x8080, dtype=np.uint16))
    transparent = Image.new("RGBA", (28, 28), (10, 20, 30, 0))
    cmyk = Image.new("CMYK", (28, 28), (0, 128, 0, 0))
    rotated = exif_rotated()
    path = tmp_path / "tile.png"
    path.write_bytes(png_bytes(tiny.make_tile_image(0, 2)))
    images = [rgba, palette, sixteen, transparent, cmyk, rotated, {"bytes": None, "path": str(path)}]
    example = {"messages": chat(len(images)), "images": images}
    batch = collator([example, good_row(tiny, 1)])
    assert tiny.decode_tile(batch["pixel_values"][0, 0, 0], processor) == (0, 0)
    assert tiny.decode_tile(batch["pixel_values"][0, 1, 0], processor) == (0, 1)
    assert first_pixel(batch, processor, 0, 2) == [128, 128, 128]  # 16-bit: scaled, not clipped to white
    assert first_pixel(batch, processor, 0, 3) == [255, 255, 255]  # transparent: white, like the processor
    assert all(abs(a - b) <= 1 for a, b in zip(first_pixel(batch, processor, 0, 4), [255, 127, 255]))
    assert all(abs(a - b) <= 3 for a, b in zip(first_pixel(batch, processor, 0, 5), [40, 80, 200]))  # JPEG
    assert tiny.decode_tile(batch["pixel_values"][0, 6, 0], processor) == (0, 2)
    assert tiny.decode_tile(batch["pixel_values"][1, 0, 0], processor) == (1, 0)


@needs_zoo
def test_opted_in_urls_through_the_collator(tiny, processor, collator, http_server, monkeypatch):
    import unsloth_multiimage

    example = {"messages": chat(2), "images": [tiny.make_tile_image(0, 0), f"{http_server}/cat.png"]}
    with pytest.raises(ValueError, match=r"row 0, image 1 is a URL"):
        collator([example])
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ALLOW_URLS", "1")
    batch = collator([example])
    assert first_pixel(batch, processor, 0, 1) == [40, 80, 200]
    monkeypatch.delenv("UNSLOTH_MULTIIMAGE_ALLOW_URLS")
    unsloth_multiimage.configure(allow_urls=True)
    assert first_pixel(collator([example]), processor, 0, 1) == [40, 80, 200]


@needs_zoo
def test_empty_column_with_a_bare_placeholder_names_the_row(tiny, collator, request):
    # An `images: []` row whose messages hold a bare placeholder.
    bad = {"messages": chat(1), "images": []}
    with pytest.raises(ValueError, match=r"row 1 "):
        collator([good_row(tiny, 0), bad])


@needs_zoo
def test_an_all_text_batch_collates(collator, processor, request):
    import unsloth_zoo.vision_utils as vision_utils

    source = inspect.getsource(vision_utils)
    guarded = "'pixel_values' in batch" in source or '"pixel_values" in batch' in source
    text_row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "describe the image"}]}]}
    # Releases before `text_only_batches` index batch["pixel_values"] unconditionally.
    assert guarded == compat.has("unsloth_zoo", "text_only_batches", UNSLOTH_ZOO)
    if not guarded:
        first = re.escape(compat.since("unsloth_zoo", "text_only_batches"))
        with pytest.raises(BatchError, match=rf"every row of this batch \(2 rows\) is text-only.*{first}\+ collates"):
            collator([text_row, dict(text_row)])
        return
    batch = collator([text_row, dict(text_row)])
    assert batch["input_ids"].shape[0] == 2


# ------------------------------------------------------------------ the pixel budget (settings.max_pixels_per_example)


@needs_zoo
@pytest.mark.parametrize("where", ["column", "content"])
def test_arrays_and_tensors_reach_the_model_as_their_pixels(where, tiny, processor, collator):
    torch = pytest.importorskip("torch")
    tiles = [np.asarray(tiny.make_tile_image(0, k)) for k in range(4)]
    images = [
        tiles[0].copy(),  # HWC uint8
        np.moveaxis(tiles[1], -1, 0).astype(np.float32) / 255.0,  # CHW float in [0, 1]
        torch.from_numpy(np.moveaxis(tiles[2], -1, 0).copy()),  # CHW uint8 tensor
        torch.from_numpy(tiles[3].astype(np.float64) / 255.0),  # HWC float64 tensor
    ]
    row = {"messages": chat(4), "images": images} if where == "column" else {"messages": chat(4, filled=images)}
    batch = collator([row, good_row(tiny, 1)])
    assert [tiny.decode_tile(batch["pixel_values"][0, k, 0], processor) for k in range(4)] == [(0, k) for k in range(4)]
    assert tiny.decode_tile(batch["pixel_values"][1, 0, 0], processor) == (1, 0)


BAD_ARRAYS = {
    "int64": (
        np.full((28, 28, 3), 7, dtype=np.int64),
        r"row 1, image 1 is an array of shape \(28, 28, 3\) and dtype int64",
    ),
    "float-range": (np.full((28, 28, 3), 2.0, dtype=np.float32), r"row 1, image 1 .* values in \[2, 2\]"),
    "ambiguous": (np.zeros((3, 28, 3), dtype=np.uint8), r"row 1, image 1 .*both its first and last axes"),
    "4-d": (np.zeros((1, 28, 28, 3), dtype=np.uint8), r"row 1, image 1 is an array of shape \(1, 28, 28, 3\)"),
}


@needs_zoo
@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_arrays_without_one_meaning_are_refused_naming_the_row(name, tiny, collator):
    obj, message = BAD_ARRAYS[name]
    with pytest.raises(ValueError, match=message):
        collator([good_row(tiny, 0), {"messages": chat(2), "images": [tiny.make_tile_image(1, 0), obj]}])


# ------------------------------------------------------------------ row shapes


def _shapes(tiny):
    img = [tiny.make_tile_image(1, 0)]
    turn = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the image"}]}
    return {
        "messages-string": (
            {"messages": "user: describe the image", "images": img},
            r"row 1's `messages` is a string, not a list of turns",
        ),
        "turn-without-role": (
            {"messages": [{"content": turn["content"]}], "images": img},
            r"row 1, `messages` turn 0 has no 'role'",
        ),
        "turn-not-a-dict": ({"messages": ["describe the image"], "images": img}, r"row 1, `messages` turn 0 is a str"),
        "content-a-dict": (
            {"messages": [{"role": "user", "content": {"type": "text", "text": "x"}}]},
            r"row 1, `messages` turn 0 has a content that is a dict",
        ),
        "part-not-a-dict": (
            {"messages": [{"role": "user", "content": ["describe the image"]}]},
            r"row 1, `messages` turn 0, content part 0 is a str",
        ),
        "no-chat": (
            {"question": "describe the image", "images": img},
            r"row 1 has no chat: none of `messages`, `conversations`",
        ),
        "not-a-row": ("describe the image", r"row 1 is a str .*, not a row"),
        "messages-empty": ({"messages": [], "images": []}, r"row 1's `messages` is an empty list"),
        "prompt-empty": (
            {"prompt": [], "completion": [{"role": "assistant", "content": "red"}], "images": []},
            r"row 1's `prompt` is an empty list",
        ),
        "first-content-empty": (
            {"messages": [{"role": "user", "content": []}, turn], "images": img},
            r"row 1, `messages` turn 0 has an empty content list",
        ),
        "nested-images": (
            {"messages": [turn], "images": [img + img]},
            r"row 1's `images` is a nested list: position 0 holds a list of 2 item\(s\)",
        ),
        "nested-part": (
            {"messages": [{"role": "user", "content": [{"type": "image", "image": img + img}]}]},
            r"row 1's image part 0 holds a list of 2 item\(s\)",
        ),
        "llava-row": (
            {"conversations": [{"from": "human", "value": "<image>\nhi"}], "image": "a.png"},
            r"row 1 looks like LLaVA/ShareGPT rows .*convert_dataset",
        ),
        "cauldron-row": (
            {"images": img, "texts": [{"user": "hi", "assistant": "red"}]},
            r"row 1 looks like the_cauldron rows .*convert_dataset",
        ),
        "llamafactory-tags": (
            {"messages": [{"role": "user", "content": "<image> describe the image"}], "images": img},
            r"row 1 has 0 <\|image\|> token\(s\) in its text but 1 image\(s\); its text holds 1 image tag\(s\) of LLaMA-Factory rows",
        ),
    }


@needs_zoo
@pytest.mark.parametrize(
    "name",
    [
        "messages-string",
        "turn-without-role",
        "turn-not-a-dict",
        "content-a-dict",
        "part-not-a-dict",
        "no-chat",
        "not-a-row",
        "messages-empty",
        "prompt-empty",
        "first-content-empty",
        "nested-images",
        "nested-part",
        "llava-row",
        "cauldron-row",
        "llamafactory-tags",
    ],
)
def test_row_shapes_upstream_cannot_read_are_named_before_it_runs(name, tiny, collator):
    row, message = _shapes(tiny)[name]
    with pytest.raises(ValueError, match=message) as info:
        collator([good_row(tiny, 0), row, good_row(tiny, 2)])
    assert type(info.value).__module__ == "unsloth_multiimage.errors"


@needs_zoo
@pytest.mark.parametrize(
    ("extra", "image", "identity"),
    [
        ({"id": "s17", "idx": 3}, 7, r"its `id` is 's17'"),
        ({"index": 41}, 7, r"its `index` is 41"),
        ({}, "/nonexistent/cat-0-1.png", r"its first image is '/nonexistent/cat-0-1.png'"),
        ({}, 7, r"its text starts 'describe the image'"),
    ],
    ids=["id", "index", "image-path", "text"],
)
def test_an_error_names_the_row_in_its_batch_and_in_the_dataset(extra, image, identity, tiny, collator):
    """A collator sees a batch: "row 1" alone cannot be found in a shuffled dataset, so the error
    also says what identifies the row there (its id, else its first image path, else its text)."""
    bad = {"messages": chat(1), "images": [image], **extra}
    with pytest.raises(ValueError, match=rf"row 1, image 0\b.*\[row 1 of this batch of 3: {identity}\]$") as info:
        collator([good_row(tiny, 0), bad, good_row(tiny, 2)])
    assert str(info.value).count("[row 1 of this batch") == 1  # said once
    assert info.value.row == 1 and info.value.batch_size == 3


@needs_zoo
def test_a_formatting_func_that_returns_no_row_is_named(tiny, vision_utils, processor, model):
    if "formatting_func" not in inspect.signature(vision_utils.UnslothVisionDataCollator.__init__).parameters:
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO} has no formatting_func")
    collator = vision_utils.UnslothVisionDataCollator(model, processor, formatting_func=lambda ex: ex.get("text"))
    with pytest.raises(ValueError, match=r"formatting_func returned a NoneType .* for row 1, not a row"):
        collator([{"text": good_row(tiny, 0)}, {"question": "hi"}])


@needs_zoo
def test_a_batch_mixing_layouts_names_the_row_in_the_other_layout(tiny, collator):
    pc = {"prompt": chat(1)[:1], "completion": chat(1)[1:], "images": [tiny.make_tile_image(1, 0)]}
    # (Releases before 2025.9.3 have no prompt/completion path at all: the error says so.)
    expected = r"row 1 is a prompt/completion row, but (the first row of the batch is a messages row|unsloth_zoo \S+ collates `messages` rows only)"
    with pytest.raises(ValueError, match=expected):
        collator([good_row(tiny, 0), pc])


@needs_zoo
def test_arrow_rows_with_none_filled_keys_collate(tiny, processor, collator):
    """Rows of an Arrow-backed dataset carry every column and every part key, None where absent."""
    img = tiny.make_tile_image(0, 0)
    row = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "text": None, "image": None},
                    {"type": "text", "text": "describe the image", "image": None},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "the first", "image": None}]},
        ],
        "images": [img],
        "prompt": None,
        "completion": None,
    }
    batch = collator([row, good_row(tiny, 1)])
    assert tiny.decode_tile(batch["pixel_values"][0, 0, 0], processor) == (0, 0)


def test_every_test_the_bad_inputs_table_names_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "bad-inputs.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b", doc)) - {
        "test_properties",
        "test_bad_inputs",
        "test_decode",
        "test_unsloth_collator",
        "test_formats_collator",
        "test_dry_run",
    }
    defined = {
        m
        for f in (root / "tests").rglob("test_*.py")
        for m in re.findall(r"^def (test_[a-z0-9_]+)", f.read_text(), re.M)
    }
    assert named and named <= defined, sorted(named - defined)


def test_an_upstream_failure_names_the_family_and_says_its_reason_once():
    """What the plugin lets through and the family's own processor refuses is named with the
    family and upstream's reason, its final period not doubled by the fix that follows."""
    from unsloth_multiimage.collate.zoo_collator import failure

    exc = ValueError("height:4 or width:4 must be larger than factor:28.")
    message = str(failure(1, exc, "2025.3.9", "qwen2_vl"))
    assert "the chat template or the qwen2_vl processor) fails on it with ValueError: height:4" in message
    assert "factor:28. Fix: compare row 1" in message and ".." not in message
