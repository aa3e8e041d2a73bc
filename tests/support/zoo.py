"""Load the installed unsloth_zoo release's REAL ``vision_utils`` on a CPU-only machine.

Releases before 2026.5 refuse to start their package ``__init__`` without a GPU (and all of
them want ``import unsloth`` first), but ``vision_utils.py`` itself only needs torch, PIL and
transformers. So: from 2026.5 on, the real import (``UNSLOTH_ZOO_DISABLE_GPU_INIT=1``); before,
or if that fails, register a bare package module whose ``__path__`` is the installed package folder
and import ``unsloth_zoo.vision_utils`` under it. Either way the code under test is upstream's
own file at the pinned version.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import types


def _version() -> tuple[int, ...]:
    return tuple(int(p) for p in importlib.metadata.version("unsloth_zoo").split(".")[:2])


def _forget() -> None:
    for name in [n for n in sys.modules if n == "unsloth_zoo" or n.startswith("unsloth_zoo.")]:
        del sys.modules[name]


def _bare_package(folder: str) -> types.ModuleType:
    pkg = types.ModuleType("unsloth_zoo")
    spec = importlib.machinery.ModuleSpec("unsloth_zoo", None, is_package=True)
    spec.submodule_search_locations = [folder]
    pkg.__spec__, pkg.__path__, pkg.__package__ = spec, [folder], "unsloth_zoo"
    pkg.__file__ = os.path.join(folder, "__init__.py")
    return pkg


def load_vision_utils() -> tuple[types.ModuleType, str]:
    """Return (``unsloth_zoo.vision_utils``, how it was loaded: "real" or "bare")."""
    loaded = sys.modules.get("unsloth_zoo.vision_utils")
    if loaded is not None:
        return loaded, "cached"
    spec = importlib.util.find_spec("unsloth_zoo")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("unsloth_zoo is not installed")
    os.environ.setdefault("UNSLOTH_ZOO_DISABLE_GPU_INIT", "1")
    if _version() >= (2026, 5):  # these releases have a GPU-less start-up path
        try:
            return importlib.import_module("unsloth_zoo.vision_utils"), "real"
        except Exception:
            _forget()
    import transformers  # noqa: F401  (import before any zoo module, as upstream expects)

    sys.modules["unsloth_zoo"] = _bare_package(list(spec.submodule_search_locations)[0])
    # 2025.9.x-2025.12.x import torchvision at the top but use it for video only; PyPI's
    # torchvision does not load beside the CPU torch build, so a stand-in is present while the
    # module is imported (vision_utils then runs with HAS_TORCHVISION = False: no video).
    stand_in = None
    if importlib.util.find_spec("torchvision") is None:
        stand_in = types.ModuleType("torchvision")
        stand_in.__version__ = "0.0.0"
        stand_in.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
        sys.modules["torchvision"] = stand_in
    try:
        return importlib.import_module("unsloth_zoo.vision_utils"), "bare"
    except BaseException:
        _forget()
        raise
    finally:
        if stand_in is not None and sys.modules.get("torchvision") is stand_in:
            del sys.modules["torchvision"]
