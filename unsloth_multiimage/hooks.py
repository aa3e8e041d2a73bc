"""The pluggy markers of the plugin contract, on the bottom floor so that both the engine (which
loads the plugins) and the adapter table (which implements a hook) import them without one
importing the other. Third parties use ``unsloth_multiimage.plugin.hookimpl``; the hook
specifications are in :mod:`unsloth_multiimage.engine.hookspecs`.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

#: The pluggy project name, and the entry-point group plugins register under.
PROJECT_NAME = "unsloth_multiimage"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
