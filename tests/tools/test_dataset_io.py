"""unsloth_multiimage.formats.files: reading and writing JSONL, JSON, Parquet and save_to_disk folders."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

import unsloth_multiimage.formats.files as io_
from unsloth_multiimage import formats
from unsloth_multiimage.errors import DatasetIOError
from unsloth_multiimage.formats.files import count_rows, read_rows, write_rows

PNG = b"\x89PNG\r\n\x1a\n\x00\x01"
ROWS = [
    {
        "id": 0,
        "images": [{"bytes": PNG, "path": None}],
        "messages": [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "hi"}]}],
    },
    {"id": 1, "images": [], "messages": [{"role": "user", "content": [{"type": "text", "text": "yo"}]}]},
]
JSON_ROWS = [
    {"id": 0, "image": ["a/1.jpg", "a/2.jpg"], "conversations": [{"from": "human", "value": "<image>\n<image>\nQ"}]},
    {"id": 1, "conversations": [{"from": "human", "value": "only text ✓"}]},
]


needs_pyarrow = pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None,
    reason="pyarrow is not installed: Parquet files cannot be read or written",
)


def _lines(path, *lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------- JSON Lines / JSON


def test_jsonl_streams_skips_blank_lines_and_limits(tmp_path):
    path = _lines(tmp_path / "d.jsonl", json.dumps(JSON_ROWS[0]), "", "   ", json.dumps(JSON_ROWS[1]))
    assert list(read_rows(path)) == JSON_ROWS
    assert list(read_rows(path, limit=1)) == JSON_ROWS[:1]
    assert list(read_rows(path, limit=0)) == []
    assert count_rows(path) == 2


def test_jsonl_bad_line_is_numbered_and_earlier_rows_stream(tmp_path):
    path = _lines(tmp_path / "d.jsonl", json.dumps(JSON_ROWS[0]), "", '{"id": 2,')
    rows = read_rows(path)
    assert next(rows) == JSON_ROWS[0]
    with pytest.raises(DatasetIOError, match=r"d\.jsonl, line 3: not valid JSON .*Fix:"):
        next(rows)
    listed = _lines(tmp_path / "e.jsonl", "{}", "[1]")
    with pytest.raises(DatasetIOError, match="line 2: a JSON list, not an object"):
        list(read_rows(listed))


def test_json_list_and_json_lines_in_a_json_file(tmp_path):
    listed = tmp_path / "a.json"
    listed.write_text("\ufeff  " + json.dumps(JSON_ROWS, indent=2), encoding="utf-8")
    assert list(read_rows(listed)) == JSON_ROWS and count_rows(listed) == 2
    lines = _lines(tmp_path / "b.json", *map(json.dumps, JSON_ROWS))
    assert list(read_rows(lines, limit=5)) == JSON_ROWS and count_rows(lines) == 2
    empty = tmp_path / "c.json"
    empty.write_text("")
    assert list(read_rows(empty)) == [] and count_rows(empty) == 0


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("[1, 2]", "row 0 is a JSON int"),
        ('[{"a": 1},', r"not valid JSON \(.* line 1"),
        ('{\n  "a": 1\n}', "line 1: not valid JSON"),
    ],
)
def test_json_errors(tmp_path, text, pattern):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(DatasetIOError, match=pattern):
        list(read_rows(path))


def test_unsupported_paths_fail_at_once(tmp_path):
    with pytest.raises(DatasetIOError, match=r"unsupported file type\. Fix: use \.jsonl"):
        read_rows(tmp_path / "x.csv")
    with pytest.raises(DatasetIOError, match="without state.json"):
        list(read_rows(tmp_path))
    with pytest.raises(DatasetIOError, match="split= only applies"):
        read_rows(tmp_path / "x.jsonl", split="train")
    with pytest.raises(ValueError, match="limit"):
        read_rows(tmp_path / "x.jsonl", limit=-1)
    with pytest.raises(DatasetIOError, match="unsupported"):
        write_rows(tmp_path / "x.txt", [])


# ---------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("name", ["o.jsonl", "o.json"])
def test_json_writers_round_trip(tmp_path, name):
    path = tmp_path / name
    assert write_rows(path, iter(JSON_ROWS)) == 2
    assert list(read_rows(path)) == JSON_ROWS
    if name.endswith(".json"):
        assert json.loads(path.read_text(encoding="utf-8")) == JSON_ROWS
    assert write_rows(path, []) == 0 and list(read_rows(path)) == []


@pytest.mark.parametrize("name", ["o.jsonl", "o.json"])
def test_json_writers_name_row_and_key_of_bytes_and_leave_nothing(tmp_path, name):
    path = tmp_path / name
    path.write_text("old")
    with pytest.raises(DatasetIOError, match=r"row 0 holds a value JSON cannot store: images\[0\]\.bytes \(bytes\)"):
        write_rows(path, ROWS)
    with pytest.raises(DatasetIOError, match="row 1 is a str"):
        write_rows(path, [{}, "x"])
    assert path.read_text() == "old" and os.listdir(tmp_path) == [name]


@needs_pyarrow
def test_parquet_round_trip_keeps_bytes_and_streams_batches(tmp_path, monkeypatch):
    path = tmp_path / "d.parquet"
    assert write_rows(path, iter(ROWS * 3)) == 6
    monkeypatch.setattr(io_, "BATCH_ROWS", 2)
    back = list(read_rows(path))
    assert back == ROWS * 3 and isinstance(back[0]["images"][0]["bytes"], bytes)
    assert list(read_rows(path, limit=3)) == (ROWS * 3)[:3]
    assert count_rows(path) == 6


def test_parquet_with_schema_streams(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    monkeypatch.setattr(io_, "BATCH_ROWS", 2)
    schema = pa.Table.from_pylist(ROWS).schema
    path = tmp_path / "s.parquet"
    assert write_rows(path, (r for r in ROWS * 3), schema=schema) == 6
    assert list(read_rows(path)) == ROWS * 3
    with pytest.raises(DatasetIOError, match="row 3 cannot be stored"):
        write_rows(path, ROWS + [ROWS[0], {"id": "not an int"}], schema=schema)


@needs_pyarrow
def test_parquet_type_conflict_names_row(tmp_path):
    path = tmp_path / "bad.parquet"
    rows = [{"images": ["a.png"]}, {"images": ["b.png"]}, {"images": [{"bytes": PNG, "path": None}]}]
    with pytest.raises(DatasetIOError, match=r"row 2 cannot be stored in Parquet .*Fix: give each column one type"):
        write_rows(path, rows)
    assert not path.exists() and os.listdir(tmp_path) == []


@needs_pyarrow
def test_bad_parquet_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(DatasetIOError, match="not a readable Parquet file"):
        list(read_rows(path))


def test_missing_pyarrow_and_datasets_say_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "x.parquet"
    for name in ("pyarrow", "pyarrow.parquet", "datasets"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        list(read_rows(path))
    (tmp_path / "state.json").write_text("{}")
    with pytest.raises(ImportError, match="pip install datasets"):
        list(read_rows(tmp_path))


# ---------------------------------------------------------------------------------- save_to_disk folders


def test_save_to_disk_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    assert list(read_rows(tmp_path / "one")) == ROWS
    assert count_rows(tmp_path / "one") == 2
    with pytest.raises(DatasetIOError, match="single Dataset"):
        list(read_rows(tmp_path / "one", split="test"))
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dict"))
    assert len(list(read_rows(tmp_path / "dict"))) == 2
    assert list(read_rows(tmp_path / "dict", split="test", limit=5)) == ROWS[1:]
    assert count_rows(tmp_path / "dict", split="test") == 1
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "val"))
    with pytest.raises(DatasetIOError, match=r"split\(s\) \['validation'\] and no 'train'. Fix: pass split="):
        list(read_rows(tmp_path / "val"))


# ---------------------------------------------------------------------------------- with formats


@needs_pyarrow
def test_read_convert_write_read(tmp_path):
    src = tmp_path / "llava.jsonl"
    write_rows(src, JSON_ROWS)
    converted = [formats.to_messages(r, i, image_root="/imgs") for i, r in enumerate(read_rows(src))]
    assert converted[0]["images"] == ["/imgs/a/1.jpg", "/imgs/a/2.jpg"] and converted[1]["images"] == []
    out = tmp_path / "messages.parquet"
    write_rows(out, converted)
    assert list(read_rows(out)) == converted
