"""unsloth-multiimage: every image of every example reaches your vision-language model.

``import unsloth_multiimage`` (before or after ``import unsloth``/``transformers``) activates the
registered patches; ``UNSLOTH_MULTIIMAGE_DISABLE=1`` turns that off. See README.md.

This is the users' face; plugin authors import :mod:`unsloth_multiimage.plugin`. The names below
load on first use (type checkers see them through the ``TYPE_CHECKING`` imports). The import
activates the plugins at once (:func:`~unsloth_multiimage.engine.activation.activate_on_import`):
a patched library imported later is patched by a wrapt post-import hook as it is imported.
"""

from . import _env
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: the import must stay cheap
    from typing import Any

    from . import errors, formats
    from .engine.activation import PatchStatus, activate, deactivate, find_adapter, is_disabled, status
    from .errors import (
        ImageCountError,
        ImageLoadError,
        RowError,
        RowShapeError,
        SettingsError,
        UnslothMultiimageError,
        VideoLoadError,
    )
    from .inference.generation import generate_answer
    from .inference.prompt import PreparedPrompt, prepare_inputs, prepare_prompt
    from .settings import Settings, configure, get_settings, reset_settings

# The users' names, written once: name -> the module that defines it (a name equal to its module's
# last part is that module itself, e.g. ``unsloth_multiimage.formats``).
_PUBLIC = {
    "activate": "engine.activation",
    "deactivate": "engine.activation",
    "status": "engine.activation",
    "find_adapter": "engine.activation",
    "is_disabled": "engine.activation",
    "PatchStatus": "engine.activation",
    "Settings": "settings",
    "configure": "settings",
    "get_settings": "settings",
    "reset_settings": "settings",
    "errors": "errors",
    "UnslothMultiimageError": "errors",
    "SettingsError": "errors",
    "RowError": "errors",
    "ImageCountError": "errors",
    "ImageLoadError": "errors",
    "VideoLoadError": "errors",
    "RowShapeError": "errors",
    "formats": "formats",
    "prepare_inputs": "inference.prompt",
    "prepare_prompt": "inference.prompt",
    "PreparedPrompt": "inference.prompt",
    "generate_answer": "inference.generation",
}
# Plugin authors' names that lived here before unsloth_multiimage.plugin: still found, with a
# DeprecationWarning, and never listed (one import path each).
_MOVED_TO_PLUGIN = frozenset(
    {"hookimpl", "Patch", "signature_accepts", "PatchCompat", "FixRange", "Decision", "State", "ModelAdapter"}
    | {"plugin_records"}
)

# A literal list, so type checkers read the re-exports (a test checks it against _PUBLIC).
__all__ = [
    "__version__",
    "activate",
    "deactivate",
    "status",
    "find_adapter",
    "is_disabled",
    "PatchStatus",
    "Settings",
    "configure",
    "get_settings",
    "reset_settings",
    "errors",
    "UnslothMultiimageError",
    "SettingsError",
    "RowError",
    "ImageCountError",
    "ImageLoadError",
    "VideoLoadError",
    "RowShapeError",
    "formats",
    "prepare_inputs",
    "prepare_prompt",
    "PreparedPrompt",
    "generate_answer",
]


def __getattr__(name: str) -> "Any":
    import importlib

    if name in _MOVED_TO_PLUGIN:
        import warnings

        warnings.warn(
            f"unsloth_multiimage.{name} moved to unsloth_multiimage.plugin.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(f"{__name__}.plugin"), name)
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(f"{__name__}.{module}")
    value = loaded if module.rpartition(".")[2] == name else getattr(loaded, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if not _env.flag(_env.DISABLE):  # disabled: not even the engine is imported
    from .engine.activation import activate_on_import as _activate_on_import

    _activate_on_import()
