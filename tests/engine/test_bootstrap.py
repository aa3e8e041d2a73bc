"""``import unsloth_multiimage`` activates the plugins at once, and a patched library imported later is
patched as it is imported (wrapt's post-import hooks), whatever the import order.

Each test runs a fresh interpreter (the activation happens once per process). The hooks are tested
on the real packages (transformers, unsloth_zoo) and on a throw-away plugin distribution and target
package written to ``tmp_path``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.support import TRANSFORMERS, UNSLOTH_ZOO, fresh_python

needs_tf = pytest.mark.skipif(TRANSFORMERS is None, reason="transformers is not installed on this row")
needs_zoo = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

_PRELUDE = """
import json, sys
def loaded(names):
    return sorted(n for n in names if n in sys.modules)
def wrapped(obj):
    return hasattr(obj, "__wrapped__")
"""
#: What the import must never bring in (seconds of imports a script may not need).
_HEAVY = ("torch", "transformers", "PIL", "numpy", "trl", "unsloth_zoo", "unsloth_multiimage.inference")


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
# What the import does
# ---------------------------------------------------------------------------------------


def test_the_import_activates_without_importing_any_heavy_library() -> None:
    out = run(
        f"""
        import unsloth_multiimage as u
        from unsloth_multiimage.engine import activation
        print(json.dumps({{"heavy": loaded({_HEAVY!r}), "active": activation._state.active,
                          "hooked": sorted(activation._state.hooked_modules)}}))
        """
    )
    assert out["heavy"] == []
    assert out["active"] is True
    # one post-import hook per module a built-in patch targets, none imported yet
    assert "transformers.models.mllama.processing_mllama" in out["hooked"]
    assert "unsloth_zoo.vision_utils" in out["hooked"]


def test_disabled_imports_nothing_but_the_package_itself() -> None:
    out = run(
        """
        before = set(sys.modules)
        import unsloth_multiimage as u
        new = sorted(set(sys.modules) - before)
        print(json.dumps({"new": new, "disabled": u.is_disabled(), "active": u.status()[0].decision}))
        """,
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert out["new"] == ["unsloth_multiimage", "unsloth_multiimage._env", "unsloth_multiimage._version"]
    assert out["disabled"] is True and out["active"] == "disabled"


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
        print(json.dumps({"missing": missing, "dir": sorted(set(u.__all__) - set(dir(u))), "err": err}))
        """
    )
    assert out["missing"] == [] and out["dir"] == []
    assert out["err"] == "module 'unsloth_multiimage' has no attribute 'no_such_name'"


# ---------------------------------------------------------------------------------------
# The real targets, in both import orders
# ---------------------------------------------------------------------------------------


@pytest.mark.heavy
@needs_tf
@pytest.mark.parametrize("plugin_first", [True, False], ids=["plugin-first", "transformers-first"])
def test_the_processor_is_patched_in_either_import_order(plugin_first: bool) -> None:
    first, second = (
        ("import unsloth_multiimage as u", "from transformers.models.mllama import processing_mllama as pm")
        if plugin_first
        else ("from transformers.models.mllama import processing_mllama as pm", "import unsloth_multiimage as u")
    )
    out = run(
        f"""
        {first}
        {second}
        [st] = [s for s in u.status() if s.name == "mllama_processor"]
        print(json.dumps({{"wrapped": wrapped(pm.MllamaProcessor.__dict__["__call__"]),
                          "applied": st.applied, "decision": st.decision}}))
        """
    )
    assert out["wrapped"] is True and out["applied"] is True and out["decision"] == "apply"


@pytest.mark.heavy
@needs_tf
def test_status_before_the_target_import_shows_pending_then_applied() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        before = {s.name: s.decision for s in u.status()}["mllama_processor"]
        from transformers.models.mllama.processing_mllama import MllamaProcessor
        [st] = [s for s in u.status() if s.name == "mllama_processor"]
        print(json.dumps({"before": before, "after": [st.decision, st.applied]}))
        """
    )
    assert out["before"] == "pending"
    assert out["after"] == ["apply", True]


@pytest.mark.heavy
@needs_tf
def test_deactivate_before_the_target_import_leaves_it_alone_until_activate() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        u.deactivate()
        from transformers.models.mllama.processing_mllama import MllamaProcessor
        before = wrapped(MllamaProcessor.__dict__["__call__"])
        u.activate()
        print(json.dumps({"before": before, "after": wrapped(MllamaProcessor.__dict__["__call__"])}))
        """
    )
    assert out["before"] is False and out["after"] is True


@pytest.mark.heavy
@needs_tf
def test_disabled_patches_nothing() -> None:
    out = run(
        """
        import unsloth_multiimage as u
        from transformers.models.mllama.processing_mllama import MllamaProcessor
        print(json.dumps({"loaded": loaded(("wrapt", "pluggy")), "wrapped": wrapped(MllamaProcessor.__dict__["__call__"])}))
        """,
        UNSLOTH_MULTIIMAGE_DISABLE="1",
    )
    assert out["wrapped"] is False and out["loaded"] == []


@needs_zoo
def test_the_zoo_collator_is_patched_when_zoo_comes_after_the_plugin() -> None:
    # tests/support/zoo.py loads the pinned release's own vision_utils (a real import from 2026.5, a
    # bare package before: the post-import hook then fires on unsloth_zoo.vision_utils itself).
    out = run(
        """
        import unsloth_multiimage as u
        from tests.support.zoo import load_vision_utils
        vu, how = load_vision_utils()
        [st] = [s for s in u.status() if s.name == "unsloth_collator"]
        print(json.dumps({"how": how, "wrapped": wrapped(vu.UnslothVisionDataCollator.__dict__["__call__"]),
                          "applied": st.applied, "decision": st.decision}))
        """
    )
    assert out["applied"] is (out["decision"] == "apply")
    assert out["wrapped"] is out["applied"]
    if out["decision"] == "apply":
        assert out["wrapped"] is True


# ---------------------------------------------------------------------------------------
# A third party's plugin and target, whose import order the test controls
# ---------------------------------------------------------------------------------------

_PLUGIN = {
    "other_umi_plugin_mod.py": """
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
        from unsloth_multiimage.plugin import FixRange, Patch, PatchCompat, hookimpl

        def make_wrapper(decision):
            def wrapper(wrapped, instance, args, kwargs):
                return "patched " + wrapped(*args, **kwargs)
            return wrapper

        COMPAT = PatchCompat(name="thing_call", distribution="trigpkg", target="trigpkg.target:Thing.__call__",
                             supported=SpecifierSet(">=1.0"), newest_tested=Version("1.0"),
                             fixes=(FixRange("thing", SpecifierSet(">=1.0"), "the thing"),))

        @hookimpl
        def umi_patches():
            return [Patch(name="thing_call", module="trigpkg.target", attribute="Thing.__call__",
                          make_wrapper=make_wrapper, compat=COMPAT, fixes=("thing",))]
    """,
    "trigpkg/__init__.py": "from . import target\n",
    "trigpkg/target.py": """
        class Thing:
            def __call__(self):
                return "original"
    """,
}


def _third_party_site(tmp_path: Path) -> tuple[str]:
    write_package(tmp_path, {**_PLUGIN, "slowmod.py": "X = 1\n"})
    write_dist(tmp_path, "other_umi_plugin", "[unsloth_multiimage]\nother = other_umi_plugin_mod\n")
    write_dist(tmp_path, "trigpkg", "")
    return (str(tmp_path),)


def test_a_third_party_target_imported_after_the_plugin_is_patched_on_import(tmp_path: Path) -> None:
    out = run(
        """
        import unsloth_multiimage as u
        from unsloth_multiimage.plugin import plugin_records
        rec = [r.name for r in plugin_records() if r.distribution == "other_umi_plugin"]
        import trigpkg
        print(json.dumps({"rec": rec, "call": trigpkg.target.Thing()()}))
        """,
        path=_third_party_site(tmp_path),
    )
    assert out == {"rec": ["other"], "call": "patched original", "_stderr": out["_stderr"]}


def test_a_failing_activation_is_logged_and_never_breaks_the_users_import(tmp_path: Path) -> None:
    """A plugin whose module raises at import time is reported, and the import goes on: the other
    plugins load, and a broken engine would log instead of raising (activate_on_import)."""
    write_package(tmp_path, {"broken_umi_plugin_mod.py": "raise RuntimeError('plugin exploded')\n"})
    write_dist(tmp_path, "broken_umi_plugin", "[unsloth_multiimage]\nbroken = broken_umi_plugin_mod\n")
    out = run(
        """
        import logging
        logging.basicConfig()
        import unsloth_multiimage as u
        from unsloth_multiimage.engine import activation
        errors = [s.reason for s in u.status() if s.decision == "error"]
        def boom():
            raise RuntimeError("activation exploded")
        activation._activate = boom
        activation.activate_on_import()  # what the import runs
        print(json.dumps({"errors": errors, "active": activation._state.active}))
        """,
        path=(str(tmp_path),),
    )
    assert any("plugin exploded" in e for e in out["errors"])
    assert out["active"] is True
    assert "activation on import failed; no patch is applied" in out["_stderr"]
    assert "RuntimeError: activation exploded" in out["_stderr"]


def test_no_deadlock_with_a_thread_that_holds_the_plugin_lock_while_a_target_is_imported(tmp_path: Path) -> None:
    """Thread A holds the activation lock and imports a module; thread B imports a hooked target
    meanwhile, whose post-import hook needs that lock."""
    out = run(
        """
        import threading, time
        import unsloth_multiimage as u
        from unsloth_multiimage.engine.activation import _state
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
        import trigpkg
        print(json.dumps({"alive": [ta.is_alive(), tb.is_alive()], "call": trigpkg.target.Thing()()}))
        """,
        path=_third_party_site(tmp_path),
    )
    assert out["alive"] == [False, False]
    assert out["call"] == "patched original"
