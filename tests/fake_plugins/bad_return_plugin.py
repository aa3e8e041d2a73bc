"""A plugin whose ``umi_patches()`` returns something that is not a Patch."""

from unsloth_multiimage.plugin import hookimpl


@hookimpl
def umi_patches():
    return ["not a Patch, just a string"]
