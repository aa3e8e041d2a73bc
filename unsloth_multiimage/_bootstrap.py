"""What ``import unsloth_multiimage`` runs: decide, with ``os`` and ``sys`` only, when to activate.

Activation imports wrapt, pluggy and importlib.metadata and loads every plugin: about 100 ms in
a fresh interpreter, mostly other packages' imports (wrapt 2 alone pulls in asyncio). A script
that imports the plugin but never transformers, trl or unsloth_zoo should not pay that, so:

* a target library already imported (``import unsloth`` first): activate now;
* a plugin of another distribution installed (found by reading ``entry_points.txt`` files, no
  importlib.metadata): activate now, because its targets are unknown until it is loaded and it
  must hook them before they are imported;
* otherwise: a meta path finder that finds nothing itself completes the activation as soon as
  the outermost module of a trigger package (a package our own patches target) has executed on
  the importing thread: targets imported by then are patched at once, later ones by post-import
  hooks, before anything can call them. This work runs under that module's import lock only,
  never under the global import lock a finder is called with (another thread holding the
  plugin's lock while it imports would deadlock there).

``activate()``, ``deactivate()``, ``status()`` and friends settle a pending activation first.
"""

import os
import sys
from _thread import get_ident

from . import _env

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: this module must stay cheap to import
    from collections.abc import Callable
    from typing import Any

__all__ = ["TRIGGER_ROOTS", "complete", "is_disabled", "mode", "pending", "settle", "start", "third_party_plugins"]

#: Top-level packages whose import completes a deferred activation: the packages that the
#: built-in patches target (a test checks that this covers every built-in patch).
TRIGGER_ROOTS = frozenset({"transformers", "trl", "unsloth_zoo"})

_GROUP_HEADER = "[unsloth_multiimage]"
_OWN_DISTRIBUTION = "unsloth_multiimage"

_pending = False
_mode = "not started"
_depth = {}  # type: dict[int, int]  # thread id -> trigger-package modules executing on it
_activate = None  # type: Callable[[], None] | None  # the engine's activation, given to start()


def is_disabled() -> bool:
    """True when ``UNSLOTH_MULTIIMAGE_DISABLE`` turns the whole plugin off."""
    return _env.flag(_env.DISABLE)


def pending() -> bool:
    """True while activation waits for the first import of a trigger package."""
    return _pending


def mode() -> str:
    """How and when the activation ran in this process, or why it waits (for debugging)."""
    return _mode


def settle(how: str) -> None:
    """Mark the activation as decided (an explicit ``activate()``/``deactivate()`` ran)."""
    global _pending, _mode
    if _pending:
        _pending = False
        _mode = how


def complete(why: str) -> None:
    """Run a pending activation now (nothing when none is pending)."""
    if _pending:
        _run(why)


def _run(why: str) -> None:
    """Activate. Never raises: it may run inside someone else's import."""
    global _pending, _mode
    _pending = False
    _mode = f"activated on {why}"
    try:
        if _activate is None:
            raise RuntimeError("no activation callback: start() was not called")
        _activate()
    except Exception:  # a failed activation must not fail the user's import of transformers
        import logging

        _mode = f"activation on {why} FAILED (see the log)"
        logging.getLogger("unsloth_multiimage").exception(
            "unsloth_multiimage: activation on %s failed; no patch is applied", why
        )


def _normalize(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def third_party_plugins() -> "list[str] | None":
    """Distributions other than this one that declare the ``unsloth_multiimage`` entry-point group.

    Reads ``*.dist-info``/``*.egg-info`` ``entry_points.txt`` on ``sys.path`` the way the default
    path finder lays them out. Returns None when something on ``sys.path`` or ``sys.meta_path``
    could hold distributions this scan cannot see (a zip file, a custom finder): the caller then
    activates at once, since plugins it cannot see may target any module.
    """
    from _frozen_importlib_external import PathFinder  # importlib.machinery's, loaded at start-up

    for finder in sys.meta_path:
        if hasattr(finder, "find_distributions") and finder is not PathFinder:
            return None
    found = []
    for entry in sys.path:
        folder = entry or "."
        if folder.lower().endswith(".egg"):
            return None  # an easy_install egg keeps its metadata in EGG-INFO: not read here
        try:
            names = os.listdir(folder)
        except NotADirectoryError:
            return None  # a zip or egg file: distributions this scan cannot read
        except OSError:
            continue  # a missing folder holds nothing
        found += _declaring(folder, names)
    return found


def _declaring(folder: str, names: "list[str]") -> "list[str]":
    """The distributions (other than this one) whose metadata folders among ``names`` in ``folder``
    declare the entry-point group."""
    found = []
    for name in names:
        info, suffix = os.path.splitext(name)
        if suffix not in (".dist-info", ".egg-info"):
            continue
        dist = _normalize(info.split("-")[0])
        if dist != _OWN_DISTRIBUTION and _declares_group(os.path.join(folder, name)):
            found.append(dist)
    return found


def _declares_group(info_dir: str) -> bool:
    try:
        with open(os.path.join(info_dir, "entry_points.txt"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return any(line.strip() == _GROUP_HEADER for line in text.splitlines())


class _ActivatingLoader:
    """Stands in for a trigger module's loader: runs it, then completes the activation.

    The module's ``__loader__`` and ``__spec__.loader`` are put back to the real loader before
    the module executes (as wrapt's own import hooks do), so nothing sees this class afterwards.
    """

    def __init__(self, loader: "Any") -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> "Any":  # get_code, is_package, get_resource_reader, ...
        if name == "_loader":
            raise AttributeError(name)
        return getattr(self._loader, name)

    def create_module(self, spec: "Any") -> "Any":
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: "Any") -> None:
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        # Fire when the outermost module of a trigger package on this thread's import stack has
        # executed: a submodule finishing first would leave its importers (maybe a patch target)
        # half-initialised in sys.modules.
        me = get_ident()
        _depth[me] = _depth.get(me, 0) + 1
        try:
            self._loader.exec_module(module)
        finally:
            _depth[me] -= 1
            outermost = _depth[me] == 0
            if outermost:
                del _depth[me]
        if outermost:
            complete(f"import of {module.__name__}")


class _TriggerFinder:
    """A meta path finder that finds nothing of its own (see the module docstring).

    It stays in ``sys.meta_path`` after it fired (removing it while the import system iterates
    the list would skip the next finder); from then on it returns None at once.
    """

    def __init__(self) -> None:
        self._busy = set()  # type: set[str]

    def find_spec(self, fullname: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if not _pending or fullname in self._busy or fullname.partition(".")[0] not in TRIGGER_ROOTS:
            return None
        self._busy.add(fullname)  # the finders asked below may call back into the import system
        try:
            spec = None
            meta_path = list(sys.meta_path)
            after = meta_path[meta_path.index(self) + 1 :] if self in meta_path else meta_path
            for finder in after:
                find_spec = getattr(finder, "find_spec", None)
                if find_spec is not None:
                    spec = find_spec(fullname, path, target)
                    if spec is not None:
                        break
        finally:
            self._busy.discard(fullname)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec  # nothing to wrap: a later module of the package triggers instead
        if not isinstance(loader, _ActivatingLoader):
            spec.loader = _ActivatingLoader(loader)
        return spec


_FINDER = _TriggerFinder()


def start(activate: "Callable[[], None] | None" = None) -> None:
    """Called by ``import unsloth_multiimage`` with the engine's activation (imported only when it
    runs, so this module needs nothing above ``_env``): run it now, or arm the trigger. Without
    ``activate``, the callback given before (re-arming)."""
    global _pending, _mode, _activate
    if activate is not None:
        _activate = activate
    if is_disabled():
        _mode = f"disabled by {_env.DISABLE.name}"
        return
    imported = sorted(root for root in TRIGGER_ROOTS if root in sys.modules)
    others = None if imported else third_party_plugins()
    if imported:
        why = f"import of unsloth_multiimage ({', '.join(imported)} already imported)"
    elif others is None:
        why = "import of unsloth_multiimage (sys.path holds distributions only importlib.metadata can read)"
    elif others:
        why = f"import of unsloth_multiimage (plugins of other distributions: {', '.join(sorted(others))})"
    else:
        _pending = True
        _mode = f"waiting for the first import of {' or '.join(sorted(TRIGGER_ROOTS))}"
        if not any(f is _FINDER for f in sys.meta_path):
            sys.meta_path.insert(0, _FINDER)
        return
    _run(why)
