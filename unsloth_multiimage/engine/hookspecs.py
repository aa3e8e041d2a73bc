"""The plugin contract of unsloth-multiimage.

A plugin is any importable object (usually a module) listed in the entry-point group
``unsloth_multiimage`` of its distribution::

    [project.entry-points.unsloth_multiimage]
    my_patch = "my_package.my_patch_module"

and implementing one or more of the hooks below with ``@unsloth_multiimage.plugin.hookimpl``.
The package's own patches (``unsloth_multiimage.patches``) are registered the same way.
A hook implementation whose name matches no hook here is rejected when the plugins load
(a misspelt hook is reported by ``status()`` and ``unsloth-multiimage doctor``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hooks import hookspec

if TYPE_CHECKING:
    from ..adapters import ModelAdapter
    from .patching import Patch

__all__ = ["PatchSpecs"]


class PatchSpecs:
    """Hook specifications. Every hook is called with keyword arguments only."""

    @hookspec
    def umi_patches(self) -> list[Patch]:
        """Return the patches this plugin provides (a list of :class:`~unsloth_multiimage.plugin.Patch`).

        Called once when the plugins load. Each patch name must be unique across plugins and
        must have an entry in a compat table (the built-in ``compat_table.toml``, or the
        ``compat`` mapping of the Patch itself for third-party patches).
        Must not import the patched library: patches are applied lazily when it is imported.
        """

    @hookspec(firstresult=True)
    def umi_model_adapter(self, processor: object, config: object) -> ModelAdapter | None:
        """Return a :class:`~unsloth_multiimage.plugin.ModelAdapter` if this plugin knows the
        family of ``processor`` (``config`` is the model config when known, else None), else None.

        The first non-None answer wins. The adapter tells the patches which string stands for
        one image in rendered chat text (before the processor expands it), so each row's
        placeholders can be checked against its images. Must be cheap and must not raise for
        processors it does not know.
        """
