"""Discovering and loading plugins from the ``unsloth_multiimage`` entry-point group.

One failing plugin (import error, misspelt hook, bad return value) is logged and recorded,
and never stops the others.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from ..adapters import AdapterLookup
from ..hooks import PROJECT_NAME
from . import hookspecs
from .patching import Patch

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT_NAME

__all__ = ["ENTRY_POINT_GROUP", "PluginRecord", "LoadedPlugins", "load_plugins"]


@dataclass(frozen=True)
class PluginRecord:
    """One entry point of the group: where it came from and whether it loaded."""

    name: str
    value: str
    distribution: str | None
    loaded: bool
    error: str | None = None
    blocked: bool = False


@dataclass
class LoadedPlugins:
    """The plugin manager, what was found, the patches, and the adapter lookup handed to patches."""

    manager: pluggy.PluginManager
    records: list[PluginRecord]
    patches: list[tuple[str, Patch]]  # (plugin name, patch)
    adapters: AdapterLookup


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _dist_name(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def load_plugins(blocked: frozenset[str] = frozenset(), extra: Iterable[tuple[str, Any]] = ()) -> LoadedPlugins:
    """Load every plugin of the entry-point group (and ``extra`` (name, object) pairs).

    ``blocked`` names plugins that are not even imported.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs.PatchSpecs)
    candidates: list[tuple[str, str, str | None, Any]] = [
        (ep.name, ep.value, _dist_name(ep), ep) for ep in _entry_points()
    ]
    candidates += [(name, repr(obj), None, obj) for name, obj in extra]
    records = _register_all(pm, candidates, blocked)
    patches = _collect_patches(pm, records)
    return LoadedPlugins(
        manager=pm, records=records, patches=patches, adapters=AdapterLookup(pm.hook.umi_model_adapter)
    )


def _register_all(
    pm: pluggy.PluginManager, candidates: list[tuple[str, str, str | None, Any]], blocked: frozenset[str]
) -> list[PluginRecord]:
    """Register each ``(name, value, distribution, source)`` candidate once; a record for each."""
    records: list[PluginRecord] = []
    seen: set[str] = set()
    for name, value, dist, source in candidates:
        if name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(name)
        if name in blocked:
            pm.set_blocked(name)
            records.append(PluginRecord(name, value, dist, loaded=False, blocked=True))
            logger.info("unsloth_multiimage: plugin %r blocked by UNSLOTH_MULTIIMAGE_DISABLE_PATCHES", name)
            continue
        records.append(_register(pm, name, value, dist, source))
    return records


def _register(pm: pluggy.PluginManager, name: str, value: str, dist: str | None, source: Any) -> PluginRecord:
    """Load and register one plugin; a broken one is recorded with its error, not raised."""
    try:
        plugin = source.load() if isinstance(source, importlib.metadata.EntryPoint) else source
        pm.register(plugin, name=name)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError:
            pm.unregister(name=name)
            raise
    except Exception as exc:  # a broken plugin must not stop the others
        message = _describe_failure(name, value, exc, pm)
        logger.error("unsloth_multiimage: %s", message)
        return PluginRecord(name, value, dist, loaded=False, error=message)
    return PluginRecord(name, value, dist, loaded=True)


def _collect_patches(pm: pluggy.PluginManager, records: list[PluginRecord]) -> list[tuple[str, Patch]]:
    """``(plugin name, patch)`` for every patch of the loaded plugins; a plugin whose ``umi_patches()``
    fails or clashes is marked failed in ``records`` (in place) and contributes none."""
    patches: list[tuple[str, Patch]] = []
    names: set[str] = set()
    for name in [r.name for r in records if r.loaded]:
        plugin = pm.get_plugin(name)
        impls = [i for i in pm.hook.umi_patches.get_hookimpls() if i.plugin is plugin]
        for impl in impls:
            try:
                result = _returned_patches(impl, names)
            except Exception as exc:
                message = f"plugin {name!r} failed in umi_patches(): {type(exc).__name__}: {exc}"
                logger.error("unsloth_multiimage: %s", message)
                records[:] = [
                    PluginRecord(r.name, r.value, r.distribution, False, message) if r.name == name else r
                    for r in records
                ]
                break
            for p in result:
                names.add(p.name)
                patches.append((name, p))
    return patches


def _returned_patches(impl: Any, names: set[str]) -> list[Patch]:
    """What one ``umi_patches()`` implementation returns, checked: Patches only, with names that no
    other plugin took (``names``) and that it does not repeat."""
    returned: Any = impl.function()
    result = list(returned)
    bad = [p for p in result if not isinstance(p, Patch)]
    if bad:
        raise TypeError(f"umi_patches() returned {bad[0]!r}, not a Patch")
    taken = [p.name for p in result if p.name in names]
    if taken:
        raise ValueError(f"patch name {taken[0]!r} is already provided by another plugin")
    own = [p.name for p in result]
    twice = [n for i, n in enumerate(own) if n in own[:i]]
    if twice:
        raise ValueError(f"patch name {twice[0]!r} is returned twice by this plugin")
    return result


def _describe_failure(name: str, value: str, exc: Exception, pm: pluggy.PluginManager) -> str:
    if isinstance(exc, pluggy.PluginValidationError):
        known = ", ".join(sorted(n for n in dir(pm.hook) if n.startswith("umi_")))
        return f"plugin {name!r} ({value}) was rejected: {exc}. Known hooks: {known} (misspelt hook name?)"
    return f"plugin {name!r} ({value}) failed to load: {type(exc).__name__}: {exc}"
