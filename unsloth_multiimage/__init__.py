"""unsloth-multiimage: every image of every example reaches your vision-language model.

``import unsloth_multiimage`` (before or after ``import unsloth``/``transformers``) activates the
registered patches; ``UNSLOTH_MULTIIMAGE_DISABLE=1`` turns that off. See README.md.

The import itself is cheap: the public names below load on first use, and the activation waits
for the first import of a patched library when none is imported yet (see ``_bootstrap``).
"""

from . import _bootstrap
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: the import must stay cheap
    from typing import Any

# The public surface, written once: name -> the module that defines it (a name equal to its
# module's last part is that module itself, e.g. ``unsloth_multiimage.formats``).
_PUBLIC = {
    "activate": "engine.activation",
    "deactivate": "engine.activation",
    "status": "engine.activation",
    "plugin_records": "engine.activation",
    "find_adapter": "engine.activation",
    "is_disabled": "engine.activation",
    "PatchStatus": "engine.activation",
    "Decision": "engine.decision",
    "State": "engine.decision",
    "Patch": "engine.patching",
    "signature_accepts": "engine.patching",
    "PatchCompat": "engine.compat",
    "FixRange": "engine.compat",
    "hookimpl": "hooks",
    "ModelAdapter": "adapters",
    "Settings": "settings",
    "configure": "settings",
    "get_settings": "settings",
    "reset_settings": "settings",
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

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> "Any":
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    loaded = importlib.import_module(f"{__name__}.{module}")
    value = loaded if module.rpartition(".")[2] == name else getattr(loaded, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def _activate() -> None:
    """The bootstrap's activation callback: handed over, so ``_bootstrap`` never imports the engine."""
    from .engine.activation import _activate as activate

    activate()


_bootstrap.start(_activate)
