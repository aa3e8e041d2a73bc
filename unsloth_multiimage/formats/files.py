"""Stream rows from and to dataset files: JSON Lines, JSON, Parquet and ``save_to_disk`` folders.

Rows are plain dicts holding what the file stores: image paths as written, Parquet / Arrow
images as ``{"bytes", "path"}`` dicts (never decoded). Relative image paths are **not**
resolved here: the dataset service (:mod:`unsloth_multiimage.formats.source`), which every
command reads through, does it.

=================== ========================================================================
source              how it is read
=================== ========================================================================
``.jsonl``          line by line; a bad line raises naming its line number
``.json``           a list of rows (parsed whole); a ``.json`` file holding JSON Lines (common
                    on the Hub) is read line by line
``.parquet``        batch by batch with pyarrow (imported on first use)
folder              written by ``Dataset.save_to_disk`` (``datasets`` imported on first use); a
                    ``DatasetDict`` folder gives its ``train`` split unless ``split=`` says otherwise
=================== ========================================================================
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import DatasetIOError

__all__ = ["read_rows", "count_rows", "write_rows", "mixed_columns", "BATCH_ROWS"]

logger = logging.getLogger(__name__)

#: Rows per Parquet / Arrow batch when streaming.
BATCH_ROWS = 1024

_SUFFIXES = ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet"))


def _kind(path: str, *, writing: bool = False) -> str:
    if not writing and os.path.isdir(path):
        return "folder"
    lower = path.lower()
    for suffix, kind in _SUFFIXES:
        if lower.endswith(suffix):
            return kind
    what = ".jsonl, .json or .parquet" if writing else ".jsonl, .json, .parquet or a folder written by save_to_disk"
    raise DatasetIOError(f"{path}: unsupported file type. Fix: use {what}.")


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("unsloth_multiimage: Parquet files need pyarrow. Fix: pip install pyarrow") from exc
    return pa, pq


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            "unsloth_multiimage: save_to_disk folders need the `datasets` package. Fix: pip install datasets"
        ) from exc
    return datasets


# ------------------------------------------------------------------------------------ reading


def _first_char(path: str) -> str:
    """The first non-whitespace character of a text file ('' when there is none)."""
    with open(path, encoding="utf-8-sig") as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def _read_jsonl(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetIOError(
                    f"{path}, line {lineno}: not valid JSON ({exc.msg} at column {exc.colno}). Fix: one JSON object "
                    f"per line (a .json file may instead hold one list of rows)."
                ) from None
            if not isinstance(row, dict):
                raise DatasetIOError(
                    f"{path}, line {lineno}: a JSON {type(row).__name__}, not an object. Fix: one row object per line."
                )
            yield row


def _read_json(path: str) -> Iterator[dict[str, Any]]:
    if _first_char(path) != "[":
        logger.debug("%s does not start with '[': reading it as JSON Lines", path)
        yield from _read_jsonl(path)
        return
    with open(path, encoding="utf-8-sig") as fh:
        try:
            rows = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DatasetIOError(
                f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
                f"Fix: repair the file or export it again."
            ) from None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DatasetIOError(
                f"{path}: row {i} is a JSON {type(row).__name__}, not an object. Fix: a list of row objects."
            )
        yield row


def _read_parquet(path: str) -> Iterator[dict[str, Any]]:
    pa, pq = _pyarrow()
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        for batch in batches:
            yield from batch.to_pylist()
    except pa.ArrowException as exc:
        raise DatasetIOError(f"{path}: not a readable Parquet file ({exc}). Fix: export it again.") from None


def _load_folder(path: str, split: str | None) -> Any:
    if not any(os.path.isfile(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json")):
        raise DatasetIOError(
            f"{path}: a folder without state.json or dataset_dict.json, so not one written by "
            f"Dataset.save_to_disk. Fix: pass a .jsonl/.json/.parquet file or a save_to_disk folder."
        )
    datasets = _datasets()
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        name = split if split is not None else "train"
        if name not in loaded:
            raise DatasetIOError(
                f"{path} is a DatasetDict with split(s) {sorted(loaded)} and no {name!r}. "
                f"Fix: pass split= one of {sorted(loaded)}."
            )
        return loaded[name]
    if split is not None:
        raise DatasetIOError(f"{path} is a single Dataset, not a DatasetDict. Fix: leave split= unset.")
    return loaded


def _read_folder(path: str, split: str | None) -> Iterator[dict[str, Any]]:
    for table in _load_folder(path, split).with_format("arrow").iter(batch_size=BATCH_ROWS):
        yield from table.to_pylist()


def read_rows(
    path: str | os.PathLike[str], *, limit: int | None = None, split: str | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the rows of a dataset file or ``save_to_disk`` folder.

    Args:
        path: a ``.jsonl`` / ``.ndjson`` / ``.json`` / ``.parquet`` file or a ``save_to_disk`` folder.
        limit: stop after this many rows (None: all).
        split: the split of a ``DatasetDict`` folder (default ``"train"``).

    Returns:
        An iterator of row dicts. The file type is checked at once; the rows are read lazily.

    Raises:
        DatasetIOError: an unsupported path (at once), or a malformed line / row (while iterating).
        ImportError: pyarrow or datasets is needed and missing.
    """
    path = os.fspath(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, not {limit}")
    kind = _kind(path)
    if kind == "folder":
        rows: Iterator[dict[str, Any]] = _read_folder(path, split)
    else:
        if split is not None:
            raise DatasetIOError(f"{path}: split= only applies to save_to_disk folders. Fix: leave it unset.")
        rows = {"jsonl": _read_jsonl, "json": _read_json, "parquet": _read_parquet}[kind](path)
    return rows if limit is None else itertools.islice(rows, limit)


def count_rows(path: str | os.PathLike[str], *, split: str | None = None) -> int:
    """The number of rows :func:`read_rows` would yield, as cheaply as the format allows.

    JSON Lines: non-blank lines are counted (not parsed). Parquet: the footer's row count.
    Folders: the Arrow table's length (memory-mapped). A ``.json`` list is parsed whole.
    """
    path = os.fspath(path)
    kind = _kind(path)
    if kind == "json" and _first_char(path) != "[":
        kind = "jsonl"
    if kind == "jsonl":
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    if kind == "json":
        return sum(1 for _ in _read_json(path))
    if kind == "parquet":
        _, pq = _pyarrow()
        n_rows: int = pq.ParquetFile(path).metadata.num_rows
        return n_rows
    return len(_load_folder(path, split))


# ------------------------------------------------------------------------------------ writing


def _non_json(value: Any, where: str) -> str | None:
    """Where in ``value`` the first value JSON cannot hold sits (e.g. ``images[0].bytes``)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _non_json(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_json(item, f"{where}[{i}]")
            if found:
                return found
        return None
    return f"{where} ({type(value).__name__})"


def _as_dict(row: Any, i: int, path: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise DatasetIOError(f"{path}: row {i} is a {type(row).__name__}, not a dict. Fix: write row dicts.")
    return dict(row)


def _json_line(row: Any, i: int, path: str) -> str:
    row = _as_dict(row, i, path)
    try:
        return json.dumps(row, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise DatasetIOError(
            f"{path}: row {i} holds a value JSON cannot store: {_non_json(row, '') or exc}. Fix: write a .parquet "
            f"file (bytes stay bytes), or store image paths instead of bytes / PIL images."
        ) from None


def _kind_of(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def mixed_columns(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Top-level columns whose values are of more than one kind across ``rows`` (None aside:
    Arrow stores it in any column), e.g. ``{"id": ["int", "str"]}``: what Arrow cannot store."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            if value is not None:
                kinds.setdefault(str(key), set()).add(_kind_of(value))
    return {k: sorted(v) for k, v in kinds.items() if len(v) > 1 and not v <= {"int", "float"}}


def _table(rows: list[Any], schema: Any, start: int, path: str) -> Any:
    """A pyarrow table of ``rows``; on failure, the error names the first row that breaks it and
    the columns whose values differ in type."""
    pa, _ = _pyarrow()
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, TypeError) as exc:
        culprit, reason = _culprit(rows, schema), exc
    mixed = mixed_columns(rows)
    columns = "; ".join(f"`{name}` holds {', '.join(kinds)}" for name, kinds in mixed.items())
    fix = (
        f"give {' and '.join(f'`{n}`' for n in mixed)} one type in every row (e.g. all strings)"
        if mixed
        else "give each column one type in every row (e.g. all image paths, or all {bytes, path} dicts; no PIL images)"
    )
    raise DatasetIOError(
        f"{path}: row {start + culprit if culprit is not None else '?'} cannot be stored in Parquet with the rows "
        f"before it ({columns or reason}). Fix: {fix}, or write a .jsonl / .json file, which keeps mixed types."
    )


def _culprit(rows: list[Any], schema: Any) -> int | None:
    pa, _ = _pyarrow()
    merged = schema
    for j, row in enumerate(rows):
        try:
            if schema is not None:
                pa.Table.from_pylist([row], schema=schema)
                continue
            own = pa.Table.from_pylist([row]).schema
            merged = own if merged is None else pa.unify_schemas([merged, own], promote_options="permissive")
        except (pa.ArrowException, TypeError):
            return j
    return None


def write_rows(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], *, schema: Any = None) -> int:
    """Write rows to a ``.jsonl``, ``.json`` or ``.parquet`` file (atomically: a temp file, then a
    rename), with the permissions the user's umask gives a new file.

    JSON files cannot hold bytes or PIL images (an error names the row and the key). In Parquet,
    bytes stay bytes. Without ``schema`` the Parquet rows are gathered in memory and the schema
    is inferred from all of them; with a ``pyarrow.Schema`` they are streamed in batches of
    :data:`BATCH_ROWS` (keys missing from the schema are dropped, as pyarrow does).

    Args:
        path: the file to write (its suffix picks the format).
        rows: row dicts.
        schema: optional ``pyarrow.Schema`` for Parquet.

    Returns:
        The number of rows written.

    Raises:
        DatasetIOError: an unsupported suffix, or a row the format cannot hold.
    """
    path = os.fspath(path)
    kind = _kind(path, writing=True)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        count = _write(kind, tmp, path, rows, schema)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; the file is the user's, like any other
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    logger.debug("wrote %d row(s) to %s", count, path)
    return count


def _umask() -> int:
    """The process umask (read by setting it, then restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(kind: str, tmp: str, path: str, rows: Iterable[Mapping[str, Any]], schema: Any) -> int:
    count = 0
    if kind in ("jsonl", "json"):
        with open(tmp, "w", encoding="utf-8") as fh:
            sep = "\n" if kind == "jsonl" else ",\n"
            fh.write("" if kind == "jsonl" else "[\n")
            for count, row in enumerate(rows, 1):
                fh.write(("" if count == 1 else sep) + _json_line(row, count - 1, path))
            fh.write(("\n" if count else "") if kind == "jsonl" else ("\n]\n" if count else "]\n"))
        return count
    _, pq = _pyarrow()
    if schema is None:
        buffered = [_as_dict(r, i, path) for i, r in enumerate(rows)]
        pq.write_table(_table(buffered, None, 0, path), tmp)
        return len(buffered)
    with pq.ParquetWriter(tmp, schema) as writer:
        it = iter(rows)
        while batch := [_as_dict(r, count + i, path) for i, r in enumerate(itertools.islice(it, BATCH_ROWS))]:
            writer.write_table(_table(batch, schema, count, path))
            count += len(batch)
    return count
