"""The face for plugin authors: what a package needs to add a patch or a model adapter through the
entry-point group ``unsloth_multiimage`` (docs/third-party-adapter.md). The built-in patches and
the adapter table import from here too, exactly as a third party does.

Users of the plugin need none of this: see :mod:`unsloth_multiimage`.
"""

from __future__ import annotations

from .adapters import AdapterLookup, ModelAdapter, Nesting, id_list, pairs, processor_is, runs, token_id, tokenizer_id
from .engine.activation import plugin_records
from .engine.compat import FixRange, PatchCompat
from .engine.decision import Decision, State, StrEnum
from .engine.patching import AnyObjectProxy, Patch, TargetAbsent, Wrapper, signature_accepts
from .engine.plugins import PluginRecord
from .hooks import PROJECT_NAME, hookimpl

__all__ = [
    "PROJECT_NAME",
    "AdapterLookup",
    "AnyObjectProxy",
    "Decision",
    "FixRange",
    "ModelAdapter",
    "Nesting",
    "Patch",
    "PatchCompat",
    "PluginRecord",
    "State",
    "StrEnum",
    "TargetAbsent",
    "Wrapper",
    "hookimpl",
    "id_list",
    "pairs",
    "plugin_records",
    "processor_is",
    "runs",
    "signature_accepts",
    "token_id",
    "tokenizer_id",
]
