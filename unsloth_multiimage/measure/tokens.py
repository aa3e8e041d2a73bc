"""Will it fit? The tokens each row becomes, the rows ``max_seq_length`` would cut, and what would fit.

A row runs through the same row pipeline as in training
(:func:`~unsloth_multiimage.rows.pipeline.prepare_batch`: cap, serial turns, pixel budget, grid),
is rendered by the processor's chat template as the collator renders it, and is counted:

- **text tokens**: the rendered chat without its image placeholders, by the processor's tokenizer
  (``add_special_tokens=False``, as unsloth_zoo's collator calls the processor);
- **image tokens**: what the image placeholders become in ``input_ids``;
- **image end**: the position just past the last image token (``max_seq_length`` below it cuts
  an image: training raises; above it but below the total only text is cut, silently).

How the image tokens are known, per family (:data:`FROM_HEADERS`):

- **exact from image headers** (no pixel decoded): Llama 3.2 Vision (``mllama``: one
  ``<|image|>`` token per image whatever its size; the tiles go to cross-attention, not to the
  sequence), Qwen2-VL / Qwen2.5-VL / Qwen3-VL (``qwen2_vl``, ``qwen3_vl``: the image processor's
  own ``get_number_of_image_patches`` for the image's size, divided by ``merge_size**2``). The
  pixel budget is applied to the sizes by the same integer arithmetic as training; ``grid`` needs
  the canvas, so a grid run decodes.
- **decode**: every other family; the row's images are decoded and the family's processor run on
  the row (exact, slower).

Counts are those of the images as the row pipeline leaves them. unsloth_zoo's collator with its
default ``resize="min"`` first downsizes images larger than the model's vision image size: for a
size-dependent family (Qwen) the counts are then an upper bound (exact with ``resize="max"``);
Mllama's count does not depend on the size.

Nothing here imports transformers: the processor comes in, and only its methods are called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..adapters import group_masked_family
from ..collate.pack_plan import RowTooLongError
from ..collate.shrink import RowShrinker, Shrunk, not_shrunk
from ..collate.token_count import SizeCounter
from ..errors import RowError
from ..rows.pipeline import PreparedRow, prepare_batch
from ..rows.policy import budget_sizes
from ..settings import Settings, get_settings

__all__ = [
    "FROM_HEADERS",
    "RowTokens",
    "TokenCounter",
    "TokenReport",
    "percentile",
    "summarise",
]


def _from_headers_families() -> dict[str, str]:
    from ..adapters.table import BUILTIN_ADAPTERS

    return {a.name: a.image_tokens.how for a in BUILTIN_ADAPTERS if a.image_tokens is not None}


#: adapter name -> what decides its image token count when it is known from the image headers
#: (the adapters' :class:`~unsloth_multiimage.adapters.ImageTokens`).
FROM_HEADERS = _from_headers_families()


@dataclass(frozen=True)
class RowTokens:
    """The tokens of one row (see the module docstring).

    Attributes:
        row: the row's number in the dataset.
        images: images the model gets (after the policies).
        text: tokens of the rendered chat without its image placeholders.
        image: tokens the image placeholders become.
        total: the row's length in ``input_ids`` (``text + image``).
        image_end: position just past the row's last image token (0 without images).
        sizes: the images' ``(width, height)`` as counted (from headers: after the pixel budget).
        image_ends: per image, the position just past its tokens (from headers; else empty).
        error: the row-named error the pipeline raises before any counting (the row is not counted).
        shrunk: what ``on_overflow="shrink"`` does to the row in a packed batch
            (:class:`~unsloth_multiimage.collate.shrink.Shrunk`; None: not shrunk).
        refused: the error a packed batch raises on the row under ``on_overflow="shrink"`` (too
            long and not shrinkable to fit).
    """

    row: int
    images: int = 0
    text: int = 0
    image: int = 0
    total: int = 0
    image_end: int = 0
    sizes: tuple[tuple[int, int], ...] = ()
    image_ends: tuple[int, ...] = ()
    error: str | None = None
    shrunk: Shrunk | None = None
    refused: str | None = None

    def images_cut(self, max_seq_length: int) -> int | None:
        """How many of the row's images lose tokens at ``max_seq_length`` (None: unknown, some do)."""
        if self.image_end <= max_seq_length:
            return 0
        if not self.image_ends:
            return None
        return sum(end > max_seq_length for end in self.image_ends)


def percentile(values: Sequence[int], q: float) -> int:
    """The nearest-rank ``q``-th percentile (``0 < q <= 100``) of ``values`` (0 when empty)."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class TokenCounter:
    """Counts the tokens of rows for one processor.

    Args:
        processor: the model's processor (its tokenizer, chat template and image processor).
        adapter: its model adapter (default: the one the plugin finds for it).
        settings: the policies (default: the settings in force).
        max_seq_length: with ``on_overflow="shrink"`` in the settings, each row longer than this
            also gets what shrink does to it in a packed batch (``RowTokens.shrunk`` / ``refused``).
    """

    def __init__(
        self, processor: Any, adapter: Any = None, settings: Settings | None = None, max_seq_length: int | None = None
    ) -> None:
        from ..collate import release as zoo_release
        from ..engine.activation import find_adapter

        self.processor = processor
        found = adapter if adapter is not None else find_adapter(processor)
        if found is None:
            raise ValueError(
                f"unsloth_multiimage: no model adapter claims {type(processor).__name__}, so its image tokens "
                f"cannot be counted. Fix: give --model a checkpoint of a supported family (doctor lists them)."
            )
        self.adapter: Any = found
        self.settings = settings or get_settings()
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.family = self.adapter.name
        self._zoo = zoo_release.installed_decision()
        #: the counting core (collate.token_count), shared with on_overflow="shrink"
        self.sizes = SizeCounter(processor, self.adapter)
        self._per_image = self.sizes.per_image
        self.from_headers = self._per_image is not None and self.settings.strategy != "grid"
        # Reading headers one row at a time: a thread pool per row costs more than it saves.
        self._row_settings = replace(self.settings, decode_threads=1) if self.from_headers else self.settings
        #: the packing max_seq_length shrink is shown for (None: shrink not configured)
        self.shrink_to = max_seq_length if self.settings.on_overflow == "shrink" else None
        self._shrinker = (
            RowShrinker(self.sizes, self._render, max_seq_length, self.settings)
            if max_seq_length is not None and self.shrink_to is not None and self._per_image is not None
            else None
        )

    def _render(self, example: Any, row: int) -> str:
        from ..collate.zoo_collator import render_row

        return render_row(self.processor, example, row, self._zoo)

    @property
    def method(self) -> str:
        """How this counter knows the image tokens, in words."""
        if self.from_headers:
            return f"{self.family}: exact from image headers ({self.adapter.image_tokens.how})"
        why = (
            'strategy="grid" composes a canvas' if self._per_image is not None else "its processor must see the pixels"
        )
        return f"{self.family}: images decoded and the processor run on each row ({why})"

    def per_image(self, width: int, height: int) -> int | None:
        """Tokens one image of this size becomes, where the family can say without decoding."""
        return None if self._per_image is None else self._per_image(width, height)

    def size_dependent(self) -> bool:
        """Whether a smaller image makes fewer tokens (so a pixel budget can shorten rows)."""
        return self.sizes.follows_size

    # ----------------------------------------------------------------------------- counting
    def _ids(self, text: str) -> list[int]:
        return self.sizes.ids(text)

    def count_rows(self, examples: Iterable[Any], first_row: int = 0) -> list[RowTokens]:
        """The tokens of each row of ``examples``, numbered from ``first_row`` (a row the pipeline
        or the template refuses comes back with its error and no counts)."""
        return [self.count_row(example, row) for row, example in enumerate(examples, first_row)]

    def count_row(self, example: Any, row: int) -> RowTokens:
        """The tokens of one row."""
        from ..collate.zoo_collator import render_row

        single = self.family if not self.adapter.multi_image else None
        shrink: dict[str, Any] = {}
        try:
            [prepared] = prepare_batch(
                [example],
                self._row_settings,
                single_image_family=single,
                first_row=row,
                headers_only=self.from_headers,
                fit_row=self._shrink_hook(shrink) if self._shrinker is not None else None,
                group_masked_family=group_masked_family(self.adapter),
            )
            text = render_row(self.processor, prepared.example, row, self._zoo)
            if self.from_headers:
                counted = self._from_headers(prepared, text)
            else:
                counted = self._from_processor(prepared, text)
        except RowError as exc:
            return RowTokens(row, error=str(exc))
        if self.shrink_to is not None and self._shrinker is None and counted.total > self.shrink_to:
            declared = self.adapter.image_tokens is not None
            shrink["refused"] = str(not_shrunk(row, self.family, counted.total, self.shrink_to, declared))
        return replace(counted, **shrink) if shrink else counted

    def _shrink_hook(self, found: dict[str, Any]) -> Callable[[Any, Any], tuple[Any, Any]]:
        """The row pipeline's ``fit_row`` that records what shrink would do (the row left as it is)."""
        assert self._shrinker is not None
        shrinker = self._shrinker

        def fit(example: Any, plan: Any) -> tuple[Any, Any]:
            sizes = [tuple(img.size) for img in plan.images]
            if self.from_headers and self.settings.max_pixels_per_example is not None and sizes:
                sizes = budget_sizes(sizes, self.settings.max_pixels_per_example)  # what training's budget makes
            try:
                found["shrunk"] = shrinker.decide(example, plan.row, sizes)
            except RowTooLongError as exc:
                found["refused"] = str(exc)
            return example, plan

        return fit

    def _from_headers(self, prepared: PreparedRow, text: str) -> RowTokens:
        sizes = [tuple(img.size) for img in prepared.plan.images]
        if self.settings.max_pixels_per_example is not None and sizes:
            sizes = budget_sizes(sizes, self.settings.max_pixels_per_example)
        ids = self._ids(text)
        return self.tokens_for(prepared.plan.row, ids, sizes)

    def tokens_for(self, row: int, ids: Sequence[int], sizes: Sequence[tuple[int, int]]) -> RowTokens:
        """The counts of a rendered row's ``ids`` whose images have ``sizes`` (header families)."""
        c = self.sizes.count(ids, sizes)
        return RowTokens(row, len(sizes), c.text, c.image, c.total, c.image_end, tuple(sizes), c.image_ends)

    def _from_processor(self, prepared: PreparedRow, text: str) -> RowTokens:
        from ..collate.zoo_collator import process_row

        images = list(prepared.plan.images)
        row = prepared.plan.row
        out = process_row(self.processor, text, images, row, self._zoo)
        ids = out["input_ids"][0]
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        total = len(ids)
        stripped = self._ids(text.replace(self.adapter.placeholder, "")) if images else self._ids(text)
        end = 0
        count = self.adapter.count_in_ids
        if images and count is not None:
            lo, hi = 1, total  # the shortest prefix that holds every image
            while lo < hi:
                mid = (lo + hi) // 2
                if count(self.processor, ids[:mid]) >= len(images):
                    hi = mid
                else:
                    lo = mid + 1
            end = lo
        elif images:
            end = total  # unknown: any cut may reach an image
        sizes = tuple(tuple(img.size) for img in images)
        return RowTokens(row, len(images), len(stripped), total - len(stripped), total, end, sizes)

    def total_at_budget(self, counted: RowTokens, budget: int) -> int:
        """The row's length if its images had to fit ``budget`` pixels (header families)."""
        if self._per_image is None or not counted.sizes:
            return counted.total
        sizes = budget_sizes(list(counted.sizes), budget)
        return (
            counted.text
            + self.sizes.placeholder_len * len(sizes)
            - len(sizes)
            + sum(self._per_image(w, h) for w, h in sizes)
        )


# ----------------------------------------------------------------------------------- the report
@dataclass
class TokenReport:
    """The token report of a dataset for one ``max_seq_length``.

    Attributes:
        rows: every row's counts (errors included).
        max_seq_length: the length checked against.
        cut: rows whose image tokens reach past ``max_seq_length`` (training raises on them).
        truncated: rows longer than ``max_seq_length`` whose images fit (their tail is cut silently).
        p50, p95, p100: nearest-rank percentiles of the counted rows' totals.
        suggestions: settings that would make every row fit.
        method: how the image tokens were counted.
    """

    rows: list[RowTokens]
    max_seq_length: int
    cut: list[RowTokens] = field(default_factory=list)
    truncated: list[RowTokens] = field(default_factory=list)
    p50: int = 0
    p95: int = 0
    p100: int = 0
    suggestions: list[str] = field(default_factory=list)
    method: str = ""
    family: str = ""
    shrinking: bool = False
    shrunk: list[RowTokens] = field(default_factory=list)
    refused: list[RowTokens] = field(default_factory=list)

    def shrink_lines(self, limit: int = 50) -> list[str]:
        """What ``on_overflow="shrink"`` does to each row longer than ``max_seq_length`` in a packed
        batch (none when shrink is not configured)."""
        if not self.shrinking:
            return []
        out = [
            f'on_overflow="shrink" (packed training batches, max_seq_length={self.max_seq_length}): '
            f"{len(self.shrunk)} row(s) shrunk to fit, {len(self.refused)} refused"
        ]
        out += [f"  shrunk {r.shrunk.describe()}" for r in self.shrunk[:limit] if r.shrunk is not None]
        out += [f"  refused row {r.row}: {r.refused}" for r in self.refused[:limit]]
        hidden = max(0, len(self.shrunk) - limit) + max(0, len(self.refused) - limit)
        if hidden:
            out.append(f"  ... and {hidden} more")
        return out

    def cut_message(self, r: RowTokens) -> str:
        """What training raises on a cut row, with the fix: for Llama 3.2 Vision the very error of
        the ``mllama_processor`` patch's truncation check (``sample`` being the row's place in its
        batch, here its dataset row), else the plugin's collator check in words."""
        lost = r.images_cut(self.max_seq_length)
        if self.family == "mllama" and lost:
            from ..collate.mllama import truncation_error

            error = truncation_error(r.row, lost, r.images, self.max_seq_length, r.total, r.image_end)
            return f"row {r.row}: training raises {type(error).__name__}: {error}"
        return (
            f"row {r.row}: {r.images} image(s), the last image token ends at position {r.image_end} > "
            f"max_seq_length={self.max_seq_length} (the row is {r.total} tokens: {r.text} text + {r.image} image). "
            f"Training raises ImageCountError on it (truncation cuts its image tokens, so the image features and "
            f"image tokens no longer match). Fix: max_seq_length >= {r.total}, or shorten row {r.row}."
        )


def summarise(rows: list[RowTokens], max_seq_length: int, counter: TokenCounter | None = None) -> TokenReport:
    """The report for ``rows`` at ``max_seq_length`` (``counter`` adds the pixel-budget suggestion)."""
    if not isinstance(max_seq_length, int) or max_seq_length < 1:
        raise ValueError(f"max_seq_length must be a positive integer, got {max_seq_length!r}")
    counted = [r for r in rows if r.error is None]
    totals = [r.total for r in counted]
    report = TokenReport(
        rows,
        max_seq_length,
        method=counter.method if counter is not None else "",
        family=counter.family if counter is not None else "",
    )
    report.shrinking = counter is not None and counter.shrink_to == max_seq_length
    if report.shrinking:
        report.shrunk = [r for r in counted if r.shrunk is not None]
        report.refused = [r for r in counted if r.refused is not None]
    report.cut = [r for r in counted if r.image_end > max_seq_length]
    report.truncated = [r for r in counted if r.total > max_seq_length and r.image_end <= max_seq_length]
    report.p50, report.p95, report.p100 = (percentile(totals, q) for q in (50, 95, 100))
    if report.p100 > max_seq_length:
        report.suggestions.append(f"max_seq_length={report.p100} fits every row (p95 needs {report.p95})")
        if counter is not None:
            report.suggestions.append(_budget_suggestion(counted, max_seq_length, counter))
    return report


def _budget_suggestion(rows: list[RowTokens], max_seq_length: int, counter: TokenCounter) -> str:
    if not counter.size_dependent():
        return (
            f"a pixel budget does not shorten {counter.family} rows (their image tokens do not depend on the image "
            f"size): raise max_seq_length, cap the images (max_images) or shorten the text"
        )
    over = [r for r in rows if r.total > max_seq_length]
    biggest = max(sum(w * h for w, h in r.sizes) for r in over) if over else 1

    def fits(budget: int) -> bool:
        return all(counter.total_at_budget(r, budget) <= max_seq_length for r in over)

    if not fits(1):
        return "no pixel budget makes every row fit (their text alone is too long): raise max_seq_length"
    lo, hi = 1, max(1, biggest)  # the largest budget that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return f"max_pixels_per_example={lo} fits every row at max_seq_length={max_seq_length}"
