"""Issue 26's findings, one test each, on the messy dataset a new user brings (tests/support/messy_data.py):
every command ends in a result or a clear error naming the input and the fix, one rule for relative
image paths, preference and GRPO rows first-class, one option vocabulary. In-process calls of
``cli.main`` (the CLI contract over every option is tests/tools/test_cli_contract.py)."""

from __future__ import annotations

import json
import os
import re

import pytest

from unsloth_multiimage.tools import cli

pytest.importorskip("transformers")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        status = cli.main(list(argv))
    except SystemExit as stop:
        status = int(stop.code or 0)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err, out
    return status, out.out, out.err


# ------------------------------------------------------------------ doctor


@pytest.mark.parametrize("which", ["mixed", "mixed_messages_first"])
def test_doctor_reads_a_file_mixing_layouts_whichever_row_comes_first(messy, capsys, which):
    """Before: ``ValueError: unknown format 'llava (1), messages (1)'`` (the layout summary handed to
    formats.describe) when the first row was not in the collator's layout."""
    path = str(getattr(messy, which))
    status, out, err = run(capsys, "doctor", "--no-import", "--dataset", path)
    assert "layout: llava (1), messages (1)" in out or "layout: messages (1), llava (1)" in out, out
    assert "As it is, the collator refuses the llava rows (convert the dataset first" in out, out
    assert status == 1 and f"1 llava row(s) are refused by the collator as they are ({path})" in err, err
    assert "unsloth-multiimage convert" in err


def test_preference_and_grpo_rows_are_detected_checked_and_counted(messy, capsys, tmp_path):
    """Before: a DPO or GRPO file was "unknown layout" to doctor and convert, which never pointed to
    formats.to_preference / to_grpo_prompt."""
    status, out, _err = run(capsys, "doctor", "--no-import", "--dataset", str(messy.dpo))
    assert status == 0, out
    assert "layout: preference" in out and "2 preference row(s) (TRL's DPOTrainer)" in out
    assert (
        "formats.to_preference" in out
        and "prompt + chosen and prompt + rejected: checked as TRL's DPOTrainer gets it" in out
    )
    assert "2 row(s): 2 ok" in out, out

    status, out, _err = run(capsys, "doctor", "--no-import", "--dataset", str(messy.grpo))
    assert status == 0 and "layout: grpo" in out and "formats.to_grpo_prompt" in out, out

    target = tmp_path / "dpo.jsonl"
    status, out, _err = run(capsys, "convert", str(messy.dpo), str(target))
    assert status == 0 and "preference rows in TRL's DPO layout" in out, out
    row = json.loads(target.read_text().splitlines()[0])
    assert sorted(row) == ["chosen", "images", "prompt", "rejected"]
    assert row["images"] == [str(messy.imgs / "kitchen_1.jpg"), str(messy.imgs / "kitchen_2.jpg")]
    assert [p["type"] for p in row["prompt"][0]["content"]] == ["image", "image", "text"]

    target = tmp_path / "grpo.jsonl"
    status, out, _err = run(capsys, "convert", str(messy.good), str(target), "--to", "grpo")
    assert status == 0 and "GRPO prompt" in out, out
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["answer"] for r in rows] == ["yes", "green"] and all(r["prompt"][-1]["role"] == "user" for r in rows)

    png = tmp_path / "dpo.png"
    status, out, _err = run(capsys, "preview", "--dataset", str(messy.dpo), "--out", str(png))
    assert status == 0 and png.is_file() and "2 image(s) to the model" in out, out
    # the unknown-layout message points to them too
    from unsloth_multiimage import formats

    assert "to_preference" in formats.describe("unknown") and "to_grpo_prompt" in formats.describe("unknown")


# ------------------------------------------------------------------ convert


@pytest.mark.parametrize("target", ["out_ds", "out.parquet"])
def test_convert_names_the_column_arrow_cannot_store(messy, capsys, tmp_path, target):
    """Before: ``pyarrow.lib.ArrowTypeError: Expected bytes, got a 'int' object`` (a folder), and a
    Parquet message that named no column and suggested ``schema=``, which the CLI does not have."""
    pytest.importorskip("datasets")
    status, _out, err = run(capsys, "convert", str(messy.llava), str(tmp_path / target), "--skip-bad")
    assert status == 1, err
    assert "`id` holds int, str" in err and "Fix: give `id` one type in every row" in err, err
    assert "schema=" not in err and "write a .jsonl / .json file" in err


def test_convert_refuses_its_own_source_and_a_csv_target_before_reading_a_row(messy, capsys, monkeypatch, tmp_path):
    """Before: ``convert SRC SRC --skip-bad`` overwrote the source; ``.csv`` was refused after every
    row had been read and converted."""
    from unsloth_multiimage.formats import source

    def no_reading(*_a, **_k):
        raise AssertionError("the rows were read")

    monkeypatch.setattr(source, "read_source", no_reading)
    before = messy.llava.read_bytes()
    status, _out, err = run(capsys, "convert", str(messy.llava), str(messy.llava), "--skip-bad")
    assert status == 2 and "is the source" in err and messy.llava.read_bytes() == before, err
    status, _out, err = run(capsys, "convert", str(messy.llava), str(tmp_path / "out.csv"))
    assert status == 2 and "not .csv" in err and "Fix: name the target e.g." in err, err
    status, _out, err = run(capsys, "convert", str(messy.csv), str(tmp_path / "out.jsonl"))
    assert status == 2 and "rows.csv" in err and "export it as JSON Lines or Parquet" in err, err


# ------------------------------------------------------------------ model paths


def test_a_model_path_that_is_no_checkpoint_is_named_as_such(messy, capsys):
    """Before: ``OSError: Repo id must use alphanumeric chars`` tracebacks (doctor, preview); doctor
    --dataset blamed the dataset; ask talked about connecting to the Hub."""
    for argv in (
        ["doctor", "--no-import", "--model", "./nope"],
        ["preview", "--model", "./nope"],
        ["doctor", "--no-import", "--model", "./nope", "--dataset", str(messy.good)],
        ["ask", "--model", "my-finetune", "--image", str(messy.imgs / "kitchen_1.jpg"), "q"],
    ):
        status, _out, err = run(capsys, *argv)
        assert status == 2, (argv, err)
        assert "argument --model" in err and "never downloads a model" in err, err
        assert "dataset" not in err.split("--model", 1)[1].split(".")[0] and "huggingface.co" not in err
    # a folder that is not a checkpoint: named as --model, with the fix
    status, _out, err = run(capsys, "doctor", "--no-import", "--model", str(messy.imgs), "--dataset", str(messy.good))
    assert status == 1 and f"--model {messy.imgs}: its processor does not load" in err and "Fix:" in err, err
    assert "cannot read the dataset" not in err


# ------------------------------------------------------------------ rows, environment


def test_rows_out_of_range_are_refused_naming_the_option(messy, capsys):
    """Before: ``preview --row -1`` ended in an IndexError."""
    status, _out, err = run(capsys, "preview", "--row", "-1")
    assert status == 2 and "argument --row: must be from 0 to" in err and "got -1" in err, err
    status, _out, err = run(capsys, "preview", "--dataset", str(messy.good), "--row", "7")
    assert status == 1 and "--row 7:" in err and "has 2 row(s)" in err, err
    status, _out, err = run(capsys, "ask", "--model", ".", "--dataset", str(messy.good), "--row", "-1")
    assert status == 2 and "argument --row" in err, err


@pytest.mark.parametrize(
    ("variable", "value"),
    [("UNSLOTH_MULTIIMAGE_VIDEO_FPS", "abc"), ("UNSLOTH_MULTIIMAGE_VIDEO_FRAME_LABEL", "Frame {x}")],
)
def test_a_bad_environment_value_names_its_variable(messy, capsys, monkeypatch, variable, value):
    """Before: a traceback (VIDEO_FPS=abc), and a VIDEO_FRAME_LABEL error that did not name the variable."""
    from unsloth_multiimage import get_settings
    from unsloth_multiimage.errors import SettingsError

    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        get_settings()
    assert info.value.source == variable and str(info.value).startswith(f"{variable}={value!r} is not valid")
    status, _out, err = run(capsys, "doctor", "--no-import", "--dataset", str(messy.good))
    assert status == 1 and f"{variable}={value!r} is not valid" in err and "Fix:" in err, err


def test_ask_names_the_row_it_was_asked(messy, saved_checkpoint, capsys):
    """Before: ``ask --dataset F --row 3`` said "row 0" of its errors."""
    status, _out, err = run(
        capsys,
        "ask",
        "--model",
        str(saved_checkpoint),
        "--dataset",
        str(messy.llava),
        "--row",
        "3",
        "--max-new-tokens",
        "1",
    )
    assert status == 1 and "row 3, image 0 cannot be decoded" in err and "row 0" not in err, err


def test_doctor_all_says_it_reads_image_headers_only(messy, capsys):
    """Before: ``--all`` read image headers only and did not say so (a truncated JPEG was ``ok``)."""
    status, out, _err = run(capsys, "doctor", "--no-import", "--dataset", str(messy.llava), "--all")
    assert "images: image headers only (size and mode; --decode decodes them)" in out, out
    status, out, _err = run(capsys, "doctor", "--no-import", "--dataset", str(messy.llava), "--all", "--decode")
    assert "images: every image decoded" in out and re.search(r"row 4, image 0 cannot be decoded", out), out


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["doctor", "--no-import", "--all"], "--all needs --dataset"),
        (["doctor", "--no-import", "--max-seq-length", "64"], "--max-seq-length needs --dataset"),
        (["doctor", "--no-import", "--strategy", "grid"], "--strategy needs --dataset"),
        (["doctor", "--no-import", "--dataset", "GOOD", "--decode"], "--decode needs --all"),
        (["doctor", "--no-import", "--dataset", "GOOD", "--rows", "0"], "argument --rows: must be from 1 to"),
        (["doctor", "--no-import", "--dataset", "GOOD", "--rows", "5", "--all"], "--rows and --all cannot be given"),
        (["demo", "--arms", "grid"], "--arms needs --compare"),
        (["demo", "--compare", "--strategy", "grid"], "--strategy and --compare cannot be given together"),
        (["preview", "--image-root", "."], "--image-root needs --dataset"),
    ],
)
def test_an_option_that_would_be_ignored_is_refused(messy, capsys, argv, named):
    """Before: ignored with exit 0."""
    argv = [str(messy.good) if a == "GOOD" else a for a in argv]
    status, _out, err = run(capsys, *argv)
    assert status == 2 and named in err and ("Fix:" in err or named.startswith("argument")), err


def test_an_empty_file_is_an_error_not_an_empty_report(messy, capsys):
    status, _out, err = run(capsys, "doctor", "--no-import", "--dataset", str(messy.empty))
    assert status == 1 and "the dataset has no rows" in err and "empty.jsonl" in err, err


def test_num_proc_runs_in_one_process_below_the_threshold(messy, capsys, tmp_path):
    """Before: ``--num-proc 2`` started workers on a 10-row file and was slower than one process."""
    from unsloth_multiimage.formats.source import MIN_ROWS_FOR_WORKERS
    from unsloth_multiimage.tools.doctor import check_dataset

    check = check_dataset(str(messy.good), num_proc=2)
    assert check.processes == 1 and f"below {MIN_ROWS_FOR_WORKERS:,} rows" in check.processes_note
    status, out, _err = run(capsys, "convert", str(messy.good), str(tmp_path / "o.jsonl"), "--num-proc", "2")
    assert status == 0 and "--num-proc 2: one process for 2 row(s)" in out, out


def test_the_settings_options_are_one_vocabulary_and_reports_name_what_they_used(messy, capsys, monkeypatch):
    """Before: doctor had no --strategy / --max-images / --max-pixels / --cross-attention (only the
    variables worked, unnamed in its report); preview lacked --image-root and --format."""
    from unsloth_multiimage.tools.options import SETTING_OPTIONS

    commands = {c: {a.dest: a for a in p._actions} for c, p in _subparsers().items()}
    for command in ("doctor", "preview", "ask"):
        for opt in SETTING_OPTIONS:
            action = commands[command][opt.dest]
            assert opt.flag in action.option_strings and action.help and opt.variable in action.help
            assert tuple(action.choices or ()) == tuple(opt.choices or ())
        assert {"image_root", "format"} <= set(commands[command]), command
    assert {o.dest for o in SETTING_OPTIONS if o.group != "video"} <= set(commands["demo"])
    assert {"image_root", "format"} <= set(commands["convert"])

    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "1")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ON_EXCESS", "keep_first")
    status, out, _err = run(capsys, "doctor", "--no-import", "--dataset", str(messy.good), "--strategy", "grid")
    assert status == 0, out
    assert "strategy='grid' (--strategy)" in out and "max_images=1 (UNSLOTH_MULTIIMAGE_MAX_IMAGES)" in out, out
    assert "max_pixels_per_example=None (default)" in out


def _subparsers():
    import argparse

    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


# ------------------------------------------------------------------ doctor's report, consistent


def test_doctor_says_the_vllm_limit_will_be_raised_while_its_patch_waits(capsys):
    """Before: "raised by the plugin to 8" beside the patch table's "pending / applied: no"."""
    from unsloth_multiimage.engine import activation
    from unsloth_multiimage.tools.doctor import doctor_report

    report = doctor_report(import_targets=False)
    limits = [st for st in activation.status() if st.name.startswith("vllm_image_limit")]
    if not any("raised by the plugin" in line for line in report.splitlines()):
        pytest.skip("this unsloth_zoo release sets no vLLM image limit the plugin raises")
    pending = not any(st.applied for st in limits) and any(st.decision == "pending" for st in limits)
    assert ("will be raised by the plugin, when your script imports unsloth_zoo.vllm_utils" in report) == pending
    assert ("  raised by the plugin to" in report) == (not pending)


@pytest.mark.heavy
def test_doctor_without_a_gpu_says_what_the_demo_would_run():
    """Before: after a successful ``demo`` (the real, patched collator), ``doctor`` without
    UNSLOTH_ZOO_DISABLE_GPU_INIT listed the collator patch under "not applied ... Please install
    Unsloth". Now doctor imports unsloth_zoo as the demo does: where the demo gets the real collator,
    doctor shows its patch applied; where the release cannot start on a CPU at all (before 2026.5),
    both say so."""
    import subprocess
    import sys

    from tests.support import REPO, UNSLOTH_ZOO, clean_env

    if UNSLOTH_ZOO is None:
        pytest.skip("unsloth_zoo is not installed on this row")
    env = {k: v for k, v in clean_env().items() if k != "UNSLOTH_ZOO_DISABLE_GPU_INIT"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")

    def python(*args: str) -> str:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    demo_runs_it = python(
        "-c",
        "from unsloth_multiimage.demo.training import load_zoo_collator; print(load_zoo_collator()[0] is not None)",
    ).strip()
    out = python("-m", "unsloth_multiimage", "doctor")
    row = next(line for line in out.splitlines() if re.match(r"unsloth_collator\s+\d", line))
    assert "No GPU here: unsloth_zoo imported with UNSLOTH_ZOO_DISABLE_GPU_INIT=1" in out, out
    if demo_runs_it == "True":
        assert re.match(r"unsloth_collator\s+\S+\s+(apply|native)\s+", row), row
        assert "Please install Unsloth" not in out
    else:  # the release refuses to start here, for the demo too: doctor says why and the fix
        assert "pending" in row and "`import unsloth_zoo.vision_utils` fails here" in out, out
