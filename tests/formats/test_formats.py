"""unsloth_multiimage.formats: golden rows per format, round trips, errors, image_root, datasets.map."""

from __future__ import annotations

import base64
import functools
import pickle
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import unsloth_multiimage.formats as F
from unsloth_multiimage.formats import (
    FORMATS,
    FormatError,
    ImageTagMismatchError,
    UnknownFormatError,
    from_messages,
    to_messages,
)

IMG = {"type": "image", "text": None}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def T(text: str) -> dict:
    return {"type": "text", "text": text}


def msg(role: str, *content: dict) -> dict:
    return {"role": role, "content": list(content)}


# ---------------------------------------------------------------------------------- golden rows

LLAVA_INTERLEAVE = {  # LLaVA-NeXT-Interleave M4-Instruct: "<image>\n" and relative paths
    "id": "m4_spot_0001",
    "image": ["spot-the-diff/0001_a.jpg", "spot-the-diff/0001_b.jpg"],
    "conversations": [
        {"from": "human", "value": "<image>\n<image>\nWhat changed between the two frames?"},
        {"from": "gpt", "value": "A car left the parking lot."},
        {"from": "human", "value": "Anything else?"},
        {"from": "gpt", "value": "No."},
    ],
}
LLAVA_INTERLEAVE_OUT = {
    "id": "m4_spot_0001",
    "messages": [
        msg("user", IMG, IMG, T("What changed between the two frames?")),
        msg("assistant", T("A car left the parking lot.")),
        msg("user", T("Anything else?")),
        msg("assistant", T("No.")),
    ],
    "images": ["/data/m4/spot-the-diff/0001_a.jpg", "/data/m4/spot-the-diff/0001_b.jpg"],
}

LLAVA_SINGLE = {  # LLaVA-665k style: one path as a string, tag at the end, a system turn
    "id": "coco_1",
    "image": "coco/train2017/000000033471.jpg",
    "conversations": [
        {"from": "system", "value": "Answer briefly."},
        {"from": "human", "value": "What is on the table?\n<image>"},
        {"from": "gpt", "value": "A cake."},
    ],
}
LLAVA_SINGLE_OUT = {
    "id": "coco_1",
    "messages": [
        msg("system", T("Answer briefly.")),
        msg("user", T("What is on the table?\n"), IMG),
        msg("assistant", T("A cake.")),
    ],
    "images": ["coco/train2017/000000033471.jpg"],
}

MANTIS = {  # Mantis-Instruct: {"bytes": None, "path"} dicts, tags inside the sentence
    "id": "nlvr2_17",
    "images": [{"bytes": None, "path": "nlvr2/17-0.png"}, {"bytes": None, "path": "nlvr2/17-1.png"}],
    "conversation": [
        {"role": "user", "content": "Image 1: <image>\nImage 2: <image>\nDo both images show two dogs?"},
        {"role": "assistant", "content": "Only the left one."},
    ],
}
MANTIS_OUT = {
    "id": "nlvr2_17",
    "messages": [
        msg("user", T("Image 1: "), IMG, T("Image 2: "), IMG, T("Do both images show two dogs?")),
        msg("assistant", T("Only the left one.")),
    ],
    "images": [
        {"bytes": None, "path": "/data/mantis/nlvr2/17-0.png"},
        {"bytes": None, "path": "/data/mantis/nlvr2/17-1.png"},
    ],
}

LLAMAFACTORY = {  # LLaMA-Factory mllm_demo style; images interleaved across turns (unsloth #2697)
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "<image>Who are they?"},
        {"role": "assistant", "content": "Two football players."},
        {"role": "user", "content": "And in this one? <image>"},
        {"role": "assistant", "content": "A referee."},
    ],
    "images": ["mllm_demo_data/1.jpg", "mllm_demo_data/2.jpg"],
}
LLAMAFACTORY_OUT = {
    "messages": [
        msg("system", T("You are a helpful assistant.")),
        msg("user", IMG, T("Who are they?")),
        msg("assistant", T("Two football players.")),
        msg("user", T("And in this one? "), IMG),
        msg("assistant", T("A referee.")),
    ],
    "images": ["mllm_demo_data/1.jpg", "mllm_demo_data/2.jpg"],
}

CAULDRON = {  # the_cauldron (nlvr2 subset), images as the datasets Image storage dicts, no tags
    "images": [{"bytes": PNG, "path": None}, {"bytes": PNG + b"2", "path": None}],
    "texts": [
        {"user": "Question: Is there exactly one dog?", "assistant": "Answer: no", "source": "nlvr2"},
        {"user": "Is the left one brown?", "assistant": "yes", "source": None},
    ],
}
CAULDRON_OUT = {
    "messages": [
        msg("user", IMG, IMG, T("Question: Is there exactly one dog?")),
        msg("assistant", T("Answer: no")),
        msg("user", T("Is the left one brown?")),
        msg("assistant", T("yes")),
    ],
    "images": [{"bytes": PNG, "path": None}, {"bytes": PNG + b"2", "path": None}],
}

OPENAI = {
    "messages": [
        {"role": "system", "content": "You compare pictures."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
                {"type": "text", "text": " with "},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "file:///srv/img/c%20d.png"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "The first is darker."}]},
    ],
}
OPENAI_OUT = {
    "messages": [
        msg("system", T("You compare pictures.")),
        msg("user", T("Compare "), IMG, T(" with "), IMG, IMG),
        msg("assistant", T("The first is darker.")),
    ],
    "images": [
        {"bytes": PNG, "path": None},
        {"bytes": None, "path": "https://example.com/b.jpg"},
        {"bytes": None, "path": "/srv/img/c d.png"},
    ],
}

PROMPT_COMPLETION = {  # TRL zen-multi-image, conversational prompt/completion
    "images": ["a.png", "b.png"],
    "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which?"}]}],
    "completion": [{"role": "assistant", "content": [{"type": "text", "text": "The second."}]}],
}
PROMPT_COMPLETION_OUT = {
    "prompt": [msg("user", IMG, IMG, T("Which?"))],
    "completion": [msg("assistant", T("The second."))],
    "images": ["a.png", "b.png"],
}

MESSAGES = {  # embedded and bare parts interleaved, Arrow-style None keys
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "x.png", "text": None},
                {"type": "text", "text": "and", "image": None},
                {"type": "image", "image": None, "text": None},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Both are cats.", "image": None}]},
    ],
    "images": ["y.png"],
    "source": "mine",
}
MESSAGES_OUT = {
    "messages": [msg("user", IMG, T("and"), IMG), msg("assistant", T("Both are cats."))],
    "images": ["x.png", "y.png"],
    "source": "mine",
}

GOLDEN = {
    "llava": (LLAVA_INTERLEAVE, {"image_root": "/data/m4"}, LLAVA_INTERLEAVE_OUT),
    "llava_single": (LLAVA_SINGLE, {}, LLAVA_SINGLE_OUT),
    "mantis": (MANTIS, {"image_root": "/data/mantis"}, MANTIS_OUT),
    "llamafactory": (LLAMAFACTORY, {}, LLAMAFACTORY_OUT),
    "cauldron": (CAULDRON, {"image_root": "/ignored"}, CAULDRON_OUT),
    "openai": (OPENAI, {}, OPENAI_OUT),
    "prompt_completion": (PROMPT_COMPLETION, {}, PROMPT_COMPLETION_OUT),
    "messages": (MESSAGES, {}, MESSAGES_OUT),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_row(name):
    row, kwargs, expected = GOLDEN[name]
    assert F.detect(row) == name.split("_single")[0]
    assert to_messages(row, **kwargs) == expected
    assert to_messages(row, format=F.detect(row), **kwargs) == expected


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_conversion_is_idempotent(name):
    row, kwargs, _ = GOLDEN[name]
    once = to_messages(row, **kwargs)
    assert F.detect(once) in ("messages", "prompt_completion")
    assert to_messages(once, **kwargs) == once


def test_mantis_conversations_key_and_path_strings():
    row = {
        "images": ["a.jpg"],
        "conversations": [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "Hello"}],
    }
    assert F.detect(row) == "mantis"
    assert to_messages(row) == {
        "messages": [msg("user", IMG, T("Hi")), msg("assistant", T("Hello"))],
        "images": ["a.jpg"],
    }


def test_llama_vision_tag_and_custom_tags():
    row = {"messages": [{"role": "user", "content": "<|image|>A<image>B"}], "images": ["1", "2"]}
    assert to_messages(row)["messages"] == [msg("user", IMG, T("A"), IMG, T("B"))]
    custom = to_messages(
        {"messages": [{"role": "user", "content": "[img]x<image>"}], "images": ["1"]}, image_tags=("[img]",)
    )
    assert custom["messages"] == [msg("user", IMG, T("x<image>"))]


def test_tags_in_text_parts_of_a_messages_row_without_image_parts():
    row = {"messages": [msg("user", T("<|image|>What?"))], "images": ["a.png"]}
    assert to_messages(row) == {"messages": [msg("user", IMG, T("What?"))], "images": ["a.png"]}
    literal = {"messages": [msg("user", {"type": "image"}, T("the <image> tag"))], "images": ["a.png"]}
    assert to_messages(literal)["messages"] == [msg("user", IMG, T("the <image> tag"))]


# ---------------------------------------------------------------------------------- whitespace rules


@pytest.mark.parametrize(
    "value, parts",
    [
        ("<image>\nQ", [IMG, T("Q")]),
        ("<image>\n\nQ", [IMG, T("\nQ")]),
        ("<image> Q ", [IMG, T(" Q ")]),
        ("  Q\n<image>", [T("  Q\n"), IMG]),
        ("<image>\n", [IMG]),
        ("<image><image>", [IMG, IMG]),
        ("<image>\r\nQ", [IMG, T("\r\nQ")]),
    ],
)
def test_whitespace_kept_except_tag_and_one_newline(value, parts):
    row = {"conversations": [{"from": "human", "value": value}], "image": ["p"] * value.count("<image>")}
    assert to_messages(row)["messages"] == [{"role": "user", "content": parts}]


def test_strip_tag_newline_off_keeps_it():
    row = {"conversations": [{"from": "human", "value": "<image>\nQ"}], "image": "p"}
    assert to_messages(row, strip_tag_newline=False)["messages"][0]["content"] == [IMG, T("\nQ")]


def test_empty_texts_dropped_and_none_values():
    row = {
        "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": None}],
        "image": "p",
        "images": None,
    }
    assert to_messages(row)["messages"] == [msg("user", IMG), msg("assistant")]


# ---------------------------------------------------------------------------------- placement rules


def test_no_tags_puts_images_at_start_of_first_user_turn():
    row = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Look"},
            {"role": "assistant", "content": "Ok"},
        ],
        "images": ["a", "b"],
    }
    assert to_messages(row)["messages"][1] == msg("user", IMG, IMG, T("Look"))
    off = to_messages({**row, "messages": [{"role": "user", "content": "<image>"}]}, image_tags=())
    assert off["messages"] == [msg("user", IMG, IMG, T("<image>"))]


def test_text_only_rows_survive():
    for row in (
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"messages": [{"role": "user", "content": "hi"}], "images": None},
        {"texts": [{"user": "hi", "assistant": "yo", "source": "x"}], "images": []},
    ):
        out = to_messages(row)
        assert out["images"] == [] and out["messages"][0] == msg("user", T("hi"))


def test_roles_are_normalised():
    row = {
        "conversations": [
            {"from": "human", "value": "a"},
            {"from": "gpt", "value": "b"},
            {"from": "observation", "value": "c"},
        ]
    }
    assert [m["role"] for m in to_messages(row)["messages"]] == ["user", "assistant", "observation"]
    assert to_messages({"messages": [{"role": "model", "content": "x"}]})["messages"][0]["role"] == "assistant"


def test_prompt_only_row():
    row = {"prompt": [{"role": "user", "content": "<image><image>Which?"}], "images": ["a", "b"]}
    assert F.detect(row) == "prompt_completion"
    assert to_messages(row) == {"prompt": [msg("user", IMG, IMG, T("Which?"))], "images": ["a", "b"]}


# ---------------------------------------------------------------------------------- errors

MISMATCH = {
    "llava": {"conversations": [{"from": "human", "value": "<image>\n<image>\nQ"}], "image": ["a"]},
    "mantis": {"conversation": [{"role": "user", "content": "<image>"}], "images": ["a", "b", "c"]},
    "llamafactory": {"messages": [{"role": "user", "content": "<image><image>"}], "images": ["a"]},
    "cauldron": {"texts": [{"user": "<image> Q", "assistant": "A"}], "images": ["a", "b"]},
    "openai": {
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}]}],
        "images": ["b.png"],
    },
    "prompt_completion": {"prompt": [{"role": "user", "content": [{"type": "image"}]}], "images": ["a", "b"]},
    "messages": {"messages": [msg("user", {"type": "image"}, {"type": "image"})], "images": ["a"]},
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_tag_image_mismatch_names_row_counts_format_and_fix(fmt):
    row = MISMATCH[fmt]
    assert F.detect(row) == fmt
    with pytest.raises(ImageTagMismatchError) as info:
        to_messages(row, 12)
    text = str(info.value)
    assert "row 12" in text and f"({fmt} format)" in text and "Fix:" in text
    assert "image(s) in `images`" in text or "image(s) in `image`" in text
    assert isinstance(info.value, ValueError)


def test_mismatch_counts_in_message():
    with pytest.raises(ImageTagMismatchError, match=r"row \? \(llava format\) has 2 image placeholder.* but 1 image"):
        to_messages(MISMATCH["llava"])


def test_row_keyword_wins_over_positional_index():
    with pytest.raises(ImageTagMismatchError, match="row 7 "):
        to_messages(MISMATCH["llava"], 3, row=7)


@pytest.mark.parametrize("row", [{"foo": 1}, {"prompt": "a string", "completion": "b"}, {"messages": [{"x": 1}]}])
def test_unknown_format(row):
    assert F.detect(row) == "unknown"
    with pytest.raises(UnknownFormatError, match=r"row 4 has an unknown layout .*Fix: .*Known formats"):
        to_messages(row, 4)


@pytest.mark.parametrize(
    "row, kwargs, pattern",
    [
        ({"messages": []}, {"format": "nope"}, "format='nope'"),
        ("not a row", {}, "not a dict"),
        (
            {"image": "a", "images": ["b"], "conversations": [{"from": "human", "value": "<image>"}]},
            {},
            "both `image` and `images`",
        ),
        (
            {"images": ["a", None], "messages": [{"role": "user", "content": "<image><image>"}]},
            {},
            r"None at position\(s\) \[1\]",
        ),
        (
            {"messages": [msg("user", {"type": "audio", "audio": "a.wav"})]},
            {},
            "of type 'audio'",
        ),  # videos: test_video_formats
        ({"messages": [{"role": "assistant", "content": "x"}], "images": ["a"]}, {}, "no user turn"),
        ({"messages": [{"role": None, "content": "x"}]}, {"format": "llamafactory"}, "role is None"),
        ({"messages": [{"role": "user", "content": 5}]}, {"format": "llamafactory"}, "content is a int"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}],
                    }
                ]
            },
            {},
            r"row 2 \(openai format\) has a data URI whose base64 data is invalid",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64"}}]}
                ]
            },
            {},
            "malformed data URI",
        ),
        ({"texts": "oops"}, {"format": "cauldron"}, "no `texts` list"),
        ({"id": 1}, {"format": "llava"}, r"has none of \['messages'"),
        ({"id": 1}, {"format": "prompt_completion"}, "has no `prompt`"),
    ],
)
def test_format_errors(row, kwargs, pattern):
    with pytest.raises(FormatError, match=pattern):
        to_messages(row, row=2, **kwargs)


def test_embedded_images_plus_unplaced_column_images_raise():
    row = {"messages": [msg("user", {"type": "image", "image": "x.png"})], "images": ["y.png"]}
    with pytest.raises(ImageTagMismatchError, match="plus 1 image part"):
        to_messages(row)


# ---------------------------------------------------------------------------------- image_root


@pytest.mark.parametrize(
    "image, expected",
    [
        ("a/b.png", "/root/a/b.png"),
        ("/abs/b.png", "/abs/b.png"),
        ("https://h/x.png", "https://h/x.png"),
        ("data:image/png;base64,AAAA", "data:image/png;base64,AAAA"),
        ("file:///srv/x%20y.png", "/srv/x y.png"),
        ("file://localhost/srv/x.png", "/srv/x.png"),
        ("file://otherhost/x.png", "file://otherhost/x.png"),
        ({"bytes": None, "path": "a.png"}, {"bytes": None, "path": "/root/a.png"}),
        ({"bytes": b"1", "path": "a.png"}, {"bytes": b"1", "path": "a.png"}),
        (b"raw", b"raw"),
        ("", ""),
    ],
)
def test_resolve_image(image, expected):
    assert F.resolve_image(image, "/root") == expected


def test_resolve_image_relative_root_and_pathlike(tmp_path, monkeypatch):
    import pathlib

    monkeypatch.chdir(tmp_path)
    assert F.resolve_image(pathlib.Path("x.png"), "imgs") == str(tmp_path / "imgs" / "x.png")
    assert F.resolve_image("file:///x.png") == "/x.png"
    assert F.resolve_image("rel.png") == "rel.png"
    obj = object()
    assert F.resolve_image(obj, "/r") is obj


def test_image_root_applies_to_embedded_and_openai_paths():
    row = {"messages": [msg("user", {"type": "image", "image": "e.png"}, {"type": "image_url", "image_url": "o.png"})]}
    assert to_messages(row, image_root="/r")["images"] == ["/r/e.png", {"bytes": None, "path": "/r/o.png"}]


# ---------------------------------------------------------------------------------- describe & misc


@pytest.mark.parametrize("fmt", FORMATS + ("unknown",))
def test_describe_is_one_line(fmt):
    text = F.describe(fmt)
    assert "\n" not in text and len(text) < 300
    assert "convert_dataset" in text or fmt == "unknown"


def test_describe_rejects_unknown_names():
    with pytest.raises(ValueError):
        F.describe("sharegpt4v")


def test_partials_pickle():
    fn = pickle.loads(pickle.dumps(functools.partial(to_messages, image_root="/r")))
    assert fn(LLAVA_SINGLE)["images"] == ["/r/coco/train2017/000000033471.jpg"]


def test_consumed_columns():
    assert F.consumed_columns(LLAVA_INTERLEAVE) == ["conversations", "image"]
    assert F.consumed_columns(CAULDRON) == ["texts", "images"]
    assert F.consumed_columns(MANTIS) == ["conversation", "images"]
    assert F.consumed_columns({"x": 1}) == []


def test_from_messages_refuses_what_it_cannot_write():
    with pytest.raises(FormatError, match="cauldron"):
        from_messages({"messages": [msg("user", T("a"), IMG)], "images": ["a"]}, "cauldron")
    with pytest.raises(UnknownFormatError):
        from_messages({"messages": []}, "nope")
    with pytest.raises(ImageTagMismatchError):
        from_messages({"messages": [msg("user", IMG)], "images": []}, "llava")


def test_data_uri_mime_sniffing():
    for data, mime in (
        (PNG, "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"RIFF\0\0\0\0WEBPVP8", "image/webp"),
        (b"zz", "application/octet-stream"),
    ):
        row = from_messages({"messages": [msg("user", IMG)], "images": [{"bytes": data, "path": None}]}, "openai")
        url = row["messages"][0]["content"][0]["image_url"]["url"]
        assert url.startswith(f"data:{mime};base64,")
        assert to_messages(row)["images"] == [{"bytes": data, "path": None}]
    plain = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,a%20b"}}]}]}
    assert to_messages(plain)["images"] == [{"bytes": b"a b", "path": None}]


# ---------------------------------------------------------------------------------- round trips

TEXT = st.text(alphabet="ab <>|\n\t", max_size=8)
IMAGE_REF = st.one_of(
    st.integers(0, 99).map(lambda n: f"imgs/{n}.png"),
    st.integers(0, 99).map(lambda n: f"/abs/{n}.jpg"),
    st.binary(min_size=1, max_size=6).map(lambda b: {"bytes": b, "path": None}),
)
PART = st.one_of(TEXT.map(T), st.just(IMG))


@st.composite
def chats(draw, cauldron: bool = False):
    """A messages-layout row: [system] (user, assistant)+ [user], images in placeholder order."""
    turns = []
    if not cauldron and draw(st.booleans()):
        turns.append(msg("system", *draw(st.lists(TEXT.map(T), max_size=2))))
    for _ in range(draw(st.integers(1, 3))):
        turns.append(msg("user", *draw(st.lists(TEXT.map(T) if cauldron else PART, max_size=4))))
        turns.append(msg("assistant", *draw(st.lists(TEXT.map(T) if cauldron else PART, max_size=3))))
    if not cauldron and draw(st.booleans()):
        turns.append(msg("user", *draw(st.lists(PART, max_size=3))))
    if cauldron:
        turns[0]["content"] = [IMG] * draw(st.integers(0, 3)) + turns[0]["content"]
    n = sum(p["type"] == "image" for m in turns for p in m["content"])
    return {
        "id": draw(st.integers(0, 9)),
        "messages": turns,
        "images": draw(st.lists(IMAGE_REF, min_size=n, max_size=n)),
    }


def normalised(row: dict, fmt: str) -> dict:
    """What converting ``row`` to ``fmt`` and back must give: empty texts dropped; adjacent texts merged
    for string formats; openai image paths as {bytes, path} dicts."""
    merge = fmt in ("llava", "mantis", "llamafactory", "cauldron")
    messages = []
    for m in row["messages"]:
        content = []
        for p in m["content"]:
            if p["type"] == "text" and not p["text"]:
                continue
            if merge and p["type"] == "text" and content and content[-1]["type"] == "text":
                content[-1] = T(content[-1]["text"] + p["text"])
            else:
                content.append(dict(p))
        messages.append({"role": m["role"], "content": content})
    images = [i if isinstance(i, dict) or fmt != "openai" else {"bytes": None, "path": i} for i in row["images"]]
    return {"id": row["id"], "messages": messages, "images": images}


def back(row: dict) -> dict:
    out = to_messages(row)
    if "prompt" in out:
        out["messages"] = out.pop("prompt") + out.pop("completion", [])
    return out


def has_tag(row: dict) -> bool:
    merged = normalised(row, "llava")
    return any(
        t in (p.get("text") or "") for m in merged["messages"] for p in m["content"] for t in F.DEFAULT_IMAGE_TAGS
    )


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "cauldron"])
@SETTINGS
@given(row=chats())
def test_round_trip(fmt, row):
    assume(not has_tag(row))
    written = from_messages(row, fmt)
    expected_format = "messages" if fmt == "openai" and not row["images"] else fmt
    assert F.detect(written) == expected_format
    assert back(written) == normalised(row, fmt)


@SETTINGS
@given(row=chats(cauldron=True))
def test_round_trip_cauldron(row):
    assume(not has_tag(row))
    written = from_messages(row, "cauldron")
    assert F.detect(written) == "cauldron"
    assert back(written) == normalised(row, "cauldron")


@SETTINGS
@given(
    text=st.lists(
        st.sampled_from(["a", " ", "\n", "<", ">", "|", "<image>", "<|image|>", "<image>\n"]), max_size=12
    ).map("".join)
)
def test_tagged_strings_split_exactly(text):
    n = len(re.findall(r"<image>|<\|image\|>", text))
    row = {"messages": [{"role": "user", "content": text}], "images": [f"{i}.png" for i in range(n)]}
    out = to_messages(row)
    parts = out["messages"][0]["content"]
    assert out["images"] == row["images"] and sum(p["type"] == "image" for p in parts) == n
    if n:
        rendered = from_messages(out, "llamafactory")["messages"][0]["content"]
        assert rendered == re.sub(r"(<image>|<\|image\|>)\n?", "<image>\n", text)
    else:
        assert parts == ([T(text)] if text else [])


@SETTINGS
@given(row=chats())
def test_untagged_rows_get_images_first(row):
    assume(not has_tag(row) and row["images"])
    written = from_messages(row, "llamafactory")
    for m in written["messages"]:
        m["content"] = m["content"].replace("<image>\n", "")
    out = to_messages(written)
    first_user = next(m for m in out["messages"] if m["role"] == "user")
    assert first_user["content"][: len(row["images"])] == [IMG] * len(row["images"])
    assert out["images"] == row["images"]


@SETTINGS
@given(row=chats(), fmt=st.sampled_from(FORMATS))
def test_output_is_a_fixed_point_with_uniform_part_keys(row, fmt):
    assume(fmt != "cauldron")
    assume(not has_tag(row))
    out = to_messages(from_messages(row, fmt))
    assert to_messages(out) == out
    chats_out = out.get("messages", []) + out.get("prompt", []) + out.get("completion", [])
    for m in chats_out:
        assert set(m) == {"role", "content"}
        for p in m["content"]:
            assert set(p) == {"type", "text"}
            assert (p["type"] == "text") == isinstance(p["text"], str)


# ---------------------------------------------------------------------------------- datasets.map

datasets = pytest.importorskip("datasets")

# Arrow cannot hold a string content next to list contents: the system turn takes a text part.
OPENAI_ARROW = {"messages": [{"role": "system", "content": [T("You compare pictures.")]}] + OPENAI["messages"][1:]}
DATASET_ROWS = {
    "llava": [
        LLAVA_INTERLEAVE,
        {**LLAVA_INTERLEAVE, "id": "2"},
        {"id": "t", "image": None, "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {**LLAVA_INTERLEAVE, "id": "4"},
    ],
    "mantis": [MANTIS, MANTIS, {**MANTIS, "images": [], "conversation": [{"role": "user", "content": "hi"}]}, MANTIS],
    "llamafactory": [
        LLAMAFACTORY,
        LLAMAFACTORY,
        {"messages": [{"role": "user", "content": "hi"}], "images": []},
        LLAMAFACTORY,
    ],
    "cauldron": [
        CAULDRON,
        CAULDRON,
        {"images": [], "texts": [{"user": "hi", "assistant": "yo", "source": "s"}]},
        CAULDRON,
    ],
    "openai": [OPENAI_ARROW, OPENAI_ARROW, {"messages": [{"role": "user", "content": [T("hi")]}]}, OPENAI_ARROW],
    "prompt_completion": [PROMPT_COMPLETION] * 2
    + [{**PROMPT_COMPLETION, "images": [], "prompt": [msg("user", T("hi"))]}, PROMPT_COMPLETION],
    "messages": [{"messages": [msg("user", {"type": "image"}, T("q")), msg("assistant", T("a"))], "images": ["y.png"]}]
    * 2
    + [{"messages": [msg("user", T("hi"))], "images": []}] * 2,
}
CHAT_FEATURE = [
    {
        "role": datasets.Value("string"),
        "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
    }
]
OUT_KEYS = ("messages", "prompt", "completion", "images")


def _chat_feature_ok(feature):
    return datasets.Features({"x": feature}) == datasets.Features({"x": CHAT_FEATURE})


@pytest.fixture(scope="module")
def quiet_datasets():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


@pytest.mark.parametrize("fmt", FORMATS)
def test_dataset_map_num_proc_two(fmt, quiet_datasets):
    ds = datasets.Dataset.from_list(DATASET_ROWS[fmt])
    mapped = ds.map(functools.partial(to_messages, image_root="/r"), with_indices=True, num_proc=2)
    converted = F.convert_dataset(ds, image_root="/r", num_proc=2)
    for key in ("messages", "prompt", "completion"):
        if key in converted.column_names:
            assert _chat_feature_ok(converted.features[key])
    assert not (set(F.consumed_columns(DATASET_ROWS[fmt][0])) - set(OUT_KEYS)) & set(converted.column_names)
    for i in range(len(ds)):
        expected = to_messages(ds[i], i, image_root="/r")
        for key in OUT_KEYS:
            if key in expected:
                assert converted[i][key] == expected[key]
                # Plain map over an existing chat column keeps that column's old part keys (as None):
                # datasets tries the original Arrow type first.
                assert _project(mapped[i][key]) == expected[key]


def _project(value):
    if isinstance(value, list) and value and isinstance(value[0], dict) and "content" in value[0]:
        return [
            {"role": m["role"], "content": [{"type": p["type"], "text": p["text"]} for p in m["content"]]}
            for m in value
        ]
    return value


def test_convert_dataset_split_shards_and_image_features(quiet_datasets):
    # Shard 1 holds only path images, shard 2 only data URIs: plain map would infer two schemas.
    path_row = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}]}]}
    uri_row = from_messages({"messages": [msg("user", IMG)], "images": [{"bytes": PNG, "path": None}]}, "openai")
    text_row = {"messages": [{"role": "user", "content": [T("hi"), T("there")]}]}
    ds = datasets.Dataset.from_list([path_row, path_row, uri_row, text_row])
    out = F.convert_dataset(ds, num_proc=2)
    assert out["images"] == [[{"bytes": None, "path": "a.png"}]] * 2 + [[{"bytes": PNG, "path": None}], []]
    # Image features carry over without decoding (no Pillow needed).
    cauldron = datasets.Dataset.from_dict(
        {"images": [[{"bytes": PNG, "path": None}]] * 3, "texts": [[{"user": "q", "assistant": "a"}]] * 3}
    )
    cauldron = cauldron.cast_column("images", [datasets.Image()])  # Arrow-level cast: no Pillow
    converted = F.convert_dataset(cauldron, num_proc=2)
    assert converted.features["images"] == cauldron.features["images"]
    assert converted.column_names == ["messages", "images"]
    raw = converted.with_format("arrow")[0:1].to_pylist()[0]
    assert raw["images"] == [{"bytes": PNG, "path": None}] and raw["messages"][0]["content"][0] == IMG


def test_convert_dataset_survives_a_text_only_first_writer_batch(quiet_datasets):
    text_only = {"id": "t", "image": None, "conversations": [{"from": "human", "value": "hi"}]}
    ds = datasets.Dataset.from_list([text_only] * 2 + [LLAVA_INTERLEAVE] * 2)
    # A plain ds.map(to_messages, ...) with these batch sizes raises TypeError on datasets 4.8.5: it infers
    # list<null> for the new `images` column from the first writer batch.
    out = F.convert_dataset(ds, batch_size=2, writer_batch_size=2)
    assert out["images"] == [[], [], LLAVA_INTERLEAVE["image"], LLAVA_INTERLEAVE["image"]]


def test_convert_dataset_detects_openai_parts_after_a_text_only_first_row(quiet_datasets):
    text_row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    ds = datasets.Dataset.from_list([text_row, OPENAI_ARROW])
    assert F.detect(ds[0]) == "messages"
    out = F.convert_dataset(ds)
    assert out[1]["images"] == OPENAI_OUT["images"]
    splits = F.convert_dataset(datasets.DatasetDict({"train": ds, "test": ds}))
    assert splits["test"][1]["messages"] == OPENAI_OUT["messages"]


def test_convert_dataset_lists_iterables_and_errors(quiet_datasets):
    assert F.convert_dataset([LLAVA_SINGLE], image_root="/r")[0]["images"] == ["/r/coco/train2017/000000033471.jpg"]
    stream = datasets.Dataset.from_list(DATASET_ROWS["llamafactory"]).to_iterable_dataset()
    assert [r["images"] for r in F.convert_dataset(stream)][:1] == [LLAMAFACTORY["images"]]
    empty = datasets.Dataset.from_dict({"messages": []})
    assert F.convert_dataset(empty) is empty
    with pytest.raises(UnknownFormatError, match="row 0"):
        F.convert_dataset(datasets.Dataset.from_list([{"foo": 1}]))
    bad = datasets.Dataset.from_list(
        [LLAMAFACTORY, {"messages": [{"role": "user", "content": "<image>"}], "images": []}]
    )
    with pytest.raises(ImageTagMismatchError, match="row 1 "):
        bad.map(to_messages, with_indices=True)
