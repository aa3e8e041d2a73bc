"""The plugin engine: discovery (pluggy entry points), version gating (the compat table),
reversible patching (wrapt) and activation. It knows nothing about images: it loads the patches
and model adapters and hands the patches what they need."""
