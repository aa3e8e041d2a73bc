"""Load unsloth's REAL ``unsloth.trainer`` (its ``UnslothVisionDataCollator`` subclass) on a CPU machine.

``import unsloth`` on CPU installs a stand-in ``unsloth.trainer`` whose collator raises (vision
collators need a GPU there), and the real ``unsloth/trainer.py`` imports two GPU-only modules at
its top: ``unsloth.models._utils`` (for ``is_bfloat16_supported``, which the collator never calls)
and ``unsloth.models.vision`` (for ``check_dataset_for_missing_videos``, the subclass's check that
a row's local *video* files exist; the tests' rows hold images only). So: a bare ``unsloth``
package (``__path__`` = the installed folder, its ``__init__`` not run), those two modules stood
in, ``unsloth.utils`` a bare package too (its ``__init__`` imports the GPU attention backends) with
what ``trainer.py`` takes from it, and everything else, ``trainer.py`` itself,
``unsloth.utils.packing`` and ``unsloth.utils.mm_packing`` among it, upstream's own files at the
pinned version. :func:`unload` puts ``sys.modules`` back.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any

#: The GPU-only modules stood in, and what stands in for what the trainer imports from them.
STAND_INS: dict[str, dict[str, Any]] = {
    "unsloth.models._utils": {"is_bfloat16_supported": lambda: False},
    "unsloth.models.vision": {"check_dataset_for_missing_videos": lambda *args, **kwargs: []},
}


#: What trainer.py imports from ``unsloth.utils`` (defined in ``unsloth/utils/packing.py``).
UTILS_EXPORTS = (
    "configure_padding_free",
    "configure_sample_packing",
    "enable_padding_free_metadata",
    "enable_sample_packing",
)


def _package(name: str, folder: str) -> types.ModuleType:
    module = types.ModuleType(name)
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [folder]
    module.__spec__, module.__path__, module.__package__ = spec, [folder], name
    module.__file__ = os.path.join(folder, "__init__.py")
    return module


def load() -> types.ModuleType:
    """The real ``unsloth.trainer`` module (imported through the import system, so the plugin's
    post-import hooks see it); raises ImportError when unsloth is not installed."""
    spec = importlib.util.find_spec("unsloth")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("unsloth is not installed")
    os.environ.setdefault("UNSLOTH_ZOO_DISABLE_GPU_INIT", "1")
    import unsloth_zoo.vision_utils  # noqa: F401  (the base class, patched, before the subclass)

    folder = list(spec.submodule_search_locations)[0]
    unload()
    sys.modules["unsloth"] = _package("unsloth", folder)
    sys.modules["unsloth.models"] = _package("unsloth.models", os.path.join(folder, "models"))
    # unsloth/utils/__init__.py also imports its attention backends (GPU-only): the bare package
    # re-exports what trainer.py takes from it, from the real unsloth/utils/packing.py.
    utils = sys.modules["unsloth.utils"] = _package("unsloth.utils", os.path.join(folder, "utils"))
    for name, attributes in STAND_INS.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    try:
        packing = importlib.import_module("unsloth.utils.packing")
        for name in UTILS_EXPORTS:
            setattr(utils, name, getattr(packing, name))
        return importlib.import_module("unsloth.trainer")
    except BaseException:
        unload()
        raise


def unload() -> None:
    """Forget every ``unsloth`` module (real or stood in)."""
    for name in [n for n in sys.modules if n == "unsloth" or n.startswith("unsloth.")]:
        del sys.modules[name]
