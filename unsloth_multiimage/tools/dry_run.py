"""``unsloth-multiimage doctor --dataset FILE``: what the patched collator does with each row, without a model.

Each row goes through the same row pipeline the patched ``UnslothVisionDataCollator`` runs
(:func:`unsloth_multiimage.rows.pipeline.prepare_batch`), then, with a processor, through its chat
template and the per-row placeholder check the collator runs on the rendered text, and through the
processor itself. The verdict of a row:

- ``error``: the patched collator raises on this row, with this very message;
- ``fixed``: it collates, and the installed unsloth_zoo release without the plugin would get the
  row wrong (the note says how: :func:`unsloth_multiimage.collate.release.upstream_problems`);
- ``ok``: it collates, and the release alone would have collated it the same way.

Verdicts are about a row in a batch beside rows with images (what a shuffled dataset gives). The
``headers`` mode (``--all``) reads only each image's header (size and mode) instead of decoding
it, and skips the processor: fast enough for every row of a large dataset, blind to damage past
an image's header.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..adapters import group_masked_family
from ..engine.decision import Decision
from ..errors import RowError
from ..rows.chat import is_pc_row
from ..rows.pipeline import PreparedRow, prepare_batch
from ..rows.plan import check_rendered_counts
from ..settings import Settings, get_settings
from .text_table import table as text_table

__all__ = ["RowReport", "DryRun", "Verdict", "format_report", "verdict_counts"]

Verdict = Literal["ok", "fixed", "error"]
Mode = Literal["full", "headers"]


@dataclass(frozen=True)
class RowReport:
    """What the dry run found for one row.

    Attributes:
        row: the row's number in the dataset.
        layout: ``column``, ``content``, ``merged``, ``text-only`` (how the row holds its images), or
            ``?`` when the row could not be read that far.
        images: images the row holds (None when unknown).
        sent: images the model gets, after the policies (None on error).
        tokens: image placeholders in the rendered text (None without a processor, or on error).
        verdict: ``ok``, ``fixed`` or ``error``.
        note: for ``error`` the message training raises; else what the plugin fixes or changes.
    """

    row: int
    layout: str
    images: int | None
    sent: int | None
    tokens: int | None
    verdict: Verdict
    note: str


def _layout(prepared: PreparedRow) -> str:
    plan = prepared.plan
    if not prepared.given:
        return "text-only"
    if plan.merged:
        return "merged"
    return "column" if plan.column else "content"


def _video_note(
    example: Any, prepared: PreparedRow, settings: Settings, native: bool, adapter: Any
) -> tuple[str, bool]:
    """``(note, framed)``: what happens to the row's videos (the frames sent as images, or the video
    left to the processor), and whether they became frames."""
    from ..rows import video
    from ..rows.chat import chat_sides
    from ..rows.plan import plan_row

    if not video.has_videos(example):
        return "", False
    n = sum(len(video.video_parts(m)) for _key, m in chat_sides(example))
    family = adapter.name if adapter is not None else "this"
    if not video.frames_mode(settings, native):
        if native:
            return (
                f"video: {n} video(s) left to the {family} processor (video={settings.video!r}; native video is "
                f"not verified on CPU)",
                False,
            )
        return (
            f"video: {n} video(s) left to the processor (video={settings.video!r}), but the {family} processor or "
            f'this unsloth_zoo release has no video path: configure(video="frames") sends them as frames',
            False,
        )
    frames = prepared.given - len(plan_row(example, prepared.row).images)
    how = "one storyboard canvas per video" if settings.strategy == "grid" else "frames"
    return f"video: {n} video(s) -> {frames} image(s) as {how} (video={settings.video!r})", True


class DryRun:
    """Checks rows as the patched collator of the installed release would.

    Args:
        processor: the model's processor (renders the chat, counts placeholders, processes the
            row); None checks the rows without rendering them.
        settings: the policies (default: the settings in force).
        zoo: the collator patch's decision for the installed unsloth_zoo (default: read from the
            compat table for the installed version, or the newest tested one when absent).
        mode: ``full`` decodes every image and runs the processor; ``headers`` reads image headers only.
    """

    def __init__(
        self,
        processor: Any | None = None,
        settings: Settings | None = None,
        *,
        zoo: Decision | None = None,
        mode: Mode = "full",
    ) -> None:
        from ..collate import release as zoo_release
        from ..collate import zoo_collator

        self.processor = processor
        self.settings = settings or get_settings()
        self.zoo = zoo or zoo_release.installed_decision()
        self.pc_zoo = zoo_release.installed_decision("unsloth_collator_pc_extract")
        self.mode = mode
        self.adapter = None
        if processor is not None:
            from ..engine.activation import find_adapter

            self.adapter = find_adapter(processor)
        self._collator = zoo_collator
        self._release = zoo_release

    def check(self, example: Any, row: int) -> RowReport:
        """The report of one row (numbered ``row`` in every message)."""
        single = self.adapter.name if self.adapter is not None and not self.adapter.multi_image else None
        settings = (
            self.settings
            if self.mode == "full"
            else dataclasses.replace(
                self.settings,
                max_pixels_per_example=None,
                strategy="serial" if self.settings.strategy == "serial" else "native",  # serial needs no pixels
            )
        )
        native = self._release.takes_native_video(self.zoo, self.adapter)
        try:
            [prepared] = prepare_batch(
                [example],
                settings,
                single_image_family=single,
                first_row=row,
                headers_only=self.mode == "headers",
                native_video=native,
                group_masked_family=group_masked_family(self.adapter),
            )
        except RowError as exc:
            return RowReport(row, "?", None, None, None, "error", str(exc))
        n = len(prepared.plan.images)
        layout = _layout(prepared)
        # The collator refuses a prompt/completion row on such a release before it renders anything.
        problem = self._release.pc_path_problem(self.zoo) if is_pc_row(prepared.example) else None
        if problem:
            return RowReport(
                row, layout, prepared.given, None, None, "error", self._collator.pc_row_error(row, problem).args[0]
            )
        tokens = None
        if self.processor is not None and self.adapter is not None:
            try:
                text = self._collator.render_row(self.processor, prepared.example, row, self.zoo)
                tokens = text.count(self.adapter.placeholder)
                check_rendered_counts([text], [n], self.adapter.placeholder, examples=[prepared.example], first_row=row)
                if self.mode == "full":
                    self._collator.process_row(self.processor, text, prepared.plan.images, row, self.zoo)
            except RowError as exc:
                return RowReport(row, layout, prepared.given, None, tokens, "error", str(exc))
        nesting = self.adapter.nesting if self.adapter is not None else None
        notes = self._release.upstream_problems(prepared, self.zoo, self.pc_zoo, nesting)
        videos, framed = _video_note(example, prepared, settings, native, self.adapter)
        # Frames where the release would hand the video to a processor without a video path: fixed.
        verdict: Verdict = "fixed" if notes or (framed and not native) else "ok"
        if videos:
            notes.append(videos)
        if n != prepared.given:
            notes.append(f"policy: {prepared.given} -> {n} image(s)")
        return RowReport(row, layout, prepared.given, n, tokens, verdict, "; ".join(notes))

    def check_rows(self, rows: Iterable[Any], first_row: int = 0) -> list[RowReport]:
        """The reports of ``rows``, numbered from ``first_row``."""
        return [self.check(example, row) for row, example in enumerate(rows, first_row)]


def format_report(reports: Sequence[RowReport], title: str) -> str:
    """A table of the reports, the counts, and every error message in full."""
    import textwrap

    headers = ("row", "layout", "images", "sent", "placeholders", "verdict", "note")
    rows = [
        (
            str(r.row),
            r.layout,
            "-" if r.images is None else str(r.images),
            "-" if r.sent is None else str(r.sent),
            "-" if r.tokens is None else str(r.tokens),
            r.verdict,
            "see below" if r.verdict == "error" else (r.note or "-"),
        )
        for r in reports
    ]
    out = [title, text_table(rows, headers), "", verdict_counts(reports)]
    for r in reports:
        if r.verdict == "error":
            out.append(
                textwrap.fill(
                    f"row {r.row}: {r.note}",
                    width=110,
                    subsequent_indent="    ",
                    break_on_hyphens=False,
                    break_long_words=False,
                )
            )
    return "\n".join(out)


def verdict_counts(reports: Sequence[RowReport]) -> str:
    """``N row(s): a ok, b fixed by the plugin, c error(s)``."""
    counts = {v: sum(r.verdict == v for r in reports) for v in ("ok", "fixed", "error")}
    return (
        f"{len(reports)} row(s): {counts['ok']} ok, {counts['fixed']} fixed by the plugin, {counts['error']} error(s)"
    )
