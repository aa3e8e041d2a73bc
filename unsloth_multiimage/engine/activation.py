"""Activating and deactivating the registered patches (the OpenTelemetry instrumentor pattern).

``activate()`` is idempotent and thread-safe; ``import unsloth_multiimage`` runs it
(:func:`activate_on_import`). A patch whose target module is not imported yet gets one wrapt
post-import hook per module (wrapt drops it once it fired; the next activate() re-arms it; it does
nothing while the plugin is inactive), so the import order of ``unsloth_multiimage`` and the
patched library does not matter.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import wrapt

from .. import _env
from .decision import Decision, State
from .patching import AppliedPatch, Patch, TargetAbsent, wants_keyword
from .plugins import LoadedPlugins, PluginRecord, load_plugins

if TYPE_CHECKING:
    from ..adapters import ModelAdapter

logger = logging.getLogger("unsloth_multiimage")
# The library convention: no output unless the application configures logging. Set here, not in
# the package __init__, so that `import unsloth_multiimage` does not import logging.
if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
    logger.addHandler(logging.NullHandler())

__all__ = [
    "PatchStatus",
    "activate",
    "activate_on_import",
    "deactivate",
    "find_adapter",
    "status",
    "plugin_records",
    "is_disabled",
]


@dataclass(frozen=True)
class PatchStatus:
    """One patch as seen now: what it targets, what the compat table decided, and whether it is in."""

    name: str
    plugin: str
    target: str
    distribution: str | None
    installed_version: str | None
    decision: State
    reason: str
    applied: bool
    fixes: tuple[str, ...] = ()


def is_disabled() -> bool:
    """True when ``UNSLOTH_MULTIIMAGE_DISABLE`` turns the whole plugin off."""
    return _env.flag(_env.DISABLE)


def _blocked_names() -> frozenset[str]:
    return _env.names(_env.DISABLE_PATCHES)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.loaded: LoadedPlugins | None = None
        self.active = False
        self.applied: dict[str, AppliedPatch] = {}
        self.decisions: dict[str, Decision] = {}
        self.hooked_modules: set[str] = set()
        self.blocked: frozenset[str] = frozenset()


_state = _State()


def _load() -> LoadedPlugins:
    blocked = _blocked_names()
    if _state.loaded is None or blocked != _state.blocked:
        _state.blocked = blocked
        _state.loaded = load_plugins(blocked=blocked)
        _warn_unknown_names(_state.loaded, blocked)
    return _state.loaded


_warned_names: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned_names:
        _warned_names.add(key)
        # warnings, not logging: the library logger has no output unless the application sets one up.
        warnings.warn(message, UserWarning, stacklevel=4)


def _warn_unknown_names(loaded: LoadedPlugins, blocked: frozenset[str]) -> None:
    """A misspelt variable or patch name would be ignored silently: warn once per name, naming
    the closest valid one."""
    valid = [var.name for var in _env.VARIABLES]
    for name in _env.unknown_variables():
        near = _env.closest(name, valid, prefix=_env.PREFIX)
        hint = f"; did you mean {near}?" if near else f"; the plugin reads: {', '.join(valid)}"
        _warn_once(f"var:{name}", f"unsloth_multiimage: {name} is not a variable the plugin reads (ignored){hint}")
    known = {r.name for r in loaded.records} | {patch.name for _, patch in loaded.patches}
    for name in sorted(blocked - known):
        near = _env.closest(name, known)
        hint = f"did you mean {near!r}?" if near else f"known names: {', '.join(sorted(known))}"
        _warn_once(
            f"patch:{name}",
            f"unsloth_multiimage: {_env.DISABLE_PATCHES.name} names {name!r}, which is no patch or plugin "
            f"(nothing blocked by it); {hint}",
        )


def _compat_entry(patch: Patch) -> Any:
    from . import compat

    return patch.compat or compat.compat_table().get(patch.name)


def _decide(patch: Patch, module: Any | None) -> Decision:
    from . import compat

    entry = _compat_entry(patch)
    if entry is None:
        return Decision(State.UNSUPPORTED, f"no compat entry for patch {patch.name!r}; never patched blindly", False)
    version = compat.installed_version(entry.distribution)
    listed = {f.name for f in entry.fixes}
    if patch.fixes and set(patch.fixes) != listed:
        reason = (
            f"patch {patch.name!r} reads the fixes {sorted(patch.fixes)} but its compat entry lists {sorted(listed)}; "
            f"not patched (a plugin bug: the two must name the same fixes)"
        )
        logger.error("unsloth_multiimage: %s", reason)
        return Decision(State.UNSUPPORTED, reason, False, version)
    shape = patch.check_shape(module) if module is not None else None
    if isinstance(shape, TargetAbsent):
        return Decision(State.ABSENT, f"{shape}; nothing to patch", False, version)
    force = _env.flag(_env.FORCE)
    decision = compat.decide(patch.name, version, shape_problem=shape, force=force, table={patch.name: entry})
    if force and version is not None:
        logger.warning("unsloth_multiimage: %s", decision.reason)
    if module is not None and shape is not None and decision.applies:
        # Forced, or in the tested range yet missing its target: never wrap what is not there.
        decision = Decision(
            decision.state, f"{decision.reason}; but {shape}; not patched", False, version, decision.fixes
        )
        logger.warning("unsloth_multiimage: %s: %s", patch.name, decision.reason)
    return decision


def _apply_one(plugin: str, patch: Patch, module: Any) -> None:
    with _state.lock:
        if not _state.active or patch.name in _state.blocked or plugin in _state.blocked:
            return
        existing = _state.applied.get(patch.name)
        if existing is not None:
            if existing.is_in_place():
                return  # idempotent
            # The module was reloaded (or the attribute replaced): the old wrapper is gone.
            logger.warning("unsloth_multiimage: %s was replaced since it was patched; patching again", patch.target)
            del _state.applied[patch.name]
        decision = _decide(patch, module)
        _state.decisions[patch.name] = decision
        if decision.state == State.UNTESTED:
            logger.warning("unsloth_multiimage: %s: %s", patch.name, decision.reason)
        if not decision.applies:
            logger.debug("unsloth_multiimage: %s not applied: %s", patch.name, decision.reason)
            return
        try:
            wrapper = _make_wrapper(patch, decision)
            _state.applied[patch.name] = AppliedPatch.apply(patch, module, wrapper)
        except Exception as exc:  # a patch that cannot be applied leaves the target untouched
            _state.decisions[patch.name] = Decision(
                decision.state, f"failed to apply: {type(exc).__name__}: {exc}", False, decision.version
            )
            logger.warning("unsloth_multiimage: could not apply %s: %s", patch.name, exc)
            return
        logger.debug("unsloth_multiimage: applied %s (%s)", patch.name, decision.reason)


def _make_wrapper(patch: Patch, decision: Decision) -> Any:
    """Call the patch's wrapper factory, handing in the adapter lookup when it asks for it
    (by declaring an ``adapters`` parameter: pluggy-style injection by name)."""
    if wants_keyword(patch.make_wrapper, "adapters"):
        return patch.make_wrapper(decision, adapters=_load().adapters)
    return patch.make_wrapper(decision)


def _on_import(module: Any) -> None:
    # wrapt fires a post-import hook once: forget it, so the next activate() re-arms it for a
    # module that is removed from sys.modules and imported again.
    _state.hooked_modules.discard(module.__name__)
    loaded = _state.loaded
    if loaded is None:
        return
    for plugin, patch in loaded.patches:
        if patch.module == module.__name__:
            _apply_one(plugin, patch, module)


def activate() -> list[PatchStatus]:
    """Apply every registered patch whose target is installed and needs it.

    Targets not imported yet are patched the moment they are imported. Calling it again is a
    no-op for patches already in place (and re-applies patches lost to a module reload).
    Returns :func:`status`. Does nothing when ``UNSLOTH_MULTIIMAGE_DISABLE=1``.
    """
    _activate()
    return status()


def activate_on_import() -> None:
    """What ``import unsloth_multiimage`` runs: :func:`activate` without its status report (versions
    are decided when a target is imported). Never raises: a failed activation must not fail the
    user's import; it is logged and no patch is applied.

    Why at import and not at the first import of a patched library: the activation (wrapt, pluggy,
    the entry points, the plugins) costs the same either way in a script that imports one, and a
    deferral needed an import hook of its own beside wrapt's (benchmarks/README.md, "The bootstrap,
    decided by a measurement").
    """
    try:
        _activate()
    except Exception:
        logger.exception("unsloth_multiimage: activation on import failed; no patch is applied")


def _activate() -> None:
    """activate() without building the status report."""
    if is_disabled():
        logger.info("unsloth_multiimage: disabled by %s", _env.DISABLE.name)
        return
    with _state.lock:
        loaded = _load()
        _state.active = True
        for plugin, patch in loaded.patches:
            if patch.name in _state.blocked or plugin in _state.blocked:
                continue
            module = sys.modules.get(patch.module)
            if module is not None:
                _apply_one(plugin, patch, module)
            elif patch.module not in _state.hooked_modules:
                _state.hooked_modules.add(patch.module)
                wrapt.register_post_import_hook(_on_import, patch.module)


def deactivate() -> None:
    """Undo every applied patch, restoring the original objects exactly (``is``-identical).

    Post-import hooks stay registered (wrapt cannot remove them) but do nothing until the next
    :func:`activate`.
    """
    with _state.lock:
        _state.active = False
        for applied in reversed(list(_state.applied.values())):
            applied.revert()
        _state.applied.clear()
        _state.decisions.clear()


def _reset_for_tests() -> None:
    """Deactivate and forget the loaded plugins (the next activate() reloads them)."""
    with _state.lock:
        deactivate()
        _state.loaded = None


def plugin_manager() -> Any:
    """The pluggy PluginManager holding every loaded plugin (for calling hooks)."""
    with _state.lock:
        return _load().manager


def find_adapter(processor: Any, config: Any = None) -> ModelAdapter | None:
    """The model adapter the patches use for ``processor`` (see :class:`~unsloth_multiimage.adapters.AdapterLookup`)."""
    with _state.lock:
        lookup = _load().adapters
    return lookup(processor, config)


def plugin_records() -> list[PluginRecord]:
    """The plugins found in the entry-point group, loaded or not, with their errors."""
    with _state.lock:
        return list(_load().records)


def status() -> list[PatchStatus]:
    """One record per known patch (and one per plugin that failed to load)."""
    from . import compat

    with _state.lock:
        loaded = _load()
        out: list[PatchStatus] = []
        for plugin, patch in loaded.patches:
            entry = _compat_entry(patch)
            dist = entry.distribution if entry else None
            version = compat.installed_version(dist) if dist else None
            applied = _state.applied.get(patch.name)
            in_place = applied is not None and applied.is_in_place()
            if patch.name in _state.blocked or plugin in _state.blocked:
                decision = Decision(State.BLOCKED, f"blocked by {_env.DISABLE_PATCHES.name}", False, version)
            elif is_disabled():
                decision = Decision(State.DISABLED, f"the plugin is off ({_env.DISABLE.name}=1)", False, version)
            elif patch.name in _state.decisions:
                decision = _state.decisions[patch.name]
                if applied is not None and not in_place:
                    decision = Decision(
                        State.LOST, "the target was replaced (module reloaded?); call activate() again", False, version
                    )
            elif not _state.active:
                decision = Decision(State.INACTIVE, "activate() has not run (or deactivate() did)", False, version)
            elif version is None and dist is not None:
                decision = compat.decide(patch.name, None, table={patch.name: entry})
            else:
                would = compat.decide(patch.name, version, table={patch.name: entry}) if entry else None
                hint = f" (by version: {would.state}: {would.reason})" if would else ""
                decision = Decision(State.PENDING, f"applied when {patch.module} is imported{hint}", False, version)
            out.append(
                PatchStatus(
                    name=patch.name,
                    plugin=plugin,
                    target=patch.target,
                    distribution=dist,
                    installed_version=version,
                    decision=decision.state,
                    reason=decision.reason,
                    applied=in_place,
                    fixes=tuple(sorted(decision.fixes)),
                )
            )
        for record in loaded.records:
            if record.error:
                out.append(
                    PatchStatus(
                        record.name,
                        record.name,
                        record.value,
                        record.distribution,
                        None,
                        State.ERROR,
                        record.error,
                        False,
                    )
                )
        return out
