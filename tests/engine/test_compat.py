"""compat.decide over the real built-in table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as settings_hyp
from hypothesis import strategies as hst

from unsloth_multiimage.engine import compat

# The newest transformers the table says was tested (moves with every new matrix row), and
# versions just past it: the tests below hold for whichever release that is.
NEWEST = compat.compat_table()["mllama_processor"].newest_tested
_MAJOR, _MINOR, _PATCH = (*NEWEST.release, 0, 0)[:3]
NEXT_MINOR = f"{_MAJOR}.{_MINOR + 1}.0"

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
    assert "5.99.0" in d.reason and str(NEWEST) in d.reason
    assert "mixed_text_only_rows" not in d.fixes and "flat_images_regroup" in d.fixes
    changed = compat.decide("mllama_processor", "5.99.0", shape_problem="__call__ no longer accepts images")
    assert (changed.state, changed.applies) == ("untested", False)
    assert "no longer accepts images" in changed.reason and str(NEWEST) in changed.reason


def test_decide_shape_problem_is_ignored_inside_the_tested_range() -> None:
    # (activation refuses to wrap a missing target itself; decide only gates on versions here)
    assert compat.decide("mllama_processor", str(NEWEST), shape_problem="whatever").state == "apply"


@pytest.mark.parametrize(
    "version",
    [
        f"{NEXT_MINOR}.dev0",
        f"{_MAJOR}.{_MINOR}.{_PATCH + 1}rc1",
        f"{_MAJOR}.{_MINOR}.{_PATCH}.post1",
        f"{_MAJOR + 1}.0.0a1",
    ],
)
def test_decide_prerelease_newer_than_tested_is_untested(version: str) -> None:
    d = compat.decide("mllama_processor", version)
    assert d.state == "untested" and d.applies
    assert version in d.reason


def test_decide_prerelease_of_the_newest_tested_is_in_range() -> None:
    assert compat.decide("mllama_processor", f"{_MAJOR}.{_MINOR}.{_PATCH}rc1").state == "apply"


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
