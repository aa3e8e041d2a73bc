"""Every public layout through the REAL collator of the installed unsloth_zoo release.

As it is, a row in a layout the collator cannot read fails with an error that names the layout
and the line that converts it; converted (``formats.to_messages``), it trains: each image lands
in its own slot in placeholder order (coded pixels), beside a plain row, and the loss is finite.
Every zoo row of the CI matrix runs this, the first-image releases among them.
"""

from __future__ import annotations

import io

import pytest

from tests.support import UNSLOTH_ZOO
from tests.support.rowgen import assert_row_ok, companion

pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

TAGGED = ("llava", "mantis", "llamafactory", "cauldron", "openai")


def _png(tiny, row: int, index: int) -> bytes:
    buf = io.BytesIO()
    tiny.make_tile_image(row, index).save(buf, format="PNG")
    return buf.getvalue()


def canonical(tiny, folder, fmt: str, row: int = 0) -> tuple[dict, int]:
    """A messages-layout row whose 2 images (paths, or bytes for the layouts that carry bytes)
    code ``(row, 0)`` and ``(row, 1)``; the_cauldron keeps its images at the start of the first turn."""
    paths = []
    for k in range(2):
        path = folder / f"{fmt}_{row}_{k}.png"
        path.write_bytes(_png(tiny, row, k))
        paths.append(str(path))
    images = [{"bytes": _png(tiny, row, k), "path": None} for k in range(2)] if fmt in ("mantis", "openai") else paths
    first = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "which image has more red squares ?"}]
    if fmt != "cauldron":  # the layouts with tags put an image in the second user turn too
        first = [{"type": "image"}, {"type": "text", "text": "look at this image ."}]
    messages = [{"role": "user", "content": first}, {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]
    if fmt != "cauldron":
        messages += [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": "which image has more red squares ?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "the second"}]},
        ]
    return {"messages": messages, "images": images}, 2


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("umi_format_images")


@pytest.mark.parametrize("fmt", TAGGED)
def test_a_row_in_a_public_layout_is_refused_naming_the_layout(fmt, tiny, zoo_collator, folder):
    from unsloth_multiimage import formats

    row, _ = canonical(tiny, folder, fmt)
    raw = formats.from_messages(row, fmt)
    assert formats.detect(raw) == fmt
    if fmt == "openai":
        # image_url parts are image parts: the plugin decodes their data: URIs and sends them on.
        batch = zoo_collator([raw, companion("messages", 1, folder)])
        assert_row_ok(tiny, zoo_collator.processor, batch, 0, 2)
        return
    with pytest.raises(ValueError) as info:
        zoo_collator([raw, companion("messages", 1, folder)])
    message = str(info.value)
    assert "row 0" in message and "convert_dataset" in message and "unsloth-multiimage convert" in message, message
    assert formats.detect(raw) != "messages"


@pytest.mark.parametrize("fmt", TAGGED)
def test_a_converted_row_trains_with_each_image_in_its_slot(fmt, tiny, processor, zoo_collator, model, folder):
    import torch

    from unsloth_multiimage import formats

    row, n = canonical(tiny, folder, fmt)
    converted = formats.to_messages(formats.from_messages(row, fmt), row=0)
    batch = zoo_collator([converted, companion("messages", 1, folder)])
    assert_row_ok(tiny, processor, batch, 0, n)
    assert_row_ok(tiny, processor, batch, 1, 1)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
