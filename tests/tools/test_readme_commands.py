"""README's statements about the commands stay true (drift tests, beside test_settings.py's table of
variables and test_compat_matrix.py's compat table): every command line it shows uses options the
parser has, with values it takes; ``--dataset`` is shown a dataset, not a folder of files; the
setting options it lists are the parser's; the relative-path rule is said once; Limits does not
contradict what the video stage does; Performance times as many ``demo --compare`` arms as there are."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from unsloth_multiimage.tools import cli, options

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
NUMBERS = {"four": 4, "five": 5, "six": 6, "seven": 7}


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _command_lines() -> list[list[str]]:
    """Every ``unsloth-multiimage ...`` line of README's code blocks and inline code, comments cut."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            if line.startswith("unsloth-multiimage "):
                found.append(shlex.split(line.split("  #", 1)[0])[1:])
    for inline in re.findall(r"`(unsloth-multiimage [^`]+)`", README):
        found.append(shlex.split(inline)[1:])
    return found


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return dict(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def test_every_command_line_in_the_readme_uses_options_the_parser_has():
    commands = _subparsers()
    lines = _command_lines()
    assert len(lines) >= 10
    for argv in lines:
        argv = [a for a in argv if a not in ("-v", "--verbose")]
        assert argv[0] in commands, argv
        table = {s: a for a in commands[argv[0]]._actions for s in a.option_strings}
        for i, token in enumerate(argv[1:], 1):
            if not token.startswith("--") or token in ("--", "..."):
                continue
            assert token in table, f"README: `{' '.join(argv)}` uses {token}, which {argv[0]} does not have"
            action = table[token]
            if action.choices and i + 1 < len(argv):
                assert argv[i + 1] in action.choices, f"README: {token} {argv[i + 1]} is not one of {action.choices}"


def test_readme_shows_dataset_options_a_dataset():
    """``doctor --dataset data/`` read like a folder of files: a dataset is a file or a save_to_disk folder."""
    for argv in _command_lines():
        for i, token in enumerate(argv[:-1]):
            if token in ("--dataset",) or (argv[0] == "convert" and i == 0):
                value = argv[i + 1]
                if value.isupper() or value.startswith("-"):
                    continue  # a placeholder (FILE, PATH)
                assert value.lower().endswith(options.DATASET_SUFFIXES) or "saved" in value, (
                    f"README: `{' '.join(argv)}`: {value} is neither a dataset file nor a named save_to_disk folder"
                )


def test_the_setting_options_readme_lists_are_the_parsers():
    listed = set(re.findall(r"`(--[a-z-]+)`", README.split("take the same options for them", 1)[1].split(")", 1)[0]))
    assert listed == {o.flag for o in options.SETTING_OPTIONS}


def test_the_relative_path_rule_is_said_once():
    assert README.count("**Relative image paths, one rule.**") == 1
    assert "relative image paths are kept when they exist" not in README
    assert 'relative paths follow the one rule of "Your data"' in README


def test_limits_say_what_the_video_stage_does():
    pytest.importorskip("PIL")
    from PIL import Image

    from unsloth_multiimage.rows.video import expand_videos
    from unsloth_multiimage.settings import Settings

    frames = [Image.new("RGB", (8, 8), (k * 40, 0, 0)) for k in range(2)]
    row = {"messages": [{"role": "user", "content": [{"type": "video", "video": frames}]}]}
    expanded = expand_videos(row, 0, Settings(video="frames"))
    assert [p["type"] for p in expanded["messages"][0]["content"]] == ["image", "image"]  # videos do not pass unchanged
    limits = _section("Limits")
    assert "pass through unchanged" not in limits and "Videos become frames" in limits


def test_performance_times_every_arm_of_demo_compare():
    from unsloth_multiimage.demo.compare import ARMS

    line = next(ln for ln in _section("Performance").splitlines() if "`demo --compare`" in ln)
    said = [NUMBERS[w] for w in re.findall(r"\b(four|five|six|seven) arms\b", line)]
    assert said and said[0] == len(ARMS), line
