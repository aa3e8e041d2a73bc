"""unsloth-multiimage: every image of every example reaches your vision-language model.

``import unsloth_multiimage`` (before or after ``import unsloth``/``transformers``) activates the
registered patches; ``UNSLOTH_MULTIIMAGE_DISABLE=1`` turns that off. See README.md.
"""

from __future__ import annotations

import logging

from ._version import __version__
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

logging.getLogger(__name__).addHandler(logging.NullHandler())

if not is_disabled():
    from .activation import _activate

    _activate()
