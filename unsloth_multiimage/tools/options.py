"""The command line's one vocabulary: the options every command that applies a setting spells the
same way, the value types that check an option's value before anything runs, and the options that
only mean something beside another.

Each setting option has the name, the help text and the environment variable of its
:class:`~unsloth_multiimage.settings.Settings` field; left out, the setting in force applies (the
variable, else the default), and a report names the value it used and where it came from
(:func:`settings_line`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from .. import _env
from ..errors import CommandError, SettingsError
from ..settings import CrossAttention, OnExcess, Settings, Strategy, Video, VideoSampling, get_settings

__all__ = [
    "ROW",
    "ROWS",
    "SETTING_OPTIONS",
    "SettingOption",
    "add_dataset_options",
    "add_setting_options",
    "check_needs",
    "dataset_path",
    "folder",
    "image_file",
    "int_in",
    "model_folder",
    "output_file",
    "positive_float",
    "positive_int",
    "settings_from",
    "settings_line",
]

# ------------------------------------------------------------------------------------ value types
# argparse prints "argument --rows: <message>" for an ArgumentTypeError, and exits with status 2.


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def int_in(low: int, high: int, why: str) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (``why``: what the upper bound protects, for the message)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high:,}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high:,} ({why}), got {value}")
        return value

    check.__name__ = "int_in"
    check.low, check.high = low, high  # type: ignore[attr-defined]
    return check


#: A row's number (``--row``): from 0.
ROW = int_in(0, 10**9 - 1, "rows are numbered from 0")
#: A number of rows to read (``--rows``).
ROWS = int_in(1, 10**9, "--all reads every row")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


#: The file types a dataset is read from (a folder: written by ``Dataset.save_to_disk``).
DATASET_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")


def dataset_path(text: str) -> str:
    """An existing ``.jsonl`` / ``.json`` / ``.parquet`` file or ``save_to_disk`` folder."""
    if not text:
        raise argparse.ArgumentTypeError("is empty: give a .jsonl / .json / .parquet file or a save_to_disk folder")
    if os.path.isdir(text):
        if not any(os.path.isfile(os.path.join(text, n)) for n in ("state.json", "dataset_dict.json")):
            raise argparse.ArgumentTypeError(
                f"{text!r} is a folder, but not one written by Dataset.save_to_disk (no state.json or "
                f"dataset_dict.json in it). Fix: give one dataset file (.jsonl / .json / .parquet) or a save_to_disk folder"
            )
        return text
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text!r}: no such file or folder")
    if not text.lower().endswith(DATASET_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a dataset file this tool reads (.jsonl, .json, .parquet, or a save_to_disk folder). "
            f"Fix: export it as JSON Lines or Parquet"
        )
    return text


def model_folder(text: str) -> str:
    """An existing folder of a local checkpoint (models are never downloaded)."""
    if not os.path.isdir(text):
        what = "is a file" if os.path.exists(text) else "does not exist"
        raise argparse.ArgumentTypeError(
            f"{text!r} {what}: give the folder of a local checkpoint (what save_pretrained writes); this tool never "
            f"downloads a model (download it first, e.g. `hf download REPO --local-dir DIR`)"
        )
    return text


def folder(text: str) -> str:
    """An existing folder."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return text


def image_file(text: str) -> str:
    """An existing file."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r}: no such file")
    return text


def output_file(suffixes: Sequence[str]) -> Callable[[str], str]:
    """A file to write, with one of ``suffixes``, whose folder exists or can be made."""

    def check(text: str) -> str:
        if not text.lower().endswith(tuple(suffixes)):
            raise argparse.ArgumentTypeError(f"{text!r} must end with {' or '.join(suffixes)}")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name ({' or '.join(suffixes)})")
        parent = os.path.dirname(os.path.abspath(text))
        existing = parent
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise argparse.ArgumentTypeError(f"{text!r}: {existing!r} is a file, so the folder cannot be made")
        return text

    check.__name__ = "output_file"
    return check


# -------------------------------------------------------------------------------- setting options


@dataclass(frozen=True)
class SettingOption:
    """One command-line option for a :class:`~unsloth_multiimage.settings.Settings` field."""

    flag: str
    field: str
    help: str
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] | None = None
    group: str = "rows"  # "rows" (the row pipeline's policies), "mask", or "video"

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def variable(self) -> str:
        return next(v.name for v in _env.VARIABLES if v.setting == self.field)


SETTING_OPTIONS: tuple[SettingOption, ...] = (
    SettingOption(
        "--strategy",
        "strategy",
        "native (every image where the row puts it), grid (one canvas per row) or serial (one user turn per image)",
        choices=get_args(Strategy),
    ),
    SettingOption("--max-images", "max_images", "most images one row keeps (with --on-excess)", type=positive_int),
    SettingOption(
        "--on-excess",
        "on_excess",
        "above --max-images: error, keep_first or keep_last",
        choices=get_args(OnExcess),
    ),
    SettingOption(
        "--max-pixels",
        "max_pixels_per_example",
        "pixel budget of one row: its images are downsized to fit (max_pixels_per_example)",
        type=positive_int,
    ),
    SettingOption(
        "--cross-attention",
        "mllama_cross_attention",
        "Llama 3.2 Vision's mask: latest (a text token sees the latest image group) or cumulative (every image before it)",
        choices=get_args(CrossAttention),
        group="mask",
    ),
    SettingOption(
        "--video",
        "video",
        "a video becomes frames, stays native (the family's video processor), or auto",
        choices=get_args(Video),
        group="video",
    ),
    SettingOption("--video-fps", "video_fps", "frames a second taken from a video", type=positive_float, group="video"),
    SettingOption(
        "--video-max-frames", "video_max_frames", "most frames one video gives", type=positive_int, group="video"
    ),
    SettingOption(
        "--video-sampling",
        "video_sampling",
        "fps (at --video-fps) or uniform (--video-max-frames spread over the clip)",
        choices=get_args(VideoSampling),
        group="video",
    ),
    SettingOption(
        "--video-frame-label",
        "video_frame_label",
        "text before each frame, a template with {n} and {t}, e.g. 'Frame {n} at {t:.1f} s:'",
        group="video",
    ),
)


def add_setting_options(parser: argparse.ArgumentParser, groups: Iterable[str] = ("rows", "mask", "video")) -> None:
    """The setting options of ``groups`` (each with its help text and variable), under one heading."""
    wanted = set(groups)
    group = parser.add_argument_group(
        "settings",
        "as in training; left out, the setting in force applies (its UNSLOTH_MULTIIMAGE_* variable, else the default)",
    )
    for opt in SETTING_OPTIONS:
        if opt.group not in wanted:
            continue
        kwargs: dict[str, Any] = {"help": f"{opt.help} ({opt.variable})", "default": None}
        if opt.choices is not None:
            kwargs["choices"] = opt.choices
        if opt.type is not None:
            kwargs["type"] = opt.type
        group.add_argument(opt.flag, **kwargs)


def add_dataset_options(parser: argparse.ArgumentParser, formats: Sequence[str], *, format_help: str = "") -> None:
    """``--image-root`` and ``--format``, the two options that say how a dataset's rows are read."""
    parser.add_argument(
        "--image-root",
        type=folder,
        metavar="DIR",
        help="folder that relative image and video paths are read from (default: the folder holding the dataset)",
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=formats,
        help=format_help or "the rows' layout (default auto: detected per row)",
    )


def settings_from(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    """The settings in force (``base``) with the setting options given in ``args``.

    Raises:
        CommandError: an option's value is refused by the settings (it names the option).
        SettingsError: a ``UNSLOTH_MULTIIMAGE_*`` variable holds a bad value (it names the variable).
    """
    settings = base if base is not None else get_settings()
    changes = {}
    for opt in SETTING_OPTIONS:
        value = getattr(args, opt.dest, None)
        if value is not None:
            changes[opt.field] = value
    try:
        return dataclasses.replace(settings, **changes)
    except SettingsError as exc:
        flags = [o.flag for o in SETTING_OPTIONS if o.field in changes]
        raise CommandError(f"{', '.join(flags)}: {exc}. Fix: give a valid value.", usage=True) from None


def settings_line(settings: Settings, args: argparse.Namespace | None = None, groups: Iterable[str] = ("rows",)) -> str:
    """``settings: strategy=grid (--strategy), max_images=None (default), ...``: the settings of
    ``groups`` a report used, each with where its value came from."""
    wanted = set(groups)
    shown = []
    for opt in SETTING_OPTIONS:
        if opt.group not in wanted:
            continue
        value = getattr(settings, opt.field)
        given = args is not None and getattr(args, opt.dest, None) is not None
        source = opt.flag if given else (opt.variable if os.environ.get(opt.variable, "").strip() else "default")
        shown.append(f"{opt.field}={value!r} ({source})")
    return "settings: " + ", ".join(shown)


# -------------------------------------------------------------------------- options that need another


def check_needs(
    given: Mapping[str, str],
    needs: Mapping[str, tuple[str, str]],
    excludes: Sequence[tuple[str, str, str]] = (),
) -> None:
    """Refuse an option given without the one it needs, or beside one it excludes.

    Args:
        given: dest -> the flag as typed, for every option the command line gave.
        needs: dest -> (the dest it needs, why): ``{"decode": ("all", "...")}``.
        excludes: (dest, other dest, why) pairs that cannot be given together.

    Raises:
        CommandError: naming both options and the fix (``usage``: exit status 2).
    """
    for dest, flag in given.items():
        need = needs.get(dest)
        if need is not None and need[0] not in given:
            other = "--" + need[0].replace("_", "-")
            raise CommandError(f"{flag} needs {other}: {need[1]}. Fix: add {other}, or leave {flag} out.", usage=True)
    for a, b, why in excludes:
        if a in given and b in given:
            raise CommandError(
                f"{given[a]} and {given[b]} cannot be given together: {why}. Fix: leave one out.", usage=True
            )
