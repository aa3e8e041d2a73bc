"""The patched ``UnslothVisionDataCollator.__call__`` on one batch, on every release line.

1. run the row pipeline (:func:`unsloth_multiimage.rows.pipeline.prepare_batch`: shape, every
   image in placeholder order, cap, decoding, budget, grid; bad rows raise naming the row);
2. hand upstream examples it can digest on its own release (:func:`.release.for_upstream`), so
   its own chat rendering, masking, padding and dtype handling run unchanged;
3. while upstream runs, its processor is seen through :class:`.proxy.ProcessorProxy`;
4. when upstream still fails, find the row that fails alone and name it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..adapters import AdapterLookup, group_masked_family
from ..engine import compat
from ..engine.decision import Decision
from ..engine.swap import swapped
from ..errors import BatchError, InternalError, RowError, RowShapeError
from ..rows import serial
from ..rows.chat import is_pc_row, messages_of
from ..rows.identity import row_identity
from ..rows.pipeline import PreparedRow, format_rows, prepare_batch
from ..rows.plan import RowPlan
from ..settings import get_settings
from . import completion_mask
from .proxy import BatchImages, ProcessorProxy
from .release import (
    DISTRIBUTION,
    Fix,
    collator_adds_special_tokens,
    for_upstream,
    pc_path_problem,
    resizer,
    takes_native_video,
)
from .shrink import RowShrinker
from .train_packing import pack_if_training, shrinker_for

__all__ = ["collate", "failure", "render_row", "process_row", "check_serial_template", "pc_row_error"]


def collate(
    wrapped: Callable[..., Any], instance: Any, examples: list[Any], decision: Decision, adapters: AdapterLookup
) -> Any:
    """Upstream's collation of ``examples`` through the plugin's row pipeline; a row error learns
    where its row is (batch position and dataset identity) on the way out."""
    try:
        return _collate_batch(wrapped, instance, examples, decision, adapters)
    except RowError as exc:
        if exc.row is not None and 0 <= exc.row < len(examples):
            exc.locate(len(examples), row_identity(examples[exc.row]))
        raise


def failure(row: int | None, exc: BaseException, version: str | None, family: str | None = None) -> RowError:
    """The row-named error for a failure inside upstream code (its chat template, its processor or
    the collator itself) on a row the plugin's own checks let through; ``family`` names the model
    family whose processor it is (what it cannot take is its own rule, said in its message)."""
    where = f"row {row}" if row is not None else "this batch"
    processor = f"the {family} processor" if family else "the processor"
    # Upstream's first line without its final full stop: the message goes on with ". Fix:".
    text = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
    return RowError(
        f"unsloth_multiimage: {where} cannot be collated: the plugin's checks pass, but upstream code "
        f"(unsloth_zoo {version}, the chat template or {processor}) fails on it with {type(exc).__name__}"
        f"{': ' + text[:300] if text else ''}. Fix: compare {where} with the layout your chat template expects "
        f"(`unsloth-multiimage doctor --dataset FILE` checks every row), or leave it out.",
        row=row,
    )


def render_row(processor: Any, example: Any, row: int, decision: Decision) -> str:
    """The row's chat rendered by the processor's chat template, as upstream renders it for the
    placeholder count (a template error becomes the collator's row-named error)."""
    owner = processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)
    try:
        rendered: str = owner.apply_chat_template(messages_of(example), tokenize=False, add_generation_prompt=False)
        return rendered
    except Exception as exc:
        raise failure(row, exc, decision.version) from exc


def process_row(processor: Any, text: str, images: Sequence[Any], row: int, decision: Decision) -> Any:
    """The processor on one rendered row (a processor error becomes the collator's row-named error)."""
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt", "padding": True}
    if images:
        kwargs["images"] = [list(images)]
    try:
        return processor(**kwargs)
    except RowError:
        raise
    except Exception as exc:
        raise failure(row, exc, decision.version) from exc


def check_serial_template(processor: Any, prepared: Sequence[PreparedRow], family: str | None) -> None:
    """Under ``strategy="serial"``: the first row with consecutive user turns raises when the
    processor's chat template cannot render them (probed once per template)."""
    rows = [p.row for p in prepared if serial.consecutive_turns(p.example)]
    if not rows:
        return
    owner = processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)
    key = f"{type(owner).__name__}:{getattr(owner, 'chat_template', None)}"
    why = serial.template_refusal(
        lambda chat: owner.apply_chat_template(chat, tokenize=False, add_generation_prompt=False), key
    )
    if why is not None:
        raise serial.serial_template_error(rows[0], family or type(processor).__name__, why)


def pc_row_error(row: int, problem: str) -> RowShapeError:
    """The error for a prompt/completion row on a release that cannot collate one."""
    return RowShapeError(
        f"unsloth_multiimage: row {row} is a prompt/completion row, but {problem}. Fix: upgrade unsloth_zoo, "
        f'or write the row as {{"messages": prompt + completion, "images": [...]}} (which trains on the '
        f"whole chat unless you use train_on_responses_only).",
        row=row,
    )


def _check_layouts(examples: Sequence[Any], decision: Decision) -> None:
    """Upstream collates a whole batch the way its first row asks (prompt/completion or messages)."""
    pc = [is_pc_row(e) for e in examples]
    if any(pc):
        problem = pc_path_problem(decision)
        if problem:
            raise pc_row_error(pc.index(True), problem)
    for row, is_pc in enumerate(pc):
        if is_pc != pc[0]:
            kinds = ("prompt/completion", "messages")
            first, this = (kinds[0], kinds[1]) if pc[0] else (kinds[1], kinds[0])
            raise RowShapeError(
                f"unsloth_multiimage: row {row} is a {this} row, but the first row of the batch is a {first} row: unsloth_zoo collates a "
                f"whole batch in the layout of its first row. Fix: use one layout for the whole dataset.",
                row=row,
            )


def _pre_resize(collator: Any) -> Callable[[RowPlan, Any], Any]:
    """Resize a decoded column image on the decoding thread, the way this release resizes it: the
    release then finds it at its size already (its resize is idempotent), so its serial loop
    does no work. Images of content rows are left alone (upstream resizes those after its own
    smart_resize)."""
    resize = resizer(collator)

    def after_decode(plan: RowPlan, image: Any) -> Any:
        if plan.column and not plan.merged:
            return resize([image])[0]
        return image

    return after_decode


def _collate_batch(
    wrapped: Callable[..., Any], instance: Any, examples: list[Any], decision: Decision, adapters: AdapterLookup
) -> Any:
    """The batch formatted, prepared and checked by the plugin, then collated by upstream (with the
    collator's formatting function switched off meanwhile: it ran already)."""
    formatting = getattr(instance, "formatting_func", None)
    examples = format_rows(examples, formatting)
    adapter = adapters(instance.processor)
    # on_overflow="shrink" on a batch about to be packed: rows too long are shrunk in the pipeline.
    shrinker = shrinker_for(
        instance,
        adapter,
        lambda example, row: render_row(instance.processor, example, row, decision),
        lambda row: row_identity(examples[row]) if 0 <= row < len(examples) else None,
        add_special_tokens=collator_adds_special_tokens(decision),
    )
    prepared = _prepare(instance, examples, adapter, decision, shrinker)
    # The formatting function ran already (above): upstream must not run it again.
    with swapped(instance, **({"formatting_func": None} if formatting is not None else {})):
        batch = _collate_or_name_the_row(wrapped, instance, prepared, adapter, decision)
    # A training batch under configure(packing=True) leaves packed (collate.train_packing).
    return pack_if_training(instance, batch, adapter, [len(p.plan.images) for p in prepared], shrinker)


def _prepare(
    instance: Any, examples: list[Any], adapter: Any, decision: Decision, shrinker: RowShrinker | None = None
) -> list[PreparedRow]:
    """The rows as the plugin prepares them (images decoded, placed and counted), with the checks
    upstream's release needs: the serial template and one layout per batch."""
    single = adapter.name if adapter is not None and not adapter.multi_image else None
    settings = get_settings()
    prepared = prepare_batch(
        examples,
        settings,
        single_image_family=single,
        after_decode=_pre_resize(instance),
        native_video=takes_native_video(decision, adapter),
        fit_row=shrinker.fit if shrinker is not None else None,
        group_masked_family=group_masked_family(adapter),
    )
    if settings.strategy == "serial":
        check_serial_template(instance.processor, prepared, adapter.name if adapter is not None else None)
    _check_layouts([p.example for p in prepared], decision)
    return prepared


def _collate_or_name_the_row(
    wrapped: Callable[..., Any], instance: Any, prepared: Sequence[PreparedRow], adapter: Any, decision: Decision
) -> Any:
    """Upstream's collation of ``prepared``; when it fails, the error that names the failing row."""
    try:
        return _collate(wrapped, instance, prepared, adapter, decision)
    except (RowError, InternalError):
        raise
    except Exception as exc:
        if _image_less_batch(exc, prepared):
            raise BatchError(
                f"unsloth_multiimage: every row of this batch ({len(prepared)} rows) is text-only, and "
                f"unsloth_zoo {decision.version} can only collate batches with at least one image. Fix: "
                f"upgrade unsloth_zoo ({compat.since(DISTRIBUTION, 'text_only_batches')}+ collates text-only "
                f"batches), or mix image rows into every batch."
            ) from exc
        raise _name_the_row(wrapped, instance, prepared, adapter, exc, decision) from exc


def _collate(
    wrapped: Callable[..., Any], instance: Any, prepared: Sequence[PreparedRow], adapter: Any, decision: Decision
) -> Any:
    """Upstream's collator on the rows as its release can digest them, its processor seen through
    :class:`.proxy.ProcessorProxy`."""
    plans = [p.plan for p in prepared]
    handed = [for_upstream(p, decision.fixes) for p in prepared]
    images = BatchImages(plans, instance, adapter, [p.example for p in prepared], [k for _, k in handed])
    processor = instance.processor
    with swapped(instance, processor=ProcessorProxy(processor, images)):
        out = wrapped([example for example, _ in handed])
    if Fix.PC_CROSS_ATTENTION in decision.fixes and len(images.outputs) >= 2 and completion_mask.needs_repair(out):
        tokenizer = getattr(processor, "tokenizer", processor)
        completion_mask.extend_over_completions(
            out, images.outputs[0], images.outputs[1], getattr(tokenizer, "padding_side", "right")
        )
    return out


def _image_less_batch(exc: BaseException, rows: Sequence[PreparedRow]) -> bool:
    """True when upstream failed only because no row has an image: releases before
    ``text_only_batches`` index ``batch["pixel_values"]`` even then."""
    return isinstance(exc, KeyError) and exc.args == ("pixel_values",) and not any(p.plan.images for p in rows)


def _name_the_row(
    wrapped: Callable[..., Any],
    instance: Any,
    prepared: Sequence[PreparedRow],
    adapter: Any,
    exc: BaseException,
    decision: Decision,
) -> RowError:
    """The row that fails alone (upstream's own exception named), or a batch-level error."""
    family = getattr(adapter, "name", None)
    if len(prepared) > 1:
        for p in prepared:
            try:
                _collate(wrapped, instance, [p], adapter, decision)
            except RowError as inner:
                return inner
            except Exception as inner:  # the first row that fails on its own is the bad one
                if _image_less_batch(inner, [p]):
                    continue  # a text-only row alone
                return failure(p.row, inner, decision.version, family)
        return failure(None, exc, decision.version, family)
    return failure(0, exc, decision.version, family)
