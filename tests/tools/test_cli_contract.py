"""The command line's contract, as a property over the parser's own option table: every command, on
any argument or input fault, ends with exit status 0 and its result, or a non-zero status and one
short message on stderr naming the input at fault (the option, the variable, the path or the row)
and the fix; never a traceback, never an option the run ignored (the CLI reports those as its own
bug, status 70, which fails here).

The faults are generated from ``cli.build_parser()``'s actions (each action's type, choices or
flag-ness picks its pool of values: missing / empty / wrong paths, zero, negative and non-numbers,
bad choices, options without the one they need) and from ``_env.VARIABLES`` (bad values of every
setting variable), so a new option or variable is covered without a new test. Calls are in-process
(``cli.main(argv)``); ``demo``'s training loop and the A/B's arms are replaced by stand-ins that
return at once (their subject is training, tested in test_cli_demo.py / test_compare.py; here the
subject is what the CLI does with its arguments and inputs before and after them).

Budget: the deterministic sweep gives every option its worst value (most end at the parser, in
milliseconds); the hypothesis property combines 1-2 faults with valid values (real runs) for
``UMI_HYPOTHESIS_PROFILE=ci-full`` 60 examples, else 20.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from unsloth_multiimage import _env
from unsloth_multiimage.tools import cli, options

pytest.importorskip("transformers")
pytest.importorskip("torch")

FULL = os.environ.get("UMI_HYPOTHESIS_PROFILE", "").strip() == "ci-full"
settings.register_profile(
    "umi-cli", max_examples=60 if FULL else 20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

_counter = itertools.count()


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = commands()


def actions(command: str) -> list[argparse.Action]:
    """The command's options and positionals, as its parser lists them (help aside)."""
    return [a for a in COMMANDS[command]._actions if a.dest != "help"]


@pytest.fixture(scope="module")
def ws(messy, saved_checkpoint, tmp_path_factory):
    """The inputs the pools draw from, and the stand-ins for demo's training (module-wide)."""
    from unsloth_multiimage.demo import compare, compare_report, demo

    out = tmp_path_factory.mktemp("cli_out")
    (out / "not_a_dataset").mkdir()
    (out / "not_a_dataset" / "x.txt").write_text("x")
    (out / "a_file").write_text("x")
    (out / "source.jsonl").write_bytes(messy.good.read_bytes())  # convert's source, a copy: targets may name it
    before = {p: p.read_bytes() for p in messy.root.glob("*.jsonl")}
    patch = pytest.MonkeyPatch()
    patch.setattr(demo, "_train", lambda *a, **k: demo._Trained(losses=[2.0, 1.0]))
    patch.setattr(demo, "_print_answers", lambda *a, **k: print("  (answers: stand-in)"))

    def arm(name, cfg, env, train, held, candidates):
        result = compare_report.ArmResult(name)
        result.accuracy = result.generated_accuracy = 50.0
        result.losses = [2.0, 1.0]
        return result

    patch.setattr(compare, "run_arm", arm)
    yield {"messy": messy, "checkpoint": saved_checkpoint, "out": out}
    patch.undo()
    assert {p: p.read_bytes() for p in messy.root.glob("*.jsonl")} == before, "a command wrote into its input"


def _pool(action: argparse.Action, ws: dict) -> list[str | None]:
    """Values for ``action``, the worst first: None stands for a flag given alone."""
    m, out = ws["messy"], ws["out"]
    t = action.type
    if action.nargs == 0:
        return [None]
    if action.choices:
        return ["bogus", *map(str, action.choices)]
    if getattr(t, "__name__", "") == "int_in":
        return [str(t.low - 1), str(t.high + 1), "abc", "1.5", str(t.low)]
    datasets = [m.empty, m.mixed, m.mixed_messages_first, m.dpo, m.grpo, m.llava, m.good]
    by_type = {
        options.positive_int: ["-1", "0", "abc", "1.5", "99999999999999999999", "2"],
        options.positive_float: ["0", "-1", "nan", "inf", "abc", "2.5"],
        options.dataset_path: [str(out / "missing.jsonl"), str(m.csv), str(out / "not_a_dataset"), *map(str, datasets)],
        options.model_folder: [str(out / "nope"), str(out / "a_file"), str(m.imgs), str(ws["checkpoint"])],
        options.folder: [str(out / "nope"), str(out / "a_file"), str(m.root), str(m.imgs)],
        options.image_file: [str(out / "nope.png"), str(m.imgs / "corrupt.jpg"), str(m.imgs / "kitchen_1.jpg")],
    }
    if t in by_type:
        return by_type[t]
    if getattr(t, "__name__", "") == "output_file":
        return [str(out / "a_file" / "x.png"), str(out / "x.txt"), str(out / f"p{next(_counter)}.png")]
    if action.dest == "target":
        return [
            str(out / "source.jsonl"),
            str(out / "o.csv"),
            str(out / "not_a_dataset"),
            str(out / f"o{next(_counter)}.jsonl"),
        ]
    return ["", "bogus", "{x}", "ünï", "-1"]  # free text (--arms, --video-frame-label, a question ...)


def baseline(command: str, ws: dict) -> list[str]:
    """A cheap valid call of ``command`` the faults are put into."""
    m, out = ws["messy"], ws["out"]
    return {
        "doctor": ["--no-import"],
        "convert": [str(out / "source.jsonl"), str(out / f"c{next(_counter)}.jsonl")],
        "preview": ["--out", str(out / f"p{next(_counter)}.png")],
        "ask": [
            "--model",
            str(ws["checkpoint"]),
            "--max-new-tokens",
            "1",
            "--image",
            str(m.imgs / "kitchen_1.jpg"),
            "q",
        ],
        "demo": ["--steps", "2", "--batch-size", "1"],
    }[command]


def argv_for(command: str, faults: list[tuple[argparse.Action, str | None]], ws: dict) -> list[str]:
    """The baseline with each fault put in (an option replaces the baseline's, a positional takes
    its place)."""
    base = baseline(command, ws)
    positionals = [a for a in actions(command) if not a.option_strings]
    pos_values = [v for v in base if not v.startswith("-")][-len(positionals) :] if positionals else []
    opts = base[: len(base) - len(pos_values)] if positionals else base
    opt_list = list(opts)
    for action, value in faults:
        if not action.option_strings:
            pos_values[positionals.index(action)] = value or ""
            continue
        flag = max(action.option_strings, key=len)
        if flag in opt_list and action.nargs != 0:  # replace the baseline's value
            i = opt_list.index(flag)
            del opt_list[i : i + 2]
        opt_list += [flag] if value is None else [flag, value]
    if command == "ask" and any(a.dest == "dataset" for a, _ in faults):  # a row holds its own question
        pos_values = []
        while "--image" in opt_list:
            i = opt_list.index("--image")
            del opt_list[i : i + 2]
    return [command, *opt_list, "--", *pos_values] if pos_values else [command, *opt_list]


def tokens(faults: list[tuple[argparse.Action, str | None]], env: dict[str, str]) -> set[str]:
    """What a message may name to name the input at fault."""
    found: set[str] = set(env)
    for action, value in faults:
        found |= set(action.option_strings) | {action.dest, action.dest.replace("_", "-")}
        if value:
            found |= {value, Path(value).name}
    return {t for t in found if len(t) >= 2}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        status = cli.main(argv)
    except SystemExit as stop:  # argparse: --help, --version, and its own errors (status 2)
        status = int(stop.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_contract(argv, env, faults, status, out, err) -> None:
    where = f"argv={argv} env={env}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert "Traceback" not in out + err, where
    assert status in (0, 1, 2), f"status {status}: " + where
    if status == 0:
        assert out.strip(), "exit 0 without a result: " + where
        return
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith(f"unsloth-multiimage {argv[0]}: "), "no closing message on stderr: " + where
    named = tokens(faults, env)
    assert any(t in last for t in named), f"the message names none of {sorted(named)}: " + where
    assert "Fix:" in last or "See `" in last, "the message gives no fix: " + where


def _sweep_cases() -> list[tuple[str, str]]:
    return [(command, a.dest) for command in COMMANDS for a in actions(command)]


@pytest.mark.parametrize(("command", "dest"), _sweep_cases())
def test_every_option_given_its_worst_value_is_refused_or_run(command, dest, ws, capsys):
    """Deterministic: each option of each command, alone, with the first value of its pool."""
    action = next(a for a in actions(command) if a.dest == dest)
    value = _pool(action, ws)[0]
    argv = argv_for(command, [(action, value)], ws)
    assert_contract(argv, {}, [(action, value)], *run(argv, capsys))


SETTING_VARIABLES = [v for v in _env.VARIABLES if v.setting is not None and v.kind != "flag"]


@pytest.mark.parametrize("variable", [v.name for v in SETTING_VARIABLES])
def test_a_bad_setting_variable_is_named_by_every_command(variable, ws, capsys, monkeypatch):
    var = next(v for v in SETTING_VARIABLES if v.name == variable)
    monkeypatch.setenv(variable, "{x}" if var.kind == "str" else "abc" if var.kind in ("int", "float") else "0")
    for command in ("doctor", "preview"):
        argv = [command, *baseline(command, ws)]
        if command == "doctor":
            argv += ["--dataset", str(ws["messy"].good)]
        status, out, err = run(argv, capsys)
        if variable == "UNSLOTH_MULTIIMAGE_VIDEO_FRAME_LABEL":  # "{x}": refused at once
            assert status == 1
        assert_contract(argv, {variable: "x"}, [], status, out, err)


def draw_call(data: st.DataObject, ws: dict) -> tuple[str, list[tuple[argparse.Action, str | None]], dict[str, str]]:
    """A command, 1-2 of its arguments with values from their pools, and now and then a bad variable."""
    command = data.draw(st.sampled_from(sorted(COMMANDS)))
    chosen = data.draw(st.permutations(actions(command)))[: data.draw(st.integers(1, 2))]
    faults = [(a, data.draw(st.sampled_from(_pool(a, ws)))) for a in chosen]
    env: dict[str, str] = {}
    if data.draw(st.integers(0, 4)) == 0:
        var = data.draw(st.sampled_from(SETTING_VARIABLES))
        env[var.name] = data.draw(st.sampled_from(["abc", "-1", "0", "{x}"]))
    return command, faults, env


@settings(settings.get_profile("umi-cli"))
@given(data=st.data())
def test_any_faults_end_in_a_result_or_a_named_error(ws, capsys, data):
    command, faults, env = draw_call(data, ws)
    argv = argv_for(command, faults, ws)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        status, out, err = run(argv, capsys)
    event(f"{command}: exit {status}")
    assert_contract(argv, env, faults, status, out, err)


def test_an_option_the_run_did_not_use_is_the_clis_bug(monkeypatch, capsys):
    """The guard the property relies on: a command that ignores an option it was given (here a
    doctor that never looks at ``--no-import``) ends with status 70 naming the option."""
    monkeypatch.setattr(cli, "_doctor", lambda args: print("a report") or 0)
    status, _out, err = run(["doctor", "--no-import"], capsys)
    assert status == cli.INTERNAL_ERROR and "--no-import had no effect" in err, err


def test_the_top_level_help_is_plain_text(capsys):
    status, out, _err = run(["--help"], capsys)
    assert status == 0
    assert "``" not in out and ":func:" not in out and ":mod:" not in out, out
    for command in COMMANDS:
        status, out, _err = run([command, "--help"], capsys)
        assert status == 0 and "``" not in out, out
        undocumented = [a.dest for a in actions(command) if not a.help]
        assert not undocumented, f"{command}: options without help text: {undocumented}"
