"""Import order, idempotence and exact restore of wrapt patches on real modules."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import pytest
import wrapt

from tests.support.fakesite import (
    COLLATOR_PATCH,
    SUB_PATCH,
    UNPATCHED,
    FakeSites,
    call,
    statuses,
    warnings_of,
)
from unsloth_multiimage.engine import activation

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


def test_module_reload_is_reported_lost_and_activate_repatches(fake: FakeSites, logs: pytest.LogCaptureFixture) -> None:
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
