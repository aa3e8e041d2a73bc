"""What the installed transformers offers a tiny fixture: its version, a class from its own module
(not the lazy top-level placeholder), the PIL image processor of a family, and the checks that
raise :class:`Unavailable` with the precise reason where a family cannot be built here."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


class Unavailable(RuntimeError):
    """This family cannot be built offline with the installed libraries (the message says why)."""


def tf_version() -> Any:
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__)


def tf_major() -> int:
    return tf_version().major


def require_package(package: str) -> None:
    """Raise Unavailable unless the installed transformers has ``transformers.models.<package>``."""
    if importlib.util.find_spec(f"transformers.models.{package}") is None:
        raise Unavailable(f"transformers {tf_version()} has no {package}")


def tf_class(module: str, name: str) -> Any:
    """A transformers class from its own module (not the lazy top-level placeholder)."""
    require_package(module.split(".")[0])
    try:
        mod = importlib.import_module(f"transformers.models.{module}")
    except ImportError as e:  # e.g. a module that imports torchvision at its top
        raise Unavailable(f"transformers.models.{module} cannot be imported here: {e}") from e
    obj = getattr(mod, name, None)
    if obj is None:
        raise Unavailable(f"transformers.models.{module} has no {name}")
    return obj


def needs_tf5(family: str) -> None:
    """Fixtures written against transformers 5's API only (``rope_parameters`` configs, its model
    constructors) and never tried on 4.x, where they could not run here anyway (no timm, no torchvision)."""
    if tf_major() < 5:
        raise Unavailable(
            f"the tiny {family} fixture is written for transformers 5.x and not tried on transformers {tf_version()}"
        )


def pil_image_processor(pkg: str, name: str, **kwargs: Any) -> Any:
    """The family's real image processor: the PIL backend on 5.x (where the default backend needs
    torchvision, which is not installed), the (slow, PIL/numpy) class on 4.x."""
    if tf_major() >= 5:
        try:
            return tf_class(f"{pkg}.image_processing_pil_{pkg}", f"{name}Pil")(**kwargs)
        except Unavailable:
            pass
    return tf_class(f"{pkg}.image_processing_{pkg}", name)(**kwargs)


def torchvision_only(family: str, class_name: str) -> None:
    """Raise Unavailable unless torchvision imports: ``class_name`` is the family's only image processor
    (on 4.x its ``...Fast`` class)."""
    if tf_major() < 5:
        class_name += "Fast"
    if importlib.util.find_spec("torchvision") is None:
        raise Unavailable(
            f"{class_name} has only a torchvision backend in transformers {tf_version()} and "
            f"torchvision is not installed on this row (nothing stands in for it: {family} is not "
            f"proven offline)"
        )
    try:
        importlib.import_module("torchvision.transforms.v2.functional")
    except Exception as e:  # e.g. PyPI's wheel beside the CPU torch build
        raise Unavailable(
            f"{class_name} has only a torchvision backend in transformers {tf_version()} and "
            f"torchvision does not import on this row: {e!r}"
        ) from e
