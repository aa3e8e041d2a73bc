"""Built-in patches, each a plugin registered through the `unsloth_multiimage` entry points."""
