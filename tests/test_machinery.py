"""The plugin machinery, exercised on small real target modules written by the tests.

Each test writes a throw-away "third-party" site directory under ``tmp_path``: a target
package (``fakevlm_t<N>``, a collator class), a ``*.dist-info`` with METADATA and an
``entry_points.txt`` declaring the ``[unsloth_multiimage]`` group, and plugin modules copied
from ``tests/fake_plugins/``. Nothing is mocked: entry points are found by
``importlib.metadata``, versions read from the dist-info, patches applied by wrapt.

The slow checks (fresh interpreters importing transformers, ``python -m unsloth_multiimage
doctor``) are started in the background at the start of this module and collected by the
last tests, so the whole file stays fast.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wrapt
from hypothesis import given
from hypothesis import settings as settings_hyp
from hypothesis import strategies as hst

import unsloth_multiimage
from conftest import clean_env, fresh_python
from unsloth_multiimage import activation, compat, settings

FAKE_SRC = Path(__file__).parent / "fake_plugins"
REPO = Path(__file__).resolve().parents[1]
LOGGER = "unsloth_multiimage"
ENV_VARS = (
    activation.ENV_DISABLE,
    activation.ENV_DISABLE_PATCHES,
    activation.ENV_FORCE,
    "UNSLOTH_MULTIIMAGE_MAX_IMAGES",
    "UNSLOTH_MULTIIMAGE_ON_EXCESS",
    "UNSLOTH_MULTIIMAGE_MAX_PIXELS",
    "UNSLOTH_MULTIIMAGE_STRATEGY",
    "UNSLOTH_MULTIIMAGE_GRID_GAP",
    "UNSLOTH_MULTIIMAGE_GRID_LABELS",
    "UNSLOTH_MULTIIMAGE_ALLOW_URLS",
)

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


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
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


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def statuses() -> dict[str, activation.PatchStatus]:
    return {s.name: s for s in activation.status()}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER) and r.levelno == logging.WARNING]


def errors_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER) and r.levelno >= logging.ERROR]


UNPATCHED = {"collated": ["x"], "by": "Collator", "tag": "base"}


def call(module: Any, cls: str = "Collator") -> Any:
    return getattr(module, cls)()(["x"])


# --------------------------------------------------------------------------------------
# Background subprocesses (fresh interpreters): started once, collected by the last tests
# --------------------------------------------------------------------------------------

_SUBPROCS = {
    "mllama_after": (
        "import unsloth_multiimage, transformers.models.mllama.processing_mllama as m\n"
        "print(type(m.MllamaProcessor.__dict__['__call__']).__name__)\n"
        "w = m.MllamaProcessor.__dict__['__call__']\n"
        "print(getattr(w, '__wrapped__', None).__qualname__)\n"
        "print({s.name: (s.decision, s.applied) for s in unsloth_multiimage.status()}['mllama_processor'])\n"
    ),
    "mllama_before": (
        "import transformers.models.mllama.processing_mllama as m\n"
        "before = type(m.MllamaProcessor.__dict__['__call__']).__name__\n"
        "import unsloth_multiimage\n"
        "print(type(m.MllamaProcessor.__dict__['__call__']).__name__)\n"
        "print(before)\n"
        "print({s.name: (s.decision, s.applied) for s in unsloth_multiimage.status()}['mllama_processor'])\n"
    ),
}


class Background:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.results: dict[str, subprocess.CompletedProcess] = {}

    def start(self) -> None:
        env = clean_env()
        for name, code in _SUBPROCS.items():
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


# --------------------------------------------------------------------------------------
# Discovery through entry points
# --------------------------------------------------------------------------------------


def test_builtin_plugins_come_from_our_distributions_entry_points(fake: FakeSites) -> None:
    dist = importlib.metadata.distribution("unsloth-multiimage")
    eps = {ep.name: ep.value for ep in dist.entry_points if ep.group == "unsloth_multiimage"}
    assert {"mllama_processor", "unsloth_collator"} <= set(eps)
    assert eps["mllama_processor"] == "unsloth_multiimage.patches.mllama_processor"
    assert eps["unsloth_collator"] == "unsloth_multiimage.patches.unsloth_collator"
    assert all(v.startswith(("unsloth_multiimage.patches.", "unsloth_multiimage.adapters.")) for v in eps.values())
    # The loader goes through the same group and names the distribution each came from.
    records = {r.name: r for r in activation.plugin_records()}
    for name in ("mllama_processor", "unsloth_collator"):
        assert records[name].loaded and records[name].error is None
        assert records[name].value == eps[name]
        assert records[name].distribution == "unsloth-multiimage"
    assert {"mllama_processor", "unsloth_collator"} <= set(statuses())


def test_fake_distribution_is_discovered_with_its_version(fake: FakeSites) -> None:
    vlm = fake.make("1.2.0")
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="unsloth_multiimage")}
    assert eps[vlm.plugin_ep].value == vlm.plugin_module
    assert eps[vlm.plugin_ep].dist.metadata["Name"] == "fakevlm"
    assert compat.installed_version("fakevlm") == "1.2.0"
    record = {r.name: r for r in activation.plugin_records()}[vlm.plugin_ep]
    assert (record.loaded, record.distribution, record.error) == (True, "fakevlm", None)
    st = statuses()[COLLATOR_PATCH]
    assert st.plugin == vlm.plugin_ep
    assert st.target == f"{vlm.module}:Collator.__call__"
    assert (st.distribution, st.installed_version) == ("fakevlm", "1.2.0")
    assert st.decision == "inactive" and not st.applied


# --------------------------------------------------------------------------------------
# Every decision state, on a real module
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version, state, applied, fixes",
    [
        ("1.2.0", "apply", True, ["bug_a", "bug_b"]),  # in both bug ranges
        ("1.6.0", "apply", True, ["bug_b"]),  # bug_a native, bug_b needed
        ("1.9.0", "apply", True, ["bug_c"]),  # the regression
        ("2.0.0", "apply", True, ["bug_c"]),  # the newest tested release itself
        ("1.8.5", "native", False, []),  # every fix outside its range
        ("0.9.0", "unsupported", False, []),  # older than supported
        ("2.5.0", "untested", True, ["bug_c"]),  # newer than tested, same shape
        ("2.0.1.dev0", "untested", True, ["bug_c"]),  # a dev build of an untested release
    ],
)
def test_decision_states_on_a_real_module(
    fake: FakeSites, logs: pytest.LogCaptureFixture, version: str, state: str, applied: bool, fixes: list[str]
) -> None:
    vlm = fake.make(version)
    mod = vlm.import_target()
    original = mod.Collator.__dict__["__call__"]
    activation.activate()

    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied, list(st.fixes), st.installed_version) == (state, applied, fixes, version)
    if applied:
        own = mod.Collator.__dict__["__call__"]
        assert isinstance(own, wrapt.FunctionWrapper) and own.__wrapped__ is original
        assert call(mod) == {"patched_by": COLLATOR_PATCH, "state": state, "fixes": fixes, "inner": UNPATCHED}
    else:
        assert mod.Collator.__dict__["__call__"] is original
        assert call(mod) == UNPATCHED
    warned = [m for m in warnings_of(logs) if COLLATOR_PATCH in m]
    if state == "untested":
        assert any(version in m and FAKE_NEWEST in m for m in warned), warned
    else:
        assert warned == []


@pytest.mark.parametrize(
    "variant",
    [
        "target_collate_signature",  # __call__(self, *, batch): no positional examples any more
        "target_collate_renamed_class",  # Collator -> DataCollator
        "target_collate_renamed_call",  # Collator.__call__ -> Collator.collate
    ],
)
def test_untested_version_with_changed_shape_is_not_patched(
    fake: FakeSites, logs: pytest.LogCaptureFixture, variant: str
) -> None:
    vlm = fake.make("2.5.0", variant=variant)
    mod = vlm.import_target()
    before = dict(vars(mod.__dict__.get("Collator", mod.SubCollator)))
    activation.activate()

    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied) == ("untested", False)
    assert "2.5.0" in st.reason and FAKE_NEWEST in st.reason and "not patched" in st.reason
    cls = mod.__dict__.get("Collator", mod.SubCollator)
    assert dict(vars(cls)) == before  # nothing was set on the class
    assert not any(isinstance(v, wrapt.ObjectProxy) for v in vars(cls).values())
    warned = [m for m in warnings_of(logs) if COLLATOR_PATCH in m]
    assert any("2.5.0" in m and FAKE_NEWEST in m for m in warned), warned


def test_shape_problem_inside_the_tested_range_is_not_patched(fake: FakeSites) -> None:
    vlm = fake.make("1.2.0", variant="target_collate_signature")
    mod = vlm.import_target()
    original = mod.Collator.__dict__["__call__"]
    activation.activate()
    st = statuses()[COLLATOR_PATCH]
    assert not st.applied
    assert "positional" in st.reason  # what signature_accepts found
    assert mod.Collator.__dict__["__call__"] is original
    assert mod.Collator()(batch=["x"]) == UNPATCHED


def test_absent_distribution_is_never_patched(fake: FakeSites) -> None:
    vlm = fake.make(None)  # the plugin is installed, the "fakevlm" distribution is not
    assert compat.installed_version("fakevlm") is None
    activation.activate()
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied, st.installed_version) == ("absent", False, None)
    assert "fakevlm is not installed" in st.reason
    # Even when the module is importable (vendored, no metadata), it is left alone.
    mod = vlm.import_target()
    assert not isinstance(mod.Collator.__dict__["__call__"], wrapt.ObjectProxy)
    assert call(mod) == UNPATCHED
    assert statuses()[COLLATOR_PATCH].decision == "absent"


@pytest.mark.parametrize("version", ["1.8.5", "0.9.0"])  # native, unsupported
def test_force_applies_every_fix_with_a_warning(
    fake: FakeSites, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    vlm = fake.make(version)
    monkeypatch.setenv(activation.ENV_FORCE, "1")
    mod = vlm.import_target()
    activation.activate()
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied, list(st.fixes)) == ("apply", True, ["bug_a", "bug_b", "bug_c"])
    assert call(mod)["patched_by"] == COLLATOR_PATCH
    assert any("UNSLOTH_MULTIIMAGE_FORCE" in m and version in m for m in warnings_of(logs)), warnings_of(logs)


def test_force_never_wraps_a_target_that_is_not_there(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = fake.make("2.5.0", variant="target_collate_renamed_class")
    monkeypatch.setenv(activation.ENV_FORCE, "1")
    mod = vlm.import_target()
    activation.activate()
    st = statuses()[COLLATOR_PATCH]
    assert not st.applied
    assert "missing" in st.reason
    assert not hasattr(mod, "Collator")


def test_force_does_not_invent_an_absent_distribution(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = fake.make(None)
    monkeypatch.setenv(activation.ENV_FORCE, "1")
    mod = vlm.import_target()
    activation.activate()
    assert statuses()[COLLATOR_PATCH].decision == "absent"
    assert call(mod) == UNPATCHED


def test_third_party_patch_without_compat_entry_is_never_applied(
    fake: FakeSites, monkeypatch: pytest.MonkeyPatch
) -> None:
    vlm = fake.make("1.2.0", patches=(("fakevlm_uncharted", "Collator.__call__", False),))
    monkeypatch.setenv(activation.ENV_FORCE, "1")  # not even when forced
    mod = vlm.import_target()
    activation.activate()
    st = statuses()["fakevlm_uncharted"]
    assert not st.applied and st.decision == "unsupported"
    assert "no compat entry" in st.reason and "fakevlm_uncharted" in st.reason
    assert call(mod) == UNPATCHED


# --------------------------------------------------------------------------------------
# Import order, idempotence, exact restore
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["activate_first", "import_first"])
def test_import_order_does_not_matter(fake: FakeSites, order: str) -> None:
    vlm = fake.make("1.6.0")
    if order == "activate_first":
        assert vlm.module not in sys.modules
        activation.activate()
        st = statuses()[COLLATOR_PATCH]
        assert (st.decision, st.applied) == ("pending", False)
        assert "(by version: apply: fakevlm 1.6.0 needs bug_b" in st.reason  # the by-version hint
        mod = vlm.import_target()  # the post-import hook patches it now
    else:
        mod = vlm.import_target()
        activation.activate()
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied, st.fixes) == ("apply", True, ("bug_b",))
    assert call(mod)["patched_by"] == COLLATOR_PATCH
    assert vlm.plugin().CALLS == [(COLLATOR_PATCH, "Collator")]


def test_import_while_deactivated_is_not_patched_until_activate(fake: FakeSites) -> None:
    vlm = fake.make("1.2.0")
    activation.activate()  # hook registered
    activation.deactivate()
    mod = vlm.import_target()  # the hook fires but the plugin is off
    assert call(mod) == UNPATCHED
    assert statuses()[COLLATOR_PATCH].decision == "inactive"
    activation.activate()
    assert call(mod)["patched_by"] == COLLATOR_PATCH


@pytest.mark.parametrize("order", ["activate_first", "import_first"])
def test_activate_twice_gives_one_wrapper_layer(fake: FakeSites, order: str) -> None:
    vlm = fake.make("1.2.0")
    if order == "activate_first":
        activation.activate()
        activation.activate()
        mod = vlm.import_target()
        activation.activate()
    else:
        mod = vlm.import_target()
        activation.activate()
        activation.activate()
    original = mod.Collator.__dict__["__call__"].__wrapped__
    assert not isinstance(original, wrapt.ObjectProxy)  # the original function, not another wrapper
    assert original.__qualname__ == "Collator.__call__" and original.__module__ == vlm.module
    result = call(mod)
    assert result["inner"] == UNPATCHED  # wrapped exactly once
    assert len(vlm.plugin().CALLS) == 1


def test_deactivate_restores_the_original_identically(fake: FakeSites) -> None:
    vlm = fake.make("1.2.0")
    mod = vlm.import_target()
    original = mod.Collator.__dict__["__call__"]
    for _ in range(2):  # and again after a re-activation
        activation.activate()
        assert mod.Collator.__dict__["__call__"] is not original
        activation.deactivate()
        assert mod.Collator.__dict__["__call__"] is original
        assert call(mod) == UNPATCHED
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied) == ("inactive", False)
    activation.deactivate()  # a second deactivate is harmless
    assert mod.Collator.__dict__["__call__"] is original


def test_inherited_attribute_is_patched_on_the_subclass_and_removed_again(fake: FakeSites) -> None:
    vlm = fake.make("1.2.0", patches=((SUB_PATCH, "SubCollator.__call__", True),))
    mod = vlm.import_target()
    base_call = mod.Collator.__dict__["__call__"]
    assert "__call__" not in mod.SubCollator.__dict__
    activation.activate()
    assert statuses()[SUB_PATCH].applied
    assert mod.SubCollator.__dict__["__call__"].__wrapped__ is base_call
    assert mod.SubCollator()(["x"])["patched_by"] == SUB_PATCH
    assert call(mod) == UNPATCHED  # the base class is untouched
    assert mod.Collator.__dict__["__call__"] is base_call
    activation.deactivate()
    assert "__call__" not in mod.SubCollator.__dict__
    assert mod.SubCollator.__call__ is base_call
    assert mod.SubCollator()(["x"]) == {**UNPATCHED, "by": "SubCollator"}


def test_patches_on_base_and_subclass_revert_cleanly(fake: FakeSites) -> None:
    vlm = fake.make(
        "1.2.0", patches=((COLLATOR_PATCH, "Collator.__call__", True), (SUB_PATCH, "SubCollator.__call__", True))
    )
    mod = vlm.import_target()
    base_call = mod.Collator.__dict__["__call__"]
    activation.activate()
    assert call(mod)["patched_by"] == COLLATOR_PATCH
    sub = mod.SubCollator()(["x"])
    assert sub["patched_by"] == SUB_PATCH  # the subclass patch wraps the (patched) inherited one
    activation.deactivate()
    assert mod.Collator.__dict__["__call__"] is base_call
    assert "__call__" not in mod.SubCollator.__dict__


def test_module_reload_is_reported_lost_and_activate_repatches(
    fake: FakeSites, logs: pytest.LogCaptureFixture
) -> None:
    vlm = fake.make("1.2.0")
    mod = vlm.import_target()
    activation.activate()
    assert call(mod)["patched_by"] == COLLATOR_PATCH
    mod = importlib.reload(mod)
    assert call(mod) == UNPATCHED
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied) == ("lost", False)
    activation.activate()
    assert statuses()[COLLATOR_PATCH].applied
    assert call(mod)["patched_by"] == COLLATOR_PATCH
    assert any("replaced" in m for m in warnings_of(logs))


def test_target_imported_again_after_unload_is_patched_on_import(fake: FakeSites) -> None:
    vlm = fake.make("1.2.0")
    activation.activate()
    first = vlm.import_target()
    assert call(first)["patched_by"] == COLLATOR_PATCH
    activation._reset_for_tests()
    for name in [vlm.module, vlm.pkg]:
        del sys.modules[name]
    importlib.invalidate_caches()
    activation.activate()  # the target is not imported: "patched the moment it is imported"
    second = vlm.import_target()
    assert second is not first
    assert call(second)["patched_by"] == COLLATOR_PATCH


# --------------------------------------------------------------------------------------
# Environment opt-outs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_disable_turns_everything_off(fake: FakeSites, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    vlm = fake.make("1.2.0")
    monkeypatch.setenv(activation.ENV_DISABLE, value)
    assert activation.is_disabled()
    out = activation.activate()
    mod = vlm.import_target()  # no hook either
    assert call(mod) == UNPATCHED
    assert out and all(s.decision == "disabled" and not s.applied for s in out)
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied) == ("disabled", False)
    assert activation.ENV_DISABLE in st.reason
    assert not activation._state.active


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_disable_falsy_values_do_not_disable(fake: FakeSites, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    vlm = fake.make("1.2.0")
    monkeypatch.setenv(activation.ENV_DISABLE, value)
    mod = vlm.import_target()
    activation.activate()
    assert call(mod)["patched_by"] == COLLATOR_PATCH


def test_disable_patches_blocks_one_patch_by_name(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = fake.make(
        "1.2.0", patches=((COLLATOR_PATCH, "Collator.__call__", True), (SUB_PATCH, "SubCollator.__call__", True))
    )
    monkeypatch.setenv(activation.ENV_DISABLE_PATCHES, f" {COLLATOR_PATCH} , some_other_name")
    mod = vlm.import_target()
    original = mod.Collator.__dict__["__call__"]
    activation.activate()
    st = statuses()
    assert (st[COLLATOR_PATCH].decision, st[COLLATOR_PATCH].applied) == ("blocked", False)
    assert activation.ENV_DISABLE_PATCHES in st[COLLATOR_PATCH].reason
    assert mod.Collator.__dict__["__call__"] is original
    assert call(mod) == UNPATCHED
    # The other patch of the same plugin still applies.
    assert st[SUB_PATCH].applied
    assert mod.SubCollator()(["x"])["patched_by"] == SUB_PATCH


def test_disable_patches_blocks_one_patch_also_when_imported_later(
    fake: FakeSites, monkeypatch: pytest.MonkeyPatch
) -> None:
    vlm = fake.make("1.2.0")
    monkeypatch.setenv(activation.ENV_DISABLE_PATCHES, COLLATOR_PATCH)
    activation.activate()
    mod = vlm.import_target()
    assert call(mod) == UNPATCHED
    assert statuses()[COLLATOR_PATCH].decision == "blocked"


def test_disable_patches_blocks_a_whole_plugin_by_entry_point_name(
    fake: FakeSites, monkeypatch: pytest.MonkeyPatch
) -> None:
    vlm = fake.make(
        "1.2.0", patches=((COLLATOR_PATCH, "Collator.__call__", True), (SUB_PATCH, "SubCollator.__call__", True))
    )
    monkeypatch.setenv(activation.ENV_DISABLE_PATCHES, vlm.plugin_ep)
    mod = vlm.import_target()
    activation.activate()
    records = {r.name: r for r in activation.plugin_records()}
    assert records[vlm.plugin_ep].blocked and not records[vlm.plugin_ep].loaded
    assert vlm.plugin_module not in sys.modules  # a blocked plugin is not even imported
    assert COLLATOR_PATCH not in statuses() and SUB_PATCH not in statuses()
    assert call(mod) == UNPATCHED and "__call__" not in mod.SubCollator.__dict__
    # The other plugins are unaffected.
    assert records["mllama_processor"].loaded and records["unsloth_collator"].loaded


# --------------------------------------------------------------------------------------
# Broken plugins never stop the good ones
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("broken_plugin", ["failed to load", "RuntimeError", "exploded on import"]),
        ("misspelt_plugin", ["umi_patchez", "umi_patches", "misspelt"]),
        ("bad_return_plugin", ["umi_patches()", "not a Patch"]),
    ],
)
def test_a_bad_plugin_is_reported_and_the_good_one_still_applies(
    fake: FakeSites, logs: pytest.LogCaptureFixture, kind: str, expected: list[str]
) -> None:
    vlm = fake.make("1.2.0", extra_plugins=(kind,))
    ep_name, _ = vlm.extra[kind]
    mod = vlm.import_target()
    out = activation.activate()

    errors = [s for s in out if s.decision == "error"]
    assert [s.plugin for s in errors] == [ep_name]
    err = errors[0]
    assert not err.applied and err.name == ep_name
    assert ep_name in err.reason
    for text in expected:
        assert text in err.reason
    logged = errors_of(logs)
    assert any(ep_name in m for m in logged), logged
    records = {r.name: r for r in activation.plugin_records()}
    assert not records[ep_name].loaded and records[ep_name].error == err.reason
    # ... and the good plugin, listed after it in the same distribution, still works.
    assert statuses()[COLLATOR_PATCH].applied
    assert call(mod)["patched_by"] == COLLATOR_PATCH


def test_several_bad_plugins_at_once(fake: FakeSites, logs: pytest.LogCaptureFixture) -> None:
    kinds = ("broken_plugin", "misspelt_plugin", "bad_return_plugin")
    vlm = fake.make("1.2.0", extra_plugins=kinds)
    activation.activate()
    mod = vlm.import_target()
    errors = {s.plugin for s in activation.status() if s.decision == "error"}
    assert errors == {vlm.extra[k][0] for k in kinds}
    assert len(errors_of(logs)) >= 3
    assert call(mod)["patched_by"] == COLLATOR_PATCH


def test_duplicate_patch_name_across_plugins_is_an_error(fake: FakeSites) -> None:
    first = fake.make("1.2.0")
    second = fake.make("1.2.0", dist="fakevlm-rival")  # another distribution, same patch name
    activation.activate()
    errors = [s for s in activation.status() if s.decision == "error"]
    assert len(errors) == 1
    assert "already provided" in errors[0].reason and COLLATOR_PATCH in errors[0].reason
    loser = errors[0].plugin
    assert loser in {first.plugin_ep, second.plugin_ep}
    winner = first if loser == second.plugin_ep else second
    # The plugin loaded first keeps the name: its target is patched, exactly once.
    assert statuses()[COLLATOR_PATCH].plugin == winner.plugin_ep
    mod = winner.import_target()
    assert statuses()[COLLATOR_PATCH].applied
    assert call(mod)["inner"] == UNPATCHED


def test_duplicate_patch_name_inside_one_plugin_is_an_error(fake: FakeSites) -> None:
    vlm = fake.make(
        "1.2.0", patches=((COLLATOR_PATCH, "Collator.__call__", True), (COLLATOR_PATCH, "SubCollator.__call__", True))
    )
    vlm.import_target()
    out = activation.activate()
    assert [s.name for s in out].count(COLLATOR_PATCH) <= 1
    assert any(s.decision == "error" and s.plugin == vlm.plugin_ep for s in out)


# --------------------------------------------------------------------------------------
# compat.decide over the real built-in table
# --------------------------------------------------------------------------------------


def test_builtin_table_entries() -> None:
    table = compat.compat_table()
    assert table["mllama_processor"].distribution == "transformers"
    assert table["mllama_processor"].target == "transformers.models.mllama.processing_mllama:MllamaProcessor.__call__"
    assert table["unsloth_collator"].distribution == "unsloth_zoo"
    assert table["unsloth_collator"].target == "unsloth_zoo.vision_utils:UnslothVisionDataCollator.__call__"


def test_decide_transformers_4_49_needs_mixed_text_only_rows() -> None:
    d = compat.decide("mllama_processor", "4.49.0")
    assert (d.state, d.applies, d.version) == ("apply", True, "4.49.0")
    assert "mixed_text_only_rows" in d.fixes and "flat_images_regroup" in d.fixes
    assert "native upstream" not in d.reason


def test_decide_transformers_5_23_has_mixed_text_only_rows_natively() -> None:
    d = compat.decide("mllama_processor", "5.23.0")
    assert (d.state, d.applies) == ("apply", True)
    assert "mixed_text_only_rows" not in d.fixes
    assert d.fixes == {"flat_images_regroup", "dropped_rows_realign", "row_named_errors", "truncation_check"}
    assert "native upstream: mixed_text_only_rows" in d.reason
    assert "mixed_text_only_rows" in compat.decide("mllama_processor", "5.22.99").fixes


def test_decide_transformers_newer_than_tested_is_untested() -> None:
    d = compat.decide("mllama_processor", "5.99.0")
    assert (d.state, d.applies) == ("untested", True)
    assert "5.99.0" in d.reason and "5.24.0" in d.reason
    assert "mixed_text_only_rows" not in d.fixes and "flat_images_regroup" in d.fixes
    changed = compat.decide("mllama_processor", "5.99.0", shape_problem="__call__ no longer accepts images")
    assert (changed.state, changed.applies) == ("untested", False)
    assert "no longer accepts images" in changed.reason and "5.24.0" in changed.reason


def test_decide_shape_problem_is_ignored_inside_the_tested_range() -> None:
    # (activation refuses to wrap a missing target itself; decide only gates on versions here)
    assert compat.decide("mllama_processor", "5.24.0", shape_problem="whatever").state == "apply"


@pytest.mark.parametrize("version", ["5.25.0.dev0", "5.24.1rc1", "5.24.0.post1", "6.0.0a1"])
def test_decide_prerelease_newer_than_tested_is_untested(version: str) -> None:
    d = compat.decide("mllama_processor", version)
    assert d.state == "untested" and d.applies
    assert version in d.reason


def test_decide_prerelease_of_the_newest_tested_is_in_range() -> None:
    assert compat.decide("mllama_processor", "5.24.0rc1").state == "apply"


@pytest.mark.parametrize("version", ["4.44.0", "4.45.1", "3.0.0"])
def test_decide_transformers_too_old_is_unsupported(version: str) -> None:
    d = compat.decide("mllama_processor", version)
    assert (d.state, d.applies, d.fixes) == ("unsupported", False, frozenset())
    assert ">=4.45.2" in d.reason
    assert compat.decide("mllama_processor", "4.45.2").state == "apply"


def test_decide_absent_and_unparsable() -> None:
    d = compat.decide("mllama_processor", None)
    assert (d.state, d.applies, d.version) == ("absent", False, None)
    assert "transformers is not installed" in d.reason
    assert compat.decide("unsloth_collator", None).reason == "unsloth_zoo is not installed"
    bad = compat.decide("mllama_processor", "not-a-version")
    assert (bad.state, bad.applies) == ("unsupported", False)


def test_decide_unsloth_zoo_versions() -> None:
    old = compat.decide("unsloth_collator", "2025.3.9")
    assert (old.state, old.applies) == ("apply", True)
    assert {"all_column_images", "text_only_row_slots"} <= old.fixes
    assert "pc_column_images" not in old.fixes  # that bug starts at 2025.9.3
    assert "pc_column_images" in compat.decide("unsloth_collator", "2025.9.3").fixes
    newest = compat.decide("unsloth_collator", "2026.10.9")
    assert (newest.state, newest.applies) == ("apply", True)
    assert "all_column_images" not in newest.fixes and "text_only_row_slots" not in newest.fixes
    assert newest.fixes == {"none_entries", "column_content_merge", "row_count_validation"}
    assert compat.decide("unsloth_collator", "2024.11.5").state == "unsupported"
    assert compat.decide("unsloth_collator", "2026.11.1").state == "untested"


def test_decide_force_applies_everything_but_not_to_absent() -> None:
    d = compat.decide("mllama_processor", "4.44.0", force=True)
    assert (d.state, d.applies) == ("apply", True)
    assert d.fixes == {f.name for f in compat.compat_table()["mllama_processor"].fixes}
    assert "UNSLOTH_MULTIIMAGE_FORCE" in d.reason
    assert compat.decide("mllama_processor", None, force=True).state == "absent"


def test_decide_against_each_fix_range_of_the_table() -> None:
    """For every release inside [supported, newest_tested]: the fixes are exactly those whose bug range holds it."""
    from packaging.version import Version

    for name, entry in compat.compat_table().items():
        lows = [s.version for f in entry.fixes for s in f.needed] + [str(entry.newest_tested)]
        for v in sorted({Version(x) for x in lows}):
            if not entry.supported.contains(v) or v > entry.newest_tested:
                continue
            d = compat.decide(name, str(v))
            want = {f.name for f in entry.fixes if f.needed.contains(v)}
            assert d.fixes == want, (name, v)
            assert d.state == ("apply" if want else "native")
            assert d.applies == bool(want)


@settings_hyp(max_examples=100, deadline=None)
@given(
    name=hst.sampled_from(["mllama_processor", "unsloth_collator"]),
    release=hst.tuples(hst.integers(0, 2030), hst.integers(0, 30), hst.integers(0, 12)),
    suffix=hst.sampled_from(["", ".dev0", "rc1", ".post2", "a3"]),
)
def test_decide_invariants(name: str, release: tuple[int, int, int], suffix: str) -> None:
    from packaging.version import Version

    version = ".".join(map(str, release)) + suffix
    entry = compat.compat_table()[name]
    d = compat.decide(name, version)
    all_fixes = {f.name for f in entry.fixes}
    assert d.version == version
    assert d.fixes <= all_fixes
    assert d.applies == (d.state in {"apply", "untested"})
    assert d.applies == bool(d.fixes) or d.state == "untested"
    parsed = Version(version)
    newer = parsed.release > entry.newest_tested.release or (
        parsed.release == entry.newest_tested.release and parsed > entry.newest_tested
    )
    if newer:
        assert d.state in {"untested", "native"}
        assert d.fixes == entry.fixes_needed(entry.newest_tested)
    elif not entry.supported.contains(parsed, prereleases=True):
        assert d.state == "unsupported" and not d.applies
    else:
        assert d.fixes == entry.fixes_needed(parsed)
    # A shape problem never lets an untested version through; force always applies.
    assert not compat.decide(name, version, shape_problem="changed").applies or not newer
    forced = compat.decide(name, version, force=True)
    assert forced.applies and forced.fixes == all_fixes


# --------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    settings.reset_settings()
    yield
    settings.reset_settings()


def test_configure_stores_valid_values(clean_settings: None) -> None:
    assert unsloth_multiimage.get_settings() == settings.Settings()
    got = unsloth_multiimage.configure(
        max_images=4, on_excess="keep_last", max_pixels_per_example=2_000_000, strategy="grid"
    )
    assert (got.max_images, got.on_excess, got.max_pixels_per_example, got.strategy) == (4, "keep_last", 2_000_000, "grid")
    # Later calls merge with the earlier ones.
    got = unsloth_multiimage.configure(grid_gap=0, grid_labels=True, allow_urls=True)
    assert (got.max_images, got.grid_gap, got.grid_labels, got.allow_urls) == (4, 0, True, True)
    assert unsloth_multiimage.get_settings() == got
    assert unsloth_multiimage.configure(max_images=None).max_images is None


@pytest.mark.parametrize(
    "field_name, value",
    [
        ("max_images", 0),
        ("max_images", -3),
        ("max_images", 2.5),
        ("on_excess", "drop"),
        ("max_pixels_per_example", 0),
        ("max_pixels_per_example", "big"),
        ("strategy", "mosaic"),
        ("grid_gap", -1),
    ],
)
def test_configure_rejects_invalid_values_naming_the_field(clean_settings: None, field_name: str, value: Any) -> None:
    unsloth_multiimage.configure(max_images=2)
    with pytest.raises(ValueError, match=field_name):
        unsloth_multiimage.configure(**{field_name: value})
    assert unsloth_multiimage.get_settings().max_images == 2  # nothing stored


def test_configure_rejects_unknown_names(clean_settings: None) -> None:
    with pytest.raises(TypeError, match="unknown settings: max_image$"):
        unsloth_multiimage.configure(max_image=3)
    with pytest.raises(TypeError, match="unknown settings: colour$"):
        unsloth_multiimage.configure(max_images=3, colour="red")
    assert unsloth_multiimage.get_settings().max_images is None


def test_settings_from_environment(clean_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "3")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ON_EXCESS", "keep_first")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_PIXELS", "1000000")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_STRATEGY", "grid")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_GRID_GAP", "7")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_GRID_LABELS", "yes")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ALLOW_URLS", "1")
    s = unsloth_multiimage.get_settings()
    assert s == settings.Settings(
        max_images=3,
        on_excess="keep_first",
        max_pixels_per_example=1_000_000,
        strategy="grid",
        grid_gap=7,
        grid_labels=True,
        allow_urls=True,
    )
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "  ")  # blank: ignored
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ALLOW_URLS", "0")
    assert unsloth_multiimage.get_settings().max_images is None
    assert unsloth_multiimage.get_settings().allow_urls is False


@pytest.mark.parametrize(
    "var, value, named",
    [
        ("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "many", "UNSLOTH_MULTIIMAGE_MAX_IMAGES"),  # not an int
        ("UNSLOTH_MULTIIMAGE_GRID_GAP", "1.5", "UNSLOTH_MULTIIMAGE_GRID_GAP"),
        ("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "0", "max_images"),  # an int, but not a valid one
        ("UNSLOTH_MULTIIMAGE_STRATEGY", "mosaic", "strategy"),
    ],
)
def test_invalid_environment_values_raise(
    clean_settings: None, monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=named):
        unsloth_multiimage.get_settings()
    with pytest.raises(ValueError, match=named):  # configure validates against the environment too
        unsloth_multiimage.configure(grid_labels=True)


def test_configure_wins_over_environment_and_reset_goes_back(
    clean_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "3")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_STRATEGY", "grid")
    got = unsloth_multiimage.configure(max_images=8)
    assert (got.max_images, got.strategy) == (8, "grid")  # env still supplies the rest
    assert unsloth_multiimage.get_settings().max_images == 8
    unsloth_multiimage.reset_settings()
    assert unsloth_multiimage.get_settings().max_images == 3
    monkeypatch.delenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES")
    monkeypatch.delenv("UNSLOTH_MULTIIMAGE_STRATEGY")
    assert unsloth_multiimage.get_settings() == settings.Settings()


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
    assert mllama == "pending"  # active, waiting for transformers


def test_import_with_disable_activates_nothing() -> None:
    proc = run_py(
        "import unsloth_multiimage\n"
        "from unsloth_multiimage import activation\n"
        "print(activation._state.active, sorted({s.decision for s in unsloth_multiimage.status()}))\n",
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


def test_mllama_patch_applies_when_transformers_is_imported_after(background: Background) -> None:
    proc = background.result("mllama_after")
    assert proc.returncode == 0, proc.stderr[-3000:]
    kind, wrapped, state = proc.stdout.strip().splitlines()[-3:]
    assert kind == "FunctionWrapper"
    assert wrapped == "MllamaProcessor.__call__"
    assert state.startswith("('apply'") or state.startswith("('untested'")
    assert state.endswith("True)")


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
    assert versions["torch"][1] == importlib.metadata.version("torch")
    assert versions["transformers"][1] == importlib.metadata.version("transformers")
    # One row per built-in patch: name, version, decision, applied.
    mllama = rows["mllama_processor"]
    assert mllama[1] == importlib.metadata.version("transformers")
    assert mllama[2] in {"apply", "untested", "native"}
    assert mllama[3] == ("yes" if mllama[2] != "native" else "no")
    collator = rows["unsloth_collator"]
    if compat.installed_version("unsloth_zoo") is None:
        assert collator[1:4] == ["-", "absent", "no"]
    # The plugin table names where the plugins came from.
    assert sections["plugins"]["mllama_processor"][1:3] == ["unsloth-multiimage", "loaded"]
    assert sections["plugins"]["unsloth_collator"][1:3] == ["unsloth-multiimage", "loaded"]
