"""``unsloth-multiimage convert IN OUT``: a dataset file in a public layout to the messages layout.

Reads JSON Lines, JSON, Parquet or a ``save_to_disk`` folder; writes ``.jsonl``, ``.json``,
``.parquet``, or a ``save_to_disk`` folder (an OUT without a suffix), with the user's umask. The
rows come from the dataset service (:mod:`unsloth_multiimage.formats.source`: the default image
root, the convert-or-not rule, the worker pool), like every other command's.
A row that cannot be converted is never dropped silently: without ``--skip-bad`` nothing is
written and every bad row is listed; with it, the good rows are written and the bad ones listed.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..formats.convert import is_relative_path

__all__ = ["ConvertResult", "convert_file"]


@dataclass
class ConvertResult:
    """What ``convert`` did."""

    rows: int = 0
    written: int = 0
    formats: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[tuple[int, str]] = field(default_factory=list)
    relative_paths: int = 0


def _is_relative_path(image: Any) -> bool:
    path = image.get("path") if isinstance(image, dict) and image.get("bytes") is None else image
    return isinstance(path, str) and is_relative_path(path)


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
    from ..formats.files import write_rows
    from ..formats.source import prepare_rows

    result = ConvertResult()
    good: list[Any] = []
    for prepared in prepare_rows(source, format=fmt, image_root=image_root, num_proc=num_proc):
        result.rows += 1
        result.formats[prepared.layout] += 1
        if prepared.row is None:
            result.errors.append((prepared.index, prepared.error or "cannot be converted"))
        else:
            result.relative_paths += sum(_is_relative_path(img) for img in prepared.row.get("images") or [])
            good.append(prepared.row)
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
