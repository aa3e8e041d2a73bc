"""Shared fixtures: the tiny offline Mllama model/processor, and patch on/off helpers."""

from __future__ import annotations

import contextlib
import os
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import unsloth_multiimage
from unsloth_multiimage import activation


def _version(dist: str):
    from packaging.version import Version

    try:
        return Version(importlib.metadata.version(dist))
    except importlib.metadata.PackageNotFoundError:
        return None


TRANSFORMERS = _version("transformers")
UNSLOTH_ZOO = _version("unsloth_zoo")
REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``UNSLOTH_MULTIIMAGE_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSLOTH_MULTIIMAGE_")}
    env.update(extra)
    return env


def fresh_python(code: str, *, path: tuple[str, ...] = (), timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter: the repository (then ``path``) first on ``PYTHONPATH``,
    no ``UNSLOTH_MULTIIMAGE_*`` variable but those in ``env``."""
    pythonpath = os.pathsep.join([str(REPO), *path, os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(**{"PYTHONPATH": pythonpath, **env}),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def patches_off():
    """Run a block with every patch reverted (the upstream behaviour), then re-activate."""
    unsloth_multiimage.deactivate()
    try:
        yield
    finally:
        unsloth_multiimage.activate()


@pytest.fixture
def unpatched():
    return patches_off


@pytest.fixture(scope="session")
def tiny():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from unsloth_multiimage import tiny_mllama

    return tiny_mllama


@pytest.fixture(scope="session")
def processor(tiny):
    import transformers.models.mllama.processing_mllama  # noqa: F401  (the patch lands on import)

    return tiny.build_processor()


@pytest.fixture
def model(tiny, processor):
    return tiny.build_model(processor, seed=0)


@pytest.fixture(scope="module")
def vision_utils():
    """The installed unsloth_zoo release's real ``vision_utils`` module (see tests/zoo.py)."""
    if UNSLOTH_ZOO is None:
        pytest.skip("unsloth_zoo is not installed on this row")
    from zoo import load_vision_utils

    module, _how = load_vision_utils()
    return module


@pytest.fixture(scope="module")
def zoo_collator(tiny, processor, vision_utils):
    """The real collator around the tiny model (one per module)."""
    return vision_utils.UnslothVisionDataCollator(tiny.build_model(processor, seed=0), processor)


@pytest.fixture(autouse=True)
def _plugin_active():
    """Every test starts with the plugin active and default settings."""
    unsloth_multiimage.reset_settings()
    if not activation._state.active and not activation.is_disabled():
        unsloth_multiimage.activate()
    yield
    unsloth_multiimage.reset_settings()


def upstream_pc_failure(collator, tiny):
    """Why the installed zoo's own prompt/completion path cannot carry even one embedded image
    (unpatched), or None when it can. 2025.9.14 hands a 3-tuple to its own resize step."""
    row = {
        "prompt": [{"role": "user", "content": [{"type": "image", "image": tiny.make_tile_image(0, 0)}, {"type": "text", "text": "describe"}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": "red"}]}],
    }
    with patches_off():
        try:
            collator([row])
        except Exception as exc:
            return repr(exc)
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Name the compat row (nox sets UMI_COMPAT_ROW) in every skip reason."""
    outcome = yield
    report = outcome.get_result()
    row = os.environ.get("UMI_COMPAT_ROW")
    if row and report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, lineno, reason = report.longrepr
        report.longrepr = (path, lineno, f"{reason} [row {row}]")
