"""Discovery through entry points, and broken plugins that never stop the good ones."""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

from tests.support.fakesite import (
    COLLATOR_PATCH,
    UNPATCHED,
    FakeSites,
    call,
    errors_of,
    statuses,
)
from unsloth_multiimage.engine import activation, compat

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
