"""unsloth-multiimage: every image of every example reaches your vision-language model.

``import unsloth_multiimage`` (before or after ``import unsloth``/``transformers``) activates the
registered patches; ``UNSLOTH_MULTIIMAGE_DISABLE=1`` turns that off. See README.md.

The import itself is cheap: the public names below load on first use, and the activation waits
for the first import of a patched library when none is imported yet (see ``_bootstrap``).
"""

from . import _bootstrap
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .activation import PatchStatus, activate, deactivate, is_disabled, plugin_records, status
    from .decision import Decision
    from .hookspecs import hookimpl
    from .patching import Patch
    from .settings import Settings, configure, get_settings, reset_settings

__all__ = [
    "__version__",
    "Decision",
    "Patch",
    "PatchStatus",
    "Settings",
    "activate",
    "configure",
    "deactivate",
    "get_settings",
    "hookimpl",
    "plugin_records",
    "reset_settings",
    "status",
]

# public name -> submodule that defines it
_LAZY = {
    "PatchStatus": "activation",
    "activate": "activation",
    "deactivate": "activation",
    "is_disabled": "activation",
    "plugin_records": "activation",
    "status": "activation",
    "Decision": "decision",
    "hookimpl": "hookspecs",
    "Patch": "patching",
    "Settings": "settings",
    "configure": "settings",
    "get_settings": "settings",
    "reset_settings": "settings",
}


def __getattr__(name: str) -> object:
    submodule = _LAZY.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


_bootstrap.start()
