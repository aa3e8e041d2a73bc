"""The suite's fixtures (the tiny offline Mllama model and processor, the real unsloth_zoo collator,
patches on/off, fake plugin distributions) and pytest hooks (optional libraries, compat rows, heavy
tests). Helper code the tests import is in tests/support/."""

from __future__ import annotations

import logging
import os
import types
from pathlib import Path

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO, heavy_rows, patches_off
from tests.support.messy_data import messy, saved_checkpoint  # noqa: F401  (fixtures: the messy dataset of issue 26)
from tests.support.optional_libraries import NO_MODULE, missing_optional_library, skip_reason
from unsloth_multiimage.engine import activation


@pytest.fixture
def unpatched():
    return patches_off


@pytest.fixture(scope="session")
def tiny():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.support import tiles
    from unsloth_multiimage import tiny_mllama

    # The tiny model's builders and the coded test images (tests/support/tiles.py) in one place.
    return types.SimpleNamespace(
        **{n: getattr(tiny_mllama, n) for n in tiny_mllama.__all__}, **{n: getattr(tiles, n) for n in tiles.__all__}
    )


@pytest.fixture(scope="session")
def processor(tiny):
    import transformers.models.mllama.processing_mllama  # noqa: F401  (the patch lands on import)

    return tiny.build_processor()


@pytest.fixture
def model(tiny, processor):
    return tiny.build_model(processor, seed=0)


@pytest.fixture(scope="module")
def vision_utils():
    """The installed unsloth_zoo release's real ``vision_utils`` module (see tests/support/zoo.py)."""
    if UNSLOTH_ZOO is None:
        pytest.skip("unsloth_zoo is not installed on this row")
    from tests.support.zoo import load_vision_utils

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
def pytest_make_collect_report(collector):
    """A test module whose import fails for want of an optional library is skipped, naming it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and isinstance(collector, pytest.Module):
        found = NO_MODULE.search(str(report.longrepr))
        library = missing_optional_library(found.group(1)) if found else None
        if library:
            report.outcome, report.result = "skipped", []
            report.longrepr = (str(collector.path), 1, skip_reason(library))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test failing for want of an optional library is skipped, naming it; and the compat row
    (nox sets UMI_COMPAT_ROW) is named in every skip reason."""
    outcome = yield
    report = outcome.get_result()
    error = call.excinfo.value if call.excinfo is not None else None
    if report.failed and isinstance(error, ModuleNotFoundError):
        library = missing_optional_library(error.name)
        if library:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), (item.location[1] or 0) + 1, skip_reason(library))
    row = os.environ.get("UMI_COMPAT_ROW")
    if row and report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, lineno, reason = report.longrepr
        report.longrepr = (path, lineno, f"{reason} [row {row}]")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``heavy`` (whole commands, fresh interpreters: seconds of torch and transformers
    imports each) run outside nox and on the rows with ``heavy_tests = true``; elsewhere they are
    skipped, naming those rows (CI's time budget: their subject is the plugin's own plumbing)."""
    row = os.environ.get("UMI_COMPAT_ROW")
    rows = heavy_rows()
    if not row or row in rows:
        return
    skip = pytest.mark.skip(
        reason=f"a heavy test (whole command or fresh interpreter): it runs on rows {', '.join(rows)} "
        f"(compat/matrix.toml heavy_tests), not on every row"
    )
    for item in items:
        if item.get_closest_marker("heavy") is not None:
            item.add_marker(skip)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A clean machinery and a fake-distribution factory (tests/support/fakesite.py)."""
    from tests.support.fakesite import fake_sites

    yield from fake_sites(monkeypatch, tmp_path)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="unsloth_multiimage")
    return caplog
