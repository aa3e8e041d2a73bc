"""Patch lifecycle on the REAL targets: import order, re-import, reload, activate/deactivate cycles,
threads, changed signatures, DataLoader workers (fork and spawn), pickling, and errors that
propagate instead of turning into wrong data. (Fake targets: tests/engine/test_patching.py.)"""

from __future__ import annotations

import json
import logging
import multiprocessing
import pickle
import sys
import textwrap
import threading

import pytest
import wrapt

import unsloth_multiimage
from tests.support import TRANSFORMERS, UNSLOTH_ZOO, fresh_python
from unsloth_multiimage.adapters.mllama import ADAPTER as MLLAMA_ADAPTER
from unsloth_multiimage.engine import activation
from unsloth_multiimage.errors import InternalError

MLLAMA_MODULE = "transformers.models.mllama.processing_mllama"
needs_tf = pytest.mark.skipif(TRANSFORMERS is None, reason="transformers is not installed on this row")
needs_zoo = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")


def run_py(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    proc = fresh_python(textwrap.dedent(code))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


_LAYERS = """
import json, wrapt
def layers(obj):
    n = 0
    while isinstance(obj, wrapt.FunctionWrapper):
        n, obj = n + 1, obj.__wrapped__
    return n
"""


@pytest.mark.heavy
@needs_tf
@pytest.mark.parametrize("order", ["plugin-first", "transformers-first"])
def test_import_order_and_importing_twice(order):
    first, second = (
        ("unsloth_multiimage", MLLAMA_MODULE) if order == "plugin-first" else (MLLAMA_MODULE, "unsloth_multiimage")
    )
    out = run_py(
        _LAYERS
        + f"""
import importlib
importlib.import_module({first!r}); importlib.import_module({second!r})
import unsloth_multiimage
importlib.import_module("unsloth_multiimage")  # a second import is a no-op
unsloth_multiimage.activate(); unsloth_multiimage.activate()
from transformers.models.mllama.processing_mllama import MllamaProcessor
[st] = [s for s in unsloth_multiimage.status() if s.name == "mllama_processor"]
print(json.dumps({{"layers": layers(MllamaProcessor.__dict__["__call__"]), "applied": st.applied}}))
"""
    )
    assert out == {"layers": 1, "applied": True}


@pytest.mark.heavy
@needs_tf
def test_reload_of_the_target_module_is_reported_lost_then_repatched():
    out = run_py(
        _LAYERS
        + """
import importlib, unsloth_multiimage
import transformers.models.mllama.processing_mllama as m
old_cls = m.MllamaProcessor
importlib.reload(m)
[st] = [s for s in unsloth_multiimage.status() if s.name == "mllama_processor"]
before = {"decision": st.decision, "applied": st.applied, "reason": st.reason}
unsloth_multiimage.activate()
[st] = [s for s in unsloth_multiimage.status() if s.name == "mllama_processor"]
new_layers = layers(m.MllamaProcessor.__dict__["__call__"])
unsloth_multiimage.deactivate()
print(json.dumps({"before": before, "after": [st.decision, st.applied], "new_layers": new_layers,
                  "new_cls": m.MllamaProcessor is not old_cls,
                  "restored": layers(m.MllamaProcessor.__dict__["__call__"])}))
"""
    )
    assert out["new_cls"]
    assert out["before"]["decision"] == "lost" and not out["before"]["applied"], out
    assert "activate() again" in out["before"]["reason"]
    assert out["after"] == ["apply", True] and out["new_layers"] == 1
    assert out["restored"] == 0


def _targets() -> list[tuple[type, object]]:
    """(class, original __call__) of every real target imported in this process."""
    out = []
    for name, attr in ((MLLAMA_MODULE, "MllamaProcessor"), ("unsloth_zoo.vision_utils", "UnslothVisionDataCollator")):
        module = sys.modules.get(name)
        if module is not None:
            cls = getattr(module, attr)
            call = cls.__dict__["__call__"]
            out.append((cls, call.__wrapped__ if isinstance(call, wrapt.FunctionWrapper) else call))
    return out


def _hook_sizes() -> tuple:
    hooks = wrapt.importer._post_import_hooks
    return len(activation._state.hooked_modules), len(hooks), tuple(sorted((k, len(v or ())) for k, v in hooks.items()))


@pytest.mark.heavy
@needs_tf
def test_a_thousand_activate_deactivate_cycles(processor):
    if UNSLOTH_ZOO is not None:
        from tests.support.zoo import load_vision_utils

        load_vision_utils()
    targets = _targets()
    assert targets
    sizes = _hook_sizes()
    for _ in range(1000):
        unsloth_multiimage.deactivate()
        for cls, original in targets:
            assert cls.__dict__["__call__"] is original
        unsloth_multiimage.activate()
        for cls, original in targets:
            call = cls.__dict__["__call__"]
            assert isinstance(call, wrapt.FunctionWrapper) and call.__wrapped__ is original
    assert _hook_sizes() == sizes


@pytest.mark.heavy
def test_pending_hooks_are_registered_once_per_module():
    out = run_py(
        """
import json, wrapt, unsloth_multiimage
from unsloth_multiimage.engine import activation
from unsloth_multiimage.errors import InternalError
for _ in range(1000):
    unsloth_multiimage.deactivate(); unsloth_multiimage.activate()
hooks = wrapt.importer._post_import_hooks
pending = {m: len(hooks.get(m) or ()) for m in activation._state.hooked_modules}
print(json.dumps({"pending": pending, "hooked": sorted(activation._state.hooked_modules)}))
"""
    )
    assert out["hooked"], "no pending target in a fresh interpreter"
    assert all(n == 1 for n in out["pending"].values()), out


@needs_tf
def test_eight_threads_activating_at_once_apply_each_patch_once(processor, monkeypatch):
    from unsloth_multiimage.engine import patching

    unsloth_multiimage.deactivate()
    targets = _targets()
    applied: list[str] = []
    real_apply = patching.AppliedPatch.apply.__func__

    def counting_apply(cls, patch, module, wrapper):
        applied.append(patch.name)
        return real_apply(cls, patch, module, wrapper)

    monkeypatch.setattr(patching.AppliedPatch, "apply", classmethod(counting_apply))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            unsloth_multiimage.activate()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(applied) == sorted(set(applied)), "a patch was applied twice"
    assert set(applied) == {s.name for s in unsloth_multiimage.status() if s.applied}
    assert len(applied) >= len(targets)  # every __call__ target, and other patched methods of the release
    for cls, original in targets:
        call = cls.__dict__["__call__"]
        assert isinstance(call, wrapt.FunctionWrapper) and call.__wrapped__ is original


def _activate_with_a_changed_mllama_signature(monkeypatch, caplog):
    """Swap the module's MllamaProcessor for a subclass whose __call__ lost ``images``/``text``."""
    import transformers.models.mllama.processing_mllama as m

    original_cls = m.MllamaProcessor

    class ChangedProcessor(original_cls):
        def __call__(self, inputs, return_tensors=None):  # the new upstream signature: no images/text
            return original_cls.__call__(self, text=inputs, return_tensors=return_tensors)

    unsloth_multiimage.deactivate()
    monkeypatch.setattr(m, "MllamaProcessor", ChangedProcessor)
    with caplog.at_level(logging.DEBUG, logger="unsloth_multiimage"):
        unsloth_multiimage.activate()
    [st] = [s for s in unsloth_multiimage.status() if s.name == "mllama_processor"]
    return original_cls, ChangedProcessor, st


@pytest.fixture
def restore_activation(monkeypatch):
    yield
    unsloth_multiimage.deactivate()
    monkeypatch.undo()
    unsloth_multiimage.activate()


@needs_tf
def test_a_real_target_whose_signature_changed_is_skipped(tiny, monkeypatch, caplog, restore_activation):
    original_cls, changed, st = _activate_with_a_changed_mllama_signature(monkeypatch, caplog)
    assert not st.applied and "no longer accepts images, text" in st.reason, st
    assert not isinstance(changed.__dict__["__call__"], wrapt.FunctionWrapper)
    assert not isinstance(original_cls.__dict__["__call__"], wrapt.FunctionWrapper)
    # The user's script runs as without the plugin.
    proc = tiny.build_processor()
    proc.__class__ = changed
    out = proc("<|begin_of_text|>describe the image", return_tensors="pt")
    assert out["input_ids"].shape[0] == 1


@needs_tf
def test_a_real_target_whose_signature_changed_warns_naming_the_versions(monkeypatch, caplog, restore_activation):
    _activate_with_a_changed_mllama_signature(monkeypatch, caplog)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("mllama_processor" in w and "transformers" in w and str(TRANSFORMERS) in w for w in warned), warned


# ------------------------------------------------------------------ the real collator: workers, pickling, errors


def _dataset_rows(tiny) -> list:
    def row(r, n):
        parts = [{"type": "image"}] * n
        return {
            "messages": [
                {"role": "user", "content": [*parts, {"type": "text", "text": "describe the image"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
            ],
            "images": [tiny.make_tile_image(r, k) for k in range(n)],
        }

    return [row(0, 2), row(1, 0), row(2, 3), row(3, 1)]


class RowsDataset:
    """A map-style dataset defined in this module, so spawned workers import it (and the plugin)."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def _skip_unless_upstream_pickles(collator):
    from tests.support import patches_off

    with patches_off():
        try:
            pickle.dumps(collator)
        except Exception as exc:
            pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO}'s own collator does not pickle (without the plugin): {exc}")


def _assert_same(a, b):
    assert set(a.keys()) == set(b.keys())
    for key in a:
        assert a[key].shape == b[key].shape and (a[key] == b[key]).all(), key


def _check_rows(tiny, processor, batch, offset=0):
    counts = [2, 0, 3, 1]
    for local in range(batch["input_ids"].shape[0]):
        r = offset + local
        for k in range(counts[r]):
            assert tiny.decode_tile(batch["pixel_values"][local, k, 0], processor) == (r, k)


@needs_zoo
def test_the_patched_collator_pickles(tiny, processor, zoo_collator):
    _skip_unless_upstream_pickles(zoo_collator)
    rows = _dataset_rows(tiny)
    want = zoo_collator(rows)
    clone = pickle.loads(pickle.dumps(zoo_collator))
    assert clone.processor is not zoo_collator.processor  # a real copy, not the proxy
    _assert_same(clone(rows), want)
    _check_rows(tiny, processor, want)


@needs_zoo
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_patched_collator_in_dataloader_workers(method, tiny, processor, zoo_collator):
    import torch

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    zoo_pkg = sys.modules.get("unsloth_zoo")
    if method == "spawn" and getattr(getattr(zoo_pkg, "__spec__", None), "loader", None) is None:
        pytest.skip(
            f"unsloth_zoo {UNSLOTH_ZOO} is loaded bare (its __init__ needs a GPU): a spawned worker cannot import it"
        )
    if method == "spawn":
        _skip_unless_upstream_pickles(zoo_collator)
    rows = _dataset_rows(tiny)
    want = [zoo_collator(rows[0:2]), zoo_collator(rows[2:4])]
    loader = torch.utils.data.DataLoader(
        RowsDataset(rows),
        batch_size=2,
        num_workers=2,
        collate_fn=zoo_collator,
        multiprocessing_context=multiprocessing.get_context(method),
    )
    got = list(loader)
    assert len(got) == 2
    for g, w, offset in zip(got, want, (0, 2)):
        _assert_same(g, w)
        _check_rows(tiny, processor, g, offset)


@needs_zoo
def test_an_internal_error_propagates_and_the_processor_is_restored(tiny, zoo_collator, monkeypatch):
    from unsloth_multiimage.collate import proxy as zoo_proxy
    from unsloth_multiimage.rows import pipeline

    processor = zoo_collator.processor

    def broken(example, row):
        raise KeyError("internal helper exploded")

    monkeypatch.setattr(pipeline, "plan_row", broken)
    with pytest.raises(KeyError, match="internal helper exploded"):
        zoo_collator(_dataset_rows(tiny))
    monkeypatch.undo()

    # A failure inside upstream while our proxy is in place: propagates, and the real processor is back.
    def failing_resizer(collator):
        def resize(images):
            raise RuntimeError("resize failed")

        return resize

    monkeypatch.setattr(zoo_proxy, "resizer", failing_resizer)
    monkeypatch.setattr(zoo_proxy.BatchImages, "align", lambda self, upstream: failing_resizer(None)([]))
    with pytest.raises(InternalError, match="resize failed"):
        zoo_collator(_dataset_rows(tiny))
    assert zoo_collator.processor is processor


@needs_zoo
def test_an_internal_inconsistency_raises_runtime_error_asking_to_report(tiny, zoo_collator):
    from unsloth_multiimage.collate.proxy import BatchImages
    from unsloth_multiimage.rows.plan import plan_row

    rows = _dataset_rows(tiny)
    batch = BatchImages([plan_row(r, i) for i, r in enumerate(rows)], zoo_collator, MLLAMA_ADAPTER)
    with pytest.raises(InternalError, match=r"cannot line up .* Please report"):
        batch.align([[1], [2]])  # 2 lists for 4 rows, 3 of which have images


@needs_zoo
def test_an_image_dropped_internally_is_caught_not_collated(tiny, zoo_collator, monkeypatch):
    """A helper that silently loses an image must not produce a batch: the per-row check stops it."""
    from unsloth_multiimage.collate import proxy as zoo_proxy

    real_align = zoo_proxy.BatchImages.align

    def lossy_align(self, upstream):
        out = real_align(self, upstream)
        out[2] = out[2][:-1]
        return out

    monkeypatch.setattr(zoo_proxy.BatchImages, "align", lossy_align)
    with pytest.raises(ValueError, match=r"row 2 has 3 <\|image\|> token\(s\) in its text but 2 image"):
        zoo_collator(_dataset_rows(tiny))
