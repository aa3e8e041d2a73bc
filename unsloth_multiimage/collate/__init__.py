"""What the patches share: collation logic that runs inside upstream's calls, one module per
concern, and packing (``pack_*``, ``packing``, ``train_packing``). Patches
(``unsloth_multiimage.patches``) are thin wrappers over it; the commands, the dry run and
inference call it too."""
