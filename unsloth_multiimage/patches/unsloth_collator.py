"""Built-in plugin: ``UnslothVisionDataCollator`` sends every image of every example.

One wrapper on the zoo class's ``__call__`` covers every release line and every layout (the
monolithic ``__call__`` until 2025.9.2, the helper methods after), and the unsloth subclass
(``unsloth.trainer.UnslothVisionDataCollator``, a subclass since unsloth 2026.6):

1. plan each row's images with :func:`unsloth_multiimage.images.plan_row` (column and/or
   message content, in placeholder order; bad rows raise naming the row);
2. hand upstream examples it can digest on its own release (no None, no empty column to
   index, a list where it expects one), so its own chat rendering, masking, padding and
   dtype handling run unchanged;
3. while upstream runs, its processor is seen through a proxy that, on the batch call, lines up
   the image list with the rows and puts in every image upstream left out, resized the way that
   release resizes the images it keeps; checks each rendered text's placeholders against its
   images; hands the images over in the layout the processor family wants (model adapter);
   and checks that truncation left every row's image tokens in place.
Rows upstream already got right keep upstream's own (resized) image objects.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import wrapt

from ..adapters import adapter_for
from ..decision import Decision
from ..decode import load_image, needs_decoding
from ..hookspecs import hookimpl
from ..images import ImageCountError, RowPlan, check_rendered_counts, content_parts, is_image_part, plan_row
from ..patching import Patch, signature_accepts
from ..policy import apply_policies
from ..settings import get_settings

logger = logging.getLogger("unsloth_multiimage")

MODULE = "unsloth_zoo.vision_utils"
PATCH_NAME = "unsloth_collator"

# Serialises the swap of the collator's processor slot (collators are called from one thread
# per process in practice; DataLoader workers are processes).
_swap_lock = threading.RLock()


@hookimpl
def umi_patches() -> list[Patch]:
    return [
        Patch(
            name=PATCH_NAME,
            module=MODULE,
            attribute="UnslothVisionDataCollator.__call__",
            make_wrapper=make_wrapper,
            shape_check=_shape_check,
            description="UnslothVisionDataCollator: every image of every row, aligned and checked per row",
        )
    ]


def _shape_check(call: Any) -> str | None:
    return signature_accepts(call, positional=1)


def _resizer(collator: Any) -> Callable[[list], list]:
    """Resize a row's images the way this release resizes the images it keeps."""
    own = getattr(collator, "_resize_images_inplace", None)
    if own is not None:  # 2025.9.3+: upstream's own method
        return lambda imgs: own(list(imgs)) or []
    if hasattr(type(collator), "image_size"):  # 2025.3.11 - 2025.9.2: inline resize by `image_size`
        size = getattr(collator, "image_size", None)
        return lambda imgs: [_inline_resize(img, size) for img in imgs]
    return list  # up to 2025.3.9: no resizing


def _inline_resize(img: Any, size: Any) -> Any:
    # Behaviour of the 2025.3.11-2025.9.2 inline loop: a tuple is an exact size; an int caps the
    # width, keeping the aspect ratio; "max" (None) leaves the image alone.
    if size is None or not hasattr(img, "resize"):
        return img
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    if isinstance(size, tuple):
        return img.resize(size, lanczos)
    if img.size[0] > size:
        return img.resize((size, int(img.size[1] * (size / img.size[0]))), lanczos)
    return img


def _is_chat(side: Any) -> bool:
    return isinstance(side, list) and all(isinstance(m, Mapping) for m in side)


def _filled(messages: list, images: Any) -> list:
    """Copies of ``messages`` whose image parts carry the next image of ``images`` each."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, (list, tuple)):
            content = [
                {**part, "type": "image", "image": next(images)} if isinstance(part, Mapping) and is_image_part(part) else part
                for part in content
            ]
            message = {**message, "content": content}
        out.append(message)
    return out


def _with_images_in_content(example: Mapping, images: Sequence) -> dict:
    """The example with every image part of its chat carrying the next of ``images``, no column."""
    it = iter(images)
    out = {k: v for k, v in example.items() if k != "images"}
    for key in ("messages", "conversations", "prompt", "completion"):
        if key in out and _is_chat(out[key]):
            out[key] = _filled(out[key], it)
            if key in ("messages", "conversations"):
                break
    return out


def _for_upstream(example: Any, plan: RowPlan, fixes: frozenset[str], decoded: bool) -> Any:
    """The example as upstream should see it on its release.

    Upstream reads a present ``images`` key first (indexing ``[0]`` on old releases, so it must
    be a non-empty list of loaded images), else the message content.
    """
    if not isinstance(example, Mapping):
        return example
    is_pc = _is_chat(example.get("prompt")) and _is_chat(example.get("completion"))
    if plan.merged or (not plan.column and decoded) or (
        plan.column and is_pc and "pc_column_images" in fixes and plan.placeholders == len(plan.images)
    ):
        # Merged rows, rows whose embedded images we decoded, and prompt/completion rows on releases
        # that read their images from the content only: every image goes into its part.
        return _with_images_in_content(example, plan.images)
    if "images" not in example:
        return example
    if not plan.column or not plan.images:
        # None (content rows) or an empty column: without the key every release reads the content.
        return {k: v for k, v in example.items() if k != "images"}
    value = example["images"]
    if isinstance(value, list) and len(value) == len(plan.images) and all(a is b for a, b in zip(value, plan.images)):
        return example
    return {**example, "images": list(plan.images)}


def _reject_completion_images(examples: Sequence[Any], plans: Sequence[RowPlan]) -> None:
    """Prompt/completion rows: upstream sends images with the prompt only, so an image in the
    completion could never reach the model; say so instead of a count error."""
    for example, plan in zip(examples, plans):
        if not (isinstance(example, Mapping) and _is_chat(example.get("completion"))):
            continue
        n = sum(1 for p in content_parts(example["completion"]) if is_image_part(p))
        if n:
            raise ImageCountError(
                f"unsloth_multiimage: row {plan.row} has {n} image part(s) in its completion; prompt/completion "
                f"rows carry images in the prompt only (the completion is tokenized as text). Fix: move the "
                f"image(s) into the prompt messages, or use the `messages` layout."
            )


def _decode(plan: RowPlan, allow_urls: bool) -> tuple[RowPlan, bool]:
    """Load every image of the row that is not loaded yet (paths, bytes, dicts, opted-in URLs)."""
    if not any(needs_decoding(img) for img in plan.images):
        return plan, False
    images = tuple(
        load_image(img, plan.row, k, allow_urls=allow_urls) if needs_decoding(img) else img
        for k, img in enumerate(plan.images)
    )
    return replace(plan, images=images), True


class _BatchImages:
    """The per-row image plan of one collator call, and the alignment of upstream's list."""

    def __init__(self, plans: Sequence[RowPlan], collator: Any, adapter: Any) -> None:
        self.plans = list(plans)
        self.collator = collator
        self.adapter = adapter
        self.token = adapter.placeholder if adapter is not None else None
        self.nesting = adapter.nesting if adapter is not None else None
        self.used = False

    def check_truncation(self, processor: Any, out: Any, aligned: list[list], max_length: Any) -> None:
        """Raise naming the first row whose images lost their tokens in ``input_ids`` (truncation)."""
        count = self.adapter.count_in_ids if self.adapter is not None else None
        ids = out.get("input_ids") if hasattr(out, "get") else None
        if count is None or ids is None or len(ids) != len(aligned):
            return
        for row, (row_ids, images) in enumerate(zip(ids, aligned)):
            found = count(processor, row_ids)
            if found < len(images):
                raise ImageCountError(
                    f"unsloth_multiimage: row {row} has {len(images)} image(s) but only {found} survive in its "
                    f"input_ids (max_length={max_length}): truncation cut the image tokens. Fix: raise max_seq_length "
                    f"(max_length), or shorten row {row}."
                )

    def layout(self, aligned: list[list], upstream: Any) -> list:
        """The aligned rows in the layout the processor family wants."""
        if self.nesting == "flat":
            return [img for row in aligned for img in row]
        if self.nesting == "per_row" or upstream is None or len(upstream) == len(aligned):
            return aligned
        # Unknown family on a release that leaves text-only rows out (2025.9.3-2026.9.7): keep that.
        return [row for row in aligned if row]

    def align(self, upstream: Any) -> list[list]:
        entries = [] if upstream is None else list(upstream)
        entries = [[] if e is None else (list(e) if isinstance(e, (list, tuple)) else [e]) for e in entries]
        n = len(self.plans)
        if len(entries) != n:
            # Releases 2025.9.3-2026.9.7 leave out the rows whose extraction came back empty.
            # Merged rows reach upstream through their message content, every image included.
            rows = [p.row for p in self.plans if (len(p.images) if p.merged else p.upstream_count) > 0]
            if len(entries) != len(rows):
                raise RuntimeError(
                    f"unsloth_multiimage: cannot line up the collator's {len(entries)} image lists with "
                    f"{n} rows ({len(rows)} rows with images). Please report this with your unsloth_zoo version; "
                    f"set UNSLOTH_MULTIIMAGE_DISABLE_PATCHES={PATCH_NAME} to run without the patch."
                )
            by_row = dict(zip(rows, entries))
            entries = [by_row.get(i, []) for i in range(n)]
        out: list[list] = []
        resize = None
        for plan, entry in zip(self.plans, entries):
            if not plan.merged and len(entry) == len(plan.images):
                out.append(entry)  # upstream got this row right: keep its own objects
                continue
            resize = resize or _resizer(self.collator)  # the images are decoded already
            out.append(resize(list(plan.images)))
        return out


class _ProcessorProxy(wrapt.ObjectProxy):
    """Looks like the processor (isinstance included); fixes the images of the batch call."""

    def __init__(self, processor: Any, batch: _BatchImages) -> None:
        super().__init__(processor)
        self._self_batch = batch

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        batch = self._self_batch
        text = kwargs.get("text")
        if not batch.used and not args and isinstance(text, (list, tuple)) and len(text) == len(batch.plans):
            batch.used = True
            upstream = kwargs.get("images")
            aligned = batch.align(upstream)
            if batch.token is not None:
                check_rendered_counts(text, [len(r) for r in aligned], batch.token)
            if any(aligned):
                images = batch.layout(aligned, upstream)
                if isinstance(upstream, list):
                    upstream[:] = images  # upstream's fallbacks reuse its own list object
                kwargs["images"] = images
            else:
                kwargs.pop("images", None)  # an all-text batch: as upstream does
            out = self.__wrapped__(*args, **kwargs)
            batch.check_truncation(self.__wrapped__, out, aligned, kwargs.get("max_length"))
            return out
        return self.__wrapped__(*args, **kwargs)


def make_wrapper(decision: Decision) -> Callable:
    """The ``__call__`` wrapper for the installed release (``decision.fixes`` are its active fixes)."""

    def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        if instance is None or len(args) != 1 or kwargs:
            return wrapped(*args, **kwargs)
        examples = list(args[0])
        if not examples:
            return wrapped(*args, **kwargs)
        formatting = getattr(instance, "formatting_func", None)
        if formatting is not None:
            examples = [formatting(e) for e in examples]
        settings = get_settings()
        plans = [plan_row(e, i) for i, e in enumerate(examples)]
        _reject_completion_images(examples, plans)
        # The cap first, so images it drops are never loaded; then decode; then budget and grid.
        examples, plans = apply_policies(examples, plans, replace(settings, max_pixels_per_example=None, strategy="native"))
        plans, decoded = zip(*(_decode(p, settings.allow_urls) for p in plans))
        examples, plans = apply_policies(examples, list(plans), settings)
        processor = instance.processor
        adapter = adapter_for(processor)
        upstream_examples = [_for_upstream(e, p, decision.fixes, d) for e, p, d in zip(examples, plans, decoded)]
        proxy = _ProcessorProxy(processor, _BatchImages(plans, instance, adapter))
        with _swap_lock:
            instance.processor = proxy
            if formatting is not None:
                instance.formatting_func = None  # already applied above
            try:
                return wrapped(upstream_examples)
            except KeyError as exc:
                if exc.args == ("pixel_values",) and not any(p.images for p in plans):
                    # Releases before 2025.9.3 index batch["pixel_values"] even when no row has an image.
                    raise ValueError(
                        f"unsloth_multiimage: every row of this batch ({len(plans)} rows) is text-only, and "
                        f"unsloth_zoo {decision.version} can only collate batches with at least one image. Fix: "
                        f"upgrade unsloth_zoo (2025.9.3+ collates text-only batches), or mix image rows into every batch."
                    ) from exc
                raise
            finally:
                instance.processor = processor
                if formatting is not None:
                    instance.formatting_func = formatting

    return wrapper


__all__ = ["umi_patches", "make_wrapper", "ImageCountError"]
