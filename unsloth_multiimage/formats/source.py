"""The dataset service: how every command (``doctor --dataset``, ``preview --dataset``, ``convert``,
``demo --compare --dataset``) and :func:`~unsloth_multiimage.formats.convert_dataset` read a
dataset, so that one file means the same rows to all of them.

* **Sources**: a ``.jsonl`` / ``.ndjson`` / ``.json`` / ``.parquet`` file or a ``save_to_disk``
  folder (read by :mod:`unsloth_multiimage.formats.files`), a ``datasets.Dataset`` /
  ``IterableDataset``, or any iterable of row dicts.
* **The default image root** (:func:`default_image_root`) is *the folder that holds the dataset's
  own files*: for a file, the folder it is in; for a ``save_to_disk`` folder, that folder itself
  (its Arrow files are inside it, the way a ``.jsonl`` file's rows are inside the file). Datasets
  are shipped as that folder plus the images beside the data (LLaVA's ``llava.json`` next to
  ``images/``), so this is where a relative path written into the data points. An in-memory
  dataset has no root: its relative paths are read from the working directory, as the collator
  reads them. ``image_root=`` replaces the default.
* **Paths**: a relative image path is kept when it exists from the working directory (that is
  the file the collator opens during training), else joined to the image root. When more than
  :data:`MISSING_PATHS_WARNED` resolved paths exist nowhere, a ``logging`` warning names a few
  (a wrong root is the usual cause) when the rows have been read.
* **Convert or not**: a row is converted (:func:`~unsloth_multiimage.formats.to_messages`) if and
  only if its layout, detected per row (or the ``format`` given), is not one the collator reads as
  it is (:data:`COLLATOR_LAYOUTS`); :func:`prepare` applies that rule to one row.
* **Workers**: :func:`worker_map` is the one process pool. It uses the ``spawn`` start method on
  every platform: a forked child inherits the parent's threads' locks (torch's OpenMP pool, the
  tokenizers' Rayon pool, logging handlers) in whatever state they were, which deadlocks or
  makes tokenizers disable parallelism; spawn starts clean, behaves the same on Linux, macOS and
  Windows, and costs one package import per worker, paid once per command.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import RowError
from ..rows.chat import column_entries, has_column, rewrite_image_parts
from ..rows.layouts import detect
from .convert import is_relative_path, resolve_paths, to_messages

__all__ = [
    "COLLATOR_LAYOUTS",
    "MISSING_PATHS_WARNED",
    "Prepared",
    "PathReport",
    "default_image_root",
    "image_root_of",
    "load_source",
    "layout_of",
    "needs_conversion",
    "prepare",
    "prepare_rows",
    "read_source",
    "worker_map",
]

logger = logging.getLogger("unsloth_multiimage")

#: The layouts the collator reads as they are; a row in any other layout is converted.
COLLATOR_LAYOUTS = ("messages", "prompt_completion")

#: Resolved image paths that may exist nowhere before :class:`PathReport` warns (a few missing
#: files are the dry run's to report row by row; more point at a wrong image root).
MISSING_PATHS_WARNED = 3

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
    """The row's layout: detected when ``format`` is ``"auto"``, else ``format``."""
    return detect(example) if format == "auto" else format


def needs_conversion(layout: str) -> bool:
    """The one rule: a row is converted iff its layout is not one the collator reads as it is."""
    return layout not in COLLATOR_LAYOUTS


@dataclass(frozen=True)
class Prepared:
    """One row as the collator should get it, or why it cannot.

    Attributes:
        index: the row's number in the dataset.
        layout: its layout (detected, or the ``format`` given).
        row: the row converted if its layout needs it, relative paths resolved; None on error.
        error: the row-named message when the row cannot be converted.
        missing: resolved relative image paths that exist nowhere.
    """

    index: int
    layout: str
    row: dict[str, Any] | None
    error: str | None = None
    missing: tuple[str, ...] = ()

    @property
    def converted(self) -> bool:
        return needs_conversion(self.layout)


def prepare(example: Mapping[str, Any], index: int, *, format: str = "auto", image_root: str | None = None) -> Prepared:
    """Row ``index`` as the collator should get it (the rules in the module docstring); never raises
    for a bad row: the :class:`Prepared` holds its error."""
    layout = layout_of(example, format)
    try:
        row: Any = to_messages(example, row=index, format=layout) if needs_conversion(layout) else example
    except RowError as exc:
        return Prepared(index, layout, None, str(exc))
    if image_root is None:
        return Prepared(index, layout, dict(row))
    resolved = resolve_paths(row, image_root, only_missing=True)
    return Prepared(index, layout, dict(resolved), None, tuple(_missing(row, resolved)))


def _missing(before: Any, after: Any) -> Iterator[str]:
    """Paths that resolving changed (relative, absent from the working directory) and that do not exist."""
    old, new = _paths(before), _paths(after)
    for a, b in zip(old, new):
        if a != b and is_relative_path(a) and not os.path.exists(b):
            yield b


def _paths(row: Any) -> list[str]:
    """Every image path string of a row, image parts then the ``images`` column, as
    :func:`~unsloth_multiimage.formats.resolve_paths` walks them."""
    out: list[str] = []

    def add(image: Any) -> None:
        path = image.get("path") if isinstance(image, Mapping) and image.get("bytes") is None else image
        if isinstance(path, (str, os.PathLike)):
            out.append(os.fspath(path))

    def part(_k: int, p: Mapping[str, Any]) -> Mapping[str, Any]:
        value = next((p.get(key) for key in ("image", "path") if p.get(key) is not None), None)
        add(value)
        return p

    rewrite_image_parts(row, part)
    for entry in column_entries(row) if has_column(row) else []:
        add(entry)
    return out


@dataclass
class PathReport:
    """Counts the resolved image paths that exist nowhere and warns once (``logging``) when there
    are more than :data:`MISSING_PATHS_WARNED`, naming a few and the root they were read from."""

    image_root: str | None
    missing: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, missing: Sequence[str]) -> None:
        """Count one row's missing paths (:attr:`Prepared.missing`)."""
        self.missing += len(missing)
        self.examples += list(missing[: max(0, 3 - len(self.examples))])

    def warn(self) -> None:
        if self.missing > MISSING_PATHS_WARNED:
            logger.warning(
                "unsloth_multiimage: %d relative image path(s) exist neither from the working directory nor "
                "under the image root %s, e.g. %s. Fix: pass the folder they are relative to (--image-root DIR, "
                "image_root=).",
                self.missing,
                self.image_root,
                ", ".join(self.examples),
            )


def _prepare_item(item: tuple[int, Mapping[str, Any]], format: str, image_root: str | None) -> Prepared:
    return prepare(item[1], item[0], format=format, image_root=image_root)


def prepare_rows(
    data: Any,
    *,
    format: str = "auto",
    image_root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    num_proc: int = 1,
) -> Iterator[Prepared]:
    """Every row of ``data`` through :func:`prepare`, in order, with the image root of
    :func:`image_root_of`; warns about missing paths when the rows have all been read."""
    import functools

    root = image_root_of(data, image_root)
    report = PathReport(root)
    work = functools.partial(_prepare_item, format=format, image_root=root)
    for prepared in worker_map(work, enumerate(read_source(data, limit=limit)), num_proc):
        report.add(prepared.missing)
        yield prepared
    report.warn()


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
    ``num_proc`` spawned processes (why spawn: the module docstring). ``fn`` and ``initializer``
    must be picklable (module-level functions or their partials)."""
    if num_proc <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(num_proc, initializer=initializer, initargs=tuple(initargs)) as pool:
        yield from pool.imap(fn, items, chunksize=chunksize)
