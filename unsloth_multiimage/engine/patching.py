"""Declarative, reversible patches applied with wrapt.

A :class:`Patch` is data: which attribute of which module to wrap, the wrapper factory, and
how to check that the target still has the shape the wrapper expects. Applying wraps the
attribute with :class:`wrapt.FunctionWrapper` (the original stays reachable as
``__wrapped__``); reverting puts back the very object that was there before (``is``-identical),
or deletes the attribute when it was inherited.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import wrapt

if TYPE_CHECKING:
    from .compat import PatchCompat

__all__ = [
    "Patch",
    "AppliedPatch",
    "Wrapper",
    "TargetAbsent",
    "resolve_parent",
    "signature_accepts",
    "wants_keyword",
    "AnyObjectProxy",
]

# wrapper(wrapped, instance, args, kwargs) -> result, the wrapt wrapper protocol.
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]
_MISSING = object()

# A proxy of an upstream object (a processor, a model). wrapt's stubs make ObjectProxy generic, but
# wrapt 1.x (still supported) cannot be subscripted at run time.
if TYPE_CHECKING:
    AnyObjectProxy = wrapt.ObjectProxy[Any]
else:
    AnyObjectProxy = wrapt.ObjectProxy


class TargetAbsent(str):
    """What a ``shape_check`` returns when the target is a stand-in on this machine (e.g. a class a
    library puts in place of a GPU-only one on CPU): nothing to patch, said at debug level (the
    patch is "absent"), where any other problem is a warning."""


@dataclass(frozen=True)
class Patch:
    """One patch, declared as data.

    Attributes:
        name: unique name, also the key in the compat table and in
            ``UNSLOTH_MULTIIMAGE_DISABLE_PATCHES``.
        module: dotted module that holds the target (a post-import hook waits for it).
        attribute: dotted path inside the module, e.g. ``"MllamaProcessor.__call__"``.
        make_wrapper: ``make_wrapper(decision) -> wrapper``; the decision tells which fixes
            are active on the installed version. A factory that declares a keyword parameter
            ``adapters`` also gets the model-adapter lookup
            (:class:`~unsloth_multiimage.adapters.AdapterLookup`), handed in by the engine.
        shape_check: ``shape_check(target) -> problem or None``; says what changed when the
            target no longer looks like what the wrapper was written for (a :class:`TargetAbsent`
            problem: the target is a stand-in here, nothing to patch). A missing target is
            reported as missing unless ``shape_check(None)`` names a stand-in.
        compat: compat entry for patches that are not in the built-in table (third parties).
        fixes: the fix names the wrapper reads from ``decision.fixes``; when given, they must be
            exactly the fixes of the patch's compat entry (checked when the plugins load).
    """

    name: str
    module: str
    attribute: str
    make_wrapper: Callable[..., Wrapper]
    shape_check: Callable[[Any], str | None] | None = None
    compat: PatchCompat | None = None
    fixes: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attribute}"

    def check_shape(self, module: Any) -> str | None:
        """None when the target exists and passes ``shape_check``, else the problem."""
        try:
            parent, attr = resolve_parent(module, self.attribute)
        except AttributeError as exc:
            return self._stand_in() or f"{self.target} is missing ({exc})"
        target = _lookup(parent, attr)
        if target is _MISSING:
            return self._stand_in() or f"{self.target} is missing"
        if self.shape_check is not None:
            return self.shape_check(target)
        return None

    def _stand_in(self) -> TargetAbsent | None:
        """A missing target's :class:`TargetAbsent` from ``shape_check(None)``, if it says one."""
        if self.shape_check is None:
            return None
        try:
            problem = self.shape_check(None)
        except Exception:  # a shape check written for real targets only
            return None
        return problem if isinstance(problem, TargetAbsent) else None


@dataclass
class AppliedPatch:
    """Book-keeping for an applied patch: where it went and what it replaced."""

    patch: Patch
    parent: Any
    attr: str
    original: Any  # the object in parent.__dict__ before patching, or _MISSING if inherited
    wrapper: Any = field(default=None)

    @classmethod
    def apply(cls, patch: Patch, module: Any, wrapper: Wrapper) -> AppliedPatch:
        parent, attr = resolve_parent(module, patch.attribute)
        original = vars(parent).get(attr, _MISSING) if isinstance(parent, type) else getattr(parent, attr, _MISSING)
        if original is _MISSING and not isinstance(parent, type):
            raise AttributeError(f"{patch.target} does not exist")
        # wrapt resolves the current attribute (inherited or own) and binds like the original.
        current = _lookup(parent, attr)
        if current is _MISSING:
            raise AttributeError(f"{patch.target} does not exist")
        function_wrapper = wrapt.FunctionWrapper(current, wrapper)
        setattr(parent, attr, function_wrapper)
        return cls(patch=patch, parent=parent, attr=attr, original=original, wrapper=function_wrapper)

    def is_in_place(self) -> bool:
        """True while our wrapper is still the attribute (a module reload replaces it)."""
        module = sys.modules.get(self.patch.module)
        if module is None:
            return False
        try:
            parent, attr = resolve_parent(module, self.patch.attribute)
        except AttributeError:
            return False
        return parent is self.parent and _own_attr(parent, attr) is self.wrapper

    def revert(self) -> None:
        """Put back exactly what was there (or remove our attribute if it was inherited)."""
        if _own_attr(self.parent, self.attr) is not self.wrapper:
            return  # replaced since (reload, or someone else patched on top): leave it alone
        if self.original is _MISSING:
            delattr(self.parent, self.attr)
        else:
            setattr(self.parent, self.attr, self.original)


def _lookup(parent: Any, attr: str) -> Any:
    """The attribute as instances see it: for a class, only what its MRO defines (never the
    metaclass's, e.g. ``type.__call__`` when the class lost its own ``__call__``)."""
    if isinstance(parent, type):
        for klass in parent.__mro__:
            if attr in vars(klass):
                return getattr(parent, attr)
        return _MISSING
    return getattr(parent, attr, _MISSING)


def _own_attr(parent: Any, attr: str) -> Any:
    if isinstance(parent, type):
        return vars(parent).get(attr, _MISSING)
    return getattr(parent, attr, _MISSING)


def resolve_parent(module: Any, attribute: str) -> tuple[Any, str]:
    """Resolve ``"A.B.c"`` inside ``module`` to ``(module.A.B, "c")``."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    *path, attr = attribute.split(".")
    parent = module
    for part in path:
        parent = getattr(parent, part)
    return parent, attr


def wants_keyword(func: Callable[..., Any], name: str) -> bool:
    """True when ``func`` declares a parameter called ``name`` (how the engine decides what to hand in)."""
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def signature_accepts(func: Any, *names: str, positional: int = 0) -> str | None:
    """Shape check helper: None if ``func`` takes ``positional`` positional args (after self)
    and the keyword ``names``, else what is missing."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return f"the signature of {getattr(func, '__qualname__', func)!r} cannot be read"
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        n_pos = positional
    else:
        n_pos = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if n_pos < positional:
        return f"{func.__qualname__} takes {n_pos} positional arguments, expected {positional}"
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    missing = [n for n in names if n not in sig.parameters and not has_var_kw]
    if missing:
        return f"{func.__qualname__} no longer accepts {', '.join(missing)}"
    return None
