"""``import unsloth_multiimage`` is cheap, and the activation it defers still happens in time.

Each test runs a fresh interpreter (the deferral happens once per process). The trigger is
tested on the real packages (transformers, unsloth_zoo) and on throw-away packages written to
``tmp_path`` whose import order the test controls.
"""

from __future__ import annotations

import json
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.support import TRANSFORMERS, UNSLOTH_ZOO, fresh_python
from unsloth_multiimage import _bootstrap
from unsloth_multiimage.engine.plugins import load_plugins

needs_tf = pytest.mark.skipif(TRANSFORMERS is None, reason="transformers is not installed on this row")
needs_zoo = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

# Modules the full activation imports; none of them may come with `import unsloth_multiimage`.
_ACTIVATION_MODULES = (
    "wrapt",
    "pluggy",
    "importlib.metadata",
    "logging",
    "typing",
    "dataclasses",
    "threading",
    "unsloth_multiimage.engine.activation",
    "unsloth_multiimage.engine.plugins",
)

_PRELUDE = f"""
import json, sys
_ACT = {_ACTIVATION_MODULES!r}
def loaded(names=_ACT):
    return sorted(n for n in names if n in sys.modules)
def wrapped(obj):
    return hasattr(obj, "__wrapped__")
def proxies_left():
    # an _ActivatingLoader still visible on any module means the trigger leaked
    out = []
    for name, m in list(sys.modules.items()):
        spec = getattr(m, "__spec__", None)
        for loader in (getattr(m, "__loader__", None), getattr(spec, "loader", None)):
            if type(loader).__name__ == "_ActivatingLoader":
                out.append(name)
    return sorted(set(out))
"""


def run(code: str, *, path: tuple[str, ...] = (), **env: str) -> dict:
    proc = fresh_python(_PRELUDE + textwrap.dedent(code), path=path, **env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["_stderr"] = proc.stderr
    return out


def write_package(site: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text), encoding="utf-8")


def write_dist(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


# ---------------------------------------------------------------------------------------
# What the import costs
# ---------------------------------------------------------------------------------------


def test_the_import_loads_only_the_bootstrap_and_arms_the_trigger() -> None:
    out = run(
        """
        before = set(sys.modules)
        import unsloth_multiimage as u
        new = sorted(set(sys.modules) - before)
        print(json.dumps({"new": new, "pending": u._bootstrap.pending(), "mode": u._bootstrap.mode(),
                          "finder": any(type(f).__name__ == "_TriggerFinder" for f in sys.meta_path)}))
        """
    )
    assert out["new"] == [
        "unsloth_multiimage",
        "unsloth_multiimage._bootstrap",
        "unsloth_multiimage._env",
        "unsloth_multiimage._version",
    ]
    assert out["pending"] is True and out["finder"] is True
    assert out["mode"] == "waiting for the first import of transformers or trl or unsloth_zoo"


def test_public_names_still_resolve_and_list() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        missing = [n for n in u.__all__ if not hasattr(u, n)]
        try:
            u.no_such_name
            err = None
        except AttributeError as exc:
            err = str(exc)
        print(json.dumps({"missing": missing, "dir": sorted(set(u.__all__) - set(dir(u))), "err": err,
                          "hookimpl_is_pluggy": type(u.hookimpl).__module__.startswith("pluggy")}))
        """
    )
    assert out["missing"] == [] and out["dir"] == []
    assert out["err"] == "module 'unsloth_multiimage' has no attribute 'no_such_name'"
    assert out["hookimpl_is_pluggy"] is True


def test_configure_before_any_target_import_does_not_activate() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        u.configure(max_images=3)
        print(json.dumps({"pending": u._bootstrap.pending(), "loaded": loaded(("wrapt", "pluggy"))}))
        """
    )
    assert out == {"pending": True, "loaded": [], "_stderr": out["_stderr"]}


# ---------------------------------------------------------------------------------------
# The deferred activation on the real targets
# ---------------------------------------------------------------------------------------


@pytest.mark.heavy
@needs_tf
def test_the_first_import_of_transformers_activates_and_patches_the_processor() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        import transformers
        mode = u._bootstrap.mode()
        from transformers.models.mllama import processing_mllama as pm
        from _frozen_importlib_external import SourceFileLoader
        [st] = [s for s in u.status() if s.name == "mllama_processor"]
        print(json.dumps({
            "mode": mode, "pending": u._bootstrap.pending(), "wrapped": wrapped(pm.MllamaProcessor.__dict__["__call__"]),
            "applied": st.applied, "decision": st.decision, "proxies": proxies_left(),
            "loaders": [type(transformers.__spec__.loader) is SourceFileLoader, type(pm.__loader__) is SourceFileLoader],
        }))
        """
    )
    assert out["mode"] == "activated on import of transformers"
    assert out["pending"] is False
    assert out["wrapped"] is True and out["applied"] is True and out["decision"] == "apply"
    assert out["proxies"] == [] and out["loaders"] == [True, True]


@pytest.mark.heavy
@needs_tf
def test_find_spec_alone_does_not_activate() -> None:
    out = run(
        """
        import importlib.util
        import unsloth_multiimage as u
        spec = importlib.util.find_spec("transformers")  # what is_package_available() helpers do
        after_find = [u._bootstrap.pending(), loaded(("wrapt", "pluggy"))]
        from transformers.models.mllama.processing_mllama import MllamaProcessor
        print(json.dumps({"after_find": after_find, "wrapped": wrapped(MllamaProcessor.__dict__["__call__"])}))
        """
    )
    assert out["after_find"] == [True, []]
    assert out["wrapped"] is True


@pytest.mark.heavy
@needs_tf
def test_transformers_imported_first_activates_at_once() -> None:
    out = run(
        """
        import transformers
        import unsloth_multiimage as u
        print(json.dumps({"mode": u._bootstrap.mode(), "activation": "unsloth_multiimage.engine.activation" in sys.modules,
                          "finder": any(type(f).__name__ == "_TriggerFinder" for f in sys.meta_path)}))
        """
    )
    assert out["mode"] == "activated on import of unsloth_multiimage (transformers already imported)"
    assert out["activation"] is True and out["finder"] is False


@pytest.mark.heavy
@needs_tf
def test_status_before_the_target_import_shows_pending_then_applied() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        before = {s.name: s.decision for s in u.status()}["mllama_processor"]
        from transformers.models.mllama.processing_mllama import MllamaProcessor
        [st] = [s for s in u.status() if s.name == "mllama_processor"]
        print(json.dumps({"before": before, "after": [st.decision, st.applied], "mode": u._bootstrap.mode()}))
        """
    )
    assert out["before"] == "pending"
    assert out["after"] == ["apply", True]
    assert out["mode"] == "activated on call of status()"


@pytest.mark.heavy
@needs_tf
def test_deactivate_before_the_target_import_cancels_the_deferred_activation() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        u.deactivate()
        from transformers.models.mllama.processing_mllama import MllamaProcessor
        before = wrapped(MllamaProcessor.__dict__["__call__"])
        u.activate()
        print(json.dumps({"before": before, "after": wrapped(MllamaProcessor.__dict__["__call__"]),
                          "mode": u._bootstrap.mode()}))
        """
    )
    assert out["before"] is False and out["after"] is True
    assert out["mode"] == "deactivated by deactivate() before any target was imported"


@pytest.mark.heavy
@needs_tf
def test_disabled_arms_nothing() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        finder = any(type(f).__name__ == "_TriggerFinder" for f in sys.meta_path)
        from transformers.models.mllama.processing_mllama import MllamaProcessor
        print(json.dumps({"finder": finder, "mode": u._bootstrap.mode(), "loaded": loaded(("wrapt", "pluggy")),
                          "wrapped": wrapped(MllamaProcessor.__dict__["__call__"])}))
        """,
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert out["finder"] is False and out["wrapped"] is False
    assert out["mode"] == "disabled by UNSLOTH_MULTIIMAGE_DISABLE"
    assert "wrapt" not in out["loaded"]


@needs_zoo
def test_the_zoo_collator_is_patched_when_zoo_comes_after_the_plugin() -> None:
    # tests/support/zoo.py loads the pinned release's own vision_utils (real import from 2026.5, a bare
    # package before: then the trigger fires on unsloth_zoo.vision_utils itself).
    out = run(
        """
        import unsloth_multiimage as u
        from tests.support.zoo import load_vision_utils
        vu, how = load_vision_utils()
        [st] = [s for s in u.status() if s.name == "unsloth_collator"]
        print(json.dumps({"how": how, "wrapped": wrapped(vu.UnslothVisionDataCollator.__dict__["__call__"]),
                          "applied": st.applied, "decision": st.decision, "proxies": proxies_left(),
                          "mode": u._bootstrap.mode()}))
        """
    )
    assert out["mode"].startswith("activated on import of "), out["mode"]
    assert out["proxies"] == []
    assert out["applied"] is (out["decision"] == "apply")
    assert out["wrapped"] is out["applied"]
    if out["decision"] == "apply":
        assert out["wrapped"] is True


# ---------------------------------------------------------------------------------------
# The trigger on packages whose import order the test controls
# ---------------------------------------------------------------------------------------

# trigpkg/__init__ imports trigpkg.target, which imports trigpkg.util (the first module to finish).
_TRIGPKG = {
    "trigpkg/__init__.py": """
        from . import target
        DONE = True
    """,
    "trigpkg/target.py": """
        from . import util
        class Thing:
            def __call__(self):
                return "original"
        DONE = True
    """,
    "trigpkg/util.py": "X = 1\n",
}

# Arm the trigger for trigpkg instead of transformers/unsloth_zoo, and record what the activation sees.
_ARM_TRIGPKG = """
import os
import unsloth_multiimage as u   # imported with UNSLOTH_MULTIIMAGE_DISABLE=1: nothing armed yet
b = u._bootstrap
from unsloth_multiimage.engine import activation
seen = []
def record():
    seen.append({n: getattr(sys.modules[n], "DONE", False) for n in sorted(sys.modules) if n.startswith("trigpkg")})
activation._activate = record
os.environ.pop("UNSLOTH_MULTIIMAGE_DISABLE")
b.TRIGGER_ROOTS = frozenset({"trigpkg"})
b.start()
assert b.pending()
"""


def test_the_activation_waits_for_the_outermost_module_of_the_package(tmp_path: Path) -> None:
    write_package(tmp_path, _TRIGPKG)
    out = run(
        _ARM_TRIGPKG
        + """
import trigpkg
print(json.dumps({"seen": seen, "mode": b.mode(), "proxies": proxies_left()}))
""",
        path=(str(tmp_path),),
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    # One activation, after trigpkg/__init__ ran to its end: every module complete, none half-built.
    assert out["seen"] == [{"trigpkg": True, "trigpkg.target": True, "trigpkg.util": False}]
    assert out["mode"] == "activated on import of trigpkg"
    assert out["proxies"] == []


def test_a_package_already_in_sys_modules_triggers_on_its_submodule(tmp_path: Path) -> None:
    # As tests/support/zoo.py does for old unsloth_zoo releases: the package object is put in sys.modules
    # by hand, so the first lookup the finder sees is the submodule's.
    write_package(tmp_path, _TRIGPKG)
    out = run(
        _ARM_TRIGPKG
        + f"""
import types
pkg = types.ModuleType("trigpkg"); pkg.__path__ = [{str(tmp_path / "trigpkg")!r}]
sys.modules["trigpkg"] = pkg
import trigpkg.target
print(json.dumps({{"seen": seen, "mode": b.mode()}}))
""",
        path=(str(tmp_path),),
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert out["seen"] == [{"trigpkg": False, "trigpkg.target": True, "trigpkg.util": False}]
    assert out["mode"] == "activated on import of trigpkg.target"


def test_a_failed_import_leaves_the_activation_pending(tmp_path: Path) -> None:
    write_package(tmp_path, {"trigpkg/__init__.py": "raise RuntimeError('broken package')\n"})
    out = run(
        _ARM_TRIGPKG
        + """
try:
    import trigpkg
except RuntimeError as exc:
    err = str(exc)
print(json.dumps({"err": err, "seen": seen, "pending": b.pending()}))
""",
        path=(str(tmp_path),),
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert out["err"] == "broken package"
    assert out["seen"] == [] and out["pending"] is True


def test_a_failing_activation_is_logged_and_never_breaks_the_users_import(tmp_path: Path) -> None:
    write_package(tmp_path, _TRIGPKG)
    out = run(
        _ARM_TRIGPKG
        + """
import logging
logging.basicConfig()
def boom():
    raise RuntimeError("activation exploded")
activation._activate = boom
import trigpkg
print(json.dumps({"ok": trigpkg.DONE, "mode": b.mode()}))
""",
        path=(str(tmp_path),),
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert out["ok"] is True
    assert out["mode"] == "activation on import of trigpkg FAILED (see the log)"
    assert "activation on import of trigpkg failed; no patch is applied" in out["_stderr"]
    assert "RuntimeError: activation exploded" in out["_stderr"]


def test_no_deadlock_with_a_thread_that_holds_the_plugin_lock_while_importing(tmp_path: Path) -> None:
    # Thread A holds the activation lock and then imports a module; thread B imports the trigger
    # package meanwhile. Work done under the global import lock (inside find_spec) would deadlock.
    write_package(tmp_path, {**_TRIGPKG, "slowmod.py": "X = 1\n"})
    out = run(
        _ARM_TRIGPKG
        + """
import threading, time
from unsloth_multiimage.engine.activation import _state
activation._activate = lambda: _state.lock.acquire() and _state.lock.release()
holding = threading.Event()
def a():
    with _state.lock:
        holding.set()
        time.sleep(0.5)
        import slowmod
def b_():
    holding.wait()
    import trigpkg
ta, tb = threading.Thread(target=a, daemon=True), threading.Thread(target=b_, daemon=True)
ta.start(); tb.start(); ta.join(20); tb.join(20)
print(json.dumps({"alive": [ta.is_alive(), tb.is_alive()], "mode": b.mode()}))
""",
        path=(str(tmp_path),),
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert out["alive"] == [False, False]
    assert out["mode"] == "activated on import of trigpkg"


# ---------------------------------------------------------------------------------------
# When the import activates at once
# ---------------------------------------------------------------------------------------


def test_a_plugin_of_another_distribution_makes_the_import_activate_at_once(tmp_path: Path) -> None:
    write_dist(tmp_path, "other_umi_plugin", "[unsloth_multiimage]\nother = other_umi_plugin_mod\n")
    write_package(tmp_path, {"other_umi_plugin_mod.py": "X = 1\n"})
    out = run(
        """
        import unsloth_multiimage as u
        rec = [r.name for r in u.plugin_records() if r.distribution == "other_umi_plugin"]
        print(json.dumps({"mode": u._bootstrap.mode(), "rec": rec}))
        """,
        path=(str(tmp_path),),
    )
    assert out["mode"] == "activated on import of unsloth_multiimage (plugins of other distributions: other_umi_plugin)"
    assert out["rec"] == ["other"]


def test_a_distribution_with_other_entry_points_keeps_the_import_lazy(tmp_path: Path) -> None:
    write_dist(tmp_path, "some_tool", "[console_scripts]\nsome-tool = some_tool:main\n\n[other_group]\nx = y\n")
    out = run(
        """
        import unsloth_multiimage as u
        print(json.dumps({"pending": u._bootstrap.pending(), "loaded": loaded()}))
        """,
        path=(str(tmp_path),),
    )
    assert out["pending"] is True and out["loaded"] == []


def test_the_scan_finds_the_group_the_way_importlib_metadata_does(tmp_path: Path, monkeypatch) -> None:
    import importlib.metadata

    write_dist(tmp_path, "alpha_plugin", "[unsloth_multiimage]\na = alpha_mod\n")
    write_dist(tmp_path, "beta.tool", "[console_scripts]\nb = beta:main\n")
    (tmp_path / "gamma_legacy.egg-info").mkdir()
    (tmp_path / "gamma_legacy.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 1.1\nName: gamma-legacy\nVersion: 0.1\n"
    )
    (tmp_path / "gamma_legacy.egg-info" / "entry_points.txt").write_text("[unsloth_multiimage]\ng = gamma_mod\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    found = _bootstrap.third_party_plugins()
    assert found is not None
    by_metadata = {
        _bootstrap._normalize(ep.dist.metadata["Name"])
        for ep in importlib.metadata.entry_points(group="unsloth_multiimage")
        if _bootstrap._normalize(ep.dist.metadata["Name"]) != "unsloth_multiimage"
    }
    assert sorted(found) == sorted(by_metadata) == ["alpha_plugin", "gamma_legacy"]


def test_what_the_scan_cannot_read_makes_it_answer_unknown(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("hidden_plugin-1.0.dist-info/entry_points.txt", "[unsloth_multiimage]\nh = hidden\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(archive)])
    assert _bootstrap.third_party_plugins() is None

    class DistributionFinder:  # a finder that can add distributions of its own
        def find_spec(self, *args):
            return None

        def find_distributions(self, context=None):
            return iter(())

    egg = tmp_path / "legacy-1.0-py3.11.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [*sys.path[:-1], str(egg)])
    assert _bootstrap.third_party_plugins() is None

    monkeypatch.setattr(sys, "path", sys.path[:-1])
    assert _bootstrap.third_party_plugins() is not None
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, DistributionFinder()])
    assert _bootstrap.third_party_plugins() is None


def test_the_trigger_roots_cover_every_built_in_patch() -> None:
    loaded = load_plugins()
    roots = {patch.module.partition(".")[0] for _, patch in loaded.patches}
    assert roots, "no built-in patch loaded"
    assert roots <= _bootstrap.TRIGGER_ROOTS
