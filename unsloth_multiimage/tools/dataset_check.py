"""``unsloth-multiimage doctor --dataset FILE``: dry-run the first rows of a dataset through the row logic.

For each row: the plugin's image plan (:func:`unsloth_multiimage.images.plan_row`), loading of
every image given as a file path / bytes (:func:`unsloth_multiimage.decode.load_image`), the
configured policies, and the count of ``<|image|>`` placeholders in the rendered chat (the
processor's chat template when a processor is given, else the tiny Llama-3.2-Vision template
rendered with jinja2, else a count of the image parts). No model, no torch: it reads the
file and the images only.

Each row is reported as ``ok``, ``fixed`` (upstream would have got it wrong, the plugin gets
it right; the note says how) or ``ERROR`` (the plugin would stop training on it; the message is
the one training would raise).
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

__all__ = ["RowReport", "check_dataset_file", "check_rows", "load_dataset_file", "format_report"]

IMAGE_TOKEN = "<|image|>"
_PATH_KEYS = ("image", "path")


@dataclass(frozen=True)
class RowReport:
    """What the dry run found for one row."""

    row: int
    layout: str
    images: int
    placeholders: int
    tokens: int | None
    decision: str  # "ok" | "fixed" | "ERROR"
    note: str


# ---------------------------------------------------------------------------------------- reading


def _resolve(value: Any, base: str) -> Any:
    """A relative image path that does not exist from the working directory is read from ``base``."""
    if not isinstance(value, str) or not value or os.path.isabs(value) or "://" in value[:16] or value.startswith("data:"):
        return value
    if os.path.exists(value):
        return value
    return os.path.join(base, value)


def _resolve_row(row: Any, base: str) -> Any:
    if not isinstance(row, Mapping):
        return row
    out = dict(row)
    images = out.get("images")
    if isinstance(images, list):
        out["images"] = [_resolve(v, base) for v in images]
    elif isinstance(images, str):
        out["images"] = _resolve(images, base)
    for key in ("messages", "conversations", "prompt", "completion"):
        chat = out.get(key)
        if not isinstance(chat, list):
            continue
        new_chat = []
        for message in chat:
            if isinstance(message, Mapping) and isinstance(message.get("content"), list):
                content = []
                for part in message["content"]:
                    if isinstance(part, Mapping) and part.get("type") in ("image", "image_url"):
                        part = {k: (_resolve(v, base) if k in _PATH_KEYS else v) for k, v in part.items()}
                    content.append(part)
                message = {**message, "content": content}
            new_chat.append(message)
        out[key] = new_chat
    return out


def load_dataset_file(path: str | os.PathLike, limit: int | None = None) -> list:
    """Rows of a JSON (a list of rows) or JSONL file; relative image paths are taken from the
    file's folder when they do not exist from the working directory. Raises ``ValueError``
    naming the line of a malformed JSONL row."""
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    rows: list
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if limit is not None and len(rows) >= limit:
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {lineno} is not valid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of rows (JSON) or one row per line (JSONL)")
    if limit is not None:
        rows = rows[:limit]
    return [_resolve_row(r, base) for r in rows]


# ---------------------------------------------------------------------------------------- checking


def _renderer(processor: Any | None):
    """A function ``messages -> rendered text``, or None when only image parts can be counted."""
    if processor is not None:
        from .demo import render_chat

        return lambda example: render_chat(processor, example)
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None
    from ..rows.chat import messages_of
    from .tiny_mllama import CHAT_TEMPLATE

    template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(CHAT_TEMPLATE)
    return lambda example: template.render(messages=messages_of(example), add_generation_prompt=False)


def _layout(plan: Any) -> str:
    if not plan.images:
        return "text-only"
    if plan.merged:
        return "merged"
    return "column" if plan.column else "content"


def check_rows(rows: Sequence[Any], processor: Any | None = None, settings: Any | None = None) -> list[RowReport]:
    """Dry-run ``rows`` through the plugin's row logic; one :class:`RowReport` per row."""
    from ..rows.chat import content_parts, is_image_part, messages_of
    from ..rows.decode import load_image, needs_decoding
    from ..errors import ImageCountError, ImageLoadError
    from ..rows.plan import plan_row
    from ..rows.policy import apply_policies
    from ..settings import get_settings

    settings = settings or get_settings()
    render = _renderer(processor)
    token = (getattr(processor, "image_token", None) or IMAGE_TOKEN) if processor is not None else IMAGE_TOKEN
    reports = []
    for i, example in enumerate(rows):
        n_parts = sum(1 for p in content_parts(messages_of(example)) if is_image_part(p))
        try:
            plan = plan_row(example, i)
        except ImageCountError as exc:
            column = example.get("images") if isinstance(example, Mapping) else None
            n_col = 0 if column is None else (len(column) if isinstance(column, list) else 1)
            reports.append(RowReport(i, "?", n_col, n_parts, None, "ERROR", str(exc)))
            continue
        layout = _layout(plan)
        try:
            loaded = sum(needs_decoding(img) for img in plan.images)
            images = tuple(
                load_image(img, i, k, allow_urls=settings.allow_urls) if needs_decoding(img) else img
                for k, img in enumerate(plan.images)
            )
            plan = replace(plan, images=images)
        except ImageLoadError as exc:
            reports.append(RowReport(i, layout, len(plan.images), plan.placeholders, None, "ERROR", str(exc)))
            continue
        notes: list[str] = []
        try:
            [example_after], [plan_after] = apply_policies([example], [plan], settings)
        except ValueError as exc:
            reports.append(RowReport(i, layout, len(plan.images), plan.placeholders, None, "ERROR", str(exc)))
            continue
        n_images = len(plan_after.images)
        if n_images != len(plan.images):
            notes.append(f"policy ({settings.strategy}, max_images={settings.max_images}): "
                         f"{len(plan.images)} -> {n_images} image(s)")
        tokens: int | None = None
        if render is not None:
            try:
                text = render(example_after)
            except Exception as exc:  # a template error is the user's data problem, per row
                reports.append(RowReport(i, layout, n_images, plan.placeholders, None, "ERROR",
                                         f"unsloth_multiimage: row {i}: the chat template failed: {exc}"))
                continue
            tokens = text.count(token)
            if tokens != n_images:
                fix = (f"add {n_images - tokens} image placeholder(s) to the messages" if tokens < n_images
                       else f"remove {tokens - n_images} image placeholder(s) or add the missing image(s)")
                reports.append(RowReport(
                    i, layout, n_images, plan.placeholders, tokens, "ERROR",
                    f"unsloth_multiimage: row {i} has {tokens} {token} token(s) in its text but {n_images} image(s). "
                    f"Fix: {fix}; each image needs exactly one placeholder, in order."))
                continue
        if plan.merged:
            notes.append("column + content images interleaved in placeholder order (upstream lets the column win)")
        elif plan.column and len(plan.images) > 1:
            notes.append(f"unsloth_zoo < 2025.12.4 sends only the first image: {len(plan.images) - 1} would be dropped")
        if loaded:
            notes.append(f"{loaded} image file(s) loaded")
        if not plan.images:
            notes.append("text-only: gets an empty image slot")
        fixed = plan.merged or (plan.column and len(plan.images) > 1) or n_images != len(plan.images)
        reports.append(RowReport(i, layout, len(plan.images), plan.placeholders, tokens,
                                 "fixed" if fixed else "ok", "; ".join(notes)))
    return reports


def format_report(reports: Sequence[RowReport], title: str, rendered: bool = True) -> str:
    headers = ("row", "layout", "images", "placeholders", f"{IMAGE_TOKEN} in text" if rendered else "-", "decision", "note")
    table = [
        (str(r.row), r.layout, str(r.images), str(r.placeholders), "-" if r.tokens is None else str(r.tokens),
         r.decision, "see below" if r.decision == "ERROR" else (r.note or "-"))
        for r in reports
    ]
    widths = [max(len(c) for c in col) for col in zip(headers, *table)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [title, fmt(headers), "  ".join("-" * w for w in widths), *(fmt(t) for t in table)]
    errors = [r for r in reports if r.decision == "ERROR"]
    counts = {d: sum(r.decision == d for r in reports) for d in ("ok", "fixed", "ERROR")}
    out += ["", f"{len(reports)} row(s): {counts['ok']} ok, {counts['fixed']} fixed by the plugin, {counts['ERROR']} error(s)"]
    for r in errors:
        out.append(textwrap.fill(f"row {r.row}: {r.note}", width=110, subsequent_indent="    "))
    return "\n".join(out)


def check_dataset_file(path: str | os.PathLike, limit: int = 20, processor: Any | None = None) -> tuple[str, bool]:
    """Dry-run the first ``limit`` rows of a JSON/JSONL dataset. Returns ``(report text, ok)``;
    ``ok`` is False when a row has an error or the file cannot be read."""
    path = os.fspath(path)
    try:
        rows = load_dataset_file(path, limit=limit)
    except (OSError, ValueError) as exc:
        return f"Dataset check: {path}\ncannot read the dataset: {exc}", False
    reports = check_rows(rows, processor=processor)
    rendered = processor is not None or _renderer(None) is not None
    title = f"Dataset check: {path} (first {len(rows)} row(s))"
    if not rendered:
        title += "\n(jinja2 not installed: image parts counted instead of rendered placeholders)"
    return format_report(reports, title, rendered), not any(r.decision == "ERROR" for r in reports)
