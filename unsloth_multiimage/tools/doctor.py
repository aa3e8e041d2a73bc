"""``unsloth-multiimage doctor``: versions, plugins, each patch's decision; and ``--dataset FILE``.

``doctor --dataset FILE`` reads JSON Lines, JSON, Parquet or a ``save_to_disk`` folder, detects the
rows' layout and runs each row through the dry run (:mod:`unsloth_multiimage.tools.dry_run`):
what the patched collator of the installed release does with it. Rows in a public layout the
collator cannot read (LLaVA, Mantis, the_cauldron...) are reported as refused, then checked as
``unsloth-multiimage convert`` writes them. ``--all`` checks every row, reading only image headers
(``--decode`` decodes them too), on ``--num-proc`` processes, and prints rows per second.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import _env
from ..engine import activation, compat
from .text_table import table

__all__ = ["doctor_report", "check_dataset", "DatasetCheck", "read_dataset_rows"]

logger = logging.getLogger("unsloth_multiimage")

_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "trl", "unsloth", "unsloth_zoo", "wrapt", "pluggy")
_SHOWN_ERRORS = 50


def _import_targets() -> None:
    """Import each patch target that is installed, so the decisions are final, not pending."""
    for st in activation.status():
        if st.decision != "pending":
            continue
        module = st.target.split(":")[0]
        try:
            importlib.import_module(module)
        except Exception as exc:  # e.g. unsloth_zoo refusing to start without a GPU
            logger.info("doctor: cannot import %s: %s", module, exc)


def doctor_report(import_targets: bool = True, processor: Any = None) -> str:
    """The text ``unsloth-multiimage doctor`` prints: versions, plugins, patch decisions, settings,
    the model adapters (and the one that answers for ``processor``, when given)."""
    from .._version import __version__
    from ..adapters.table import BUILTIN_ADAPTERS
    from ..settings import get_settings

    if import_targets:
        _import_targets()
    out = [f"unsloth-multiimage {__version__}", ""]
    versions = [("python", platform.python_version())]
    versions += [(d, compat.installed_version(d) or "not installed") for d in _DISTRIBUTIONS]
    out += [table(versions, ("package", "version")), ""]
    plugins = [
        (r.name, r.distribution or "-", "blocked" if r.blocked else ("loaded" if r.loaded else "FAILED"), r.value)
        for r in activation.plugin_records()
    ]
    out += [
        "Plugins (entry-point group 'unsloth_multiimage')",
        table(plugins, ("plugin", "from", "state", "object")),
        "",
    ]
    patches = [
        (s.name, s.installed_version or "-", str(s.decision), "yes" if s.applied else "no", s.reason)
        for s in activation.status()
    ]
    out += ["Patches", table(patches, ("patch", "version", "decision", "applied", "why")), ""]
    try:
        settings = get_settings()
        shown = ", ".join(f"{k}={v!r}" for k, v in vars(settings).items())
    except ValueError as exc:
        shown = f"INVALID: {exc}"
    out += [f"Settings: {shown}", ""]
    from ..patches.mllama_processor import cross_attention_report

    out += [cross_attention_report(), ""]
    adapters = [
        (a.name, a.placeholder, ", ".join(a.processor_classes), "yes" if a.multi_image else "no", a.nesting or "-")
        for a in BUILTIN_ADAPTERS
    ]
    out += [
        "Model adapters (built in)",
        table(adapters, ("adapter", "placeholder", "processors", "several images", "nesting")),
    ]
    if processor is not None:
        found = activation.find_adapter(processor)
        name = type(processor).__name__
        out += [
            "",
            f"{name}: "
            + (
                f"adapter {found.name} (placeholder {found.placeholder!r})"
                if found
                else "no adapter and no image_token: the per-row placeholder check is skipped"
            ),
        ]
    if activation.is_disabled():
        out += ["", f"The plugin is disabled ({_env.DISABLE.name}=1)."]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ --dataset


@dataclass
class DatasetCheck:
    """What ``doctor --dataset`` found: the reports, the layout, and how fast it went."""

    path: str
    layout: str
    reports: list
    seconds: float
    refused: str | None  # the collator's error for the first row as it is, when the layout needs converting
    processor_note: str


def _processor(model: str | None) -> tuple[Any | None, str]:
    """The processor that renders the rows: the user's checkpoint, else the tiny Llama-3.2-Vision one."""
    try:
        from .tiny_mllama import processor_of

        processor = processor_of(model)
    except ImportError as exc:
        return None, f"no processor ({exc}): placeholders are not checked in the rendered text"
    if model is not None:
        return processor, f"the processor of {model}"
    return processor, "the tiny offline Llama-3.2-Vision processor (--model PATH: yours)"


def _prepare(example: Any, row: int, fmt: str, image_root: str) -> Any:
    """The row as the check sees it: converted when its layout needs it, relative paths resolved."""
    from .. import formats

    if fmt not in ("messages", "prompt_completion"):  # the collator reads those as they are
        return formats.to_messages(example, row=row, format=fmt, image_root=image_root)
    return formats.resolve_paths(example, image_root, only_missing=True)


def read_dataset_rows(path: str, *, limit: int | None = None, image_root: str | None = None) -> list:
    """The first ``limit`` rows of a dataset file as the collator should get them: rows in a layout
    it cannot read converted (:func:`unsloth_multiimage.formats.to_messages`), and relative image
    paths that do not exist from the working directory read from ``image_root`` (default: the
    file's folder). Raises a row-named ``ValueError`` for a row that cannot be converted."""
    from .. import formats
    from .dataset_io import read_rows

    root = image_root or os.path.dirname(os.path.abspath(os.fspath(path)))
    out = []
    for row, example in enumerate(read_rows(path, limit=limit)):
        fmt = formats.detect(example)
        if fmt in ("messages", "prompt_completion") or not _refused(example):
            out.append(formats.resolve_paths(example, root, only_missing=True))
        else:
            out.append(_prepare(example, row, fmt, root))
    return out


def _refused(example: Any) -> bool:
    """True when the collator's shape check refuses the row as it is."""
    from ..errors import RowError
    from ..rows.shape import check_row

    try:
        check_row(example, 0)
    except RowError:
        return True
    return False


_worker: Any = None


def _init_worker(model: str | None, mode: str) -> None:
    global _worker
    from .dry_run import DryRun

    _worker = DryRun(_processor(model)[0], mode=mode)  # type: ignore[arg-type]


def _check_chunk(args: tuple[list[tuple[int, Any]], str, str]) -> list:
    chunk, fmt, image_root = args
    return [_check_one(_worker, example, row, fmt, image_root) for row, example in chunk]


def _check_one(dry: Any, example: Any, row: int, fmt: str, image_root: str) -> Any:
    from ..errors import RowError
    from .dry_run import RowReport

    try:
        prepared = _prepare(example, row, fmt, image_root)
    except RowError as exc:
        return RowReport(row, "?", None, None, None, "error", str(exc))
    return dry.check(prepared, row)


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[tuple[int, Any]]]:
    chunk: list[tuple[int, Any]] = []
    for row, example in enumerate(rows):
        chunk.append((row, example))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_dataset(
    path: str,
    *,
    limit: int | None = 20,
    num_proc: int = 1,
    decode: bool = True,
    model: str | None = None,
    image_root: str | None = None,
    fmt: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> DatasetCheck:
    """Dry-run the rows of a dataset file (the first ``limit``, or all with None).

    Relative image paths are read from ``image_root`` (default: the dataset file's folder) when
    they do not exist from the working directory.
    """
    from .. import formats
    from .dataset_io import read_rows
    from .dry_run import DryRun

    path = os.fspath(path)
    root = image_root or os.path.dirname(os.path.abspath(path))
    source = read_rows(path)  # read once: the first row decides the layout, then every row is checked
    first = next(source, None)
    layout = formats.detect(first) if fmt == "auto" and first is not None else fmt
    mode = "full" if decode else "headers"
    processor, note = _processor(model)
    dry = DryRun(processor, mode=mode)  # type: ignore[arg-type]
    refused = None
    if first is not None and layout not in ("messages", "prompt_completion"):
        as_it_is = dry.check(formats.resolve_paths(first, root, only_missing=True), 0)
        if as_it_is.verdict == "error":
            refused = as_it_is.note  # what the collator says of the first row as it is
        else:
            layout = "messages"  # the collator reads these rows as they are: check them so
    start = time.perf_counter()
    rows = itertools.islice(itertools.chain([] if first is None else [first], source), limit)
    reports: list = []
    if num_proc > 1:
        import multiprocessing

        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with context.Pool(num_proc, initializer=_init_worker, initargs=(model, mode)) as pool:
            jobs = ((chunk, layout, root) for chunk in _chunks(rows, 256))
            for done in pool.imap(_check_chunk, jobs):
                reports.extend(done)
                if progress:
                    progress(len(done))
    else:
        for row, example in enumerate(rows):
            reports.append(_check_one(dry, example, row, layout, root))
            if progress:
                progress(1)
    return DatasetCheck(path, layout, reports, time.perf_counter() - start, refused, note)


def format_dataset_check(check: DatasetCheck, table_rows: int = 200) -> str:
    """The report: a table for a small check, else a summary; every error up to a limit; rows/s."""
    from .. import formats
    from .dry_run import format_report, verdict_counts

    n = len(check.reports)
    out = [f"Dataset check: {check.path} ({n} row(s); layout: {check.layout}; rendered with {check.processor_note})"]
    if check.refused is not None:
        out.append(
            f"As it is, the collator refuses these rows ({formats.describe(check.layout) if check.layout != 'unknown' else ''}):"
        )
        out.append(f"  {check.refused}")
        out.append("Below, the rows as `unsloth-multiimage convert` writes them.")
    if n <= table_rows:
        out.append(format_report(check.reports, "").lstrip("\n"))
    else:
        errors = [r for r in check.reports if r.verdict == "error"]
        out.append(verdict_counts(check.reports))
        for r in errors[:_SHOWN_ERRORS]:
            out.append(f"row {r.row}: {r.note}")
        if len(errors) > _SHOWN_ERRORS:
            out.append(f"... and {len(errors) - _SHOWN_ERRORS} more error(s)")
    rate = n / check.seconds if check.seconds > 0 else float("inf")
    out.append(f"checked {n} row(s) in {check.seconds:.1f} s ({rate:,.0f} rows/s)")
    return "\n".join(out)
