"""No silent drop: auto conversion of any row either keeps every one of its images or refuses the row.

Rows of every public layout are generated with the cases that used to slip through (an empty chat
beside images, an image column the detected layout does not read, tags and images that disagree),
and :func:`unsloth_multiimage.formats.to_messages` (``format="auto"``, what ``convert`` and
``convert_dataset`` run) must either return a row holding every source image, or raise a
``FormatError`` naming the row. Pure Python: cheap on every matrix row.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unsloth_multiimage.formats import FormatError, detect, to_messages

EXAMPLES = 400 if os.environ.get("UMI_HYPOTHESIS_PROFILE", "").strip() == "ci-full" else 60
LAYOUTS = ("llava", "mantis", "llamafactory", "cauldron", "openai", "messages", "prompt_completion")


def _tags(n: int) -> str:
    return "<image>\n" * n + "question"


def _source_row(layout: str, n_images: int, n_tags: int, empty_chat: bool, single: bool) -> dict:
    paths = [f"src/{k}.png" for k in range(n_images)]
    column: object = paths[0] if single and n_images == 1 else paths
    if layout == "llava":
        chat = [{"from": "human", "value": _tags(n_tags)}, {"from": "gpt", "value": "answer"}]
        return {"conversations": [] if empty_chat else chat, "image": column}
    if layout in ("mantis", "llamafactory"):
        chat = [{"role": "user", "content": _tags(n_tags)}, {"role": "assistant", "content": "answer"}]
        key = "conversation" if layout == "mantis" else "messages"
        return {key: [] if empty_chat else chat, "images": column}
    if layout == "cauldron":
        return {"texts": [] if empty_chat else [{"user": "question", "assistant": "answer"}], "images": column}
    if layout == "openai":
        parts = [{"type": "image_url", "image_url": {"url": p}} for p in paths]
        chat = [
            {"role": "user", "content": [*parts, {"type": "text", "text": "question"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "answer"}]},
        ]
        return {"messages": [] if empty_chat else chat}
    parts = [{"type": "image"}] * n_tags + [{"type": "text", "text": "question"}]
    user = [{"role": "user", "content": parts}]
    answer = [{"role": "assistant", "content": [{"type": "text", "text": "answer"}]}]
    if layout == "messages":
        return {"messages": [] if empty_chat else user + answer, "images": column}
    return {"prompt": [] if empty_chat else user, "completion": answer, "images": column}


@st.composite
def source_rows(draw):
    layout = draw(st.sampled_from(LAYOUTS))
    n_images = draw(st.integers(0, 3))
    n_tags = draw(st.sampled_from([n_images, n_images, draw(st.integers(0, 3))]))
    row = _source_row(layout, n_images, n_tags, draw(st.booleans()), draw(st.booleans()))
    stray = draw(st.sampled_from([None, None, "image", "images"]))
    if stray is not None and stray not in row:
        row[stray] = [f"stray/{k}.png" for k in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        row["id"] = draw(st.integers(0, 99))
    return row


def source_images(row: dict) -> Counter:
    """Every image reference the row holds, wherever it is."""
    found: list = []
    for key in ("image", "images"):
        value = row.get(key)
        if value is not None:
            found += list(value) if isinstance(value, list) else [value]
    for key in ("messages", "conversations", "conversation", "prompt", "completion"):
        for turn in row.get(key) or []:
            content = turn.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "image_url":
                    found.append(part["image_url"]["url"])
    return Counter(found)


def output_images(out: dict) -> Counter:
    return Counter(i["path"] if isinstance(i, dict) else i for i in out["images"])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=source_rows(), index=st.integers(0, 50))
def test_auto_conversion_keeps_every_image_or_refuses_the_row(row, index):
    try:
        out = to_messages(row, index)
    except FormatError as exc:
        assert exc.row == index
        assert f"row {index} " in str(exc) and "Fix: " in str(exc)
        return
    assert output_images(out) == source_images(row), (detect(row), row, out)
    assert not any(out.get(k) for k in ("image",)), out  # no stray image column left behind


@pytest.mark.parametrize(
    ("row", "layout", "found"),
    [
        # The reported case: a LLaVA row with an empty conversation and two images.
        ({"conversations": [], "image": ["a.png", "b.png"]}, "llava", r"empty chat but 2 image\(s\) in `image`"),
        ({"messages": [], "images": ["a.png"]}, "messages", r"empty chat but 1 image\(s\) in `images`"),
        ({"texts": [], "images": ["a.png"]}, "cauldron", r"empty chat but 1 image\(s\) in `images`"),
        ({"conversation": [], "images": ["a.png"]}, "mantis", r"empty chat but 1 image\(s\)"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "image": "a.png"},
            "messages",
            r"1 image\(s\) in `image`, a column the messages format does not read",
        ),
    ],
)
def test_rows_whose_images_would_be_lost_are_refused_naming_the_row(row, layout, found):
    assert detect(row) == layout
    with pytest.raises(FormatError, match=rf"row 30 \({layout} format\) (has )?.*{found}") as info:
        to_messages(row, 30)
    assert info.value.row == 30


def test_an_empty_chat_without_images_converts_to_an_empty_chat():
    assert to_messages({"conversations": [], "image": None}) == {"messages": [], "images": []}
