"""User settings, from ``configure(...)`` or environment variables.

Each field has an ``UNSLOTH_MULTIIMAGE_*`` variable (:mod:`unsloth_multiimage._env`), so that
unchanged scripts can pick a setting; values given to :func:`configure` win over the environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from . import _env
from .errors import SettingsError

__all__ = ["Settings", "configure", "get_settings", "reset_settings"]

OnExcess = Literal["error", "keep_first", "keep_last"]
Strategy = Literal["native", "grid", "serial"]
CrossAttention = Literal["latest", "cumulative"]
Video = Literal["auto", "frames", "native"]
VideoSampling = Literal["fps", "uniform"]
OnOverflow = Literal["error", "shrink"]
_ON_EXCESS = get_args(OnExcess)
_STRATEGIES = get_args(Strategy)
_CROSS_ATTENTION = get_args(CrossAttention)
_VIDEO = get_args(Video)
_VIDEO_SAMPLING = get_args(VideoSampling)
_ON_OVERFLOW = get_args(OnOverflow)


@dataclass(frozen=True)
class Settings:
    """The policies applied to every example by the patched collator.

    Attributes:
        max_images: most images one example may keep (None: no cap).
        on_excess: what happens above ``max_images``: ``error`` (default), ``keep_first`` or
            ``keep_last`` (dropped images take their placeholders with them; a warning names the rows).
        max_pixels_per_example: pixel budget of one example; its images are downsized
            proportionally (aspect ratios kept) to fit (None: no budget).
        strategy: ``native`` (every image to the model), ``grid`` (early fusion: the
            example's images composed into one canvas, its placeholders collapsed to one) or
            ``serial`` (a turn with several images split into one user turn per image, labelled
            ``"Image i:"``, the question last: :mod:`unsloth_multiimage.rows.serial`).
        grid_gap: pixels between cells of the grid canvas.
        grid_labels: draw a small index label in each grid cell.
        allow_urls: fetch ``http(s)://`` image strings (off: a clear error, no network access).
        decode_threads: threads that load a batch's images from paths and bytes (PIL releases
            the GIL while decoding); 1 decodes on the calling thread. Default: up to 4, one per CPU.
        mllama_cross_attention: Llama 3.2 Vision (Mllama) only: ``latest`` (default, upstream's
            mask: a text token attends the latest group of images before it) or ``cumulative``
            (every image shown before it in the conversation). Built by the ``mllama_processor``
            patch on the processor's output; rows with one group of images and text-only rows
            get exactly upstream's mask either way.
        video: what a video part (``{"type": "video", ...}``, a ``videos`` column) becomes:
            ``frames`` (decoded with PyAV and sampled into image parts, in place; every frame
            counts as an image), ``native`` (left to the family's own video processor), or
            ``auto`` (default: ``native`` where the model family has a video path and the
            installed unsloth_zoo hands videos to it, else ``frames``).
        video_fps: frames per second of video taken under ``video_sampling="fps"`` (and the rate
            a video given as a list of frames or a folder of frame files is taken to have).
        video_max_frames: most frames one video gives.
        video_sampling: ``fps`` (``video_fps`` frames a second, at most ``video_max_frames``,
            spread evenly) or ``uniform`` (``video_max_frames`` frames spread evenly over the clip).
        video_frame_label: a text put before each frame, ``str.format`` template with ``{n}``
            (the frame's 1-based number in its video) and ``{t}`` (its time in seconds), e.g.
            ``"Frame {n} at {t:.1f} s:"``; None (default): no label.
        vllm_max_images: images one prompt may carry into unsloth_zoo's vLLM engine (GRPO with
            ``fast_inference=True``), which unsloth_zoo limits to 1; None (default): ``max_images``
            when set, else ``DEFAULT_VLLM_MAX_IMAGES`` (8). Video frames count as images.
        packing: pack the patched collator's training batches: the rows of a batch laid end to end
            in the fewest sequences of at most ``max_seq_length`` tokens, each document's attention,
            positions, labels and images kept to itself (:mod:`unsloth_multiimage.collate.packing`).
            Applies to the batches of a Trainer's training dataloader (evaluation stays unpacked);
            a family not proven exact is refused. Default off.
        packing_max_seq_length: the longest packed sequence when the collator has no
            ``max_seq_length`` of its own (None: the collator's is required).
        on_overflow: what a batch being packed does with a row longer than one packed sequence:
            ``error`` (default: an error naming the row) or ``shrink`` (before upstream collates,
            the row's images are downsized by the largest per-row pixel budget at which it fits,
            counted exactly, and, where even the smallest size is too long, its videos' frames are
            dropped evenly; one warning per batch gives the counts. Families whose image tokens
            are known from the image size only (Qwen2-VL, Qwen2.5-VL, Qwen3-VL); a row of another
            family, or one that cannot fit, is refused naming it:
            :mod:`unsloth_multiimage.collate.shrink`).
    """

    max_images: int | None = None
    on_excess: OnExcess = "error"
    max_pixels_per_example: int | None = None
    strategy: Strategy = "native"
    grid_gap: int = 4
    grid_labels: bool = False
    allow_urls: bool = False
    decode_threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    mllama_cross_attention: CrossAttention = "latest"
    video: Video = "auto"
    video_fps: float = 2.0
    video_max_frames: int = 16
    video_sampling: VideoSampling = "fps"
    video_frame_label: str | None = None
    vllm_max_images: int | None = None
    packing: bool = False
    packing_max_seq_length: int | None = None
    on_overflow: OnOverflow = "error"

    def __post_init__(self) -> None:
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images < 1):
            raise SettingsError(f"max_images must be a positive integer or None, got {self.max_images!r}")
        if self.on_excess not in _ON_EXCESS:
            raise SettingsError(f"on_excess must be one of {_ON_EXCESS}, got {self.on_excess!r}")
        if self.max_pixels_per_example is not None and (
            not isinstance(self.max_pixels_per_example, int) or self.max_pixels_per_example < 1
        ):
            raise SettingsError(
                f"max_pixels_per_example must be a positive integer or None, got {self.max_pixels_per_example!r}"
            )
        if self.strategy not in _STRATEGIES:
            raise SettingsError(f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}")
        if not isinstance(self.grid_gap, int) or self.grid_gap < 0:
            raise SettingsError(f"grid_gap must be a non-negative integer, got {self.grid_gap!r}")
        if not isinstance(self.decode_threads, int) or self.decode_threads < 1:
            raise SettingsError(f"decode_threads must be a positive integer, got {self.decode_threads!r}")
        if self.mllama_cross_attention not in _CROSS_ATTENTION:
            raise SettingsError(
                f"mllama_cross_attention must be one of {_CROSS_ATTENTION}, got {self.mllama_cross_attention!r}"
            )
        self._check_video()
        if self.vllm_max_images is not None and (
            isinstance(self.vllm_max_images, bool)
            or not isinstance(self.vllm_max_images, int)
            or self.vllm_max_images < 1
        ):
            raise SettingsError(f"vllm_max_images must be a positive integer or None, got {self.vllm_max_images!r}")
        self._check_packing()

    def _check_packing(self) -> None:
        if not isinstance(self.packing, bool):
            raise SettingsError(f"packing must be True or False, got {self.packing!r}")
        limit = self.packing_max_seq_length
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise SettingsError(f"packing_max_seq_length must be a positive integer or None, got {limit!r}")
        if self.on_overflow not in _ON_OVERFLOW:
            raise SettingsError(f"on_overflow must be one of {_ON_OVERFLOW}, got {self.on_overflow!r}")

    def _check_video(self) -> None:
        if self.video not in _VIDEO:
            raise SettingsError(f"video must be one of {_VIDEO}, got {self.video!r}")
        if isinstance(self.video_fps, bool) or not isinstance(self.video_fps, (int, float)) or not self.video_fps > 0:
            raise SettingsError(f"video_fps must be a positive number, got {self.video_fps!r}")
        frames = self.video_max_frames
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise SettingsError(f"video_max_frames must be a positive integer, got {self.video_max_frames!r}")
        if self.video_sampling not in _VIDEO_SAMPLING:
            raise SettingsError(f"video_sampling must be one of {_VIDEO_SAMPLING}, got {self.video_sampling!r}")
        label = self.video_frame_label
        if label is not None:
            try:
                str(label).format(n=1, t=0.0)
            except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
                raise SettingsError(
                    f"video_frame_label must be a str.format template using {{n}} and {{t}} only, got {label!r} ({exc})"
                ) from None


_PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "flag": _env.truthy}
#: field name -> its environment variable
_ENV = {var.setting: var for var in _env.VARIABLES if var.setting is not None}

_lock = threading.Lock()
_overrides: dict[str, Any] = {}


def _from_env() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        raw = var.raw()
        if raw is None:
            continue
        try:
            value = _PARSERS[var.kind](raw)
            Settings(**{name: value})  # checked alone, so that the error names this variable
        except ValueError as exc:
            raise SettingsError(
                f"{var.name}={raw!r} is not valid: {exc}. Fix: set {var.name} to a valid value, or unset it.",
                source=var.name,
            ) from None
        values[name] = value
    return values


def get_settings() -> Settings:
    """The settings in force: environment variables, overridden by :func:`configure`."""
    with _lock:
        return Settings(**{**_from_env(), **_overrides})


def configure(**changes: Any) -> Settings:
    """Set image policies for every patched collator call (see :class:`Settings` for the fields).

    Example: ``configure(max_images=4, on_excess="keep_last", max_pixels_per_example=2_000_000)``.
    Invalid values raise ``ValueError`` at once. Returns the settings now in force.
    """
    unknown = set(changes) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise TypeError(f"configure() got unknown settings: {', '.join(sorted(unknown))}")
    with _lock:
        candidate = {**_overrides, **changes}
        Settings(**{**_from_env(), **candidate})  # validate before storing
        _overrides.clear()
        _overrides.update(candidate)
    return get_settings()


@contextlib.contextmanager
def overriding(**changes: Any) -> Iterator[Settings]:
    """:func:`configure` for the ``with`` block only: afterwards the configured values are exactly
    those before it (restoring by ``configure(old values)`` would pin values that came from the
    environment)."""
    with _lock:
        before = dict(_overrides)
    try:
        yield configure(**changes)
    finally:
        with _lock:
            _overrides.clear()
            _overrides.update(before)


def reset_settings() -> None:
    """Forget every :func:`configure` value (environment variables still apply)."""
    with _lock:
        _overrides.clear()
