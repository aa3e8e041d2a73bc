"""``unsloth-multiimage doctor``: versions, plugins, each patch's decision; and ``--dataset FILE``.

``doctor --dataset FILE`` reads JSON Lines, JSON, Parquet or a ``save_to_disk`` folder, detects the
rows' layout and runs each row through the dry run (:mod:`unsloth_multiimage.tools.dry_run`):
what the patched collator of the installed release does with it. Rows in a public layout the
collator cannot read (LLaVA, Mantis, the_cauldron...) are reported as refused, then checked as
``unsloth-multiimage convert`` writes them. ``--all`` checks every row, reading only image headers
(``--decode`` decodes them too), on ``--num-proc`` processes, and prints rows per second.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _env
from ..engine import activation, compat
from .common import load_processor
from .text_table import table

__all__ = ["doctor_report", "check_dataset", "DatasetCheck", "check_tokens", "TokenCheck"]

logger = logging.getLogger("unsloth_multiimage")

_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "trl", "unsloth", "unsloth_zoo", "wrapt", "pluggy")
_SHOWN_ERRORS = 50
# Targets doctor leaves to the training script: TRL's trainers (slow to import; patched when the
# script imports them), unsloth_zoo's vLLM module (it needs peft, and vLLM to do anything; the
# vLLM limit is read from its source instead: vllm_image_limit.limit_report) and unsloth's own
# modules (importing unsloth patches transformers and TRL process-wide, TRL's GRPOTrainer replaced).
_NOT_IMPORTED = ("trl.", "unsloth_zoo.vllm_utils", "unsloth.")


#: Set before unsloth_zoo is imported on a machine without a GPU: its package refuses to start
#: there otherwise ("Please install Unsloth"), though its collator runs on CPU (as ``demo`` runs it).
GPU_INIT_VARIABLE = "UNSLOTH_ZOO_DISABLE_GPU_INIT"


def _without_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()


def _import_targets(notes: list[str] | None = None) -> dict[str, str]:
    """Import each patch target that is installed, so the decisions are final, not pending.
    Returns module -> why its import failed (shown with the patch it leaves pending); what doctor
    did to import them goes to ``notes``."""
    failed: dict[str, str] = {}
    for st in activation.status():
        if st.decision != "pending":
            continue
        module = st.target.split(":")[0]
        if module in failed or module.startswith(_NOT_IMPORTED):
            continue
        if module.startswith("unsloth_zoo") and GPU_INIT_VARIABLE not in os.environ and _without_gpu():
            os.environ[GPU_INIT_VARIABLE] = "1"  # what `demo` does: the collator is what runs on a CPU
            if notes is not None:
                notes.append(
                    f"No GPU here: unsloth_zoo imported with {GPU_INIT_VARIABLE}=1, as `unsloth-multiimage demo` "
                    f"imports it (its collator runs on CPU; a GPU training script imports unsloth first)."
                )
        try:
            importlib.import_module(module)
        except Exception as exc:  # e.g. unsloth_zoo refusing to start without a GPU
            first = str(exc).splitlines()[0] if str(exc) else ""
            failed[module] = f"{type(exc).__name__}: {first}".rstrip(": ")
            logger.info("doctor: cannot import %s: %s", module, exc)
    return failed


#: Decisions that leave a patch off where the user may want it on.
_NOT_APPLIED = ("pending", "unsupported", "untested", "lost", "inactive", "error", "blocked")


def _native_when_imported(st: Any) -> bool:
    try:
        return str(compat.decide(st.name, st.installed_version).state) == "native"
    except (KeyError, ValueError):  # a third-party patch without a built-in compat entry
        return False


def patch_fix(st: Any, import_error: str | None = None, imported: bool = True) -> str | None:
    """The one line that fixes a patch left off (``st``: a :class:`~unsloth_multiimage.PatchStatus`),
    or None when it is applied or off by design (native, absent, disabled)."""
    if st.applied or str(st.decision) not in _NOT_APPLIED:
        return None
    module = st.target.split(":")[0]
    dist = st.distribution or module.split(".")[0]
    decision = str(st.decision)
    if decision == "pending":
        return _pending_fix(st, module, import_error, imported)
    if decision == "blocked":
        return f"remove {st.name!r} from {_env.DISABLE_PATCHES.name}"
    if decision in ("unsupported", "untested"):
        try:
            supported = str(compat.compat_table()[st.name].supported)
        except KeyError:
            supported = "the range its plugin declares"
        return f"install a {dist} release the patch supports ({supported}): pip install '{dist}{supported}'"
    if decision == "lost":
        return "call unsloth_multiimage.activate() again after reloading the patched module"
    if decision == "inactive":
        return "call unsloth_multiimage.activate()"
    return f"see the plugin's error with `unsloth-multiimage -v doctor`; fix or uninstall the plugin of {st.name}"


def _pending_fix(st: Any, module: str, import_error: str | None, imported: bool) -> str | None:
    """:func:`patch_fix` for a patch waiting for its module's import."""
    if _native_when_imported(st):
        return None  # upstream does it all on this version: nothing will be patched, nothing to fix
    if import_error is None:
        if imported:
            return None  # its module imported, so the patch applied; nothing to fix
        return f"applied when {module} is imported: nothing to do (doctor without --no-import imports it)"
    if module.startswith("unsloth_zoo"):
        return (
            f"`import {module}` fails here ({import_error}): `import unsloth` before unsloth_zoo (GPU), or set "
            f"UNSLOTH_ZOO_DISABLE_GPU_INIT=1 before importing it (CPU, the collator only)"
        )
    return f"`import {module}` fails here ({import_error}): install what it needs, then it is patched on import"


def doctor_report(import_targets: bool = True, processor: Any = None) -> str:
    """The text ``unsloth-multiimage doctor`` prints: versions, plugins, patch decisions, settings,
    the model adapters (and the one that answers for ``processor``, when given)."""
    from .._version import __version__
    from ..adapters.table import BUILTIN_ADAPTERS
    from ..settings import get_settings

    notes: list[str] = []
    failed = _import_targets(notes) if import_targets else {}
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
    fixes = [
        (st, fix)
        for st in activation.status()
        if (fix := patch_fix(st, failed.get(st.target.split(":")[0]), imported=import_targets)) is not None
    ]
    lines = [f"  {st.name} ({st.decision}): {st.reason}\n    Fix: {fix}" for st, fix in fixes]
    lines += [
        f"  {r.name} (blocked): the plugin is not loaded, so none of its patches is applied\n"
        f"    Fix: remove {r.name!r} from {_env.DISABLE_PATCHES.name}"
        for r in activation.plugin_records()
        if r.blocked
    ]
    if lines:
        out += ["Patches not applied, and the fix", *lines, ""]
    out += [*notes, ""] if notes else []
    try:
        settings = get_settings()
        shown = ", ".join(f"{k}={v!r}" for k, v in vars(settings).items())
    except ValueError as exc:
        shown = f"INVALID: {exc}"
    out += [f"Settings: {shown}", ""]
    out += [cross_attention_report(), ""]
    from ..collate import release as zoo_release
    from ..collate.vllm_limit import FUNCTION_PATCH, INLINE_PATCH
    from .vllm_report import limit_report

    limits = [st for st in activation.status() if st.name in (FUNCTION_PATCH, INLINE_PATCH)]
    waiting = bool(limits) and not any(st.applied for st in limits) and any(st.decision == "pending" for st in limits)
    out += [*limit_report(pending=waiting), ""]
    from ..rows.video import frames_mode

    zoo = zoo_release.installed_decision()
    try:
        current = get_settings()
    except ValueError:  # shown as INVALID above
        current = None

    def video_path(adapter: Any) -> str:
        """What a video part becomes under the video setting in force, on the installed release."""
        if current is None:
            return "?"
        return "frames" if frames_mode(current, zoo_release.takes_native_video(zoo, adapter)) else "native"

    videos = {a.name: video_path(a) for a in BUILTIN_ADAPTERS}
    adapters = [
        (
            a.name,
            a.placeholder,
            ", ".join(a.processor_classes),
            "yes" if a.multi_image else "no",
            a.nesting or "-",
            videos[a.name],
        )
        for a in BUILTIN_ADAPTERS
    ]
    out += [
        "Model adapters (built in)",
        table(adapters, ("adapter", "placeholder", "processors", "several images", "nesting", "videos")),
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


def cross_attention_report() -> str:
    """One line on the ``mllama_cross_attention`` setting and whether it acts, from ``status()``."""
    from ..settings import get_settings

    try:
        mode = get_settings().mllama_cross_attention
    except ValueError as exc:
        return f"mllama_cross_attention: INVALID ({exc})"
    if mode == "latest":
        return "mllama_cross_attention: latest (upstream's mask: a text token attends the latest group of images before it)"
    name = "mllama_processor"  # the patch that builds the cumulative mask
    st = next((s for s in activation.status() if s.name == name), None)
    if st is not None and (st.applied or st.decision == "pending"):
        when = "applied" if st.applied else "applied when transformers' Mllama module is imported"
        return (
            f"mllama_cross_attention: cumulative (every text token attends every image before it; built by the "
            f"{name} patch, {when})"
        )
    if st is not None:
        why = f"{st.decision}: {st.reason}"
    elif activation.is_disabled():
        why = f"the plugin is off ({_env.DISABLE.name}=1)"
    elif any(r.name == name and r.blocked for r in activation.plugin_records()):
        why = f"blocked by {_env.DISABLE_PATCHES.name}"
    else:
        why = "the patch is not loaded"
    return (
        f"mllama_cross_attention: cumulative requested, but the {name} patch is not applied ({why}); "
        f"the mask stays upstream's (latest)"
    )


# ------------------------------------------------------------------------------------------ --dataset


@dataclass
class DatasetCheck:
    """What ``doctor --dataset`` found: the reports, the layouts, and how fast it went."""

    path: str
    layout: str
    reports: list[Any]
    seconds: float
    refused: str | None  # the collator's error for the first row that needs converting, as it is
    processor_note: str
    layouts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    refused_layout: str | None = None
    decoded: bool = True
    processes: int = 1
    processes_note: str = ""
    image_root: str | None = None
    settings: Any = None


_worker: Any = None


def _init_worker(model: str | None, mode: str, settings: Any = None) -> None:
    """Pool initializer: each worker builds its own dry run (a processor does not travel well)
    under the parent's settings (a spawned worker sees the environment only)."""
    global _worker
    from .dry_run import DryRun

    _worker = DryRun(load_processor(model)[0], settings, mode=mode)  # type: ignore[arg-type]


def _check_item(item: tuple[int, Any], fmt: str, image_root: str | None) -> tuple[Any, str, tuple[str, ...]]:
    """``(report, layout, missing paths)`` of one ``(index, row)``: the row as the dataset service
    prepares it for every command, then the dry run of each row a trainer collates from it (a
    preference row: its prompt with the chosen, then the rejected answer)."""
    from ..formats.source import GRPO, PREFERENCE, prepare, training_views
    from .dry_run import RowReport

    index, example = item
    prepared = prepare(example, index, format=fmt, image_root=image_root)
    if prepared.row is None:
        return RowReport(index, "?", None, None, None, "error", prepared.error or ""), prepared.layout, ()
    views = training_views(prepared.row)
    reports = [_worker.check(view, index) for view in views]
    if prepared.layout in (GRPO, PREFERENCE):  # TRL's trainers collate these: no zoo verdict applies
        trainer = "DPOTrainer" if prepared.layout == PREFERENCE else "GRPOTrainer"
        reports = [
            r
            if r.verdict == "error"
            else dataclasses.replace(r, verdict="ok", note=f"checked as TRL's {trainer} gets it (its processor call)")
            for r in reports
        ]
    if len(reports) == 1:
        return reports[0], prepared.layout, prepared.missing
    failed = [(name, r) for name, r in zip(("chosen", "rejected"), reports) if r.verdict == "error"]
    if failed:
        name, bad = failed[0]
        return dataclasses.replace(bad, note=f"with its {name} answer: {bad.note}"), prepared.layout, prepared.missing
    first = reports[0]
    return (
        dataclasses.replace(first, note=f"prompt + chosen and prompt + rejected: {first.note}"),
        prepared.layout,
        (prepared.missing),
    )


def _layouts(counts: collections.Counter[str]) -> str:
    if len(counts) <= 1:
        return next(iter(counts), "unknown")
    return ", ".join(f"{name} ({n})" for name, n in counts.most_common())


def _processes(path: str, limit: int | None, num_proc: int) -> tuple[int, str]:
    """The worker processes to check ``path`` on, and a note when fewer than ``num_proc``."""
    from ..formats.source import processes_for

    if num_proc <= 1:
        return 1, ""
    return processes_for(path, num_proc, limit)


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
    settings: Any = None,
) -> DatasetCheck:
    """Dry-run the rows of a dataset (the first ``limit``, or all with None), each prepared by the
    dataset service (:mod:`unsloth_multiimage.formats.source`: the image root, its layouts and
    convert-or-not rule, its worker pool), under ``settings`` (default: the settings in force)."""
    import functools

    from ..formats.source import PathReport, image_root_of, layout_of, needs_conversion, read_source, worker_map
    from ..rows.layouts import FORMATS
    from ..settings import get_settings
    from .dry_run import DryRun

    global _worker
    settings = settings or get_settings()
    root = image_root_of(path, image_root)
    mode = "full" if decode else "headers"
    processor, note = load_processor(model)
    dry = DryRun(processor, settings, mode=mode)  # type: ignore[arg-type]
    processes, processes_note = _processes(path, limit, num_proc)
    refused: list[tuple[str, str | None]] = []

    def rows_as_read() -> Any:
        """The rows, the first one in a layout the collator cannot read checked as it is."""
        from ..formats import resolve_paths

        for index, example in enumerate(read_source(path, limit=limit)):
            layout = layout_of(example, fmt)
            if not refused and layout in FORMATS and needs_conversion(layout):
                as_it_is = dry.check(example if root is None else resolve_paths(example, root), index)
                refused.append((layout, as_it_is.note if as_it_is.verdict == "error" else None))
            yield index, example

    start = time.perf_counter()
    work = functools.partial(_check_item, fmt=fmt, image_root=root)
    if processes <= 1:
        _worker = dry
    init, initargs = (_init_worker, (model, mode, settings)) if processes > 1 else (None, ())
    reports: list[Any] = []
    layouts: collections.Counter[str] = collections.Counter()
    paths = PathReport(root)
    for report, layout, missing in worker_map(work, rows_as_read(), processes, initializer=init, initargs=initargs):
        reports.append(report)
        layouts[layout] += 1
        paths.add(missing)
        if progress:
            progress(1)
    paths.warn()
    refused_layout, refused_note = refused[0] if refused else (None, None)
    return DatasetCheck(
        os.fspath(path),
        _layouts(layouts),
        reports,
        time.perf_counter() - start,
        refused_note,
        note,
        layouts=layouts,
        refused_layout=refused_layout if refused_note is not None else None,
        decoded=decode,
        processes=processes,
        processes_note=processes_note,
        image_root=root,
        settings=settings,
    )


def _layout_notes(check: DatasetCheck) -> list[str]:
    """What the report says of the layouts found: the rows the collator refuses as they are, and
    the RL layouts (checked as TRL's trainers collate them)."""
    from .. import formats
    from ..formats.source import GRPO, PREFERENCE

    out = []
    if check.refused is not None and check.refused_layout is not None:
        out.append(
            f"As it is, the collator refuses the {check.refused_layout} rows ({formats.describe(check.refused_layout)}):"
        )
        out.append(f"  {check.refused}")
        out.append("Below, the rows as `unsloth-multiimage convert` writes them.")
    if check.layouts.get(PREFERENCE):
        out.append(
            f"{check.layouts[PREFERENCE]} preference row(s) (TRL's DPOTrainer): checked as its collator gets them, "
            f"converted by formats.to_preference (`unsloth-multiimage convert` writes them): the prompt with the "
            f"chosen answer, then with the rejected one."
        )
    if check.layouts.get(GRPO):
        out.append(
            f"{check.layouts[GRPO]} GRPO prompt row(s) (TRL's GRPOTrainer): checked as prompts, converted by "
            f"formats.to_grpo_prompt (`unsloth-multiimage convert --to grpo` writes any layout as GRPO prompts)."
        )
    return out


def format_dataset_check(check: DatasetCheck, table_rows: int = 200, settings_line: str | None = None) -> str:
    """The report: a table for a small check, else a summary; every error up to a limit; rows/s."""
    from .dry_run import format_report, verdict_counts

    n = len(check.reports)
    how = "every image decoded" if check.decoded else "image headers only (size and mode; --decode decodes them)"
    out = [f"Dataset check: {check.path} ({n} row(s); layout: {check.layout}; rendered with {check.processor_note})"]
    root = check.image_root if check.image_root is not None else "the working directory"
    out.append(f"images: {how}; relative paths read from {root}")
    if settings_line:
        out.append(settings_line)
    out += _layout_notes(check)
    if n <= table_rows:
        out.append(format_report(check.reports, "").lstrip("\n"))
    else:
        errors = [r for r in check.reports if r.verdict == "error"]
        out.append(verdict_counts(check.reports))
        for r in errors[:_SHOWN_ERRORS]:
            out.append(f"row {r.row}: {r.note}")
        if len(errors) > _SHOWN_ERRORS:
            out.append(f"... and {len(errors) - _SHOWN_ERRORS} more error(s)")
    sent = [r.sent for r in check.reports if r.sent is not None]
    if sent:
        from .vllm_report import rollout_limit_line

        out.append(rollout_limit_line(max(sent)))
    rate = n / check.seconds if check.seconds > 0 else float("inf")
    procs = f" on {check.processes} process(es)" + (f" ({check.processes_note})" if check.processes_note else "")
    out.append(f"checked {n} row(s) in {check.seconds:.1f} s ({rate:,.0f} rows/s){procs}")
    return "\n".join(out)


# ------------------------------------------------------------------------------ --max-seq-length


@dataclass
class TokenCheck:
    """What ``doctor --dataset FILE --max-seq-length N`` found (:mod:`unsloth_multiimage.measure.tokens`)."""

    path: str
    report: Any  # measure.tokens.TokenReport
    seconds: float
    processor_note: str


_token_counter: Any = None


def _init_token_worker(model: str | None, settings: Any = None, max_seq_length: int | None = None) -> None:
    global _token_counter
    from ..measure.tokens import TokenCounter

    _token_counter = TokenCounter(load_processor(model)[0], settings=settings, max_seq_length=max_seq_length)


def _count_item(item: tuple[int, Any], image_root: str | None, fmt: str = "auto") -> Any:
    """The token count of one ``(index, row)``, the row prepared by the dataset service (a
    preference row: its longer view, prompt + chosen or prompt + rejected)."""
    from ..formats.source import prepare, training_views
    from ..measure.tokens import RowTokens

    index, example = item
    prepared = prepare(example, index, format=fmt, image_root=image_root)
    if prepared.row is None:
        return RowTokens(index, error=prepared.error)
    counts = [_token_counter.count_row(view, index) for view in training_views(prepared.row)]
    failed = [c for c in counts if c.error is not None]
    return failed[0] if failed else max(counts, key=lambda c: c.total)


def check_tokens(
    path: str,
    max_seq_length: int,
    *,
    limit: int | None = 20,
    num_proc: int = 1,
    model: str | None = None,
    image_root: str | None = None,
    progress: Callable[[int], None] | None = None,
    settings: Any = None,
    fmt: str = "auto",
) -> TokenCheck:
    """Count the tokens of the rows of a dataset file (the first ``limit``, or all with None) with the
    processor of ``model`` (default: the tiny Llama-3.2-Vision one) under ``settings`` (default: the
    settings in force), and check them against ``max_seq_length``:
    :func:`unsloth_multiimage.measure.tokens.summarise`."""
    import functools

    from ..formats.source import image_root_of, read_source, worker_map
    from ..measure.tokens import TokenCounter, summarise
    from ..settings import get_settings

    global _token_counter
    settings = settings or get_settings()
    root = image_root_of(path, image_root)
    processor, note = load_processor(model)
    if processor is None:
        raise ImportError(note)
    # (max_seq_length: what on_overflow="shrink" does to the rows too long, when set)
    counter = TokenCounter(processor, settings=settings, max_seq_length=max_seq_length)
    processes, _why = _processes(path, limit, num_proc)
    if processes <= 1:
        _token_counter = counter
    init, initargs = (_init_token_worker, (model, settings, max_seq_length)) if processes > 1 else (None, ())
    start = time.perf_counter()
    counted: list[Any] = []
    items = enumerate(read_source(path, limit=limit))
    work = functools.partial(_count_item, image_root=root, fmt=fmt)
    for done in worker_map(work, items, processes, initializer=init, initargs=initargs):
        counted.append(done)
        if progress:
            progress(1)
    report = summarise(counted, max_seq_length, counter)
    return TokenCheck(os.fspath(path), report, time.perf_counter() - start, note)


def format_token_check(check: TokenCheck, table_rows: int = 50) -> str:
    """The token report: per row (a small check), percentiles, the rows cut, what would fit."""
    r = check.report
    counted = [t for t in r.rows if t.error is None]
    out = [
        f"Token report: {check.path} ({len(r.rows)} row(s); max_seq_length={r.max_seq_length}; {check.processor_note})",
        f"image tokens: {r.method}",
    ]
    if len(r.rows) <= table_rows:
        shown = [
            (str(t.row), "-", "-", "-", "-", "error: see the dataset check")
            if t.error is not None
            else (
                str(t.row),
                str(t.text),
                str(t.image),
                str(t.total),
                str(t.image_end),
                "CUT (training raises)"
                if t.image_end > r.max_seq_length
                else ("text cut" if t.total > r.max_seq_length else "fits"),
            )
            for t in r.rows
        ]
        out.append(table(shown, ("row", "text", "image", "total", "image end", "at max_seq_length")))
    out.append(f"lengths of {len(counted)} counted row(s): p50 {r.p50}, p95 {r.p95}, max {r.p100}")
    out.append(
        f"{len(r.cut)} row(s) whose image tokens max_seq_length={r.max_seq_length} cuts (training raises); "
        f"{len(r.truncated)} more whose text it cuts (silently: the end of the answer is not trained)"
    )
    for t in r.cut[:_SHOWN_ERRORS]:
        out.append(r.cut_message(t))
    if len(r.cut) > _SHOWN_ERRORS:
        out.append(f"... and {len(r.cut) - _SHOWN_ERRORS} more")
    for s in r.suggestions:
        out.append(f"would fit: {s}")
    out += r.shrink_lines(_SHOWN_ERRORS)
    rate = len(r.rows) / check.seconds if check.seconds > 0 else float("inf")
    out.append(f"counted {len(r.rows)} row(s) in {check.seconds:.1f} s ({rate:,.0f} rows/s)")
    return "\n".join(out)
