"""A plugin that cannot even be imported."""

raise RuntimeError("broken_plugin exploded on import")
