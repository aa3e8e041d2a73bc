"""The activation and doctor in fresh interpreters (slow checks run in the background)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import subprocess
import sys

import pytest

from tests.support import TRANSFORMERS, clean_env, fresh_python
from tests.support.fakesite import (
    COLLATOR_PATCH,
    REPO,
    FakeSites,
)
from unsloth_multiimage.engine import compat

# --------------------------------------------------------------------------------------
# Background subprocesses (fresh interpreters): started once, collected by the last tests
# --------------------------------------------------------------------------------------

# Started only where transformers is installed (their tests skip elsewhere).
_MLLAMA_SUBPROCS = {
    "mllama_after": (
        "import unsloth_multiimage, transformers.models.mllama.processing_mllama as m\n"
        "print(type(m.MllamaProcessor.__dict__['__call__']).__name__)\n"
        "w = m.MllamaProcessor.__dict__['__call__']\n"
        "print(getattr(w, '__wrapped__', None).__qualname__)\n"
        "print({s.name: (str(s.decision), s.applied) for s in unsloth_multiimage.status()}['mllama_processor'])\n"
    ),
    "mllama_before": (
        "import transformers.models.mllama.processing_mllama as m\n"
        "before = type(m.MllamaProcessor.__dict__['__call__']).__name__\n"
        "import unsloth_multiimage\n"
        "print(type(m.MllamaProcessor.__dict__['__call__']).__name__)\n"
        "print(before)\n"
        "print({s.name: (str(s.decision), s.applied) for s in unsloth_multiimage.status()}['mllama_processor'])\n"
    ),
}


class Background:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.results: dict[str, subprocess.CompletedProcess] = {}

    def start(self) -> None:
        env = clean_env()
        for name, code in (_MLLAMA_SUBPROCS if TRANSFORMERS is not None else {}).items():
            self.procs[name] = self._popen([sys.executable, "-c", code], env)
        self.procs["doctor"] = self._popen([sys.executable, "-m", "unsloth_multiimage", "doctor"], env)

    @staticmethod
    def _popen(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, name: str, timeout: float = 120) -> subprocess.CompletedProcess:
        if name not in self.results:
            proc = self.procs[name]
            out, err = proc.communicate(timeout=timeout)
            self.results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        return self.results[name]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module", autouse=True)
def _background(request: pytest.FixtureRequest):
    """Start the slow subprocesses at once, but only when a selected test collects them."""
    bg = Background()
    if any("background" in item.fixturenames for item in request.session.items if item.module is request.module):
        bg.start()
    yield bg
    bg.stop()


@pytest.fixture
def background(_background: Background) -> Background:
    return _background


def run_py(code: str, **env: str) -> subprocess.CompletedProcess:
    return fresh_python(code, timeout=60, **env)


needs_transformers = pytest.mark.skipif(
    TRANSFORMERS is None, reason="transformers is not installed: no MllamaProcessor to patch"
)


def _version_cell(dist: str) -> str:
    """What the doctor's version table shows for ``dist`` (first word): its version or 'not'."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not"  # "not installed"


# --------------------------------------------------------------------------------------
# Fresh interpreters
# --------------------------------------------------------------------------------------


def test_import_does_not_import_heavy_libraries() -> None:
    proc = run_py(
        "import sys, json, unsloth_multiimage\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'unsloth', 'unsloth_zoo', 'PIL', 'numpy'})\n"
        "st = {s.name: s.decision for s in unsloth_multiimage.status()}\n"
        "print(json.dumps([heavy, st['mllama_processor']]))\n"
    )
    assert proc.returncode == 0, proc.stderr
    heavy, mllama = json.loads(proc.stdout.strip().splitlines()[-1])
    assert heavy == []
    # Active and waiting for transformers' import; without transformers there is nothing to wait for.
    assert mllama == ("pending" if TRANSFORMERS is not None else "absent")


def test_import_with_disable_activates_nothing() -> None:
    proc = run_py(
        "import unsloth_multiimage\n"
        "from unsloth_multiimage.engine import activation\n"
        "print(activation._state.active, sorted({str(s.decision) for s in unsloth_multiimage.status()}))\n",
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False ['disabled']"


def test_doctor_no_import_lists_third_party_plugins(fake: FakeSites) -> None:
    vlm = fake.make("1.2.0", extra_plugins=("broken_plugin",))
    proc = subprocess.run(
        [sys.executable, "-m", "unsloth_multiimage", "doctor", "--no-import"],
        env=clean_env(PYTHONPATH=str(vlm.site)),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    sections = _doctor_sections(proc.stdout)
    assert sections["plugins"][vlm.plugin_ep][1:3] == ["fakevlm", "loaded"]
    assert sections["plugins"]["fake_broken_plugin"][1:3] == ["fakevlm", "FAILED"]
    assert sections["plugins"]["mllama_processor"][1:3] == ["unsloth-multiimage", "loaded"]
    assert sections["patches"][COLLATOR_PATCH][1:4] == ["1.2.0", "pending", "no"]
    assert sections["patches"]["fake_broken_plugin"][2] == "error"


@pytest.mark.heavy
@needs_transformers
def test_mllama_patch_applies_when_transformers_is_imported_after(background: Background) -> None:
    proc = background.result("mllama_after")
    assert proc.returncode == 0, proc.stderr[-3000:]
    kind, wrapped, state = proc.stdout.strip().splitlines()[-3:]
    assert kind == "FunctionWrapper"
    assert wrapped == "MllamaProcessor.__call__"
    assert state.startswith("('apply'") or state.startswith("('untested'")
    assert state.endswith("True)")


@needs_transformers
def test_mllama_patch_applies_when_transformers_was_imported_before(background: Background) -> None:
    proc = background.result("mllama_before")
    assert proc.returncode == 0, proc.stderr[-3000:]
    kind, before, state = proc.stdout.strip().splitlines()[-3:]
    assert before == "function"  # upstream's own method until we were imported
    assert kind == "FunctionWrapper"
    assert state.endswith("True)")


def _doctor_sections(stdout: str) -> dict[str, dict[str, list[str]]]:
    """The doctor's three tables (versions, plugins, patches) as {first column: row}."""
    sections: dict[str, dict[str, list[str]]] = {"versions": {}, "plugins": {}, "patches": {}}
    current = None
    for line in stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[:2] == ["package", "version"]:
            current = "versions"
        elif line.startswith("Plugins"):
            current = "plugins"
        elif line.startswith("Patches"):
            current = "patches"
        elif current and not set(parts[0]) <= {"-"} and parts[0] not in {"plugin", "patch"}:
            sections[current].setdefault(parts[0], parts)
    return sections


def test_cli_doctor_prints_versions_and_patch_rows(background: Background) -> None:
    proc = background.result("doctor")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections = _doctor_sections(proc.stdout)
    versions, rows = sections["versions"], sections["patches"]
    assert versions["python"][1] == platform.python_version()
    assert versions["torch"][1] == _version_cell("torch")
    assert versions["transformers"][1] == _version_cell("transformers")
    # One row per built-in patch: name, version, decision, applied.
    mllama = rows["mllama_processor"]
    if TRANSFORMERS is None:
        assert mllama[1:4] == ["-", "absent", "no"]
    else:
        assert mllama[1] == importlib.metadata.version("transformers")
        assert mllama[2] in {"apply", "untested", "native"}
        assert mllama[3] == ("yes" if mllama[2] != "native" else "no")
    collator = rows["unsloth_collator"]
    if compat.installed_version("unsloth_zoo") is None:
        assert collator[1:4] == ["-", "absent", "no"]
    # The plugin table names where the plugins came from.
    assert sections["plugins"]["mllama_processor"][1:3] == ["unsloth-multiimage", "loaded"]
    assert sections["plugins"]["unsloth_collator"][1:3] == ["unsloth-multiimage", "loaded"]
    # unsloth's own modules are left to the training script: importing unsloth patches transformers
    # and TRL process-wide (TRL's GRPOTrainer replaced: the plugin's GRPO patches were "lost").
    if compat.installed_version("unsloth") is not None:
        assert rows["unsloth_padding_free"][2:4] == ["pending", "no"], rows["unsloth_padding_free"]
        assert "Unsloth should be imported before" not in proc.stderr, proc.stderr[-3000:]
    assert all(row[2] != "lost" for row in rows.values()), rows
