"""Every decision state of the compat table, on a real (fake third-party) module."""

from __future__ import annotations

import pytest
import wrapt

from tests.support.fakesite import (
    COLLATOR_PATCH,
    FAKE_NEWEST,
    UNPATCHED,
    FakeSites,
    call,
    statuses,
    warnings_of,
)
from unsloth_multiimage import _env
from unsloth_multiimage.engine import activation, compat

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
    monkeypatch.setenv(_env.FORCE.name, "1")
    mod = vlm.import_target()
    activation.activate()
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied, list(st.fixes)) == ("apply", True, ["bug_a", "bug_b", "bug_c"])
    assert call(mod)["patched_by"] == COLLATOR_PATCH
    assert any("UNSLOTH_MULTIIMAGE_FORCE" in m and version in m for m in warnings_of(logs)), warnings_of(logs)


def test_force_never_wraps_a_target_that_is_not_there(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = fake.make("2.5.0", variant="target_collate_renamed_class")
    monkeypatch.setenv(_env.FORCE.name, "1")
    mod = vlm.import_target()
    activation.activate()
    st = statuses()[COLLATOR_PATCH]
    assert not st.applied
    assert "missing" in st.reason
    assert not hasattr(mod, "Collator")


def test_force_does_not_invent_an_absent_distribution(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = fake.make(None)
    monkeypatch.setenv(_env.FORCE.name, "1")
    mod = vlm.import_target()
    activation.activate()
    assert statuses()[COLLATOR_PATCH].decision == "absent"
    assert call(mod) == UNPATCHED


def test_third_party_patch_without_compat_entry_is_never_applied(
    fake: FakeSites, monkeypatch: pytest.MonkeyPatch
) -> None:
    vlm = fake.make("1.2.0", patches=(("fakevlm_uncharted", "Collator.__call__", False),))
    monkeypatch.setenv(_env.FORCE.name, "1")  # not even when forced
    mod = vlm.import_target()
    activation.activate()
    st = statuses()["fakevlm_uncharted"]
    assert not st.applied and st.decision == "unsupported"
    assert "no compat entry" in st.reason and "fakevlm_uncharted" in st.reason
    assert call(mod) == UNPATCHED


def test_a_stand_in_target_is_absent_without_a_warning(logs: pytest.LogCaptureFixture) -> None:
    """A shape check that names a stand-in (:class:`TargetAbsent`, e.g. unsloth's CPU collator) makes
    the patch "absent", said at debug level; the same target missing without one is a warning."""
    import json

    from unsloth_multiimage.engine.patching import Patch, TargetAbsent

    entry = compat.compat_table()["mllama_processor"]

    def stand_in(target: object) -> str | None:
        return TargetAbsent("json.Stand is a stand-in here") if target is None else None

    for shape_check, state in ((stand_in, "absent"), (None, "apply")):
        patch = Patch(
            name="mllama_processor",
            module="json",
            attribute="Stand.__call__",
            make_wrapper=lambda decision: None,  # type: ignore[arg-type,return-value]
            shape_check=shape_check,
            compat=entry,
        )
        logs.clear()
        decision = activation._decide(patch, json)
        assert (decision.state, decision.applies) == (state, False), decision
        if state == "absent":
            assert "is a stand-in here; nothing to patch" in decision.reason
            assert not warnings_of(logs), warnings_of(logs)
        else:
            assert "json:Stand.__call__ is missing" in decision.reason
            assert any("is missing" in m for m in warnings_of(logs))
