"""``unsloth-multiimage convert IN OUT``: a dataset file in a public layout to the messages layout.

Reads JSON Lines, JSON, Parquet or a ``save_to_disk`` folder; writes ``.jsonl``, ``.json``,
``.parquet``, or a ``save_to_disk`` folder (an OUT without a suffix). Each row goes through
:func:`unsloth_multiimage.formats.to_messages` (the layout detected per row, or ``--format``).
A row that cannot be converted is never dropped silently: without ``--skip-bad`` nothing is
written and every bad row is listed; with it, the good rows are written and the bad ones listed.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..formats.convert import is_relative_path

__all__ = ["ConvertResult", "convert_file"]


@dataclass
class ConvertResult:
    """What ``convert`` did."""

    rows: int = 0
    written: int = 0
    formats: collections.Counter = field(default_factory=collections.Counter)
    errors: list[tuple[int, str]] = field(default_factory=list)
    relative_paths: int = 0


def _is_relative_path(image: Any) -> bool:
    path = image.get("path") if isinstance(image, dict) and image.get("bytes") is None else image
    return isinstance(path, str) and is_relative_path(path)


def _convert_one(item: tuple[int, Any], fmt: str, image_root: str | None) -> tuple[int, str, Any, str | None]:
    from .. import formats
    from ..errors import RowError

    row, example = item
    layout = formats.detect(example) if fmt == "auto" else fmt
    try:
        return row, layout, formats.to_messages(example, row=row, format=layout, image_root=image_root), None
    except RowError as exc:
        return row, layout, None, str(exc)


def _converted(
    rows: Iterable[Any], fmt: str, image_root: str | None, num_proc: int
) -> Iterator[tuple[int, str, Any, str | None]]:
    work = functools.partial(_convert_one, fmt=fmt, image_root=image_root)
    if num_proc <= 1:
        yield from map(work, enumerate(rows))
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(num_proc) as pool:
        yield from pool.imap(work, enumerate(rows), chunksize=256)


def convert_file(
    source: str,
    target: str,
    *,
    fmt: str = "auto",
    image_root: str | None = None,
    num_proc: int = 1,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ConvertResult:
    """Convert ``source`` into ``target`` (see the module docstring). Returns what was done."""
    from .dataset_io import read_rows, write_rows

    result = ConvertResult()
    good: list[Any] = []
    for row, layout, converted, error in _converted(read_rows(source), fmt, image_root, num_proc):
        result.rows += 1
        result.formats[layout] += 1
        if error is not None:
            result.errors.append((row, error))
        else:
            result.relative_paths += sum(_is_relative_path(img) for img in converted.get("images") or [])
            good.append(converted)
        if progress:
            progress(1)
    if result.errors and not skip_bad:
        return result
    if os.path.splitext(target)[1]:
        result.written = write_rows(target, good)
    else:
        import datasets

        datasets.Dataset.from_list(good).save_to_disk(target)
        result.written = len(good)
    return result


def format_result(result: ConvertResult, source: str, target: str, skip_bad: bool) -> str:
    from .. import formats

    layouts = ", ".join(f"{n} {name}" for name, n in result.formats.most_common())
    out = [f"convert: {result.rows} row(s) read from {source} ({layouts or 'none'})"]
    for row, message in result.errors[:50]:
        out.append(f"  row {row}: {message}")
    if len(result.errors) > 50:
        out.append(f"  ... and {len(result.errors) - 50} more")
    if result.errors and not skip_bad:
        out.append(
            f"convert: {len(result.errors)} row(s) cannot be converted; nothing written. Fix them, or pass "
            f"--skip-bad to write the {result.rows - len(result.errors)} other row(s)."
        )
        return "\n".join(out)
    if result.errors:
        out.append(f"convert: skipped the {len(result.errors)} row(s) above (--skip-bad)")
    if result.relative_paths:
        out.append(
            f"note: {result.relative_paths} image path(s) are relative: the collator reads them from the working "
            f"directory of training (pass --image-root DIR to make them absolute)"
        )
    out.append(f"convert: wrote {result.written} row(s) in the messages layout to {target}")
    if "unknown" in result.formats:
        out.append(f"({formats.describe('unknown')})")
    return "\n".join(out)
