"""The environment opt-outs: DISABLE, DISABLE_PATCHES, FORCE."""

from __future__ import annotations

import sys

import pytest

from tests.support.fakesite import (
    COLLATOR_PATCH,
    SUB_PATCH,
    UNPATCHED,
    FakeSites,
    call,
    statuses,
)
from unsloth_multiimage import _env
from unsloth_multiimage.engine import activation

# --------------------------------------------------------------------------------------
# Environment opt-outs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_disable_turns_everything_off(fake: FakeSites, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    vlm = fake.make("1.2.0")
    monkeypatch.setenv(_env.DISABLE.name, value)
    assert activation.is_disabled()
    out = activation.activate()
    mod = vlm.import_target()  # no hook either
    assert call(mod) == UNPATCHED
    assert out and all(s.decision == "disabled" and not s.applied for s in out)
    st = statuses()[COLLATOR_PATCH]
    assert (st.decision, st.applied) == ("disabled", False)
    assert _env.DISABLE.name in st.reason
    assert not activation._state.active


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_disable_falsy_values_do_not_disable(fake: FakeSites, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    vlm = fake.make("1.2.0")
    monkeypatch.setenv(_env.DISABLE.name, value)
    mod = vlm.import_target()
    activation.activate()
    assert call(mod)["patched_by"] == COLLATOR_PATCH


def test_disable_patches_blocks_one_patch_by_name(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = fake.make(
        "1.2.0", patches=((COLLATOR_PATCH, "Collator.__call__", True), (SUB_PATCH, "SubCollator.__call__", True))
    )
    monkeypatch.setenv(_env.DISABLE_PATCHES.name, f" {COLLATOR_PATCH} , some_other_name")
    mod = vlm.import_target()
    original = mod.Collator.__dict__["__call__"]
    activation.activate()
    st = statuses()
    assert (st[COLLATOR_PATCH].decision, st[COLLATOR_PATCH].applied) == ("blocked", False)
    assert _env.DISABLE_PATCHES.name in st[COLLATOR_PATCH].reason
    assert mod.Collator.__dict__["__call__"] is original
    assert call(mod) == UNPATCHED
    # The other patch of the same plugin still applies.
    assert st[SUB_PATCH].applied
    assert mod.SubCollator()(["x"])["patched_by"] == SUB_PATCH


def test_disable_patches_blocks_one_patch_also_when_imported_later(
    fake: FakeSites, monkeypatch: pytest.MonkeyPatch
) -> None:
    vlm = fake.make("1.2.0")
    monkeypatch.setenv(_env.DISABLE_PATCHES.name, COLLATOR_PATCH)
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
    monkeypatch.setenv(_env.DISABLE_PATCHES.name, vlm.plugin_ep)
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
# Misspelt names warn (once), naming the closest valid one
# --------------------------------------------------------------------------------------


def _plugin_warnings(record: list) -> list[str]:
    return [str(w.message) for w in record if str(w.message).startswith("unsloth_multiimage:")]


def test_a_misspelt_name_in_disable_patches_warns_once_naming_the_closest(
    fake: FakeSites, monkeypatch: pytest.MonkeyPatch
) -> None:
    vlm = fake.make("1.2.0")
    monkeypatch.setattr(activation, "_warned_names", set())
    monkeypatch.setenv(_env.DISABLE_PATCHES.name, "fakevlm_colector")  # a typo of COLLATOR_PATCH
    with pytest.warns(UserWarning) as record:
        activation.activate()
        activation.status()
    [message] = _plugin_warnings(record.list)
    assert "'fakevlm_colector', which is no patch or plugin" in message
    assert f"did you mean {COLLATOR_PATCH!r}?" in message
    assert call(vlm.import_target())["patched_by"] == COLLATOR_PATCH  # the typo blocked nothing
    activation._reset_for_tests()  # a reload of the plugins does not warn a second time
    import warnings

    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        activation.activate()
    assert not _plugin_warnings(again)


def test_an_unknown_variable_warns_once_naming_the_closest(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.make("1.2.0")
    monkeypatch.setattr(activation, "_warned_names", set())
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGE", "2")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_QQQQ", "1")
    with pytest.warns(UserWarning) as record:
        activation.activate()
        activation.activate()
    messages = _plugin_warnings(record.list)
    assert len(messages) == 2, messages
    assert "UNSLOTH_MULTIIMAGE_MAX_IMAGE is not a variable the plugin reads" in messages[0]
    assert "did you mean UNSLOTH_MULTIIMAGE_MAX_IMAGES?" in messages[0]
    assert "UNSLOTH_MULTIIMAGE_QQQQ" in messages[1] and _env.STRATEGY.name in messages[1]  # nothing close: the list


def test_known_names_do_not_warn(fake: FakeSites, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    fake.make("1.2.0")
    monkeypatch.setattr(activation, "_warned_names", set())
    monkeypatch.setenv(_env.DISABLE_PATCHES.name, COLLATOR_PATCH)
    monkeypatch.setenv(_env.MAX_IMAGES.name, "3")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        activation.activate()
    assert not _plugin_warnings(record)
