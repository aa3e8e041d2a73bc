"""Generated rows for the property tests: every layout the plugin reads, every odd input it diagnoses.

A row is drawn as a *spec* (plain data, so hypothesis shrinks it well) and built by
:func:`build_row` into the example the collator gets. Images encode ``(row, index)`` in their
pixels (``tiles.make_tile_image`` / ``decode_tile``), so a shifted, dropped, duplicated or
swapped image is caught in the tensors the model would see. A spec with a ``fault`` is a row that
is really bad: the collator must refuse it with a ``ValueError`` naming it.
"""

from __future__ import annotations

import base64
import functools
import io
import pathlib
import re

from hypothesis import strategies as st

ROW_NAMED = re.compile(r"\b(?:row|sample) (\d+)\b")
SIZES = [(28, 28), (28, 28), (28, 28), (56, 28), (28, 56)]
#: How an image is given (all decode to the same pixels).
REPRS = [
    "pil",
    "pil",
    "pil",
    "pil",
    "png",
    "dict_bytes",
    "dict_path",
    "path",
    "rgba",
    "palette",
    "array_hwc",
    "array_chw_float",
    "tensor_chw",
    "data_uri",
    "file_uri",
    "pathlike",
]
#: How a row holds its chat.
LAYOUTS = ["messages", "messages", "messages", "conversations", "pc"]
CORRUPT = b"\x89PNG\r\n\x1a\n this is not an image"

# Faults per kind of row; every one makes the row really bad.
_IMAGE_FAULTS = ["corrupt", "url", "tiny_image", "bad_array"]
_ROW_FAULTS = ["messages_string", "turn_without_role", "no_chat", "llava_row", "part_not_dict", "tag_text"]
FAULTS_BY_KIND = {
    "text": [*_ROW_FAULTS],
    "column": ["none_entry", "extra_image", "missing_image", "nested_list", *_IMAGE_FAULTS, *_ROW_FAULTS],
    "content": ["bare_no_column", *_IMAGE_FAULTS, *_ROW_FAULTS],
    "mixed": ["none_entry", "missing_image", *_IMAGE_FAULTS, *_ROW_FAULTS],
}
_NEEDS_COLUMN_ENTRY = ("none_entry", "missing_image", "nested_list")
_NEEDS_IMAGE = ("corrupt", "url", "tiny_image", "bad_array", "extra_image", "bare_no_column")


@functools.cache
def _png(row: int, index: int, size: tuple) -> bytes:
    from tests.support.tiles import make_tile_image

    buf = io.BytesIO()
    make_tile_image(row, index, size).save(buf, format="PNG")
    return buf.getvalue()


def make_image(kind: str, row: int, index: int, size: tuple, folder: pathlib.Path) -> object:
    """An image that decodes to (row, index), in the representation ``kind``."""
    import numpy as np
    from PIL import Image

    from tests.support.tiles import make_tile_image

    tile = make_tile_image(row, index, size)
    if kind == "pil":
        return tile
    if kind == "rgba":  # opaque alpha: composited on white it is the same colour
        return tile.convert("RGBA")
    if kind == "palette":  # a solid image quantizes exactly
        return tile.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    if kind == "array_hwc":
        return np.asarray(tile).copy()
    if kind == "array_chw_float":
        return np.moveaxis(np.asarray(tile), -1, 0).astype(np.float32) / 255.0
    if kind == "tensor_chw":
        import torch

        return torch.from_numpy(np.moveaxis(np.asarray(tile), -1, 0).copy())
    data = _png(row, index, size)
    if kind == "png":
        return data
    if kind == "dict_bytes":
        return {"bytes": data, "path": None}
    if kind == "data_uri":
        return "data:image/png;base64," + base64.b64encode(data).decode()
    path = folder / f"r{row}_i{index}_{size[0]}x{size[1]}.png"
    if not path.exists():
        path.write_bytes(data)
    if kind == "dict_path":
        return {"bytes": None, "path": str(path)}
    if kind == "file_uri":
        return path.as_uri()
    if kind == "pathlike":
        return path
    return str(path)


def bad_image(fault: str, folder: pathlib.Path) -> object:
    import numpy as np
    from PIL import Image

    if fault == "corrupt":
        return CORRUPT
    if fault == "url":
        return "https://example.invalid/cat.png"  # refused without network access
    if fault == "tiny_image":
        return Image.new("RGB", (28, 0))  # no pixels: no processor takes it (small sides are enlarged)
    return np.full((28, 28, 3), 7, dtype=np.int64)  # bad_array: no unambiguous meaning


@st.composite
def row_specs(draw, allow_faults: bool = True, layout: str | None = None):
    """One row: its kind (where its images sit), its chat layout, images and an optional fault."""
    kind = draw(st.sampled_from(["text", "column", "column", "content", "mixed"]))
    layout = layout or draw(st.sampled_from(LAYOUTS))
    pairs = draw(st.integers(1, 3))
    n = 0 if kind == "text" else draw(st.integers(1, 5))
    last_prompt_turn = 2 * pairs - 2 if layout == "pc" else 2 * pairs - 1  # pc: images in the prompt only
    turns = sorted(draw(st.lists(st.integers(0, last_prompt_turn), min_size=n, max_size=n)))
    if kind == "column":
        filled = [False] * n
    elif kind == "content":
        filled = [True] * n
    else:
        filled = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    reprs = draw(st.lists(st.sampled_from(REPRS), min_size=n, max_size=n))
    sizes = draw(st.lists(st.sampled_from(SIZES), min_size=n, max_size=n))
    text_first = draw(st.lists(st.booleans(), min_size=2 * pairs, max_size=2 * pairs))
    string_text = draw(st.lists(st.booleans(), min_size=2 * pairs, max_size=2 * pairs))  # text-only turns as strings
    system = draw(st.booleans()) and layout != "pc"
    arrow_nones = draw(st.booleans())  # Arrow gives every part every key, None where absent
    if kind in ("text", "content"):
        images_key = draw(st.sampled_from(["absent", "none", "empty"]))
    elif kind == "column" and n == 1:
        images_key = draw(st.sampled_from(["list", "single"]))
    else:
        images_key = "list"
    fault = None
    if allow_faults and draw(st.integers(0, 9)) == 0:
        fault = draw(st.sampled_from(FAULTS_BY_KIND[kind]))
        if fault in _NEEDS_COLUMN_ENTRY and not any(not f for f in filled):
            fault = None  # a row whose parts all carry their image has no column entry to spoil
        if fault in _NEEDS_IMAGE and not n:
            fault = None
        if fault == "tag_text" and (n == 0 or any(filled)):
            fault = None  # tags stand for column images
        if fault == "messages_string" and layout == "pc":
            fault = None  # a string prompt is plain text in TRL's prompt/completion layout
    fault_at = draw(st.integers(0, 5))
    return dict(
        kind=kind,
        layout=layout,
        pairs=pairs,
        turns=turns,
        filled=filled,
        reprs=reprs,
        sizes=sizes,
        text_first=text_first,
        string_text=string_text,
        system=system,
        arrow_nones=arrow_nones,
        images_key=images_key,
        fault=fault,
        fault_at=fault_at,
    )


def _text_part(text: str, arrow_nones: bool) -> dict:
    return {"type": "text", "text": text, "image": None} if arrow_nones else {"type": "text", "text": text}


def _image_part(image: object, arrow_nones: bool) -> dict:
    if image is None:
        return {"type": "image", "text": None, "image": None} if arrow_nones else {"type": "image"}
    return {"type": "image", "text": None, "image": image} if arrow_nones else {"type": "image", "image": image}


def build_row(spec: dict, row: int, folder: pathlib.Path) -> tuple[object, int]:
    """(the example, how many images it must show); images are numbered in placeholder order."""
    n = len(spec["turns"])
    images = [make_image(spec["reprs"][k], row, k, spec["sizes"][k], folder) for k in range(n)]
    filled = list(spec["filled"])
    fault, at = spec["fault"], spec["fault_at"]
    nones = spec["arrow_nones"]
    if fault in ("corrupt", "url", "tiny_image", "bad_array") and n:
        images[at % n] = bad_image(fault, folder)
    if fault == "bare_no_column" and n:
        filled[at % n] = False
    messages = []
    if spec["system"]:
        messages.append({"role": "system", "content": [_text_part("describe the image", nones)]})
    for turn in range(2 * spec["pairs"]):
        role = "user" if turn % 2 == 0 else "assistant"
        parts = [_image_part(images[k] if filled[k] else None, nones) for k in range(n) if spec["turns"][k] == turn]
        text = "describe the image" if role == "user" else "the first"
        if fault == "tag_text":  # LLaMA-Factory tags in the first turn's text instead of image parts
            parts = []
            text = "<image> " * n + text if turn == 0 else text
        if not parts and spec["string_text"][turn]:
            messages.append({"role": role, "content": text})
            continue
        body = _text_part(text, nones)
        messages.append({"role": role, "content": [body, *parts] if spec["text_first"][turn] else [*parts, body]})
    example: dict = _chat(spec, messages)
    column = [images[k] for k in range(n) if not filled[k]]
    if spec["kind"] in ("column", "mixed") or fault == "tag_text":
        if fault == "none_entry" and column:
            column[at % len(column)] = None
        if fault == "extra_image":
            column.append(make_image("pil", row, n, (28, 28), folder))
        if fault == "missing_image" and column:
            column.pop()
        if fault == "nested_list" and column:
            column = [column]
        if spec["images_key"] == "single" and len(column) == 1 and fault != "nested_list":
            example["images"] = column[0]
        else:
            example["images"] = column
    elif spec["images_key"] == "none":
        example["images"] = None
    elif spec["images_key"] == "empty":
        example["images"] = []
    return _spoil(example, fault, spec), n


def _chat(spec: dict, messages: list) -> dict:
    if spec["layout"] == "pc":
        example = {"prompt": messages[:-1], "completion": messages[-1:]}
        if spec["arrow_nones"]:
            example["messages"] = None  # the column of other rows of the same Arrow table
        return example
    key = spec["layout"]
    example = {key: messages}
    if spec["arrow_nones"]:  # columns of other rows of the same Arrow table
        example.update(prompt=None, completion=None)
        if key == "conversations":
            example["messages"] = None
    return example


def _spoil(example: dict, fault: str | None, spec: dict) -> dict:
    """Apply a row-level fault to a built example."""
    key = "prompt" if spec["layout"] == "pc" else spec["layout"]
    if fault == "messages_string":
        example[key] = "user: describe the image. assistant: the first"
    elif fault == "turn_without_role":
        turn = example[key][0]
        example[key][0] = {k: v for k, v in turn.items() if k != "role"}
    elif fault == "no_chat":
        example = {"question": "describe the image", "answer": "the first", "images": example.get("images")}
    elif fault == "llava_row":
        example = {
            "conversations": [
                {"from": "human", "value": "<image>\ndescribe the image"},
                {"from": "gpt", "value": "the first"},
            ],
            "image": "cat.png",
        }
    elif fault == "part_not_dict":
        turn = example[key][0]
        content = turn["content"] if isinstance(turn["content"], list) else [_text_part(turn["content"], False)]
        example[key][0] = {**turn, "content": [*content, "describe the image"]}
    return example


def companion(layout: str, row: int, folder: pathlib.Path) -> dict:
    """A plain, valid one-image column row in ``layout`` (the usual TRL/Unsloth row)."""
    spec = dict(
        kind="column",
        layout=layout,
        pairs=1,
        turns=[0],
        filled=[False],
        reprs=["pil"],
        sizes=[(28, 28)],
        text_first=[False, False],
        string_text=[False, False],
        system=False,
        arrow_nones=False,
        images_key="list",
        fault=None,
        fault_at=0,
    )
    return build_row(spec, row, folder)[0]


# ------------------------------------------------------------------ what the model must see


def decoded(tiny, processor, batch, row: int, n: int) -> list:
    pv = batch["pixel_values"]
    got = [tiny.decode_tile(pv[row, k, 0], processor) for k in range(min(n, pv.shape[1]))]
    if n > pv.shape[1]:
        got.append(f"only {pv.shape[1]} slots for {n} images")
    return got


def slot_codes(tiny, processor, batch) -> list[list]:
    """Every row's images as decoded ``(row, index)`` codes, in slot order ('?' for undecodable)."""
    pv = batch.get("pixel_values") if hasattr(batch, "get") else None
    if pv is None:
        return [[] for _ in range(batch["input_ids"].shape[0])]
    out = []
    for r in range(pv.shape[0]):
        codes = []
        for s in range(pv.shape[1]):
            if (pv[r, s] == 0).all():
                continue
            try:
                codes.append(tiny.decode_tile(pv[r, s, 0], processor))
            except ValueError:
                codes.append("?")
        out.append(codes)
    return out


def assert_row_ok(tiny, processor, batch, row: int, n: int) -> None:
    """Row ``row`` shows exactly its ``n`` images (row, 0..n-1) in slot order, nothing else, and the
    cross-attention mask switches image k on at its token (never before), off for empty slots."""
    import torch

    ids = batch["input_ids"][row]
    positions = (ids == processor.image_token_id).nonzero().flatten().tolist()
    assert len(positions) == n, f"row {row}: {len(positions)} image tokens for {n} images"
    if n:
        assert decoded(tiny, processor, batch, row, n) == [(row, k) for k in range(n)], f"row {row}"
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
    assert named, f"the error names no row: {exc!r}"
    assert named <= bad, f"the error names rows {sorted(named)}, the bad rows are {sorted(bad)}: {exc}"
