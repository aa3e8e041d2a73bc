"""What the installed upstream releases do, read from the package's fact table
(``unsloth_multiimage/engine/compat_table.toml``): tests never write a release number of their own."""

from __future__ import annotations

from unsloth_multiimage.engine import compat

__all__ = ["does", "fix_needed", "fix_native", "installed", "supported"]


def installed(patch: str) -> str | None:
    """The installed version of the distribution ``patch`` targets (None: not installed)."""
    return compat.installed_version(compat.compat_table()[patch].distribution)


def supported(patch: str) -> bool:
    """``patch``'s distribution is installed at a version inside the patch's supported range."""
    version = compat.parse_version(installed(patch))
    return version is not None and compat.compat_table()[patch].supported.contains(version, prereleases=True)


def fix_needed(patch: str, fix: str) -> bool:
    """The installed release has the upstream bug ``fix`` of ``patch`` (False when not installed)."""
    version = compat.parse_version(installed(patch))
    [entry] = [f for f in compat.compat_table()[patch].fixes if f.name == fix]
    return version is not None and entry.needed.contains(version, prereleases=True)


def fix_native(patch: str, fix: str) -> bool:
    """The installed release does ``fix`` itself (installed, and the bug is not in it)."""
    return installed(patch) is not None and not fix_needed(patch, fix)


def does(distribution: str, capability: str) -> bool:
    """The installed release of ``distribution`` does ``capability`` (a ``[releases.*]`` key)."""
    return compat.has(distribution, capability, compat.installed_version(distribution))
