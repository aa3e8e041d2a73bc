"""The reader of ``compat_table.toml`` (shipped in the wheel), the one place release facts are
written: :func:`decide` says per installed version what a patch does, :func:`has` whether a
release does something by itself. ``compat/matrix.toml`` in the repository lists the CI rows and
the decisions this module must compute for them.
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
    "Capability",
    "capabilities",
    "compat_table",
    "family_ranges",
    "decide",
    "has",
    "installed_version",
    "parse_version",
    "since",
]


@dataclass(frozen=True)
class FixRange:
    """One upstream bug a patch repairs, and the versions where the bug exists (``short``: a few
    words for tables)."""

    name: str
    needed: SpecifierSet
    why: str
    short: str = ""


@dataclass(frozen=True)
class PatchCompat:
    """The compat entry of one patch."""

    name: str
    distribution: str
    target: str
    supported: SpecifierSet
    newest_tested: Version
    fixes: tuple[FixRange, ...]
    title: str = ""

    def fixes_needed(self, version: Version) -> frozenset[str]:
        return frozenset(f.name for f in self.fixes if f.needed.contains(version, prereleases=True))


def _parse_table(raw: Mapping[str, Any]) -> dict[str, PatchCompat]:
    table = {}
    for name, entry in raw.get("patches", {}).items():
        fixes = tuple(
            FixRange(name=f["name"], needed=SpecifierSet(f["needed"]), why=f["why"], short=f.get("short", ""))
            for f in entry.get("fixes", ())
        )
        table[name] = PatchCompat(
            name=name,
            distribution=entry["distribution"],
            target=entry["target"],
            supported=SpecifierSet(entry["supported"]),
            newest_tested=Version(entry["newest_tested"]),
            fixes=fixes,
            title=entry.get("title", name),
        )
    return table


@dataclass(frozen=True)
class Capability:
    """Something a distribution's releases do by themselves, from the first release that does it."""

    distribution: str
    name: str
    since: Version
    what: str


@functools.cache
def _raw_table() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("compat_table.toml").read_text(encoding="utf-8")
    raw: dict[str, Any] = tomllib.loads(text)
    return raw


@functools.cache
def compat_table() -> dict[str, PatchCompat]:
    """The parsed compat table shipped with the package, keyed by patch name."""
    return _parse_table(_raw_table())


@functools.cache
def capabilities() -> dict[tuple[str, str], Capability]:
    """The table's ``[releases.<distribution>]`` facts, keyed by (distribution, capability)."""
    return {
        (dist, name): Capability(dist, name, Version(entry["since"]), entry["what"])
        for dist, facts in _raw_table().get("releases", {}).items()
        for name, entry in facts.items()
    }


@functools.cache
def family_ranges(section: str) -> dict[str, SpecifierSet]:
    """A table of model family -> versions of the family's distribution, e.g. the
    ``[packing.mrope_text_positions]`` table for ``section="packing.mrope_text_positions"``."""
    found: Any = _raw_table()
    for key in section.split("."):
        found = found.get(key, {})
    return {family: SpecifierSet(spec) for family, spec in found.items()}


def parse_version(version: str | Version | None) -> Version | None:
    """The one reading of a version string: None when absent or unreadable."""
    if version is None or isinstance(version, Version):
        return version
    try:
        return Version(version)
    except InvalidVersion:
        return None


def has(distribution: str, capability: str, version: str | Version | None) -> bool:
    """Whether release ``version`` of ``distribution`` does ``capability`` by itself. An absent or
    unreadable version counts as older than every release (as :func:`decide`: unsupported)."""
    parsed = parse_version(version)
    fact = capabilities()[(distribution, capability)]
    return parsed is not None and parsed.release >= fact.since.release


def since(distribution: str, capability: str) -> str:
    """The first release of ``distribution`` that does ``capability`` (for messages)."""
    return str(capabilities()[(distribution, capability)].since)


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
    parsed = parse_version(version)
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
