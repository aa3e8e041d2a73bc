"""Model adapters: what the patches need to know about one processor family.

Each built-in family is a small data module in this package (``ADAPTER = ModelAdapter(...)``),
listed once in :mod:`unsloth_multiimage.adapters.table`, which answers the ``umi_model_adapter``
hook through this package's entry point like a third party's plugin would. The engine hands the
patches an :class:`AdapterLookup` over that hook: nothing here reaches into the activation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = [
    "ModelAdapter",
    "PackingFacts",
    "ImageTokens",
    "AdapterLookup",
    "Nesting",
    "processor_is",
    "id_list",
    "token_id",
    "tokenizer_id",
    "pairs",
    "runs",
    "resolve",
    "group_masked_family",
]

logger = logging.getLogger("unsloth_multiimage")

#: How a processor wants a batch's images: one list per text row, or one flat list.
Nesting = Literal["per_row", "flat"]


@dataclass(frozen=True)
class PackingFacts:
    """How one family's padded batch becomes packed sequences (:mod:`unsloth_multiimage.collate.packing`).

    Declared only for a family whose packing is proven: its packed loss, per-document losses and
    gradients equal the padded batch's (tests/collate/test_packing_families.py). A family without
    facts is refused, naming the fallback (unpacked batches).

    Attributes:
        positions: ``"text"``: positions restart at ``position_offset`` for every document;
            ``"mrope"``: the model's own ``get_rope_index`` is called on every document alone and
            the results are put side by side (Qwen2-VL, GLM-4V, ...).
        position_offset: the first position of a document (PaliGemma counts from 1).
        token_keys: keys laid out per token, ``(batch, seq_len)``, besides ``input_ids``, ``labels``
            and ``attention_mask`` (``mm_token_type_ids``, ``token_type_ids``).
        slot_keys: keys laid out ``(batch, slots, ...)`` with a row's images in its own slots
            (Mllama's ``pixel_values``, ``aspect_ratio_ids``; Idefics' ``pixel_values``,
            ``pixel_attention_mask``); they share the slot axis.
        slots: which slots of a row are its own: its first ``images`` slots (one per image), or
            the ``nonzero`` ones (the first slot key not all zero: Idefics' sub-images).
        unit_keys: keys whose first axis holds every image unit of the batch (images, tiles,
            patches) row after row; they share that axis.
        units: how many units a row owns: one per image (``images``), the product of each of its
            images' ``image_grid_thw`` (``grid``), or its image tokens over the batch's image tokens
            per unit (``tokens``, where one unit always gives the same number of tokens).
        image_keys: keys with one entry per image of the batch, row after row (``image_grid_thw``,
            ``image_sizes``).
        count_keys: keys holding the image count of each row that has images
            (LLaVA-OneVision's ``batch_num_images``): rebuilt per document.
        cross_attention_key: Mllama's ``(batch, seq_len, slots, tiles)`` mask: each document's
            tokens keep their own mask over their own slots.
        overlay: bidirectional attention the family adds from ``overlay_key``: ``image_blocks``
            (each run of image tokens, ``== 1``: Gemma 3) or ``prefix`` (every ``== 0`` token of a
            document: PaliGemma); built into the block-diagonal mask where one is passed.
        overlay_key: the per-token key the overlay is read from.
        overlay_per_document: whether transformers' own overlay, built over a packed row, stays
            inside each document (False: PaliGemma puts every prefix of the row in one block, so
            only the block-diagonal mask isolates its documents).
        legacy_mask_needs_overlay: the family's mask built without ``masking_utils``
            (``_update_causal_mask``) attends the whole row both ways when the batch has no
            ``overlay_key`` (PaliGemma before transformers 5: its non-training mask), which no packed
            batch reproduces: such a batch is refused there.
    """

    positions: Literal["text", "mrope"] = "text"
    position_offset: int = 0
    token_keys: tuple[str, ...] = ()
    slot_keys: tuple[str, ...] = ()
    slots: Literal["images", "nonzero"] = "images"
    unit_keys: tuple[str, ...] = ()
    units: Literal["images", "grid", "tokens"] = "images"
    image_keys: tuple[str, ...] = ()
    count_keys: tuple[str, ...] = ()
    cross_attention_key: str | None = None
    overlay: Literal["image_blocks", "prefix"] | None = None
    overlay_key: str = "token_type_ids"
    overlay_per_document: bool = True
    legacy_mask_needs_overlay: bool = False

    @property
    def keys(self) -> frozenset[str]:
        """Every batch key these facts place (the packed batch refuses any other)."""
        named = (*self.token_keys, *self.slot_keys, *self.unit_keys, *self.image_keys, *self.count_keys)
        cross = (self.cross_attention_key,) if self.cross_attention_key else ()
        return frozenset((*named, *cross))


@dataclass(frozen=True)
class ImageTokens:
    """How many tokens one image becomes in ``input_ids``, known from its size alone (no pixel
    decoded): the token report counts rows from image headers by it, and ``on_overflow="shrink"``
    searches a row's pixel budget by it (:mod:`unsloth_multiimage.collate.token_count`).

    Attributes:
        counter: ``counter(processor) -> per_image`` where ``per_image(width, height) -> int`` is
            exact for this processor, or None where the installed processor cannot say without
            the pixels (an older transformers): the row is then counted by running the processor.
        how: what decides the count, in words (shown by the token report).
        follows_size: whether a smaller image makes fewer tokens (False: Llama 3.2 Vision's one
            ``<|image|>`` per image, which no pixel budget shortens).
    """

    counter: Callable[[Any], Callable[[int, int], int] | None]
    how: str
    follows_size: bool = True


@dataclass(frozen=True)
class ModelAdapter:
    """What the patches need to know about one processor family.

    Attributes:
        name: family name shown by ``doctor`` (e.g. ``"mllama"``).
        placeholder: the string one image leaves in the rendered chat text, before the
            processor expands it (``"<|image|>"`` for Mllama).
        processor_classes: class names of the processors of this family (matched on the
            processor's class and its bases, most derived first; no transformers import).
        count_in_ids: optional ``count_in_ids(processor, ids) -> int``: images represented in
            one row of ``input_ids`` after processing (used to catch truncation).
        image_lengths: optional ``image_lengths(processor, outputs) -> [n, ...] | None``: how many
            ids of the placeholder's token each image of the batch expanded to, in placeholder
            order across the batch, read off the processor's outputs (LLaVA-NeXT: from
            ``image_sizes``). When it answers, the truncation check counts the images whose ids
            all survive by these lengths instead of ``count_in_ids``, so placeholders a chat
            template writes side by side (one run of ids) still count one image each.
        multi_image: whether the model takes several images per row; when False the collator
            refuses a row with more than one image (naming it, suggesting the grid strategy).
        nesting: how the processor wants a batch's images: ``"per_row"`` (one list per text,
            ``[]`` for a text-only row), ``"flat"`` (every image in placeholder order, one list),
            or None (keep the layout the installed collator release uses).
        image_row_first: the processor needs a row WITH images first in the batch (Idefics2 reads
            ``images[0][0]``): when row 0 of a batch has no image but another row has, the
            collator's processor call gets the rows permuted so an image row comes first, and
            every per-row output is put back in the caller's order (not done, and upstream left
            to fail, if some output is not batch-first).
        placeholder_attr: a processor attribute that holds the placeholder where the family
            reads it off its tokenizer (``"image_token"``); when it is a non-empty string on the
            processor it replaces ``placeholder`` (see :func:`resolve`), else ``placeholder`` stands.
        native_video: the family's processor takes videos itself (a ``video_processor``, ``videos=``);
            under ``configure(video="auto")`` its video parts are then left to it (on releases of
            unsloth_zoo that hand videos to the processor), else they become frames.
        row_inputs: processor outputs the model's forward needs, batch-first (one entry per text
            row), that TRL's GRPO passes do not carry by themselves (Mllama: ``pixel_values``,
            ``aspect_ratio_ids``, ``aspect_ratio_mask``, ``cross_attention_mask``); the TRL patches
            carry them to every forward, row by row.
        token_inputs: those of ``row_inputs`` laid out per token (``(batch, seq_len, ...)``): built
            for the prompt by the processor, extended over the completion tokens by the TRL patches
            (each completion token sees what the last prompt token sees).
        packing: how the family's batches are packed (:class:`PackingFacts`); None: packing is
            refused for it (not proven).
        image_tokens: how many tokens an image of a given size becomes (:class:`ImageTokens`);
            None: only the processor, run on the pixels, can say.
    """

    name: str
    placeholder: str
    processor_classes: tuple[str, ...] = ()
    count_in_ids: Callable[[Any, Any], int] | None = None
    image_lengths: Callable[[Any, Any], list[int] | None] | None = None
    multi_image: bool = True
    nesting: Nesting | None = None
    image_row_first: bool = False
    placeholder_attr: str | None = None
    native_video: bool = False
    row_inputs: tuple[str, ...] = ()
    token_inputs: tuple[str, ...] = ()
    packing: PackingFacts | None = None
    image_tokens: ImageTokens | None = None


def resolve(adapter: ModelAdapter, processor: Any) -> ModelAdapter:
    """``adapter`` for this processor: its ``placeholder_attr`` read off the processor, if set."""
    if adapter.placeholder_attr:
        found = getattr(processor, adapter.placeholder_attr, None)
        if isinstance(found, str) and found and found != adapter.placeholder:
            return replace(adapter, placeholder=found)
    return adapter


def group_masked_family(adapter: ModelAdapter | None) -> str | None:
    """The family's name when its model masks text to image groups with a per-token
    ``cross_attention_mask`` (Llama 3.2 Vision), else None: the row pipeline's
    ``group_masked_family`` (frames that mask would hide are refused)."""
    return adapter.name if adapter is not None and "cross_attention_mask" in adapter.token_inputs else None


def processor_is(processor: Any, *class_names: str) -> bool:
    """True if ``processor``'s class or a base class has one of ``class_names`` (no import needed)."""
    return any(cls.__name__ in class_names for cls in type(processor).__mro__)


def id_list(ids: Any) -> list[int]:
    """One row of ``input_ids`` (tensor, array or list) as a list of ints."""
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def tokenizer_id(processor: Any, token: str, named_by: str | None = None) -> Any:
    """The tokenizer's id for the token the processor names in its attribute ``named_by`` (a
    token string), else for ``token``."""
    if named_by is not None:
        token = str(getattr(processor, named_by, None) or token)
    return getattr(processor, "tokenizer", processor).convert_tokens_to_ids(token)


def token_id(processor: Any, id_attr: str, token: str, named_by: str | None = None) -> int:
    """``processor.<id_attr>`` when the processor has it, else :func:`tokenizer_id`."""
    found = getattr(processor, id_attr, None)
    if found is not None:
        return int(found)
    return int(tokenizer_id(processor, token, named_by))


def runs(ids: Any, token: int) -> list[int]:
    """The lengths of the runs of consecutive ``token`` ids in one row of ``input_ids``, in order."""
    out: list[int] = []
    previous = None
    for t in id_list(ids):
        if t == token:
            if previous == token:
                out[-1] += 1
            else:
                out.append(1)
        previous = t
    return out


def pairs(ids: Any, first: int, second: int) -> int:
    """How often ``first`` is directly followed by ``second`` in one row of ``input_ids``."""
    ids = id_list(ids)
    return sum(1 for a, b in zip(ids, ids[1:]) if a == first and b == second)


class AdapterLookup:
    """Finds the adapter of a processor: the plugins' answer (``umi_model_adapter``), else
    ``processor.image_token`` as the placeholder, else None (the per-row check of placeholders is
    then skipped, with one warning per processor class).

    The engine builds it around the hook caller (``pm.hook.umi_model_adapter``) and hands it to
    the patches that ask for ``adapters``.
    """

    def __init__(self, hook: Callable[..., ModelAdapter | None]) -> None:
        self._hook = hook
        self._warned: set[str] = set()

    def __call__(self, processor: Any, config: Any = None) -> ModelAdapter | None:
        found = self._hook(processor=processor, config=config)
        if found is not None:
            return resolve(found, processor)
        token = getattr(processor, "image_token", None)
        if isinstance(token, str) and token:
            return ModelAdapter(name=f"fallback:{type(processor).__name__}", placeholder=token)
        name = type(processor).__name__
        if name not in self._warned:
            self._warned.add(name)
            logger.warning(
                "unsloth_multiimage: no model adapter knows %s and it has no image_token; the per-row check of "
                "image placeholders is skipped for it (images are still aligned per row)",
                name,
            )
        return None
