"""The one row pipeline: what happens to a batch's rows before any upstream code sees them.

Stages, each over the whole batch before the next (so the first bad row of a stage is the one
named): **shape** (:func:`~unsloth_multiimage.rows.shape.check_row`) -> **video** (each video
part decoded and sampled into frames as image parts, :func:`~unsloth_multiimage.rows.video.expand_videos`,
unless the family takes the video natively) -> **plan** (every image
of the row in placeholder order, :func:`~unsloth_multiimage.rows.plan.plan_row`) -> **reject**
what can never reach the model (an image in a prompt/completion row's completion) -> **cap**
(``max_images``, before decoding, so dropped images are never loaded) and **serial** (one turn
per image, which needs no pixels) -> **decode** (paths,
bytes, dicts, arrays, odd modes; on a small thread pool) -> **budget / grid** -> **fit row** (a
caller's row fitter, e.g. ``on_overflow="shrink"`` shrinking a row longer than a packed sequence,
:mod:`unsloth_multiimage.collate.shrink`) -> **fit** (a family that takes one image per row).

The patched collator, ``demo``, ``preview`` and ``doctor --dataset`` all call
:func:`prepare_batch`, so the dry run says exactly what training does. Pure Python + PIL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from ..errors import HiddenFramesError, ImageCountError
from ..settings import Settings, Strategy, get_settings
from .chat import image_parts, is_chat
from .decode import load_image, needs_decoding
from .plan import RowPlan, plan_row
from .policy import apply_policies
from .shape import check_formatted, check_row
from .shrink import unmark
from .video import expand_videos, frames_mode, has_videos

__all__ = ["PreparedRow", "prepare_batch", "format_rows"]


@dataclass(frozen=True)
class PreparedRow:
    """One row after the pipeline.

    Attributes:
        row: index of the row in its batch.
        example: the row as the policies left it (image parts dropped or merged where a policy
            did so; the very same object where nothing changed).
        plan: the row's images, loaded, in placeholder order, after the policies.
        given: how many images the row held before the policies.
        decoded: True when at least one image had to be loaded or normalised.
    """

    row: int
    example: Any
    plan: RowPlan
    given: int
    decoded: bool


def format_rows(examples: Sequence[Any], formatting_func: Callable[[Any], Any] | None) -> list[Any]:
    """``formatting_func`` applied to each row (as the collator does), its result checked."""
    if formatting_func is None:
        return list(examples)
    out = []
    for row, example in enumerate(examples):
        result = formatting_func(example)
        check_formatted(result, row)
        out.append(result)
    return out


def prepare_batch(
    examples: Sequence[Any],
    settings: Settings | None = None,
    *,
    single_image_family: str | None = None,
    first_row: int = 0,
    headers_only: bool = False,
    after_decode: Callable[[RowPlan, Any], Any] | None = None,
    native_video: bool = False,
    fit_row: Callable[[Any, RowPlan], tuple[Any, RowPlan]] | None = None,
    group_masked_family: str | None = None,
) -> list[PreparedRow]:
    """Run every stage of the pipeline over a batch (see the module docstring).

    Args:
        examples: the batch's rows (after any ``formatting_func``: :func:`format_rows`).
        settings: the policies; default: the settings in force (:func:`~unsloth_multiimage.get_settings`).
        single_image_family: the name of the model family when it takes one image per row only
            (its adapter says so): a row left with several images then raises.
        first_row: the number errors give the first row (a dry run of a dataset names its rows;
            the collator names the rows of its batch from 0).
        headers_only: open image files without decoding them (a dry run over many rows); the
            pixel budget and the grid, which need pixels, are then not applied.
        after_decode: ``after_decode(plan, image) -> image``, run on the decoding thread
            right after an image is loaded (the collator resizes there the way its release
            would, so that work runs in parallel too); only when no later stage changes pixels
            (no pixel budget, no grid).
        native_video: the model family and the installed release take video parts themselves;
            under ``video="auto"`` they are then left alone (``video="frames"`` decodes them anyway).
        fit_row: ``fit_row(example, plan) -> (example, plan)``, run on each row after the budget
            and grid stage (with ``headers_only``: on the rows as read, images not loaded); under
            ``strategy="native"`` each video frame's parts carry
            :data:`~unsloth_multiimage.rows.video.FRAME_KEY` meanwhile (removed afterwards), so
            it may drop frames (:mod:`unsloth_multiimage.rows.shrink`).
        group_masked_family: the name of the model family when its cross-attention mask shows a
            text token the latest group of images only under ``mllama_cross_attention="latest"``
            (Llama 3.2 Vision: its adapter names a ``cross_attention_mask``); a row whose video
            frames would then be hidden from the text after them raises.

    Raises:
        RowError: the first bad row of the first stage that finds one (a ``ValueError`` naming it).
    """
    settings = settings or get_settings()
    for row, example in enumerate(examples, first_row):
        check_row(example, row)
    mark = fit_row is not None and settings.strategy == "native"
    if frames_mode(settings, native_video):
        if group_masked_family is not None:
            _reject_hidden_frames(examples, settings, group_masked_family, first_row)
        examples = _expand_batch(examples, settings, first_row, mark)
    plans = [plan_row(example, row) for row, example in enumerate(examples, first_row)]
    _reject_completion_images(examples, plans)
    given = [len(p.images) for p in plans]
    # The cap (and serial, which needs no pixels) first, so images the cap drops are never loaded
    # and a dry run sees the serial turns; then decode; then budget and grid.
    early: Strategy = "serial" if settings.strategy == "serial" else "native"
    capped, plans = apply_policies(examples, plans, replace(settings, max_pixels_per_example=None, strategy=early))
    pixels_final = settings.max_pixels_per_example is None and settings.strategy != "grid"
    hook = after_decode if pixels_final and not headers_only else None
    plans, decoded = _decode_batch(plans, settings, headers_only, hook)
    if headers_only:
        final = capped
    else:
        final, plans = apply_policies(capped, plans, settings)
    if fit_row is not None:
        fitted = [fit_row(e, p) for e, p in zip(final, plans)]
        final, plans = [unmark(e) for e, _ in fitted], [p for _, p in fitted]
    if single_image_family is not None:
        _reject_multi_image(plans, single_image_family, settings)
    return [PreparedRow(p.row, e, p, g, d) for e, p, g, d in zip(final, plans, given, decoded)]


def _expand_batch(examples: Sequence[Any], settings: Settings, first_row: int, mark: bool = False) -> list[Any]:
    """Every row's videos as frames (:func:`~unsloth_multiimage.rows.video.expand_videos`); rows with
    videos are decoded on the decoding pool (PyAV releases the GIL), the first failure raised in order."""
    todo = [(row, example) for row, example in enumerate(examples, first_row) if has_videos(example)]
    if not todo:
        return list(examples)
    if settings.decode_threads > 1 and len(todo) > 1:
        done = list(_pool(settings.decode_threads).map(lambda t: expand_videos(t[1], t[0], settings, mark), todo))
    else:
        done = [expand_videos(example, row, settings, mark) for row, example in todo]
    by_row = {row: new for (row, _), new in zip(todo, done)}
    return [by_row.get(row, example) for row, example in enumerate(examples, first_row)]


def _reject_hidden_frames(examples: Sequence[Any], settings: Settings, family: str, first_row: int) -> None:
    """A label before each frame puts text between the frames, so each frame is its own image
    group; under the ``latest`` mask the text after a video would see its last frame only."""
    if settings.video_frame_label is None or settings.mllama_cross_attention != "latest" or settings.strategy == "grid":
        return
    for row, example in enumerate(examples, first_row):
        if has_videos(example):
            raise HiddenFramesError(
                f"unsloth_multiimage: row {row} has a video that becomes frames with a label before each "
                f"(video_frame_label={settings.video_frame_label!r}), so each frame is its own image group, and "
                f"{family}'s `latest` cross-attention mask (mllama_cross_attention) shows a text token the last "
                f"group only: the text after the video would see its last frame alone. Fix: "
                f'configure(mllama_cross_attention="cumulative") (UNSLOTH_MULTIIMAGE_MLLAMA_CROSS_ATTENTION=cumulative, '
                f"--cross-attention cumulative) so that every frame stays visible, or leave video_frame_label unset "
                f"(the frames then form one group).",
                row=row,
            )


def _reject_completion_images(examples: Sequence[Any], plans: Sequence[RowPlan]) -> None:
    """Prompt/completion rows: upstream sends images with the prompt only, so an image in the
    completion could never reach the model; say so instead of a count error."""
    for example, plan in zip(examples, plans):
        if not (isinstance(example, Mapping) and is_chat(example.get("completion"))):
            continue
        n = len(image_parts(example["completion"]))
        if n:
            raise ImageCountError(
                f"unsloth_multiimage: row {plan.row} has {n} image part(s) in its completion; prompt/completion "
                f"rows carry images in the prompt only (the completion is tokenized as text). Fix: move the "
                f"image(s) into the prompt messages, or use the `messages` layout.",
                row=plan.row,
            )


def _reject_multi_image(plans: Sequence[RowPlan], family: str, settings: Settings) -> None:
    for plan in plans:
        if len(plan.images) > 1:
            raise ImageCountError(
                f"unsloth_multiimage: row {plan.row} has {len(plan.images)} images, but {family} models take one image "
                f'per row. Fix: configure(strategy="grid") (UNSLOTH_MULTIIMAGE_STRATEGY=grid) to compose each row\'s '
                f'images into one canvas, or configure(max_images=1, on_excess="keep_first") to keep the first.',
                row=plan.row,
            )


# ------------------------------------------------------------------------------------- decoding

_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` for this process (a DataLoader worker forked from a parent that had
    one gets its own: threads do not survive a fork)."""
    key = (os.getpid(), threads)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="umi-decode")
        return pool


def _decode_batch(
    plans: Sequence[RowPlan],
    settings: Settings,
    headers_only: bool = False,
    after_decode: Callable[[RowPlan, Any], Any] | None = None,
) -> tuple[list[RowPlan], list[bool]]:
    """Load every image that is not ready yet; order and row-named errors as in a serial loop."""
    todo = [(i, k, img) for i, p in enumerate(plans) for k, img in enumerate(p.images) if needs_decoding(img)]
    if not todo:
        return list(plans), [False] * len(plans)

    def load(task: tuple[int, int, Any]) -> Any:
        i, k, img = task
        image = load_image(img, plans[i].row, k, allow_urls=settings.allow_urls, header_only=headers_only)
        return image if after_decode is None else after_decode(plans[i], image)

    if settings.decode_threads > 1 and len(todo) > 1:
        loaded = list(_pool(settings.decode_threads).map(load, todo))  # raises the first failure, in order
    else:
        loaded = [load(t) for t in todo]
    images = [list(p.images) for p in plans]
    for (i, k, _), img in zip(todo, loaded):
        images[i][k] = img
    touched = {i for i, _, _ in todo}
    out = [replace(p, images=tuple(images[i])) if i in touched else p for i, p in enumerate(plans)]
    return out, [i in touched for i in range(len(plans))]
