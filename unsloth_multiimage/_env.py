"""Every ``UNSLOTH_MULTIIMAGE_*`` environment variable, defined once, with its meaning.

Imported by the import-time bootstrap, so it uses ``os`` only. The settings module reads the
variables that carry a :class:`~unsloth_multiimage.settings.Settings` field (``setting``); the
engine reads the on/off and list ones. README's table of variables is checked against
:data:`VARIABLES` by the tests.
"""

import os


class Var:
    """One environment variable: its name, how it is parsed, the setting it feeds, what it does."""

    __slots__ = ("name", "kind", "setting", "doc")

    def __init__(self, name: str, kind: str, doc: str, setting: "str | None" = None) -> None:
        self.name = name
        self.kind = kind  # "flag" (on/off), "names" (comma list), "int", "str"
        self.setting = setting
        self.doc = doc

    def raw(self) -> "str | None":
        """The value set in the environment, or None when unset or blank."""
        value = os.environ.get(self.name)
        return None if value is None or not value.strip() else value

    def __repr__(self) -> str:
        return f"Var({self.name!r})"


_TRUE = frozenset({"1", "true", "yes", "on"})


def truthy(value: "str | None") -> bool:
    """How every on/off variable of the plugin is read: 1, true, yes, on (any case)."""
    return (value or "").strip().lower() in _TRUE


def flag(var: Var) -> bool:
    """True when the on/off variable ``var`` is set to an on value."""
    return truthy(os.environ.get(var.name))


def names(var: Var) -> "frozenset[str]":
    """The comma-separated names in ``var`` (empty when unset)."""
    return frozenset(n.strip() for n in (os.environ.get(var.name) or "").split(",") if n.strip())


DISABLE = Var("UNSLOTH_MULTIIMAGE_DISABLE", "flag", "the plugin does nothing (no patch, no activation)")
DISABLE_PATCHES = Var(
    "UNSLOTH_MULTIIMAGE_DISABLE_PATCHES",
    "names",
    "block patches or plugins by name (`mllama_processor`, `unsloth_collator`, `adapters`, a third party's)",
)
FORCE = Var("UNSLOTH_MULTIIMAGE_FORCE", "flag", "apply every fix whatever the version table says (with a warning)")
MAX_IMAGES = Var("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "int", "most images one example keeps", "max_images")
ON_EXCESS = Var(
    "UNSLOTH_MULTIIMAGE_ON_EXCESS", "str", "above the cap: `error`, `keep_first` or `keep_last`", "on_excess"
)
MAX_PIXELS = Var(
    "UNSLOTH_MULTIIMAGE_MAX_PIXELS",
    "int",
    "pixel budget of one example (images downsized to fit)",
    "max_pixels_per_example",
)
STRATEGY = Var(
    "UNSLOTH_MULTIIMAGE_STRATEGY", "str", "`native` (every image) or `grid` (one canvas per example)", "strategy"
)
GRID_GAP = Var("UNSLOTH_MULTIIMAGE_GRID_GAP", "int", "pixels between the cells of a grid canvas", "grid_gap")
GRID_LABELS = Var("UNSLOTH_MULTIIMAGE_GRID_LABELS", "flag", "draw each cell's index on a grid canvas", "grid_labels")
ALLOW_URLS = Var(
    "UNSLOTH_MULTIIMAGE_ALLOW_URLS", "flag", "fetch `http(s)://` images (off: an error, no network)", "allow_urls"
)
DECODE_THREADS = Var(
    "UNSLOTH_MULTIIMAGE_DECODE_THREADS", "int", "threads decoding a batch's image files (1: no pool)", "decode_threads"
)
MLLAMA_CROSS_ATTENTION = Var(
    "UNSLOTH_MULTIIMAGE_MLLAMA_CROSS_ATTENTION",
    "str",
    "Llama 3.2 Vision's mask: `latest` (upstream's: a token sees the latest image group) or `cumulative` "
    "(every image shown before it)",
    "mllama_cross_attention",
)

#: Every variable the plugin reads, in the order the README lists them.
VARIABLES = (
    DISABLE,
    DISABLE_PATCHES,
    FORCE,
    MAX_IMAGES,
    ON_EXCESS,
    MAX_PIXELS,
    STRATEGY,
    GRID_GAP,
    GRID_LABELS,
    ALLOW_URLS,
    DECODE_THREADS,
    MLLAMA_CROSS_ATTENTION,
)
