"""Replace attributes of a live object for one block, then put back exactly what was there.

Every temporary replacement the patches make goes through :func:`swapped`: a collator's processor
seen through a proxy while upstream runs, a trainer's processor and private methods during a TRL
rollout, vLLM's constructors during ``load_vllm``, a tokenizer's padding side for one call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["swapped"]

_MISSING = object()
# One re-entrant lock for every swap: a swapped attribute is seen by every thread, so a second
# thread must not run the same code while it is in place (nor swap it again and restore the
# replacement as the original). Re-entrant: a swap inside a swapped call is the same thread's.
_LOCK = threading.RLock()


def _own(obj: Any, name: str) -> Any:
    """What ``obj`` holds itself under ``name``: its ``__dict__`` entry or slot, else _MISSING
    (an inherited class attribute or nothing: restored by deleting the replacement)."""
    namespace = getattr(obj, "__dict__", None)
    if isinstance(namespace, dict) and name in namespace:
        return namespace[name]
    if isinstance(obj, type):
        return _MISSING
    for klass in type(obj).__mro__:
        if name in getattr(klass, "__slots__", ()):
            return getattr(obj, name, _MISSING)
    return _MISSING


@contextlib.contextmanager
def swapped(obj: Any, /, **attrs: Any) -> Iterator[None]:
    """Set ``attrs`` on ``obj`` for the block; afterwards each attribute is the very object it was
    (``is``-identical), or absent again when ``obj`` did not hold it itself. The block runs under
    one process-wide re-entrant lock (see ``_LOCK``)."""
    with _LOCK:
        saved = {name: _own(obj, name) for name in attrs}
        try:
            for name, value in attrs.items():
                setattr(obj, name, value)
            yield
        finally:
            for name, original in saved.items():
                if original is _MISSING:
                    with contextlib.suppress(AttributeError):
                        delattr(obj, name)
                else:
                    setattr(obj, name, original)
