"""The timing loop the collator benchmarks share: unpatched and patched calls, alternating."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import unsloth_multiimage


def alternating(call: Callable[..., Any], *args: Any, repeats: int) -> tuple[list[float], list[float], Any]:
    """Seconds of ``repeats`` unpatched and ``repeats`` patched ``call(*args)``, taken in turn (so drift in
    the machine's load hits both alike), and what the last patched call returned."""
    t_off, t_on = [], []
    out = None
    for _ in range(repeats):
        unsloth_multiimage.deactivate()
        t0 = time.perf_counter()
        call(*args)
        t_off.append(time.perf_counter() - t0)
        unsloth_multiimage.activate()
        t0 = time.perf_counter()
        out = call(*args)
        t_on.append(time.perf_counter() - t0)
    return t_off, t_on, out
