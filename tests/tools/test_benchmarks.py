"""Every benchmark script still runs: ``--help`` in a fresh interpreter (argparse answers before
any measurement), so a moved module or a renamed option breaks CI, not the next person timing."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.support import REPO, clean_env

SCRIPTS = sorted((REPO / "benchmarks").glob("[!_]*.py"))  # _name.py: a module the scripts share


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_a_benchmark_script_starts(script):
    proc = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO),
        env=clean_env(PYTHONPATH=str(REPO)),
    )
    missing = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", proc.stderr)
    if proc.returncode and missing and importlib.util.find_spec(missing.group(1).split(".")[0]) is None:
        pytest.skip(f"{script.name} needs {missing.group(1)}, which is not installed here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
