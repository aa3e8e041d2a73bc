"""``unsloth-multiimage convert IN OUT``: a dataset in a public layout to the layout its trainer reads.

Reads JSON Lines, JSON, Parquet or a ``save_to_disk`` folder; writes ``.jsonl``, ``.json``,
``.parquet``, or a ``save_to_disk`` folder (an OUT without a suffix), with the user's umask, the
folders above OUT made when missing. The rows come from the dataset service
(:mod:`unsloth_multiimage.formats.source`: the image root, the layouts, the convert-or-not rule, the
worker pool), like every other command's: SFT rows become the messages layout, preference rows
TRL's DPO layout, GRPO rows (every row with ``--to grpo``) GRPO prompts, and every relative image
path is written absolute (read from the image root), so that OUT means the same rows wherever it
is read from, by the collator too.
A row that cannot be converted is never dropped silently: without ``--skip-bad`` nothing is
written and every bad row is listed; with it, the good rows are written and the bad ones listed.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CommandError

__all__ = ["ConvertResult", "check_target", "convert_file"]

#: The file types ``convert`` writes; a target without a suffix is a ``save_to_disk`` folder.
TARGET_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class ConvertResult:
    """What ``convert`` did."""

    rows: int = 0
    written: int = 0
    formats: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[tuple[int, str]] = field(default_factory=list)
    resolved_paths: int = 0
    missing_paths: int = 0
    image_root: str | None = None
    processes: int = 1
    processes_note: str = ""
    to: str = "auto"


def check_target(source: str, target: str) -> None:
    """Refuse, before any row is read, a target that would overwrite the source or that cannot be
    written (an unsupported suffix, a folder that is not a dataset's).

    Raises:
        CommandError: naming the target and the fix.
    """
    suffix = os.path.splitext(target)[1].lower()
    if suffix and suffix not in TARGET_SUFFIXES:
        raise CommandError(
            f"target {target!r}: convert writes .jsonl, .json, .parquet, or a save_to_disk folder (a target without "
            f"a suffix), not {suffix}. Fix: name the target e.g. {os.path.splitext(target)[0]}.jsonl.",
            usage=True,
        )
    if os.path.abspath(source) == os.path.abspath(target) or (
        os.path.exists(target) and os.path.samefile(source, target)
    ):
        raise CommandError(
            f"target {target!r} is the source: converting in place would lose the source if a row fails. "
            f"Fix: write to another path.",
            usage=True,
        )
    if os.path.isdir(target) and os.listdir(target):
        if not any(os.path.isfile(os.path.join(target, n)) for n in ("state.json", "dataset_dict.json")):
            raise CommandError(
                f"target {target!r} is a folder with files in it that are not a saved dataset; convert does not write "
                f"into it. Fix: give a new folder, or a file name ending in .jsonl, .json or .parquet.",
                usage=True,
            )
    if suffix and os.path.isdir(target):
        raise CommandError(f"target {target!r} is a folder. Fix: give a file name.", usage=True)


def convert_file(
    source: str,
    target: str,
    *,
    fmt: str = "auto",
    image_root: str | None = None,
    num_proc: int = 1,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    to: str = "auto",
) -> ConvertResult:
    """Convert ``source`` into ``target`` (see the module docstring). Returns what was done.

    Raises:
        CommandError: the target is refused (:func:`check_target`) or the rows cannot be stored
            in its format (the message names the column and the fix).
    """
    from ..errors import DatasetIOError
    from ..formats.files import write_rows
    from ..formats.source import image_root_of, prepare_rows, processes_for, row_paths

    check_target(source, target)
    result = ConvertResult(image_root=image_root_of(source, image_root), to=to)
    result.processes, result.processes_note = processes_for(source, num_proc)
    good: list[Any] = []
    for prepared in prepare_rows(source, format=fmt, image_root=image_root, num_proc=result.processes, to=to):
        result.rows += 1
        result.formats[prepared.layout] += 1
        if prepared.row is None:
            result.errors.append((prepared.index, prepared.error or "cannot be converted"))
        else:
            result.missing_paths += len(prepared.missing)
            result.resolved_paths += sum(
                1 for p in row_paths(prepared.row) if result.image_root and p.startswith(result.image_root)
            )
            good.append(prepared.row)
        if progress:
            progress(1)
    if (result.errors and not skip_bad) or not good:
        return result  # nothing written: the CLI says why
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    try:
        if os.path.splitext(target)[1]:
            result.written = write_rows(target, good)
        else:
            result.written = _save_to_disk(target, good)
    except DatasetIOError as exc:
        raise CommandError(str(exc)) from None
    return result


def _save_to_disk(target: str, rows: Sequence[Mapping[str, Any]]) -> int:
    """``Dataset.from_list(rows).save_to_disk(target)``; a column Arrow cannot type is named."""
    import datasets
    import pyarrow as pa

    from ..formats.files import mixed_columns

    try:
        dataset = datasets.Dataset.from_list(list(rows))
    except (pa.ArrowException, TypeError, ValueError) as exc:
        mixed = mixed_columns(rows)
        what = "; ".join(f"`{name}` holds {', '.join(types)}" for name, types in mixed.items()) or str(exc)
        raise CommandError(
            f"{target}: the rows cannot be stored in a save_to_disk folder: {what} (Arrow gives a column one type). "
            f"Fix: give {' and '.join(f'`{n}`' for n in mixed) or 'each column'} one type in every row of the "
            f"source (e.g. all strings), or write a .jsonl / .json file, which keeps mixed types."
        ) from None
    dataset.save_to_disk(target)
    return len(dataset)


def format_result(result: ConvertResult, source: str, target: str, skip_bad: bool) -> str:
    layouts = ", ".join(f"{n} {name}" for name, n in result.formats.most_common())
    out = [f"convert: {result.rows} row(s) read from {source} ({layouts or 'none'})"]
    if result.processes_note:
        out.append(f"  {result.processes_note}")
    for row, message in result.errors[:50]:
        out.append(f"  row {row}: {message}")
    if len(result.errors) > 50:
        out.append(f"  ... and {len(result.errors) - 50} more")
    if (result.errors and not skip_bad) or not result.written:
        out.append(f"convert: {len(result.errors)} row(s) cannot be converted; nothing written")
        return "\n".join(out)
    if result.errors:
        out.append(f"convert: skipped the {len(result.errors)} row(s) above (--skip-bad)")
    if result.resolved_paths:
        out.append(
            f"image paths: relative ones read from {result.image_root} and written absolute ({result.resolved_paths} "
            f"path(s) under it), so {target} reads the same from any folder"
        )
    if result.missing_paths:
        out.append(
            f"warning: {result.missing_paths} image/video path(s) exist nowhere (doctor --dataset names the rows)"
        )
    out.append(f"convert: wrote {result.written} row(s) ({_written(result)}) to {target}")
    return "\n".join(out)


def _written(result: ConvertResult) -> str:
    """The layouts ``convert`` wrote, in words."""
    from ..formats.source import GRPO, PREFERENCE

    if result.to == GRPO:
        return "every row as a GRPO prompt with its answer (formats.to_grpo_prompt)"
    kinds = ["SFT rows in the messages layout"] if any(k not in (PREFERENCE, GRPO) for k in result.formats) else []
    if result.formats.get(PREFERENCE):
        kinds.append("preference rows in TRL's DPO layout (formats.to_preference)")
    if result.formats.get(GRPO):
        kinds.append("GRPO prompts (formats.to_grpo_prompt)")
    return ", ".join(kinds)
