"""The import-only torchvision stand-in: the one place anything stands in for a library.

Why it edits ``sys.modules``: torchvision is not installed on the CI rows (PyPI's wheel cannot load
beside the CPU torch build), yet a few modules import names from it at their top without using them
for what the tests run: PixtralProcessor (Pixtral, Mistral 3) and Gemma4Processor import a pure
helper from their torchvision-backed image-processor module, and timm (Gemma 3n's vision tower)
imports torchvision names at its top. Python resolves ``import torchvision`` through
``sys.modules`` first, so placeholder modules put there only while such an import runs let it
succeed; they are removed again right after (with the torchvision-backed modules imported on the
way), so the rest of the process sees torchvision missing, as it is. What runs afterwards is the
real PIL image processor and the real timm model, with no torchvision code at all: every
placeholder class raises when used.
"""

from __future__ import annotations

import enum
import importlib
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

from .installed import Unavailable

#: the modules of the stand-in: torchvision and the submodules transformers and timm import from
STAND_IN_MODULES = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.transforms.v2",
    "torchvision.transforms.v2.functional",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.datasets",
    "torchvision.utils",
    "torchvision.models",
    "torchvision.io",
)


class _InterpolationMode(enum.Enum):
    """The members and values of torchvision's ``InterpolationMode`` (read at import time, as data)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class StandIn(types.ModuleType):
    """A stand-in module: every name is a placeholder class that raises when instantiated or called
    (``InterpolationMode`` is an enum of torchvision's values), so importing works and running
    anything through it fails loudly."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return _InterpolationMode
        qualname = f"{self.__name__}.{name}"

        def refuse(cls: Any, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{qualname} is an import-only stand-in (torchvision is not installed)")

        placeholder = type(name, (), {"__new__": refuse, "__module__": self.__name__})
        setattr(self, name, placeholder)
        return placeholder


def import_under_torchvision_stand_in(module: str, drop: Sequence[str] = ()) -> Any:
    """Import ``module``; where that fails for want of torchvision, import it again with a stand-in
    ``torchvision`` (:data:`STAND_IN_MODULES`, :class:`StandIn`) present in ``sys.modules`` ONLY while
    the import runs. Then every stand-in module leaves ``sys.modules`` again, and so do the modules in
    ``drop`` (torchvision-backed modules imported on the way, e.g. ``image_processing_pixtral``, whose
    globals would hold the stand-in): importing them later fails as it does without torchvision.

    For modules that import a PURE helper from a torchvision-backed module (PixtralProcessor:
    ``get_resize_output_image_size``, used only by vLLM's token-count helper; Gemma4Processor: its
    ``ImagesKwargs`` and ``get_aspect_ratio_preserving_size``) and for timm, which imports
    ``FrozenBatchNorm2d`` (its batch-norm freezing helpers) and ``torchvision.transforms`` (timm.data)
    at its top. No code of the stand-in runs afterwards: the processors run on their PIL image
    processors, timm builds and runs its models in torch. transformers' cached
    ``is_torchvision_available()`` is read first, so it keeps answering False.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("torchvision"):
            raise
    from transformers.utils import import_utils

    for check in ("is_torchvision_available", "is_torchvision_v2_available"):
        if hasattr(import_utils, check):
            getattr(import_utils, check)()  # pin the lru_cache to the real answer
    made = {}
    for name in STAND_IN_MODULES:
        made[name] = mod = StandIn(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []  # a package without files: a submodule not listed here is not found
    made["torchvision"].__version__ = "0.0.0+import-only-stand-in"
    for name in STAND_IN_MODULES[1:]:
        parent, child = name.rsplit(".", 1)
        setattr(made[parent], child, made[name])
    if any(name in sys.modules for name in made):
        raise RuntimeError("a torchvision module is already imported: no stand-in needed or possible")
    sys.modules.update(made)
    try:
        return importlib.import_module(module)
    except Exception as e:
        raise Unavailable(f"{module} does not import even with a torchvision import-only stand-in: {e!r}") from e
    finally:
        for name in made:
            sys.modules.pop(name, None)
        for name in drop:
            sys.modules.pop(name, None)
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and child in vars(sys.modules[parent]):
                delattr(sys.modules[parent], child)
