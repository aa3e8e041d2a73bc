"""compat/matrix.toml against compat_table.toml, compat.decide() and the installed versions.

Fast and torch-free: runs in every nox session. The `expect` tables of the matrix are written by
hand; here the code must agree with them. With UMI_COMPAT_ROW set (nox does), the installed
versions must be exactly the row's pins, so a session cannot silently test other versions.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from unsloth_multiimage.engine import compat

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
MATRIX_PATH = ROOT / "compat" / "matrix.toml"
README = ROOT / "README.md"
SCRIPT = ROOT / "scripts" / "compat_table_md.py"

if not MATRIX_PATH.is_file():  # e.g. tests run from an sdist without compat/
    pytest.skip("compat/matrix.toml is not in this checkout", allow_module_level=True)

MATRIX = tomllib.loads(MATRIX_PATH.read_text(encoding="utf-8"))
ROWS: dict = MATRIX["rows"]
COMMON: dict = MATRIX.get("common", {})
TABLE = compat.compat_table()
PATCHES = list(TABLE)
DEFAULT_ROW = (ROOT / "noxfile.py").read_text(encoding="utf-8").split('DEFAULT_ROW = "', 1)[1].split('"', 1)[0]
VERSIONED = ("torch", "transformers", "tokenizers", "huggingface_hub", "datasets", "trl", "accelerate")
REQUIRED = (
    "name",
    "python",
    "torch",
    "transformers",
    "tokenizers",
    "huggingface_hub",
    "datasets",
    "trl",
    "accelerate",
    "why",
)
STATES = {compat.APPLY, compat.NATIVE, compat.UNTESTED, compat.UNSUPPORTED, compat.ABSENT}


def row_version(row: dict, distribution: str) -> str | None:
    return row.get(distribution)


# ------------------------------------------------------------------ the matrix itself


def test_matrix_rows_are_well_formed():
    assert ROWS, "compat/matrix.toml has no rows"
    for key, row in ROWS.items():
        missing = [f for f in REQUIRED if f not in row]
        assert not missing, f"row {key!r} lacks {missing}"
        assert row["name"] == key, f"row {key!r} has name {row['name']!r}"
        if "unsloth" in row:  # its trainer module is loaded with its GPU-only imports stood in
            assert key == DEFAULT_ROW and row["unsloth"] == row["unsloth_zoo"], (key, row["unsloth"])
        assert row["torch"].endswith("+cpu"), f"row {key!r}: torch must be the +cpu build, got {row['torch']}"
        expect = row.get("expect", {})
        for patch in PATCHES:
            assert patch in expect, f"row {key!r}: expect.{patch} is missing"
            assert expect[patch] in STATES, f"row {key!r}: expect.{patch} = {expect[patch]!r}"
            assert f"{patch}_fixes" in expect, f"row {key!r}: expect.{patch}_fixes is missing"
        unknown = set(expect) - set(PATCHES) - {f"{p}_fixes" for p in PATCHES}
        assert not unknown, f"row {key!r}: expect names unknown patches {sorted(unknown)}"


def test_rows_installed_without_dependencies_say_why():
    """``install_no_deps`` (see noxfile.row_requirements) moves only pins of the row, lists what they
    need instead, and the row's ``why`` says so, as it names every variable of the row's ``env``: a
    row never silently drops a declared dependency or changes how upstream runs."""
    for key, row in ROWS.items():
        moved = row.get("install_no_deps", [])
        assert set(moved) <= {d for d in VERSIONED if d in row and d != "torch"}, (key, moved)
        if moved:
            assert row.get("no_deps_requires"), f"row {key!r}: install_no_deps without no_deps_requires"
            assert "--no-deps" in row["why"], f"row {key!r}: its why must say what is installed with --no-deps"
        else:
            assert "no_deps_requires" not in row, f"row {key!r}: no_deps_requires without install_no_deps"
        for variable, value in row.get("env", {}).items():  # noxfile.run_row sets them for the tests
            assert isinstance(value, str) and variable in row["why"], f"row {key!r}: env {variable} not explained"


def test_the_heavy_tests_run_on_the_default_row_and_the_oldest_and_newest_transformers():
    """The tests marked ``heavy`` are skipped on rows without ``heavy_tests`` (conftest): the rows
    that keep them must span the matrix (the default session's row, the oldest and the newest
    transformers, a row without unsloth_zoo), or a release could lose them all."""
    from tests.support import heavy_rows

    default = DEFAULT_ROW
    heavy = heavy_rows()
    by_transformers = sorted(ROWS, key=lambda name: Version(ROWS[name]["transformers"]))
    assert default in heavy, heavy
    assert by_transformers[0] in heavy and by_transformers[-1] in heavy, (heavy, by_transformers)
    assert any("unsloth_zoo" not in ROWS[name] for name in heavy), heavy
    assert all(isinstance(ROWS[name]["heavy_tests"], bool) for name in heavy)


def test_row_pins_are_unique():
    seen = {}
    for key, row in ROWS.items():
        pins = tuple((d, row.get(d)) for d in (*VERSIONED, "python", "unsloth_zoo"))
        assert pins not in seen, f"rows {seen.get(pins)!r} and {key!r} pin the same versions"
        seen[pins] = key


# ------------------------------------------------------------------ decisions


@pytest.mark.parametrize("row_name", list(ROWS))
@pytest.mark.parametrize("patch", PATCHES)
def test_decision_matches_expect(row_name, patch):
    row = ROWS[row_name]
    version = row_version(row, TABLE[patch].distribution)
    decision = compat.decide(patch, version)
    expect = row["expect"]
    assert decision.state == expect[patch], (
        f"row {row_name}: {patch} on {TABLE[patch].distribution} {version} decided {decision.state!r} "
        f"({decision.reason}); compat/matrix.toml expects {expect[patch]!r}"
    )
    assert sorted(decision.fixes) == sorted(expect[f"{patch}_fixes"]), (
        f"row {row_name}: {patch} active fixes {sorted(decision.fixes)} != expected {sorted(expect[f'{patch}_fixes'])}"
    )


def test_newest_tested_is_the_newest_pin():
    for patch, entry in TABLE.items():
        pins = [Version(v) for row in ROWS.values() if (v := row_version(row, entry.distribution))]
        assert pins, f"no row pins {entry.distribution} (patch {patch})"
        assert entry.newest_tested == max(pins), (
            f"compat_table.toml: {patch}.newest_tested = {entry.newest_tested}, but the newest "
            f"{entry.distribution} in compat/matrix.toml is {max(pins)}; keep them equal"
        )


def _open_ended(needed: SpecifierSet, supported: SpecifierSet) -> bool:
    """A fix needed on every supported version (no upstream fix yet): no upper bound, and its
    lower bounds are no stricter than the supported range's."""
    if any(s.operator not in (">=", ">") for s in needed):
        return False
    lows = [Version(s.version) for s in supported if s.operator in (">=", ">")]
    return all(lows and Version(s.version) <= min(lows) for s in needed)


def test_every_fix_range_is_exercised():
    """Each fix is needed on some row and not needed on another (so both sides of its range
    run in CI), unless it is needed on every supported version (no upstream fix yet)."""
    problems = []
    for patch, entry in TABLE.items():
        versions = [Version(v) for row in ROWS.values() if (v := row_version(row, entry.distribution))]
        supported = [v for v in versions if entry.supported.contains(v, prereleases=True)]
        for fix in entry.fixes:
            needed_on = [v for v in supported if fix.needed.contains(v, prereleases=True)]
            native_on = [v for v in supported if not fix.needed.contains(v, prereleases=True)]
            if not needed_on:
                problems.append(f"{patch}.{fix.name} ({fix.needed}): no row where it is needed")
            if not native_on and not _open_ended(fix.needed, entry.supported):
                problems.append(f"{patch}.{fix.name} ({fix.needed}): no row where it is native")
    assert not problems, "compat/matrix.toml does not exercise these fix ranges:\n  " + "\n  ".join(problems)


def test_every_state_a_row_can_reach_is_documented():
    """The collator patch is tested absent at least once (transformers-only users)."""
    assert any(row["expect"].get("unsloth_collator") == compat.ABSENT for row in ROWS.values())


# ------------------------------------------------------------------ the running session


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


CURRENT_ROW = os.environ.get("UMI_COMPAT_ROW")


@pytest.mark.skipif(not CURRENT_ROW, reason="UMI_COMPAT_ROW is not set (not a nox matrix session)")
def test_session_runs_on_its_row_versions():
    assert CURRENT_ROW in ROWS, f"UMI_COMPAT_ROW={CURRENT_ROW!r} is not a row of compat/matrix.toml"
    row = ROWS[CURRENT_ROW]
    wrong = {}
    for dist in (*VERSIONED, "unsloth_zoo", "unsloth", "timm"):
        want = row.get(dist)
        have = _installed(dist)
        if have != want:
            wrong[dist] = (want, have)
    for dist, want in COMMON.items():
        if _installed(dist) != want:
            wrong[dist] = (want, _installed(dist))
    python = "{}.{}".format(*sys.version_info[:2])
    if python != row["python"]:
        wrong["python"] = (row["python"], python)
    assert not wrong, f"row {CURRENT_ROW}: installed versions differ from the pins (want, have): {wrong}"


@pytest.mark.skipif(not CURRENT_ROW, reason="UMI_COMPAT_ROW is not set (not a nox matrix session)")
def test_session_decisions_match_expect():
    """The decisions on the installed versions are the row's expected ones."""
    expect = ROWS[CURRENT_ROW]["expect"]
    for patch, entry in TABLE.items():
        decision = compat.decide(patch, compat.installed_version(entry.distribution))
        assert decision.state == expect[patch], (patch, decision.reason)
        assert sorted(decision.fixes) == sorted(expect[f"{patch}_fixes"]), patch


# ------------------------------------------------------------------ README block


def test_readme_version_tables_are_current():
    """Both generated blocks (tested rows, fixes with their releases) match compat_table.toml."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", str(README)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


#: The project's own patch plugins: its entry points into unsloth_multiimage.patches (pyproject.toml).
BUILT_IN_PATCH_PLUGINS = {
    name
    for name, target in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["entry-points"][
        "unsloth_multiimage"
    ].items()
    if target.startswith("unsloth_multiimage.patches.")
}


def test_fix_names_are_one_set_in_the_table_the_patches_the_matrix_and_the_readme():
    """Each built-in patch declares the fixes it reads (its ``Fix`` enum); its compat entry lists
    exactly those; the matrix expects only those; the table has a title for each patch and words for
    each fix (the README's generated tables)."""
    from unsloth_multiimage.engine import activation

    patches = {p.name: p for plugin, p in activation._load().patches if plugin in BUILT_IN_PATCH_PLUGINS}
    table = compat.compat_table()
    assert set(patches) == set(table), "a built-in patch without a compat entry, or an entry without a patch"
    for name, entry in table.items():
        listed = {f.name for f in entry.fixes}
        assert set(patches[name].fixes) == listed, name
        expected = set().union(*(set(row["expect"].get(f"{name}_fixes", [])) for row in ROWS.values()))
        assert expected <= listed, (name, expected - listed)
        assert all(f"{name}_fixes" in row["expect"] and name in row["expect"] for row in ROWS.values()), name
    assert all(entry.title and entry.title != name for name, entry in table.items())
    assert all(f.short for entry in table.values() for f in entry.fixes)


def test_a_patch_whose_fixes_disagree_with_its_entry_is_never_applied():
    from unsloth_multiimage.engine import activation
    from unsloth_multiimage.engine.decision import State
    from unsloth_multiimage.engine.patching import Patch

    entry = compat.compat_table()["mllama_processor"]
    patch = Patch(
        name="mllama_processor",
        module="json",
        attribute="dumps",
        make_wrapper=lambda d: None,
        compat=entry,
        fixes=("flat_images_regroup", "a_fix_the_table_does_not_list"),
    )
    import json

    decision = activation._decide(patch, json)
    assert decision.state == State.UNSUPPORTED and not decision.applies
    assert "a_fix_the_table_does_not_list" in decision.reason
