"""Every ``UNSLOTH_MULTIIMAGE_*`` environment variable, defined once, with its meaning.

Imported first by ``import unsloth_multiimage`` (``UNSLOTH_MULTIIMAGE_DISABLE`` decides whether
anything else is), so it uses ``os`` only. The settings module reads the
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
        self.kind = kind  # "flag" (on/off), "names" (comma list), "int", "float", "str"
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


#: The prefix every variable of the plugin has.
PREFIX = "UNSLOTH_MULTIIMAGE_"


def closest(
    name: str, known: "list[str] | tuple[str, ...] | frozenset[str] | set[str]", prefix: str = ""
) -> "str | None":
    """The known name nearest to a misspelt ``name`` (difflib), or None when none is close; a
    ``prefix`` all names share is left out of the comparison (it would make every name close)."""
    import difflib  # only when a name is unknown: the bootstrap path stays os-only

    tails = {k[len(prefix) :]: k for k in known if k.startswith(prefix)}
    found = difflib.get_close_matches(name[len(prefix) :] if name.startswith(prefix) else name, sorted(tails), n=1)
    return tails[found[0]] if found else None


def unknown_variables() -> "list[str]":
    """The ``UNSLOTH_MULTIIMAGE_*`` variables set in the environment that the plugin does not read."""
    known = {var.name for var in VARIABLES}
    return sorted(k for k in os.environ if k.startswith(PREFIX) and k not in known)


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
    "UNSLOTH_MULTIIMAGE_STRATEGY",
    "str",
    "`native` (every image), `grid` (one canvas per example) or `serial` (one user turn per image)",
    "strategy",
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
VIDEO = Var(
    "UNSLOTH_MULTIIMAGE_VIDEO",
    "str",
    "a video becomes `frames` (image parts), stays `native` (the family's video processor), or `auto`",
    "video",
)
VIDEO_FPS = Var(
    "UNSLOTH_MULTIIMAGE_VIDEO_FPS", "float", "frames a second taken from a video (`fps` sampling)", "video_fps"
)
VIDEO_MAX_FRAMES = Var("UNSLOTH_MULTIIMAGE_VIDEO_MAX_FRAMES", "int", "most frames one video gives", "video_max_frames")
VIDEO_SAMPLING = Var(
    "UNSLOTH_MULTIIMAGE_VIDEO_SAMPLING",
    "str",
    "`fps` (at `VIDEO_FPS`) or `uniform` (`VIDEO_MAX_FRAMES` spread over the clip)",
    "video_sampling",
)
VIDEO_FRAME_LABEL = Var(
    "UNSLOTH_MULTIIMAGE_VIDEO_FRAME_LABEL",
    "str",
    "text before each frame, a template with `{n}` and `{t}`, e.g. `Frame {n} at {t:.1f} s:`",
    "video_frame_label",
)
VLLM_MAX_IMAGES = Var(
    "UNSLOTH_MULTIIMAGE_VLLM_MAX_IMAGES",
    "int",
    "images one prompt may carry into unsloth_zoo's vLLM engine (default: `MAX_IMAGES`, else 8)",
    "vllm_max_images",
)
PACKING = Var(
    "UNSLOTH_MULTIIMAGE_PACKING",
    "flag",
    "pack the collator's training batches (rows end to end, each document kept to itself)",
    "packing",
)
PACKING_MAX_SEQ_LENGTH = Var(
    "UNSLOTH_MULTIIMAGE_PACKING_MAX_SEQ_LENGTH",
    "int",
    "the longest packed sequence when the collator has no `max_seq_length`",
    "packing_max_seq_length",
)
ON_OVERFLOW = Var(
    "UNSLOTH_MULTIIMAGE_ON_OVERFLOW",
    "str",
    "a row longer than a packed sequence: `error`, or `shrink` (its images downsized, its video frames dropped, to fit)",
    "on_overflow",
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
    VIDEO,
    VIDEO_FPS,
    VIDEO_MAX_FRAMES,
    VIDEO_SAMPLING,
    VIDEO_FRAME_LABEL,
    VLLM_MAX_IMAGES,
    PACKING,
    PACKING_MAX_SEQ_LENGTH,
    ON_OVERFLOW,
)
