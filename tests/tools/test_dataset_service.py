"""One dataset service (unsloth_multiimage.formats.source): every command reads the same file as
the same rows, with the same resolved image paths and the same verdict per row."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import pytest

from unsloth_multiimage import formats
from unsloth_multiimage.errors import CommandError
from unsloth_multiimage.formats import source

Image = pytest.importorskip("PIL.Image")

#: Each layout written by formats.from_messages, so each file holds the same rows in its own layout.
LAYOUTS = ("messages", "llava", "mantis", "llamafactory", "openai", "prompt_completion")


def _messages_rows() -> list[dict]:
    def row(i: int, n: int) -> dict:
        user = [{"type": "image"}] * n + [{"type": "text", "text": f"which image is red {i}"}]
        return {
            "id": f"r{i}",
            "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": [{"type": "text", "text": "red" if i % 2 else "blue"}]},
            ],
            "images": [f"img/r{i}_{k}.png" for k in range(n)],
        }

    return [row(0, 2), row(1, 3), row(2, 1), row(3, 2)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("service")
    (root / "img").mkdir()
    for r in _messages_rows():
        for k, p in enumerate(r["images"]):
            Image.new("RGB", (28, 28), (40 * k, 80, 200)).save(root / p)
    return root


def _write(folder: Path, layout: str, bad: bool) -> Path:
    rows = [formats.from_messages(r, layout) if layout != "messages" else r for r in _messages_rows()]
    if bad:  # two image tags, one image: no command may drop it silently, each names row 2
        bad_row = formats.from_messages(_messages_rows()[0], "llava")
        bad_row["image"] = bad_row["image"][:1]
        rows.insert(2, bad_row)
    path = folder / f"{layout}{'_bad' if bad else ''}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _paths(row: dict) -> list[str]:
    """The row's image paths (OpenAI rows carry them as ``{"bytes": None, "path"}`` dicts)."""
    return [i["path"] if isinstance(i, dict) else i for i in row["images"]]


def _want(folder: Path) -> list[list[str]]:
    return [[str(folder / p) for p in r["images"]] for r in _messages_rows()]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_convert_doctor_preview_and_compare_read_the_same_rows(folder, layout, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from unsloth_multiimage.demo import compare
    from unsloth_multiimage.tools import convert, doctor, preview

    monkeypatch.chdir(tmp_path)  # the relative paths exist only under the file's folder
    path = _write(folder, layout, bad=True)
    out = tmp_path / "out.jsonl"
    result = convert.convert_file(str(path), str(out), skip_bad=True)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [i for i, _ in result.errors] == [2], result.errors  # the bad row, named, not dropped
    assert [_paths(w) for w in written] == _want(folder)  # the file's folder is the default root
    assert [w["id"] for w in written] == ["r0", "r1", "r2", "r3"]

    check = doctor.check_dataset(str(path), limit=None, decode=False)
    verdicts = [r.verdict for r in check.reports]
    from unsloth_multiimage.collate import release as zoo_release

    if layout == "prompt_completion" and zoo_release.pc_path_problem(zoo_release.installed_decision()):
        # this unsloth_zoo release collates no prompt/completion row at all: the dry run says so for each
        assert verdicts == ["error"] * len(verdicts), check.reports
    else:
        assert [i for i, v in enumerate(verdicts) if v == "error"] == [2], check.reports
        assert [r.sent for r in check.reports if r.verdict != "error"] == [len(w["images"]) for w in written]

    service = list(source.prepare_rows(str(path)))
    assert [p.row for p in service if p.row is not None] == written  # convert wrote what the service gives
    assert all(p.converted == (layout not in source.COLLATOR_LAYOUTS) for p in service if p.index != 2)

    args = argparse.Namespace(dataset=str(path), row=2, out=str(tmp_path / "p.png"), strategy="native", model=None)
    with pytest.raises(CommandError, match="row 2 of .* cannot be converted"):  # the same row refused
        preview.run(args)
    assert not (tmp_path / "p.png").exists()
    args.row = 3  # row 3 of the file is the source's third good row
    assert preview.run(args) == 0 and (tmp_path / "p.png").exists()

    good = _write(folder, layout, bad=False)
    train, held, _candidates, _desc = compare._data(compare.CompareConfig(dataset=str(good), eval_rows=3))
    chats = sorted(_paths(r) for r in [*train, *held])
    assert chats == sorted(_want(folder))
    with pytest.raises(ValueError, match="row 2"):
        compare._data(compare.CompareConfig(dataset=str(path), eval_rows=1))


def test_a_save_to_disk_folder_is_its_own_image_root_for_every_reader(folder, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(_messages_rows()).save_to_disk(str(saved))
    os.symlink(folder / "img", saved / "img")  # the images inside the saved folder
    monkeypatch.chdir(tmp_path)
    assert source.default_image_root(str(saved)) == str(saved)
    assert source.default_image_root(str(folder / "x.jsonl")) == str(folder)
    assert source.default_image_root(datasets.Dataset.from_list(_messages_rows())) is None
    rows = [p.row for p in source.prepare_rows(str(saved))]
    assert [r["images"] for r in rows] == [[str(saved / p) for p in r["images"]] for r in _messages_rows()]
    converted = formats.convert_dataset(str(saved))  # convert_dataset reads a path through the service
    assert [r["images"] for r in converted] == [r["images"] for r in rows]


def test_many_missing_paths_warn_once_naming_examples(folder, tmp_path, caplog):
    from unsloth_multiimage.tools import convert, doctor

    path = _write(folder, "llava", bad=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    caplog.set_level(logging.WARNING, logger="unsloth_multiimage")
    convert.convert_file(str(path), str(tmp_path / "o.jsonl"), image_root=str(elsewhere))
    doctor.check_dataset(str(path), limit=None, decode=False, image_root=str(elsewhere))
    warned = [r.getMessage() for r in caplog.records if "exist nowhere" in r.getMessage()]
    assert len(warned) == 2, warned  # once per command
    assert all("8 image/video path(s)" in w and str(elsewhere) in w and "r0_0.png" in w for w in warned)
    assert all("Fix: pass the folder the paths are relative to (--image-root DIR" in w for w in warned)
    caplog.clear()
    convert.convert_file(str(path), str(tmp_path / "o.jsonl"))  # the right root: no warning
    assert not [r for r in caplog.records if "exist nowhere" in r.getMessage()]


def test_the_worker_pool_gives_the_rows_in_order():
    rows = [{"messages": [{"role": "user", "content": [{"type": "text", "text": f"row {i}"}]}]} for i in range(5)]
    one = [p.row for p in source.prepare_rows(rows)]
    two = [p.row for p in source.prepare_rows(rows, num_proc=2)]
    assert one == two == rows


def test_convert_writes_with_the_users_umask(folder, tmp_path):
    from unsloth_multiimage.tools import convert

    out = tmp_path / "o.jsonl"
    old = os.umask(0o027)
    try:
        convert.convert_file(str(_write(folder, "llava", bad=False)), str(out))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o640


def test_one_rule_for_relative_paths_wherever_a_command_runs(folder, tmp_path, monkeypatch, caplog):
    """Issue 26: run from the data folder, ``convert`` wrote existing images' paths relative to the
    working directory and missing ones absolute, then ``doctor`` on its output, read from the
    output's folder, failed every row ("no such image file '/.../out/img/...' (relative paths are read
    from '/')"). Now a dataset file's relative paths are read from its folder (or --image-root),
    never from the working directory, and convert writes them absolute."""
    from unsloth_multiimage.inference.prompt import _as_row
    from unsloth_multiimage.tools import convert, doctor

    path = _write(folder, "llava", bad=False)
    monkeypatch.chdir(folder)  # the data folder: img/... exists from here too
    out = tmp_path / "out" / "train.jsonl"  # a folder that does not exist yet
    convert.convert_file(path.name, str(out))
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [_paths(w) for w in written] == _want(folder)  # absolute, whatever the working directory
    for where in (tmp_path, folder, tmp_path / "out"):
        monkeypatch.chdir(where)
        check = doctor.check_dataset(str(out), limit=None, decode=True)
        assert [r.verdict for r in check.reports if r.verdict == "error"] == [], check.reports
    # the working directory is never consulted for a file's paths: a copy of the file elsewhere
    # finds nothing, says where it looked, and that the paths exist from here (--image-root .)
    moved = tmp_path / "elsewhere" / "llava.jsonl"
    moved.parent.mkdir()
    moved.write_text(path.read_text())
    monkeypatch.chdir(folder)
    caplog.set_level(logging.WARNING, logger="unsloth_multiimage")
    rows = list(source.prepare_rows(str(moved)))
    assert [_paths(p.row) for p in rows] == [[str(moved.parent / p) for p in r["images"]] for r in _messages_rows()]
    warned = [r.getMessage() for r in caplog.records if "exist nowhere" in r.getMessage()]
    assert len(warned) == 1 and f"--image-root {folder}" in warned[0], warned
    # the same rule in ask / prepare_inputs: a dataset row's paths read from the image root given
    row = json.loads(moved.read_text().splitlines()[0])
    assert _paths(_as_row(row, None, str(folder), 0)) == _want(folder)[0]
