"""Throw-away "third-party" distributions for the engine tests (see tests/fake_plugins/README.md).

Each test writes a site directory under ``tmp_path``: a target package (``fakevlm_t<N>``, a
collator class), a ``*.dist-info`` with METADATA and an ``entry_points.txt`` declaring the
``[unsloth_multiimage]`` group, and plugin modules copied from ``tests/fake_plugins/``. Nothing
is mocked: entry points are found by ``importlib.metadata``, versions read from the dist-info,
patches applied by wrapt.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from unsloth_multiimage import _env, settings
from unsloth_multiimage.engine import activation

FAKE_SRC = Path(__file__).resolve().parents[1] / "fake_plugins"
REPO = Path(__file__).resolve().parents[2]
LOGGER = "unsloth_multiimage"
ENV_VARS = tuple(var.name for var in _env.VARIABLES)

# The fake library's compat entry: supported from 1.0, tested up to 2.0.0. bug_a and bug_b
# were fixed upstream in 1.5 and 1.8; bug_c is a regression from 1.9 on (still there in the
# newest tested release, so untested releases get the patch when the shape still fits).
FAKE_FIXES = (
    {"name": "bug_a", "needed": ">=1.0,<1.5", "why": "fixed upstream in 1.5"},
    {"name": "bug_b", "needed": ">=1.0,<1.8", "why": "fixed upstream in 1.8"},
    {"name": "bug_c", "needed": ">=1.9", "why": "regression since 1.9"},
)
FAKE_SUPPORTED = ">=1.0"
FAKE_NEWEST = "2.0.0"
COLLATOR_PATCH = "fakevlm_collator"
SUB_PATCH = "fakevlm_subcollator"

_ids = itertools.count()


# --------------------------------------------------------------------------------------
# Building fake distributions
# --------------------------------------------------------------------------------------


def write_dist(site: Path, name: str, version: str, entry_points: dict[str, str]) -> Path:
    """Write ``<name>-<version>.dist-info`` (METADATA + entry_points.txt) into ``site``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = ["[unsloth_multiimage]"] + [f"{ep} = {value}" for ep, value in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (info / "top_level.txt").write_text("", encoding="utf-8")
    return info


@dataclass
class FakeVLM:
    """One fake third-party distribution on ``sys.path``."""

    site: Path
    pkg: str  # the target package
    module: str  # the patched module, "<pkg>.collate"
    version: str | None  # of the "fakevlm" distribution (None: not installed)
    plugin_ep: str  # entry-point name of the good plugin
    plugin_module: str
    extra: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind -> (entry point, module)
    dist_name: str = "fakevlm"

    def import_target(self) -> Any:
        return importlib.import_module(self.module)

    def plugin(self) -> Any:
        return sys.modules[self.plugin_module]


class FakeSites:
    """Factory (fixture ``fake``) writing fake distributions under ``tmp_path``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.top_names: list[str] = []

    def make(
        self,
        version: str | None = "1.2.0",
        *,
        variant: str = "target_collate",
        patches: tuple[tuple[str, str, bool], ...] = ((COLLATOR_PATCH, "Collator.__call__", True),),
        extra_plugins: tuple[str, ...] = (),
        dist: str = "fakevlm",
    ) -> FakeVLM:
        """A site dir with the target package, the good plugin (``patches``: (name, attribute,
        with compat entry)) and ``extra_plugins`` (names of ``tests/fake_plugins/*.py``).

        With ``version``, one distribution ``dist`` (``fakevlm``) at that version ships everything;
        with None the target distribution is not installed and a ``fakevlm-umi`` distribution
        ships the plugins (the patched module itself still exists on ``sys.path``).
        """
        n = f"{next(_ids)}_{os.getpid()}"
        site = self.root / f"site_{n}"
        pkg = f"fakevlm_t{n}"
        (site / pkg).mkdir(parents=True)
        (site / pkg / "__init__.py").write_text('"""A fake VLM library."""\n', encoding="utf-8")
        shutil.copy(FAKE_SRC / f"{variant}.py", site / pkg / "collate.py")
        module = f"{pkg}.collate"

        plugin_module = f"fakevlm_umi_t{n}"
        shutil.copy(FAKE_SRC / "good_plugin.py", site / f"{plugin_module}.py")
        config = {
            "patches": [
                {
                    "name": name,
                    "module": module,
                    "attribute": attribute,
                    "compat": (
                        {
                            "distribution": "fakevlm",
                            "target": f"{module}:{attribute}",
                            "supported": FAKE_SUPPORTED,
                            "newest_tested": FAKE_NEWEST,
                            "fixes": list(FAKE_FIXES),
                        }
                        if with_compat
                        else None
                    ),
                }
                for name, attribute, with_compat in patches
            ]
        }
        (site / f"{plugin_module}.json").write_text(json.dumps(config), encoding="utf-8")

        entry_points: dict[str, str] = {}
        extra: dict[str, tuple[str, str]] = {}
        for kind in extra_plugins:  # listed before the good plugin: their failure must not stop it
            mod = f"{kind}_t{n}"
            shutil.copy(FAKE_SRC / f"{kind}.py", site / f"{mod}.py")
            entry_points[f"fake_{kind}"] = mod
            extra[kind] = (f"fake_{kind}", mod)
            self.top_names.append(mod)
        plugin_ep = f"fakevlm_patches_{n}"
        entry_points[plugin_ep] = plugin_module

        if version is not None:
            write_dist(site, dist, version, entry_points)
            dist_name = dist
        else:
            write_dist(site, "fakevlm-umi", "0.1.0", entry_points)
            dist_name = "fakevlm-umi"
        self.top_names += [pkg, plugin_module]
        self.monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        return FakeVLM(site, pkg, module, version, plugin_ep, plugin_module, extra, dist_name)

    def cleanup(self) -> None:
        for name in list(sys.modules):
            if name.split(".")[0] in self.top_names:
                del sys.modules[name]
        importlib.invalidate_caches()


def _clear_env() -> None:
    for var in ENV_VARS:
        os.environ.pop(var, None)


def fake_sites(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A clean machinery (no plugin loaded, no env opt-outs) and a fake-distribution factory.

    Afterwards: patches reverted, plugins forgotten, sys.path and sys.modules restored, and the
    plugin re-activated with the real environment if it was active before.
    """
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    was_active = activation._state.active
    saved_path = sys.path[:]
    activation._reset_for_tests()
    settings.reset_settings()
    sites = FakeSites(tmp_path, monkeypatch)
    yield sites
    activation._reset_for_tests()
    sys.path[:] = saved_path
    sites.cleanup()
    settings.reset_settings()
    _clear_env()  # monkeypatch puts the original values back right after this fixture
    if was_active:
        activation.activate()


def statuses() -> dict[str, activation.PatchStatus]:
    return {s.name: s for s in activation.status()}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER) and r.levelno == logging.WARNING]


def errors_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER) and r.levelno >= logging.ERROR]


UNPATCHED = {"collated": ["x"], "by": "Collator", "tag": "base"}


def call(module: Any, cls: str = "Collator") -> Any:
    return getattr(module, cls)()(["x"])
