"""unsloth_zoo's vLLM per-prompt image limit, raised on every release that sets it.

vLLM does not install on this CPU machine, so the proof stops at the vLLM boundary:

* every zoo row: the installed release's ``vllm_utils.py`` (its text, no import) has the shape the
  compat decision expects: the inline assignment in ``load_vllm`` (2025.9.7 - 2026.10.2), or the
  ``_get_multimodal_engine_args`` function that ``load_vllm`` calls (2026.10.3+), or no limit at all;
* inline rows: the shim ``load_vllm`` puts in front of ``vllm.LLM`` / ``EngineArgs`` /
  ``AsyncEngineArgs`` (a recording stand-in for vLLM here) raises exactly the literal the release
  assigns, and keeps vLLM's signature (zoo filters the engine arguments by it);
* the newest zoo: the REAL ``_get_multimodal_engine_args`` of the installed release, patched on import,
  builds the raised engine arguments (needs ``peft``, which ``unsloth_zoo.vllm_utils`` imports).

Unverified here: that ``load_vllm`` reaches vLLM with these arguments (it reads CUDA memory first, so
it cannot run without a GPU), and vLLM itself with several images per prompt.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import sys
import types
from pathlib import Path

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO, patches_off
from unsloth_multiimage.collate import vllm_limit as vl
from unsloth_multiimage.engine import compat
from unsloth_multiimage.patches import vllm_image_limit
from unsloth_multiimage.tools import vllm_report

if UNSLOTH_ZOO is None:
    pytest.skip("unsloth_zoo is not installed on this row (no vLLM engine to limit)", allow_module_level=True)

ZOO = str(UNSLOTH_ZOO)
_PATH = Path(list(importlib.util.find_spec("unsloth_zoo").submodule_search_locations)[0]) / "vllm_utils.py"
SOURCE = _PATH.read_text(encoding="utf-8") if _PATH.is_file() else ""  # 2024.12: no vLLM module at all
LOAD_VLLM = vl.load_vllm_node(SOURCE)
FUNCTION = compat.decide(vl.FUNCTION_PATCH, ZOO)
INLINE = compat.decide(vl.INLINE_PATCH, ZOO)


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == name for n in ast.walk(node))


def test_the_installed_release_has_the_shape_its_decision_expects():
    assert LOAD_VLLM is not None or "limit_mm_per_prompt" not in SOURCE
    has_function = any(
        isinstance(n, ast.FunctionDef) and n.name == "_get_multimodal_engine_args" for n in ast.parse(SOURCE).body
    )
    if INLINE.applies:
        assert vl.source_shape_problem(LOAD_VLLM) is None
        assert vl.inline_limit(LOAD_VLLM) == {"image": 1, "video": 0}
        assert not has_function and not FUNCTION.applies
    elif FUNCTION.applies:
        assert has_function and _calls(LOAD_VLLM, "_get_multimodal_engine_args")
        assert vl.source_shape_problem(LOAD_VLLM) is not None  # nothing inline to raise: the function does it
    else:
        assert "limit_mm_per_prompt" not in SOURCE, f"unsloth_zoo {ZOO} sets a limit that no patch raises"


_CALLS: list = []


@dataclasses.dataclass
class _EngineArgs:
    """vLLM's EngineArgs as far as load_vllm uses it: keyword arguments and a signature; records
    every construction."""

    model: str = ""
    limit_mm_per_prompt: dict | None = None

    def __post_init__(self):
        _CALLS.append((type(self).__name__, dataclasses.asdict(self)))


@pytest.fixture
def fake_vllm(monkeypatch):
    """A recording stand-in for the ``vllm`` package (the boundary only)."""
    module = types.ModuleType("vllm")
    _CALLS.clear()
    module.calls = _CALLS
    module.EngineArgs = dataclasses.make_dataclass("EngineArgs", [], bases=(_EngineArgs,))
    module.AsyncEngineArgs = dataclasses.make_dataclass("AsyncEngineArgs", [], bases=(_EngineArgs,))
    module.LLM = dataclasses.make_dataclass("LLM", [], bases=(_EngineArgs,))
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


@pytest.mark.skipif(not INLINE.applies, reason=f"unsloth_zoo {ZOO} does not set the limit inline in load_vllm")
@pytest.mark.parametrize("name", ["LLM", "EngineArgs", "AsyncEngineArgs"])
def test_the_vllm_constructors_get_the_raised_release_literal(fake_vllm, name):
    literal = vl.inline_limit(LOAD_VLLM)  # what this release's load_vllm assigns
    unsloth_multiimage.configure(vllm_max_images=5)
    shim = vl._limit_raising(getattr(fake_vllm, name), vl.wanted_images())
    assert "limit_mm_per_prompt" in inspect.signature(shim).parameters  # zoo filters its keys by it
    shim(model="m", limit_mm_per_prompt=literal)
    assert fake_vllm.calls == [(name, {"model": "m", "limit_mm_per_prompt": {"image": 5, "video": 0}})]
    assert literal == {"image": 1, "video": 0}  # the release's own dict is not mutated


@pytest.mark.skipif(not INLINE.applies, reason=f"unsloth_zoo {ZOO} does not set the limit inline in load_vllm")
def test_the_inline_wrapper_puts_vllm_back_even_when_load_vllm_fails(fake_vllm):
    originals = {n: getattr(fake_vllm, n) for n in ("LLM", "EngineArgs", "AsyncEngineArgs")}
    seen = {}

    def failing(**kwargs):  # load_vllm on a machine without a GPU fails before building the engine
        seen.update({n: getattr(sys.modules["vllm"], n) for n in originals})
        raise RuntimeError("no GPU")

    wrapper = vllm_image_limit.make_inline_wrapper(INLINE)
    with pytest.raises(RuntimeError, match="no GPU"):
        wrapper(failing, None, (), {"is_vision_model": True})
    assert all(seen[n] is not originals[n] and seen[n].__wrapped__ is originals[n] for n in originals)
    assert all(getattr(fake_vllm, n) is originals[n] for n in originals)


def test_the_wanted_limit_follows_the_settings(monkeypatch):
    assert vl.wanted_images() == vl.DEFAULT_VLLM_MAX_IMAGES
    unsloth_multiimage.configure(max_images=3)
    assert vl.wanted_images() == 3
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_VLLM_MAX_IMAGES", "6")
    assert vl.wanted_images() == 6
    assert vl.raised_limits({"image": 0, "video": 0}, 6) == {"image": 0, "video": 0}  # zeroed: text-only engine


@pytest.fixture(scope="module")
def vllm_utils():
    """The installed release's REAL unsloth_zoo.vllm_utils (2026.10.3+ import on CPU with peft)."""
    if not FUNCTION.applies:
        pytest.skip(f"unsloth_zoo {ZOO} has no _get_multimodal_engine_args (the function shape is 2026.10.3+)")
    pytest.importorskip("peft", reason="unsloth_zoo.vllm_utils imports peft")
    import unsloth_zoo.vllm_utils as module

    return module


def test_the_real_engine_arguments_take_the_raised_limit(vllm_utils):
    from transformers import MllamaConfig

    config = MllamaConfig()
    assert "_get_multimodal_engine_args" in vllm_utils.load_vllm.__code__.co_names  # load_vllm reads the global
    unsloth_multiimage.configure(vllm_max_images=4)
    assert vllm_utils._get_multimodal_engine_args(config, True) == {"limit_mm_per_prompt": {"image": 4, "video": 0}}
    assert vllm_utils._get_multimodal_engine_args(config, False) == {}
    with patches_off():
        assert vllm_utils._get_multimodal_engine_args(config, True) == {"limit_mm_per_prompt": {"image": 1, "video": 0}}
    status = {s.name: s for s in unsloth_multiimage.status()}
    assert status[vl.FUNCTION_PATCH].applied and not status[vl.INLINE_PATCH].applied


def test_doctor_reports_the_limit_and_a_datasets_most_images():
    report = "\n".join(vllm_report.limit_report())
    if FUNCTION.applies or INLINE.applies:
        assert f"unsloth_zoo {ZOO} builds vision engines with limit_mm_per_prompt image=1" in report
        assert "raised by the plugin to 8 per prompt" in report
        assert vllm_report.rollout_limit_line(8).endswith("takes 8 per prompt: admitted")
        assert "REFUSED" in vllm_report.rollout_limit_line(9)
    else:
        assert "sets none" in report and "no unsloth_zoo vLLM image limit" in vllm_report.rollout_limit_line(3)
