"""Version gating: decide, per installed upstream version, what a patch does.

The data lives in ``compat_table.toml`` (shipped in the wheel); ``compat/matrix.toml`` in the
repository lists the CI rows and the decisions this module must compute for them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .decision import ABSENT, APPLY, NATIVE, UNSUPPORTED, UNTESTED, Decision

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "APPLY",
    "NATIVE",
    "UNTESTED",
    "UNSUPPORTED",
    "ABSENT",
    "Decision",
    "FixRange",
    "PatchCompat",
    "compat_table",
    "decide",
    "installed_version",
]


@dataclass(frozen=True)
class FixRange:
    """One upstream bug a patch repairs, and the versions where the bug exists."""

    name: str
    needed: SpecifierSet
    why: str


@dataclass(frozen=True)
class PatchCompat:
    """The compat entry of one patch."""

    name: str
    distribution: str
    target: str
    supported: SpecifierSet
    newest_tested: Version
    fixes: tuple[FixRange, ...]

    def fixes_needed(self, version: Version) -> frozenset[str]:
        return frozenset(f.name for f in self.fixes if f.needed.contains(version, prereleases=True))


def _parse_table(raw: Mapping[str, Any]) -> dict[str, PatchCompat]:
    table = {}
    for name, entry in raw.get("patches", {}).items():
        fixes = tuple(
            FixRange(name=f["name"], needed=SpecifierSet(f["needed"]), why=f["why"]) for f in entry.get("fixes", ())
        )
        table[name] = PatchCompat(
            name=name,
            distribution=entry["distribution"],
            target=entry["target"],
            supported=SpecifierSet(entry["supported"]),
            newest_tested=Version(entry["newest_tested"]),
            fixes=fixes,
        )
    return table


@functools.cache
def compat_table() -> dict[str, PatchCompat]:
    """The parsed compat table shipped with the package, keyed by patch name."""
    text = resources.files(__package__).joinpath("compat_table.toml").read_text(encoding="utf-8")
    return _parse_table(tomllib.loads(text))


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (from its metadata), or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def decide(
    patch: str,
    version: str | None,
    *,
    shape_problem: str | None = None,
    force: bool = False,
    table: Mapping[str, PatchCompat] | None = None,
) -> Decision:
    """Decide what ``patch`` does when its distribution is installed at ``version``.

    ``shape_problem`` is None when the target looks as expected, else a description of what
    changed (only consulted for versions newer than the newest tested one, and when forced).
    ``force`` (``UNSLOTH_MULTIIMAGE_FORCE=1``) applies every fix whatever the version says.
    """
    entry = (table or compat_table())[patch]
    dist = entry.distribution
    if version is None:
        return Decision(ABSENT, f"{dist} is not installed", applies=False)
    try:
        parsed = Version(version)
    except InvalidVersion:
        parsed = None
    if force:
        fixes = frozenset(f.name for f in entry.fixes)
        return Decision(
            APPLY,
            f"UNSLOTH_MULTIIMAGE_FORCE=1: applied to {dist} {version} regardless of the compat table",
            applies=True,
            version=version,
            fixes=fixes,
        )
    if parsed is None:
        return Decision(
            UNSUPPORTED, f"{dist} version {version!r} cannot be parsed; not patched", applies=False, version=version
        )
    if _newer_than(parsed, entry.newest_tested):
        return _untested(entry, version, shape_problem)
    return _tested(entry, parsed, version)


def _newer_than(parsed: Version, newest_tested: Version) -> bool:
    # Compare release numbers only, so 5.25.0.dev0 counts as newer than 5.24.0.
    return parsed.release > newest_tested.release or (
        parsed.release == newest_tested.release and parsed > newest_tested
    )


def _untested(entry: PatchCompat, version: str, shape_problem: str | None) -> Decision:
    """A version newer than the newest tested: the newest tested one's fixes, when the shape holds."""
    dist = entry.distribution
    fixes = entry.fixes_needed(entry.newest_tested)
    base = f"{dist} {version} is newer than the newest tested {entry.newest_tested}"
    if shape_problem is not None:
        return Decision(
            UNTESTED, f"{base} and {shape_problem}; not patched", applies=False, version=version, fixes=fixes
        )
    if not fixes:
        return Decision(NATIVE, f"{base}; fixed upstream since the tested versions", applies=False, version=version)
    return Decision(
        UNTESTED,
        f"{base}; the target still has the expected shape, so applied ({', '.join(sorted(fixes))})",
        applies=True,
        version=version,
        fixes=fixes,
    )


def _tested(entry: PatchCompat, parsed: Version, version: str) -> Decision:
    """A version at most the newest tested: the fixes its table rows name, inside the supported range."""
    dist = entry.distribution
    if not entry.supported.contains(parsed, prereleases=True):
        return Decision(
            UNSUPPORTED,
            f"{dist} {version} is outside the supported range {entry.supported}; not patched",
            applies=False,
            version=version,
        )
    fixes = entry.fixes_needed(parsed)
    native = sorted(f.name for f in entry.fixes if f.name not in fixes)
    if not fixes:
        return Decision(NATIVE, f"{dist} {version} fixes all of it upstream", applies=False, version=version)
    reason = f"{dist} {version} needs {', '.join(sorted(fixes))}"
    if native:
        reason += f"; native upstream: {', '.join(native)}"
    return Decision(APPLY, reason, applies=True, version=version, fixes=fixes)
