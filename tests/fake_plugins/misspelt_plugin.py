"""A plugin whose hook name is misspelt: ``umi_patchez`` instead of ``umi_patches``."""

from unsloth_multiimage.plugin import hookimpl


@hookimpl
def umi_patchez():
    return []
