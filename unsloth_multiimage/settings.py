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

__all__ = ["Settings", "configure", "get_settings", "reset_settings"]

OnExcess = Literal["error", "keep_first", "keep_last"]
Strategy = Literal["native", "grid"]
CrossAttention = Literal["latest", "cumulative"]
_ON_EXCESS = get_args(OnExcess)
_STRATEGIES = get_args(Strategy)
_CROSS_ATTENTION = get_args(CrossAttention)


@dataclass(frozen=True)
class Settings:
    """The policies applied to every example by the patched collator.

    Attributes:
        max_images: most images one example may keep (None: no cap).
        on_excess: what happens above ``max_images``: ``error`` (default), ``keep_first`` or
            ``keep_last`` (dropped images take their placeholders with them; a warning names the rows).
        max_pixels_per_example: pixel budget of one example; its images are downsized
            proportionally (aspect ratios kept) to fit (None: no budget).
        strategy: ``native`` (every image to the model) or ``grid`` (early fusion: the
            example's images composed into one canvas, its placeholders collapsed to one).
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

    def __post_init__(self) -> None:
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images < 1):
            raise ValueError(f"max_images must be a positive integer or None, got {self.max_images!r}")
        if self.on_excess not in _ON_EXCESS:
            raise ValueError(f"on_excess must be one of {_ON_EXCESS}, got {self.on_excess!r}")
        if self.max_pixels_per_example is not None and (
            not isinstance(self.max_pixels_per_example, int) or self.max_pixels_per_example < 1
        ):
            raise ValueError(
                f"max_pixels_per_example must be a positive integer or None, got {self.max_pixels_per_example!r}"
            )
        if self.strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}")
        if not isinstance(self.grid_gap, int) or self.grid_gap < 0:
            raise ValueError(f"grid_gap must be a non-negative integer, got {self.grid_gap!r}")
        if not isinstance(self.decode_threads, int) or self.decode_threads < 1:
            raise ValueError(f"decode_threads must be a positive integer, got {self.decode_threads!r}")
        if self.mllama_cross_attention not in _CROSS_ATTENTION:
            raise ValueError(
                f"mllama_cross_attention must be one of {_CROSS_ATTENTION}, got {self.mllama_cross_attention!r}"
            )


_PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "str": str, "flag": _env.truthy}
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
            values[name] = _PARSERS[var.kind](raw)
        except ValueError as exc:
            raise ValueError(f"{var.name}={raw!r} is not valid: {exc}") from None
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
