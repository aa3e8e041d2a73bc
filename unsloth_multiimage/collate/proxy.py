"""The collator's processor, seen through a proxy while upstream runs one batch.

On the batch call the proxy lines up upstream's image list with the rows, puts in every image
upstream left out (resized the way that release resizes the images it keeps), checks each
rendered text's placeholders against its row's images, hands the images over in the layout the
processor family wants (model adapter), and checks that truncation left every row's image tokens.
A family that needs an image row first (``ModelAdapter.image_row_first``, Idefics2) gets the rows of
a batch that starts with a text-only row permuted for the call, and its outputs put back in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..adapters import ModelAdapter, id_list, token_id
from ..engine.patching import AnyObjectProxy
from ..errors import ImageCountError, InternalError, RowError
from ..rows.layouts import tag_layout
from ..rows.plan import RowPlan, check_rendered_counts
from .release import resizer

__all__ = ["BatchImages", "ProcessorProxy"]

PATCH_NAME = "unsloth_collator"


class BatchImages:
    """The per-row image plan of one collator call, and the alignment of upstream's list."""

    def __init__(
        self,
        plans: Sequence[RowPlan],
        collator: Any,
        adapter: ModelAdapter | None,
        examples: Sequence[Any] = (),
        found: Sequence[int] | None = None,
    ) -> None:
        self.plans = list(plans)
        # How many images upstream's own extraction finds per row (what it was handed).
        self.found = (
            list(found) if found is not None else [len(p.images) if p.merged else p.upstream_count for p in plans]
        )
        # Each row's public-layout image tags, read now: upstream may rewrite a row's contents in place
        # (string contents into text parts), after which its layout reads as another one.
        self.tagged = [tag_layout(e, adapter.placeholder if adapter is not None else None) for e in examples] or None
        self.collator = collator
        self.adapter = adapter
        self.token = adapter.placeholder if adapter is not None else None
        self.nesting = adapter.nesting if adapter is not None else None
        self.used = False
        # What the processor returned for the batch: the image call first, then text-only calls
        # (a prompt/completion batch encodes its completions on their own).
        self.outputs: list[Any] = []

    def check_truncation(
        self, processor: Any, out: Any, aligned: list[list[Any]], max_length: Any, truncation: Any = None
    ) -> None:
        """Raise naming the first row whose images lost their tokens in ``input_ids`` to truncation.

        Only when truncation was in force (``truncation`` on and a ``max_length``): without it
        nothing can be cut, and a count that comes out short is the counter's, not the row's.
        """
        adapter = self.adapter
        ids = out.get("input_ids") if hasattr(out, "get") else None
        if adapter is None or ids is None or len(ids) != len(aligned) or not _truncates(max_length, truncation):
            return
        counts = _counts_by_length(adapter, processor, out, ids, aligned)
        if counts is None:
            if adapter.count_in_ids is None:
                return
            counts = [adapter.count_in_ids(processor, row_ids) for row_ids in ids]
        for plan, found, images in zip(self.plans, counts, aligned):
            row = plan.row
            if found < len(images):
                raise ImageCountError(
                    f"unsloth_multiimage: row {row} has {len(images)} image(s) but only {found} survive in its "
                    f"input_ids (max_length={max_length}): truncation cut the image tokens. Fix: raise max_seq_length "
                    f"(max_length), or shorten row {row}.",
                    row=row,
                )

    def layout(self, aligned: list[list[Any]], upstream: Any) -> list[Any]:
        """The aligned rows in the layout the processor family wants."""
        if self.nesting == "flat":
            return [img for row in aligned for img in row]
        if self.nesting == "per_row" or upstream is None or len(upstream) == len(aligned):
            return aligned
        # Unknown family on a release that leaves text-only rows out (`text_only_row_slots`): keep that.
        return [row for row in aligned if row]

    def align(self, upstream: Any) -> list[list[Any]]:
        entries = [] if upstream is None else list(upstream)
        entries = [[] if e is None else (list(e) if isinstance(e, (list, tuple)) else [e]) for e in entries]
        n = len(self.plans)
        if not entries:
            entries = [[] for _ in range(n)]  # upstream found no image at all: every row's come from the plan
        if len(entries) != n:
            # Releases that need `text_only_row_slots` leave out the rows whose extraction came back empty.
            # Merged rows reach upstream through their message content, every image included.
            rows = [i for i, k in enumerate(self.found) if k > 0]
            if len(entries) != len(rows):
                raise InternalError(
                    f"unsloth_multiimage: cannot line up the collator's {len(entries)} image lists with "
                    f"{n} rows ({len(rows)} rows with images). Please report this with your unsloth_zoo version; "
                    f"set UNSLOTH_MULTIIMAGE_DISABLE_PATCHES={PATCH_NAME} to run without the patch."
                )
            by_row = dict(zip(rows, entries))
            entries = [by_row.get(i, []) for i in range(n)]
        out: list[list[Any]] = []
        resize = None
        for plan, entry in zip(self.plans, entries):
            if not (plan.merged or plan.own_images) and len(entry) == len(plan.images):
                out.append(entry)  # upstream got this row right: keep its own objects
                continue
            resize = resize or resizer(self.collator)  # the images are decoded already
            out.append(resize(list(plan.images)))
        return out


def _truncates(max_length: Any, truncation: Any) -> bool:
    """Whether a processor call with these arguments can cut ``input_ids``: transformers truncates
    to a ``max_length`` unless ``truncation`` is off (None with a ``max_length`` means longest_first)."""
    return max_length is not None and truncation not in (False, "do_not_truncate")


def _counts_by_length(
    adapter: ModelAdapter, processor: Any, out: Any, ids: Any, aligned: list[list[Any]]
) -> list[int] | None:
    """The complete images of each row, counted by the length each image expands to
    (``ModelAdapter.image_lengths``), or None when the adapter cannot say."""
    if adapter.image_lengths is None:
        return None
    lengths = adapter.image_lengths(processor, out)
    if lengths is None or len(lengths) != sum(len(row) for row in aligned):
        return None
    token = token_id(processor, "image_token_id", adapter.placeholder, "image_token")
    side = getattr(getattr(processor, "tokenizer", processor), "truncation_side", "right")
    counts, start = [], 0
    for row_ids, images in zip(ids, aligned):
        mine = list(lengths[start : start + len(images)])
        start += len(images)
        kept = id_list(row_ids).count(token)
        if side == "left":
            mine.reverse()  # a left cut removes the first images: count from the last
        complete = 0
        for length in mine:
            if kept < length:
                break
            kept -= length
            complete += 1
        counts.append(complete)
    return counts


def _needs_image_row_first(batch: BatchImages, aligned: list[list[Any]]) -> bool:
    """The family needs an image row first (``image_row_first``), row 0 has none, another has one."""
    adapter = batch.adapter
    return bool(adapter is not None and adapter.image_row_first and aligned and not aligned[0] and any(aligned))


def _call_image_row_first(processor: Any, kwargs: dict[str, Any], aligned: list[list[Any]], batch: BatchImages) -> Any:
    """Call ``processor`` with the first image row moved to the front, then put every output back in
    the caller's row order. None (the caller then makes the call in its own order, and the processor
    fails as it does upstream) when some output is not batch-first (its length is not the row count)."""
    n = len(aligned)
    first = next(i for i, row in enumerate(aligned) if row)
    order = [first] + [i for i in range(n) if i != first]
    moved = [aligned[i] for i in order]
    out = processor(**dict(kwargs, text=[kwargs["text"][i] for i in order], images=batch.layout(moved, None)))
    values = dict(out.items()) if hasattr(out, "items") else {}
    if not values or any(
        isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != n for v in values.values()
    ):
        return None
    back = [order.index(i) for i in range(n)]  # the caller's row i is row back[i] of the call
    for key, value in values.items():
        if hasattr(value, "index_select"):  # a torch tensor
            import torch

            out[key] = value.index_select(0, torch.tensor(back, device=value.device))
        elif hasattr(value, "shape"):  # a numpy array
            out[key] = value[back]
        else:
            out[key] = [value[j] for j in back]
    return out


class ProcessorProxy(AnyObjectProxy):
    """Looks like the processor (isinstance included); fixes the images of the batch call."""

    def __init__(self, processor: Any, batch: BatchImages) -> None:
        super().__init__(processor)
        self._self_batch = batch

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        batch = self._self_batch
        text = kwargs.get("text")
        if not batch.used and not args and isinstance(text, (list, tuple)) and len(text) == len(batch.plans):
            batch.used = True
            upstream = kwargs.get("images")
            try:
                aligned = batch.align(upstream)
                if batch.token is not None:
                    check_rendered_counts(
                        text,
                        [len(r) for r in aligned],
                        batch.token,
                        first_row=batch.plans[0].row,
                        tagged=batch.tagged,
                    )
                if any(aligned):
                    images = batch.layout(aligned, upstream)
                    if isinstance(upstream, list):
                        upstream[:] = images  # upstream's fallbacks reuse its own list object
                    kwargs["images"] = images
                else:
                    kwargs.pop("images", None)  # an all-text batch: as upstream does
            except (RowError, InternalError):
                raise
            except Exception as exc:  # the plugin's own alignment failed: never blamed on a row
                raise InternalError(
                    f"unsloth_multiimage: lining up the batch's images failed ({type(exc).__name__}: {exc}). Please "
                    f"report this with your unsloth_zoo version; set UNSLOTH_MULTIIMAGE_DISABLE_PATCHES={PATCH_NAME} "
                    f"to run without the patch."
                ) from exc
            out = None
            if _needs_image_row_first(batch, aligned):  # Idefics2: see ModelAdapter.image_row_first
                out = _call_image_row_first(self.__wrapped__, kwargs, aligned, batch)
            if out is None:
                out = self.__wrapped__(*args, **kwargs)
            batch.check_truncation(self.__wrapped__, out, aligned, kwargs.get("max_length"), kwargs.get("truncation"))
            batch.outputs.append(out)
            return out
        out = self.__wrapped__(*args, **kwargs)
        if batch.used and isinstance(text, (list, tuple)) and len(text) == len(batch.plans):
            batch.outputs.append(out)
        return out
