"""Shared fixtures: the tiny offline Mllama model/processor, and patch on/off helpers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import unsloth_multiimage
from unsloth_multiimage.engine import activation

from helpers import REPO, TRANSFORMERS, UNSLOTH_ZOO, clean_env, fresh_python, patches_off, upstream_pc_failure  # noqa: F401


@pytest.fixture
def unpatched():
    return patches_off


@pytest.fixture(scope="session")
def tiny():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from unsloth_multiimage.tools import tiny_mllama

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Name the compat row (nox sets UMI_COMPAT_ROW) in every skip reason."""
    outcome = yield
    report = outcome.get_result()
    row = os.environ.get("UMI_COMPAT_ROW")
    if row and report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, lineno, reason = report.longrepr
        report.longrepr = (path, lineno, f"{reason} [row {row}]")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A clean machinery and a fake-distribution factory (tests/fakesite.py)."""
    from fakesite import fake_sites

    yield from fake_sites(monkeypatch, tmp_path)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="unsloth_multiimage")
    return caplog
