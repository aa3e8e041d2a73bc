"""What each unsloth_zoo release does with a row: the facts the collator patch and the dry run share.

The fixes (:class:`Fix`) are the release bugs the patch repairs, and the capabilities what a
release does by itself; both are written in ``compat_table.toml`` (``[patches.unsloth_collator]``,
``[releases.unsloth_zoo]``) and read through :mod:`unsloth_multiimage.engine.compat`. They decide
which rows the plugin must hand over already loaded, and which rows upstream alone gets wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from ..engine import compat
from ..engine.decision import Decision, StrEnum
from ..rows.chat import (
    carrying_part,
    column_entries,
    content_parts,
    has_column,
    image_parts,
    is_chat,
    is_image_part,
    is_pc_row,
    messages_of,
    part_payload,
    rewrite_image_parts,
    without_none_keys,
)
from ..rows.pipeline import PreparedRow
from ..rows.plan import RowPlan

__all__ = [
    "DISTRIBUTION",
    "Fix",
    "PcFix",
    "collator_adds_special_tokens",
    "does",
    "for_upstream",
    "takes_native_video",
    "installed_decision",
    "resizer",
    "upstream_problems",
    "pc_path_problem",
]

DISTRIBUTION = "unsloth_zoo"


class Fix(StrEnum):
    """The upstream bugs the collator patch repairs (``[patches.unsloth_collator]`` fixes)."""

    ALL_COLUMN_IMAGES = "all_column_images"
    TEXT_ONLY_ROW_SLOTS = "text_only_row_slots"
    PC_COLUMN_IMAGES = "pc_column_images"
    NONE_ENTRIES = "none_entries"
    COLUMN_CONTENT_MERGE = "column_content_merge"
    ROW_COUNT_VALIDATION = "row_count_validation"
    PC_CROSS_ATTENTION = "pc_cross_attention"


class PcFix(StrEnum):
    """The upstream bug the prompt/completion extraction patch repairs (``[patches.unsloth_collator_pc_extract]``)."""

    PC_EXTRACT_TUPLE = "pc_extract_tuple"


_COLUMN_DECODED_TYPES = (str, bytes, bytearray, Mapping)


def does(decision: Decision, capability: str) -> bool:
    """Whether the release of ``decision`` does ``capability`` (a key of ``[releases.unsloth_zoo]``)."""
    return compat.has(DISTRIBUTION, capability, decision.version)


def takes_native_video(decision: Decision, adapter: Any) -> bool:
    """Whether this release hands video parts to the processor and the family's adapter says its
    processor takes videos (``video="auto"`` then leaves them alone)."""
    return bool(adapter is not None and getattr(adapter, "native_video", False)) and does(decision, "native_video")


def collator_adds_special_tokens(decision: Decision) -> bool:
    """True when this release's collator lets the tokenizer add its special tokens to the rendered
    chat (before ``no_special_tokens``: the chat template's BOS and the tokenizer's, twice)."""
    return not does(decision, "no_special_tokens")


def installed_decision(patch: str = "unsloth_collator") -> Decision:
    """A collator patch's decision for the installed unsloth_zoo, without importing it (the
    newest tested release's when unsloth_zoo is not installed)."""
    version = compat.installed_version(DISTRIBUTION)
    if version is None:
        version = str(compat.compat_table()[patch].newest_tested)
    return compat.decide(patch, version)


# --------------------------------------------------------------------------------- resizing


def resizer(collator: Any) -> Callable[[list[Any]], list[Any]]:
    """Resize a row's images the way this release resizes the images it keeps."""
    own = getattr(collator, "_resize_images_inplace", None)
    if own is not None:  # upstream's own method (`own_resize`)
        return lambda imgs: own(list(imgs)) or []
    if hasattr(type(collator), "image_size"):  # before `own_resize`: an inline resize by `image_size`
        size = getattr(collator, "image_size", None)
        return lambda imgs: [_inline_resize(img, size) for img in imgs]
    return list  # before ``resize_images``: no resizing


def _inline_resize(img: Any, size: Any) -> Any:
    # The inline loop before `own_resize`: a tuple is an exact size; an int caps the width,
    # keeping the aspect ratio; "max" (None) leaves the image alone.
    if size is None or not hasattr(img, "resize"):
        return img
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    if isinstance(size, tuple):
        return img.resize(size, lanczos)
    if img.size[0] > size:
        return img.resize((size, int(img.size[1] * (size / img.size[0]))), lanczos)
    return img


# --------------------------------------------------------------------------------- the row upstream gets


def _with_images_in_content(example: Mapping[str, Any], images: Sequence[Any]) -> dict[str, Any]:
    """The example with every image part of its chat carrying the next of ``images``, no column."""
    without_column = {k: v for k, v in example.items() if k != "images"}
    # A dict in, a dict out: only a bare message list comes back as a list.
    return cast(dict[str, Any], rewrite_image_parts(without_column, lambda k, part: carrying_part(part, images[k])))


# Keys upstream tests for presence; Arrow gives every row every column, with None where absent.
_LAYOUT_KEYS = ("messages", "conversations", "prompt", "completion")


def for_upstream(prepared: PreparedRow, fixes: frozenset[str]) -> tuple[Any, int]:
    """The example as upstream should see it on its release, and how many images upstream's own
    extraction finds in it (0 lets the proxy know the row is left out of upstream's image list on
    releases that leave out rows without images).

    Upstream reads a present ``images`` key first (indexing ``[0]`` on old releases, so it must
    be a non-empty list of loaded images), else the message content; it picks its code path by
    the presence of keys, so keys holding None are left out.
    """
    plan = prepared.plan
    example = without_none_keys(prepared.example)
    if not isinstance(example, Mapping):
        return example, len(plan.images)
    if any(k in example and example[k] is None for k in _LAYOUT_KEYS):
        example = {k: v for k, v in example.items() if not (k in _LAYOUT_KEYS and v is None)}
    if "conversations" in example and "messages" not in example:
        # The first releases read `messages` only; later ones read `conversations` the same way.
        example = {("messages" if k == "conversations" else k): v for k, v in example.items()}
    pc = is_pc_row(example)
    lost_pc_column = pc and Fix.PC_COLUMN_IMAGES in fixes  # this release reads a pc row's images from its content
    if (
        plan.merged
        or plan.own_images
        or (not plan.column and prepared.decoded)
        or (plan.column and lost_pc_column and plan.placeholders == len(plan.images) and is_chat(example.get("prompt")))
    ):
        # Merged rows, rows that must keep their own images (shrunk), rows whose embedded images we
        # decoded, and prompt/completion rows on releases that read their images from the content
        # only: every image goes into its part.
        return _with_images_in_content(example, plan.images), len(plan.images)
    if "images" not in example:
        return example, len(plan.images)
    if not plan.column or not plan.images:
        # None (content rows) or an empty column: without the key every release reads the content.
        return {k: v for k, v in example.items() if k != "images"}, len(plan.images)
    found = 0 if lost_pc_column else len(plan.images)
    value = example["images"]
    if isinstance(value, list) and len(value) == len(plan.images) and all(a is b for a, b in zip(value, plan.images)):
        return example, found
    return {**example, "images": list(plan.images)}, found


# --------------------------------------------------------------------------------- what upstream alone does


def pc_path_problem(decision: Decision) -> str | None:
    """Why this release cannot collate prompt/completion rows at all, or None."""
    if not does(decision, "pc_path"):
        return (
            f"unsloth_zoo {decision.version} collates `messages` rows only (prompt/completion rows arrived in "
            f"{compat.since(DISTRIBUTION, 'pc_path')})"
        )
    return None


def upstream_problems(
    prepared: PreparedRow, decision: Decision, pc_decision: Decision | None = None, nesting: str | None = "per_row"
) -> list[str]:
    """What the release of ``decision`` would get wrong on this row without the plugin, in a batch
    beside a row with one image in its ``images`` column (the usual TRL/Unsloth row); [] when it
    would collate the row exactly as the plugin does.

    ``pc_decision`` is the prompt/completion extraction patch's decision (its fix, when active,
    repairs every prompt/completion row); ``nesting`` is how the model's processor wants a batch's
    images (its adapter's), which decides whether a release that sends bare images gets it wrong.
    """
    example, plan = prepared.example, prepared.plan
    fixes = decision.fixes
    n = len(plan.images)
    pc = is_pc_row(example)
    out = _arrow_filler_problems(example, pc, decision)
    if pc and pc_decision is not None and PcFix.PC_EXTRACT_TUPLE in pc_decision.fixes:
        out.append(
            f"unsloth_zoo {decision.version} fails on every prompt/completion row (its image extraction "
            f"returns a tuple to its resize step)"
        )
    entries = column_entries(example) if has_column(example) else []
    out += _column_value_problems(example, decision)
    if n and plan.column and not does(decision, "column_list") and nesting == "per_row":
        out.append(
            f"unsloth_zoo {decision.version} hands the processor one bare image per row, a flat list this "
            f"processor reads as one sample"
        )
    if n == 0 and Fix.TEXT_ONLY_ROW_SLOTS in fixes:
        out.append("upstream would crash on this text-only row or drop it from the image list, misaligning the batch")
    out += _image_source_problems(example, plan, pc, entries, decision)
    return list(dict.fromkeys(out))


def _arrow_filler_problems(example: Any, pc: bool, decision: Decision) -> list[str]:
    """Upstream tests keys for presence; Arrow's filler is a None under every absent column."""
    if not isinstance(example, Mapping) or pc:
        return []
    if does(decision, "pc_path") and "prompt" in example and "completion" in example:
        return [
            "upstream picks its code path by the keys of a batch's first row: this row's None-valued "
            "`prompt`/`completion` (Arrow's filler) would send the batch down the prompt/completion one"
        ]
    if "messages" in example and example["messages"] is None:
        return ["upstream would read this row's `messages: None` (Arrow's filler) instead of its chat"]
    return []


def _column_value_problems(example: Any, decision: Decision) -> list[str]:
    """What the release gets wrong on the ``images`` value itself: a bare image, or None."""
    out: list[str] = []
    if has_column(example) and not isinstance(example["images"], (list, tuple)):
        out.append("upstream would index a single image given without a list")
    if (
        isinstance(example, Mapping)
        and "images" in example
        and example["images"] is None
        and not does(decision, "column_decoding")
    ):
        out.append(f"unsloth_zoo {decision.version} indexes `images: None` instead of reading the messages")
    return out


def _image_source_problems(example: Any, plan: RowPlan, pc: bool, entries: list[Any], decision: Decision) -> list[str]:
    """What the release gets wrong reading the row's images from where they are: the column, the
    messages, or both."""
    fixes, n = decision.fixes, len(plan.images)
    if pc and n and not does(decision, "column_decoding"):
        return [f"unsloth_zoo {decision.version} loses the images of prompt/completion rows"]
    if plan.merged and not (pc and not entries):
        # (A prompt/completion row reads its content when its column is empty, since `column_decoding`.)
        return ["upstream would let the `images` column hide the images embedded in the messages"]
    out: list[str] = []
    if n and plan.column and entries:
        if n > 1 and Fix.ALL_COLUMN_IMAGES in fixes:
            out.append(f"upstream would send only the first of the {n} images ({n - 1} dropped)")
        if _needs_loading(entries, decision):
            out.append(f"unsloth_zoo {decision.version} would pass unloaded image files to the processor")
    elif n:
        out += _content_image_problems(example, decision)
    return out


def _content_image_problems(example: Any, decision: Decision) -> list[str]:
    """What the release gets wrong on images embedded in the messages."""
    out: list[str] = []
    if not does(decision, "typed_vision_parts") and _text_part_with_image_key(example):
        out.append(
            f"unsloth_zoo {decision.version} reads a text part with an `image` key (Arrow's None filler) as an image"
        )
    if not does(decision, "content_beside_column"):
        out.append(f"unsloth_zoo {decision.version} cannot batch images embedded in the messages beside column rows")
    elif not all(_reads_content(img, decision) for img in _payloads(example)):
        out.append(f"unsloth_zoo {decision.version} cannot read some image embedded in the messages as given")
    return out


def _text_part_with_image_key(example: Any) -> bool:
    return any(not is_image_part(p) and "image" in p for p in content_parts(messages_of(example)))


def _payloads(example: Any) -> list[Any]:
    return [part_payload(p) for p in image_parts(messages_of(example))]


def _reads_content(payload: Any, decision: Decision) -> bool:
    """True when upstream's own content extraction reads this embedded image as the plugin does."""
    pil = _pil_class()
    if (pil is not None and isinstance(payload, pil)) or isinstance(payload, str):
        return True
    return does(decision, "content_bytes") and isinstance(payload, (bytes, bytearray, Mapping))


def _needs_loading(entries: Sequence[Any], decision: Decision) -> bool:
    """True when upstream would hand some column entry to the processor unread."""
    from ..rows.decode import needs_decoding

    pil = _pil_class()
    for entry in entries:
        if pil is not None and isinstance(entry, pil):
            continue  # the processor converts modes itself
        if does(decision, "column_decoding") and isinstance(entry, _COLUMN_DECODED_TYPES):
            continue
        if needs_decoding(entry):
            return True
    return False


def _pil_class() -> Any:
    import sys

    module = sys.modules.get("PIL.Image")
    return getattr(module, "Image", None) if module is not None else None
