"""The dataset service: how every command (``doctor --dataset``, ``preview --dataset``, ``convert``,
``demo --compare --dataset``) and :func:`~unsloth_multiimage.formats.convert_dataset` read a
dataset, so that one file means the same rows to all of them.

* **Sources**: a ``.jsonl`` / ``.ndjson`` / ``.json`` / ``.parquet`` file or a ``save_to_disk``
  folder (read by :mod:`unsloth_multiimage.formats.files`), a ``datasets.Dataset`` /
  ``IterableDataset``, or any iterable of row dicts.
* **The one rule for relative paths**: a relative image or video path is read from the *image
  root*: ``image_root=`` (``--image-root``) when given, else, for a dataset read from a path, *the
  folder that holds the dataset's own files* (:func:`default_image_root`: a file's folder; a
  ``save_to_disk`` folder itself, whose Arrow files are inside it the way a ``.jsonl`` file's rows
  are inside the file), because datasets ship as that folder with their images beside the data
  (LLaVA's ``llava.json`` next to ``images/``). Rows handed over in memory (a ``datasets.Dataset``,
  the collator during training, ``prepare_inputs``) have no folder: their root is the working
  directory. The working directory of a command is never consulted for a dataset read from a
  path, so a file means the same rows wherever a command runs. :func:`prepare` writes every
  relative path it resolves as an absolute one (``convert`` writes those, so its output is read
  the same from anywhere, by the collator too). When more than :data:`MISSING_PATHS_WARNED` paths
  exist nowhere, a ``logging`` warning names a few, the root they were read from, and the fix.
* **Layouts**: every layout :func:`~unsloth_multiimage.formats.detect` names, plus the two RL
  layouts of TRL named here (:func:`layout_of`): ``preference`` (DPO: ``chosen`` and ``rejected``
  beside a prompt) and ``grpo`` (a prompt without an answer: prompt turns, or TRL's string prompt
  with image tags).
* **Convert or not**: a row is converted if and only if its layout is not one the collator reads
  as it is (:data:`COLLATOR_LAYOUTS`): SFT layouts by :func:`~unsloth_multiimage.formats.to_messages`,
  preference rows by :func:`~unsloth_multiimage.formats.to_preference` (TRL's DPO layout), GRPO
  rows (and every row with ``to="grpo"``) by :func:`~unsloth_multiimage.formats.to_grpo_prompt`;
  :func:`prepare` applies that rule to one row, and :func:`training_views` gives the rows a
  trainer collates from it (a preference row: its prompt with each answer).
* **Workers**: :func:`worker_map` is the one process pool (spawned, never forked).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import RowError
from ..rows.layouts import FORMATS, detect
from .convert import resolve_paths, to_messages
from .preference import to_grpo_prompt, to_preference

__all__ = [
    "COLLATOR_LAYOUTS",
    "GRPO",
    "LAYOUTS",
    "PREFERENCE",
    "TARGETS",
    "MISSING_PATHS_WARNED",
    "MIN_ROWS_FOR_WORKERS",
    "Prepared",
    "PathReport",
    "convert_row",
    "default_image_root",
    "image_root_of",
    "load_source",
    "layout_of",
    "needs_conversion",
    "prepare",
    "prepare_rows",
    "processes_for",
    "read_source",
    "row_paths",
    "training_views",
    "worker_map",
]

logger = logging.getLogger("unsloth_multiimage")

#: TRL's preference (DPO) layout: a prompt, ``chosen`` and ``rejected``.
PREFERENCE = "preference"
#: TRL's GRPO layout: a prompt (turns, or a string with image tags) and no answer turn.
GRPO = "grpo"
#: Every layout a row may be read in (``format=`` takes these, or ``"auto"``).
LAYOUTS = (*FORMATS, PREFERENCE, GRPO)
#: The layouts the collator reads as they are; a row in any other layout is converted.
COLLATOR_LAYOUTS = ("messages", "prompt_completion")
#: What :func:`prepare` writes: ``auto`` (each row in the layout its trainer reads: SFT rows as
#: messages, preference rows as TRL's DPO rows, GRPO rows as GRPO prompts) or ``grpo`` (every row
#: as a GRPO prompt with its ``answer``).
TARGETS = ("auto", GRPO)

#: Resolved image paths that may exist nowhere before :class:`PathReport` warns (a few missing
#: files are the dry run's to report row by row; more point at a wrong image root).
MISSING_PATHS_WARNED = 3

#: Rows below which ``num_proc`` > 1 runs in this process: each spawned worker imports the package
#: and builds its processor (seconds) before its first row, and a row takes a fraction of a
#: millisecond, so a pool pays off only on large datasets. On 2 idle CPUs 100,000 rows took 28.3 s
#: on one process and 17.8 s on two (README, Performance), a break-even near 26,000 rows; at load
#: average 2-3 two workers lost up to 40,000 rows (15.4 s against 40.7 s; ``python
#: benchmarks/dataset_check.py --break-even 5000,20000,40000``, 2026-12-06).
MIN_ROWS_FOR_WORKERS = 30_000

_T = TypeVar("_T")
_R = TypeVar("_R")


def _is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))


def read_source(data: Any, *, limit: int | None = None, split: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of ``data`` as dicts, as stored (nothing resolved or converted).

    Args:
        data: a file or ``save_to_disk`` folder path, a ``datasets`` dataset, or an iterable of rows.
        limit: stop after this many rows (None: all).
        split: the split of a ``DatasetDict`` folder (default ``"train"``).
    """
    if _is_path(data):
        from .files import read_rows

        return read_rows(data, limit=limit, split=split)
    rows: Iterable[Any] = data
    if hasattr(data, "with_format") and hasattr(data, "__len__"):  # an Arrow-backed Dataset: no decoding
        rows = _arrow_rows(data)
    it = (dict(r) for r in rows)
    return it if limit is None else itertools.islice(it, limit)


def load_source(path: str | os.PathLike[str], *, split: str | None = None) -> Any:
    """A path as a dataset object: a ``save_to_disk`` folder as its ``datasets.Dataset`` (Arrow,
    nothing decoded), a file as the list of its rows."""
    from . import files

    if os.path.isdir(path):
        return files._load_folder(os.fspath(path), split)
    return list(files.read_rows(path, split=split))


def _arrow_rows(dataset: Any) -> Iterator[dict[str, Any]]:
    for table in dataset.with_format("arrow").iter(batch_size=1024):
        yield from table.to_pylist()


def default_image_root(data: Any) -> str | None:
    """The folder that holds the dataset's own files (see the module docstring): a file's folder,
    a ``save_to_disk`` folder itself; None for an in-memory dataset."""
    if not _is_path(data):
        return None
    path: str = os.path.abspath(os.fspath(data))
    return path if os.path.isdir(path) else os.path.dirname(path)


def image_root_of(data: Any, image_root: str | os.PathLike[str] | None = None) -> str | None:
    """``image_root`` when given, else :func:`default_image_root` of ``data``."""
    return os.fspath(image_root) if image_root is not None else default_image_root(data)


def layout_of(example: Any, format: str = "auto") -> str:
    """The row's layout (one of :data:`LAYOUTS` or ``"unknown"``): ``format`` when it is not
    ``"auto"``; else ``preference`` for a row with ``chosen`` and ``rejected``, ``grpo`` for a
    prompt without an answer (prompt turns and no ``completion``, or a string ``prompt``), else
    what :func:`~unsloth_multiimage.formats.detect` names."""
    if format != "auto":
        return format
    if isinstance(example, Mapping) and example.get("chosen") is not None and example.get("rejected") is not None:
        return PREFERENCE
    found = detect(example)
    if isinstance(example, Mapping) and example.get("completion") is None:
        if found == "prompt_completion" or (found == "unknown" and isinstance(example.get("prompt"), str)):
            return GRPO
    return found


def needs_conversion(layout: str) -> bool:
    """The one rule: a row is converted iff its layout is not one the collator reads as it is."""
    return layout not in COLLATOR_LAYOUTS


def training_views(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows a trainer collates from one prepared row: a preference row (TRL's DPO layout) gives
    its prompt with each answer, each as one chat (``chosen`` first); a GRPO prompt (no answer
    turn) its prompt as a chat (the turns the model is given to answer); any other row is its own
    view. (TRL collates the RL rows itself: the chats are what its processor call gets.)"""
    if row.get("chosen") is not None and row.get("rejected") is not None and row.get("prompt") is not None:
        rest = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
        return [{**rest, "messages": list(row["prompt"]) + list(row[key])} for key in ("chosen", "rejected")]
    if isinstance(row.get("prompt"), list) and row.get("completion") is None and row.get("messages") is None:
        rest = {k: v for k, v in row.items() if k not in ("prompt", "completion")}
        return [{**rest, "messages": list(row["prompt"])}]
    return [dict(row)]


@dataclass(frozen=True)
class Prepared:
    """One row as the collator should get it, or why it cannot.

    Attributes:
        index: the row's number in the dataset.
        layout: its layout (:func:`layout_of`, or the ``format`` given).
        row: the row converted if its layout needs it, relative paths resolved; None on error.
        error: the row-named message when the row cannot be converted.
        missing: the row's local image and video paths (resolved) that exist nowhere.
    """

    index: int
    layout: str
    row: dict[str, Any] | None
    error: str | None = None
    missing: tuple[str, ...] = ()

    @property
    def converted(self) -> bool:
        return needs_conversion(self.layout)


def convert_row(example: Mapping[str, Any], index: int, *, format: str = "auto", to: str = "auto") -> Any:
    """Row ``index`` in the layout its trainer reads (the rules in the module docstring), relative
    paths as they are; the very row when it needs no conversion.

    Raises:
        RowError: the row cannot be converted (the message names it, what was found and the fix).
    """
    return _convert(example, index, layout_of(example, format), to)


def _convert(example: Mapping[str, Any], index: int, layout: str, to: str) -> Any:
    if to == GRPO or layout == GRPO:
        fmt = {"format": layout} if layout in FORMATS else {}
        if layout == GRPO and isinstance(example.get("prompt"), str):
            fmt = {}
        return to_grpo_prompt(example, row=index, **fmt)
    if layout == PREFERENCE:
        return to_preference(example, row=index)
    if needs_conversion(layout):
        return to_messages(example, row=index, format=layout)
    return example


def prepare(
    example: Mapping[str, Any],
    index: int,
    *,
    format: str = "auto",
    image_root: str | None = None,
    to: str = "auto",
) -> Prepared:
    """Row ``index`` as the collator should get it (the rules in the module docstring); never raises
    for a bad row: the :class:`Prepared` holds its error. ``to``: one of :data:`TARGETS`."""
    layout = layout_of(example, format)
    try:
        row: Any = _convert(example, index, layout, to)
    except RowError as exc:
        return Prepared(index, layout, None, str(exc))
    if image_root is not None:
        row = resolve_paths(row, image_root)
    return Prepared(index, layout, dict(row), None, tuple(_missing(row)))


_PATH_KEYS = ("image", "path", "video", "video_url", "url")
_MEDIA_TYPES = ("image", "image_url", "video", "video_url")


def _missing(row: Any) -> list[str]:
    """The row's local image and video paths that do not exist (URLs, bytes and data: URIs aside)."""
    return [p for p in row_paths(row) if "://" not in p[:16] and p[:5].lower() != "data:" and not os.path.exists(p)]


def row_paths(value: Any, column: bool = False) -> list[str]:
    """Every image or video path string of a row: in image / video parts, the ``images`` and
    ``videos`` columns (strings, ``{"bytes": None, "path"}`` dicts, lists of frames)."""
    out: list[str] = []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)] if column else []
    if isinstance(value, Mapping):
        if column and value.get("bytes") is None and isinstance(value.get("path"), (str, os.PathLike)):
            return [os.fspath(value["path"])]
        part = value.get("type") in _MEDIA_TYPES
        for key, item in value.items():
            if key in ("images", "videos") or (part and key in _PATH_KEYS):
                entries = item if isinstance(item, (list, tuple)) else [item]
                for entry in entries:
                    url = entry.get("url") if isinstance(entry, Mapping) and key.endswith("_url") else entry
                    out += row_paths(url, column=True)
            elif isinstance(item, (list, tuple, Mapping)):
                out += row_paths(item)
        return out
    if isinstance(value, (list, tuple)):
        for item in value:
            out += row_paths(item, column=column)
    return out


@dataclass
class PathReport:
    """Counts the image and video paths that exist nowhere and warns once (``logging``) when there
    are more than :data:`MISSING_PATHS_WARNED`, naming a few, the root relative paths were read
    from, and (when they exist there) that they are relative to the working directory instead."""

    image_root: str | None
    missing: int = 0
    examples: list[str] = field(default_factory=list)
    from_here: int = 0

    def add(self, missing: Sequence[str]) -> None:
        """Count one row's missing paths (:attr:`Prepared.missing`)."""
        self.missing += len(missing)
        self.examples += list(missing[: max(0, 3 - len(self.examples))])
        if self.image_root is not None:
            root = os.path.abspath(self.image_root)
            self.from_here += sum(
                1 for p in missing if p.startswith(root + os.sep) and os.path.exists(os.path.relpath(p, root))
            )

    def advice(self) -> str:
        """The fix for the missing paths."""
        if self.from_here and self.from_here == self.missing:
            return (
                f"they exist relative to the working directory {os.getcwd()!r}: pass --image-root {os.getcwd()} "
                f"(image_root=), or move the dataset file beside its images"
            )
        return "pass the folder the paths are relative to (--image-root DIR, image_root=)"

    def warn(self) -> None:
        if self.missing > MISSING_PATHS_WARNED:
            logger.warning(
                "unsloth_multiimage: %d image/video path(s) of the rows exist nowhere (relative paths are read from "
                "the image root %s), e.g. %s. Fix: %s.",
                self.missing,
                self.image_root,
                ", ".join(self.examples),
                self.advice(),
            )


def _prepare_item(item: tuple[int, Mapping[str, Any]], format: str, image_root: str | None, to: str) -> Prepared:
    return prepare(item[1], item[0], format=format, image_root=image_root, to=to)


def prepare_rows(
    data: Any,
    *,
    format: str = "auto",
    image_root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    num_proc: int = 1,
    to: str = "auto",
) -> Iterator[Prepared]:
    """Every row of ``data`` through :func:`prepare`, in order, with the image root of
    :func:`image_root_of`; warns about missing paths when the rows have all been read."""
    import functools

    root = image_root_of(data, image_root)
    report = PathReport(root)
    work = functools.partial(_prepare_item, format=format, image_root=root, to=to)
    for prepared in worker_map(work, enumerate(read_source(data, limit=limit)), num_proc):
        report.add(prepared.missing)
        yield prepared
    report.warn()


def processes_for(data: Any, num_proc: int, limit: int | None = None) -> tuple[int, str]:
    """``(processes, why)``: ``num_proc``, or 1 (and why) when ``data`` has fewer than
    :data:`MIN_ROWS_FOR_WORKERS` rows to read (counted cheaply: lines, a Parquet footer, an Arrow
    length; a ``.json`` list is not parsed twice and counts as large)."""
    if num_proc <= 1:
        return 1, ""
    n: int | None = None
    if _is_path(data) and not os.fspath(data).lower().endswith(".json"):
        from .files import count_rows

        n = count_rows(data)
    elif hasattr(data, "__len__"):
        n = len(data)
    if n is not None and limit is not None:
        n = min(n, limit)
    if n is None or n >= MIN_ROWS_FOR_WORKERS:
        return num_proc, ""
    return 1, (
        f"--num-proc {num_proc}: one process for {n:,} row(s): starting workers costs more than they save "
        f"below {MIN_ROWS_FOR_WORKERS:,} rows"
    )


def worker_map(
    fn: Callable[[_T], _R],
    items: Iterable[_T],
    num_proc: int = 1,
    *,
    initializer: Callable[..., object] | None = None,
    initargs: Sequence[Any] = (),
    chunksize: int = 256,
) -> Iterator[_R]:
    """``fn`` over ``items`` in order: in this process when ``num_proc <= 1``, else in a pool of
    ``num_proc`` spawned processes. ``fn`` and ``initializer`` must be picklable (module-level
    functions or their partials).

    Spawn on every platform: a forked child inherits the parent's threads' locks (torch's OpenMP
    pool, the tokenizers' Rayon pool, logging handlers) in whatever state they were, which
    deadlocks or makes tokenizers disable parallelism; spawn starts clean, behaves the same on
    Linux, macOS and Windows, and costs one package import per worker, paid once per command."""
    if num_proc <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(num_proc, initializer=initializer, initargs=tuple(initargs)) as pool:
        yield from pool.imap(fn, items, chunksize=chunksize)
