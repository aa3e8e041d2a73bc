"""Videos in, frames out: the video parts of a row decoded (PyAV) and sampled into image parts.

Where a row holds videos (the TRL / Qwen layout):

- a content part ``{"type": "video", "video": ...}`` (also ``"video_url"`` parts and the
  ``url`` / ``path`` keys), carrying its video;
- a bare ``{"type": "video"}`` part, which takes the next entry of the row's ``videos`` column.

A video is a path, a ``file://`` URI, ``bytes``, a ``{"bytes", "path"}`` dict (the Hugging Face
``datasets`` layout), a folder of frame files (read in natural order: ``2.png`` before
``10.png``), or a list of frames (PIL images, paths, bytes ...: anything an image may be). Files
and bytes are decoded with PyAV (the ``[video]`` extra), imported only when a video is met.

Sampling (:func:`sample_indices`), per video, over the frames between the part's
``video_start`` and ``video_end`` seconds (unsloth_zoo's keys; inclusive; absent: the whole
clip): ``fps`` takes ``video_fps`` frames a second, at most ``video_max_frames``; ``uniform``
takes ``video_max_frames``. Either way the frames are spread evenly over the clip (first and last
included) and kept in time order. A part's own ``fps``, ``nframes`` and ``max_frames`` keys (the
zoo's names) override the settings for that video. A list or folder of frames has no timestamps:
frame ``k`` is taken to be at ``k / video_fps`` seconds.

:func:`expand_videos` replaces each video part, in place, by one ``{"type": "image", "image":
frame}`` part per frame, each after a text part ``video_frame_label.format(n=..., t=...)`` when
a label template is set; under ``strategy="grid"`` a video becomes ONE image part, a storyboard
canvas of its frames (:func:`~unsloth_multiimage.rows.grid.compose_grid`). The frames then count
as images for every later stage (cap, pixel budget, grid, single-image families).

Every failure raises :class:`~unsloth_multiimage.errors.VideoLoadError` naming the row, the video
and the fix. Pure Python + PIL here; PyAV only inside :func:`read_video`.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ImageCountError, VideoLoadError
from ..settings import Settings
from .chat import chat_sides, content_parts, rewrite_contents
from .decode import file_uri_path, load_image, path_hint

__all__ = [
    "VIDEO_PART_TYPES",
    "VIDEO_PAYLOAD_KEYS",
    "FRAME_SUFFIXES",
    "Frame",
    "frames_mode",
    "has_videos",
    "is_video_part",
    "video_payload",
    "video_parts",
    "sample_indices",
    "read_video",
    "expand_videos",
    "FRAME_KEY",
]

#: Content part types that stand for one video.
VIDEO_PART_TYPES = ("video", "video_url")
#: Keys of a video part that may carry the video itself.
VIDEO_PAYLOAD_KEYS = ("video", "video_url", "url", "path")
#: Files of a frame folder that are read as frames.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: The ``videos`` column: one entry per bare video part.
VIDEOS = "videos"
#: The key that marks a frame's image part and its label as ``(video, frame)`` (0-based video of
#: the row, 1-based frame), while the row pipeline may still drop frames (``on_overflow="shrink"``:
#: :mod:`unsloth_multiimage.rows.shrink`); the pipeline removes it before any upstream code sees the row.
FRAME_KEY = "_unsloth_multiimage_frame"


@dataclass(frozen=True)
class Frame:
    """One sampled frame: the RGB image and its time in seconds from the start of the video."""

    image: Any
    time: float


def is_video_part(part: Any) -> bool:
    """True for a content part that stands for one video."""
    return isinstance(part, Mapping) and part.get("type") in VIDEO_PART_TYPES


def video_payload(part: Mapping[str, Any]) -> Any | None:
    """The video a video part carries, or None for a bare placeholder (``{"url": ...}`` read too)."""
    for key in VIDEO_PAYLOAD_KEYS:
        value = part.get(key)
        if isinstance(value, Mapping) and key == "video_url":
            value = value.get("url")
        if value is not None:
            return value
    return None


def video_parts(messages: Sequence[Any]) -> list[Mapping[str, Any]]:
    """The video parts of ``messages``, in order."""
    return [p for p in content_parts(messages) if is_video_part(p)]


def has_videos(example: Any) -> bool:
    """True when the row holds a video part or a ``videos`` column value."""
    if isinstance(example, Mapping) and example.get(VIDEOS) is not None:
        return True
    return any(video_parts(messages) for _key, messages in chat_sides(example))


def frames_mode(settings: Settings, native_available: bool) -> bool:
    """Whether videos become frames: ``video="frames"``, or ``"auto"`` where the model family or the
    installed release has no native video path (``native_available``)."""
    return settings.video == "frames" or (settings.video == "auto" and not native_available)


# ----------------------------------------------------------------------------------- sampling


def sample_indices(times: Sequence[float], *, fps: float, max_frames: int, sampling: str) -> list[int]:
    """Indices (increasing) of the frames kept out of frames at ``times`` (seconds, increasing).

    ``uniform``: ``min(len(times), max_frames)`` frames; ``fps``: as many as ``fps`` a second over
    the clip's duration (the span of ``times`` plus one frame interval; at least 1), at most
    ``max_frames``. The kept frames are spread evenly, first and last included.
    """
    total = len(times)
    if total == 0:
        return []
    if sampling == "uniform":
        n = min(total, max_frames)
    elif sampling == "fps":
        span = float(times[-1]) - float(times[0])
        duration = span + (span / (total - 1) if total > 1 else 0.0)
        n = min(total, max_frames, max(1, math.floor(duration * fps + 1e-6)))
    else:
        raise ValueError(f"sampling must be 'fps' or 'uniform', got {sampling!r}")
    if n == 1:
        return [0]
    step = (total - 1) / (n - 1)
    return [int(i * step + 0.5) for i in range(n)]


@dataclass(frozen=True)
class _Request:
    """What one video asks for: the settings, overridden by its part's own keys."""

    fps: float
    max_frames: int
    sampling: str
    start: float | None
    end: float | None

    @classmethod
    def of(cls, part: Mapping[str, Any], settings: Settings, where: str, row: int) -> _Request:
        fps, max_frames, sampling = settings.video_fps, settings.video_max_frames, settings.video_sampling
        try:
            if part.get("nframes") is not None:
                max_frames, sampling = int(part["nframes"]), "uniform"
            if part.get("fps") is not None:
                fps, sampling = float(part["fps"]), "fps"
            if part.get("max_frames") is not None:
                max_frames = int(part["max_frames"])
            start = None if part.get("video_start") is None else float(part["video_start"])
            end = None if part.get("video_end") is None else float(part["video_end"])
        except (TypeError, ValueError) as exc:
            raise VideoLoadError(
                f"unsloth_multiimage: {where} has a sampling key that is not a number ({exc}). Fix: give "
                f"`video_start`/`video_end`/`fps` in seconds and `nframes`/`max_frames` as integers.",
                row=row,
            ) from None
        if fps <= 0 or max_frames < 1 or (start is not None and end is not None and end < start):
            raise VideoLoadError(
                f"unsloth_multiimage: {where} asks for fps={fps}, max_frames={max_frames}, "
                f"video_start={start}, video_end={end}. Fix: a positive fps, at least one frame, and "
                f"video_end >= video_start.",
                row=row,
            )
        return cls(fps, max_frames, sampling, start, end)

    def window(self, times: Sequence[float]) -> list[int]:
        """Indices of the frames between ``start`` and ``end`` (inclusive)."""
        low = -math.inf if self.start is None else self.start - 1e-6
        high = math.inf if self.end is None else self.end + 1e-6
        return [i for i, t in enumerate(times) if low <= t <= high]

    def pick(self, times: Sequence[float]) -> list[int]:
        """Indices (into ``times``) of the sampled frames."""
        inside = self.window(times)
        chosen = sample_indices(
            [times[i] for i in inside], fps=self.fps, max_frames=self.max_frames, sampling=self.sampling
        )
        return [inside[j] for j in chosen]


# ----------------------------------------------------------------------------------- decoding


def _describe(video: Any) -> str:
    if isinstance(video, (bytes, bytearray, memoryview)):
        return f"{len(video)} bytes"
    if isinstance(video, Mapping):
        path = video.get("path")
        return f"{len(video['bytes'])} bytes" if video.get("bytes") is not None else repr(path)
    if isinstance(video, (list, tuple)):
        return f"a list of {len(video)} frame(s)"
    text = repr(os.fspath(video)) if isinstance(video, (str, os.PathLike)) else type(video).__name__
    return text if len(text) < 80 else text[:77] + "..."


def _natural_key(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _frame_files(folder: str) -> list[str]:
    names = [n for n in os.listdir(folder) if n.lower().endswith(FRAME_SUFFIXES)]
    return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def read_video(
    video: Any, row: int, index: int, settings: Settings, part: Mapping[str, Any] | None = None
) -> list[Frame]:
    """The sampled frames of one video, in time order (see the module docstring).

    Args:
        video: the video (path, ``file://`` URI, bytes, ``{"bytes", "path"}`` dict, frame folder,
            or a list of frames).
        row: the row's number (errors name it); ``index``: the video's number in the row.
        settings: ``video_fps``, ``video_max_frames``, ``video_sampling``, ``allow_urls``.
        part: the video's content part, for its ``video_start``/``video_end``/``fps``/``nframes``/
            ``max_frames`` keys.

    Raises:
        VideoLoadError: the video cannot be read, holds no frame in the asked window, or PyAV is
            missing (each message names the row, the video and the fix).
    """
    where = f"row {row}, video {index} ({_describe(video)})"
    request = _Request.of(part or {}, settings, where, row)
    if isinstance(video, Mapping):
        video = _stored_video(video, where, row)
    if isinstance(video, (str, os.PathLike)):
        return _read_path(video, where, row, index, request, settings)
    if isinstance(video, (bytes, bytearray, memoryview)):
        data = bytes(video)
        if not data:
            raise VideoLoadError(f"unsloth_multiimage: {where} is empty. Fix: store the video file's bytes.", row=row)
        return _decode(lambda: io.BytesIO(data), where, row, request)
    if isinstance(video, (list, tuple)):
        if not video:
            raise VideoLoadError(
                f"unsloth_multiimage: {where} has no frames. Fix: give the video at least one frame, or remove the "
                f"video part.",
                row=row,
            )
        return _from_frames(list(video), where, row, index, request, settings)
    raise VideoLoadError(
        f"unsloth_multiimage: {where} is a {type(video).__name__}, not a video. Fix: use a path, bytes, a "
        f"{{'bytes', 'path'}} dict, a folder of frames or a list of frames.",
        row=row,
    )


def _stored_video(video: Mapping[str, Any], where: str, row: int) -> Any:
    """The ``bytes`` (else the ``path``) of a ``{"bytes", "path"}`` dict."""
    stored, path = video.get("bytes"), video.get("path")
    if stored is None and path is None:
        raise VideoLoadError(
            f"unsloth_multiimage: {where} is a dict without 'bytes' or 'path' (keys: {sorted(map(str, video))}). "
            f"Fix: store the video file's bytes or a local path.",
            row=row,
        )
    return stored if stored is not None else path


def _read_path(
    video: str | os.PathLike[Any], where: str, row: int, index: int, request: _Request, settings: Settings
) -> list[Frame]:
    """A video named by a path or URI: a URL (opt-in), a folder of frames, or a video file."""
    text = os.fspath(video)
    text = os.fsdecode(text) if isinstance(text, bytes) else text
    if text[:7].lower() == "file://":
        local = file_uri_path(text)
        if local is None:
            raise VideoLoadError(
                f"unsloth_multiimage: {where} is a file:// URI on a remote host. Fix: copy the video locally.",
                row=row,
            )
        text = local
    if "://" in text[:16]:
        if not settings.allow_urls:
            raise VideoLoadError(
                f"unsloth_multiimage: {where} is a URL; URLs are not fetched unless you opt in. Fix: download "
                f"the video first, or set UNSLOTH_MULTIIMAGE_ALLOW_URLS=1 (configure(allow_urls=True)).",
                row=row,
            )
        return _decode(lambda: text, where, row, request)
    if os.path.isdir(text):
        files = _frame_files(text)
        if not files:
            raise VideoLoadError(
                f"unsloth_multiimage: {where} is a folder without frame files ({', '.join(FRAME_SUFFIXES)}). "
                f"Fix: point the row at a folder of frames, or at a video file.",
                row=row,
            )
        return _from_frames(files, where, row, index, request, settings)
    if not os.path.isfile(text):
        raise VideoLoadError(
            f"unsloth_multiimage: {where}: no such video file. Fix: correct the path{path_hint(text)}.",
            row=row,
        )
    return _decode(lambda: text, where, row, request)


def _from_frames(
    frames: list[Any], where: str, row: int, index: int, request: _Request, settings: Settings
) -> list[Frame]:
    """A list of frames (or frame files) as a video sampled at ``video_fps``."""
    times = [k / settings.video_fps for k in range(len(frames))]
    picked = request.pick(times)
    _check_some(picked, len(frames), where, row, request)
    out = []
    for k in picked:
        try:
            image = load_image(frames[k], row, index, allow_urls=settings.allow_urls)
        except VideoLoadError:
            raise
        except ValueError as exc:
            raise VideoLoadError(f"unsloth_multiimage: {where}, frame {k}: {exc}", row=row) from exc
        out.append(Frame(image, times[k]))
    return out


def _check_some(picked: list[int], total: int, where: str, row: int, request: _Request) -> None:
    if picked:
        return
    window = "" if request.start is None and request.end is None else f" between {request.start} s and {request.end} s"
    raise VideoLoadError(
        f"unsloth_multiimage: {where} has no frame{window} ({total} frame(s) in all). Fix: "
        + ("widen video_start/video_end, or " if window else "")
        + "re-encode the video, or remove it (with its video part).",
        row=row,
    )


def _import_av(where: str, row: int) -> Any:
    try:
        import av
    except ImportError as exc:
        raise VideoLoadError(
            f"unsloth_multiimage: {where} must be decoded, but PyAV is not installed ({exc}). Fix: "
            f"pip install 'unsloth-multiimage[video]' (or pip install av), or give the video as a list or "
            f"folder of frame images.",
            row=row,
        ) from exc
    return av


def _decode(source: Callable[[], Any], where: str, row: int, request: _Request) -> list[Frame]:
    """Decode with PyAV: the packets' timestamps first (no decoding), then only the sampled frames."""
    av = _import_av(where, row)
    try:
        with av.open(source()) as container:
            if not container.streams.video:
                raise VideoLoadError(
                    f"unsloth_multiimage: {where} has no video stream. Fix: use a file with a video track.", row=row
                )
            stream = container.streams.video[0]
            base = stream.time_base
            stamps = sorted({p.pts for p in container.demux(stream) if p.pts is not None and p.size})
        if not stamps:
            return _decode_all(av, source, where, row, request)
        times = [float(pts * base) for pts in stamps]
        picked = request.pick(times)
        _check_some(picked, len(times), where, row, request)
        wanted = {stamps[i] for i in picked}
        frames: dict[int, Any] = {}
        with av.open(source()) as container:
            for frame in container.decode(video=0):
                if frame.pts in wanted and frame.pts not in frames:
                    frames[frame.pts] = frame.to_image()  # RGB
    except VideoLoadError:
        raise
    except Exception as exc:  # PyAV raises its own FFmpegError subclasses, OSError, ValueError ...
        raise VideoLoadError(
            f"unsloth_multiimage: {where} cannot be decoded: {type(exc).__name__}: {exc}. Fix: re-encode the video "
            f"(e.g. ffmpeg -i in -c:v libx264 out.mp4) or remove it (with its video part).",
            row=row,
        ) from exc
    missing = [stamps[i] for i in picked if stamps[i] not in frames]
    if missing:
        raise VideoLoadError(
            f"unsloth_multiimage: {where}: {len(missing)} of its {len(picked)} sampled frame(s) could not be decoded "
            f"(timestamps {missing[:5]}). Fix: re-encode the video (e.g. ffmpeg -i in -c:v libx264 out.mp4).",
            row=row,
        )
    return [Frame(frames[stamps[i]], times[i]) for i in picked]


def _decode_all(av: Any, source: Callable[[], Any], where: str, row: int, request: _Request) -> list[Frame]:
    """Streams whose packets carry no timestamp: decode every frame, time from its own or the rate."""
    with av.open(source()) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 0) or None
        decoded = [(f.time, f.to_image()) for f in container.decode(video=0)]
    times = [t if t is not None else (k / rate if rate else float(k)) for k, (t, _img) in enumerate(decoded)]
    picked = request.pick(times)
    _check_some(picked, len(times), where, row, request)
    return [Frame(decoded[i][1], times[i]) for i in picked]


# ----------------------------------------------------------------------------------- the row


def _column(example: Any, row: int, n_bare: int) -> list[Any]:
    value = example.get(VIDEOS) if isinstance(example, Mapping) else None
    entries = [] if value is None else (list(value) if isinstance(value, (list, tuple)) else [value])
    if len(entries) != n_bare:
        where = f"{len(entries)} video(s) in its `videos` column" if value is not None else "no `videos` column"
        raise ImageCountError(
            f'unsloth_multiimage: row {row} has {n_bare} bare {{"type": "video"}} part(s) but {where}. Fix: give '
            f"every `videos` entry exactly one bare video part, in order, or put each video in its part "
            f'({{"type": "video", "video": <path>}}).',
            row=row,
        )
    return entries


def expand_videos(example: Any, row: int, settings: Settings, mark: bool = False) -> Any:
    """``example`` with each video part replaced, in place, by its frames as image parts (see the
    module docstring); the very same object when the row has no video. The ``videos`` column is
    consumed (left out of the returned row). ``mark``: each frame's image part and label carry
    :data:`FRAME_KEY` (not under ``strategy="grid"``, where a video is one image).

    Raises:
        VideoLoadError: a video that cannot be read, or gives no frame.
        ImageCountError: bare video parts and ``videos`` entries disagree in number.
    """
    if not has_videos(example):
        return example
    parts = [p for _key, messages in chat_sides(example) for p in video_parts(messages)]
    bare = [video_payload(p) is None for p in parts]
    column = iter(_column(example, row, sum(bare)))
    videos = [next(column) if b else video_payload(p) for p, b in zip(parts, bare)]
    counter = iter(range(len(parts)))
    grid = settings.strategy == "grid"
    label = settings.video_frame_label

    def expand(content: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for part in content:
            if not is_video_part(part):
                out.append(part)
                continue
            k = next(counter)
            frames = read_video(videos[k], row, k, settings, part)
            if grid:
                from .grid import compose_grid

                board = compose_grid([f.image for f in frames], gap=settings.grid_gap, labels=settings.grid_labels)
                out.append({"type": "image", "image": board})
                continue
            for n, frame in enumerate(frames, 1):
                tag = {FRAME_KEY: (k, n)} if mark else {}
                if label is not None:
                    out.append({"type": "text", "text": label.format(n=n, t=frame.time), **tag})
                out.append({"type": "image", "image": frame.image, **tag})
        return out

    new = rewrite_contents(example, expand)
    if isinstance(new, dict):
        new.pop(VIDEOS, None)
    return new
