"""The tokens a rendered row becomes, from its images' sizes alone: the counting core that the token
report (:mod:`unsloth_multiimage.measure.tokens`) and ``on_overflow="shrink"`` (:mod:`.shrink`) share.

A row's chat, rendered by the processor's chat template as the collator renders it, is tokenized
by the processor's tokenizer (``add_special_tokens`` as the installed unsloth_zoo calls the
processor: off since ``no_special_tokens``). Each image placeholder holds one expanding token (the
processor's ``image_token_id``: Qwen's ``<|image_pad|>``, Mllama's ``<|image|>``), which the
processor turns into as many tokens as the family's
:class:`~unsloth_multiimage.adapters.ImageTokens` says for the image's size. Exact for the
families that declare it; nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..adapters import ModelAdapter

__all__ = ["Counted", "SizeCounter"]


@dataclass(frozen=True)
class Counted:
    """The counts of one rendered row whose images have given sizes.

    Attributes:
        total: the row's length in ``input_ids``.
        text: its tokens without the image placeholders.
        image: the tokens its placeholders become (``total - text``).
        image_end: the position just past its last image token (0 without images).
        image_ends: per image, the position just past its tokens.
    """

    total: int
    text: int
    image: int
    image_end: int
    image_ends: tuple[int, ...]


class SizeCounter:
    """Counts rows of one processor from their rendered text and their images' sizes.

    Args:
        processor: the model's processor (tokenizer, ``image_token_id``, image processor).
        adapter: its model adapter (its ``image_tokens`` and ``placeholder``).
        add_special_tokens: tokenize as a collator that lets the tokenizer add its special tokens
            (unsloth_zoo before ``no_special_tokens``).
    """

    def __init__(self, processor: Any, adapter: ModelAdapter, *, add_special_tokens: bool = False) -> None:
        self.processor = processor
        self.adapter = adapter
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.add_special_tokens = add_special_tokens
        known = adapter.image_tokens
        #: ``per_image(width, height) -> tokens``, or None where the processor must see the pixels
        self.per_image = known.counter(processor) if known is not None else None
        #: whether a smaller image makes fewer tokens (a pixel budget can shorten a row)
        self.follows_size = bool(known is not None and known.follows_size and self.per_image is not None)
        self.expand_id = getattr(processor, "image_token_id", None)
        self.placeholder_len = len(self._tokenize(adapter.placeholder, False))

    def _tokenize(self, text: str, special: bool) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)

    def ids(self, text: str) -> list[int]:
        """``text`` (a rendered chat) tokenized as the collator's processor call tokenizes it."""
        return self._tokenize(text, self.add_special_tokens)

    def count(self, ids: Sequence[int], sizes: Sequence[tuple[int, int]]) -> Counted:
        """The counts of a rendered row's ``ids`` whose images have ``sizes`` (``(width, height)``, in
        placeholder order)."""
        if self.per_image is None:
            raise ValueError(f"{self.adapter.name}: image tokens cannot be counted from sizes with this processor")
        per = [self.per_image(w, h) for w, h in sizes]
        at = [i for i, t in enumerate(ids) if t == self.expand_id]
        ends, shift = [], 0
        for position, n in zip(at, per):  # each expanding placeholder token becomes n tokens
            shift += n - 1
            ends.append(position + 1 + shift)
        total = len(ids) + sum(per) - len(per)
        text = len(ids) - self.placeholder_len * len(sizes)
        return Counted(total, text, total - text, ends[-1] if ends else 0, tuple(ends))

    def total(self, ids: Sequence[int], sizes: Sequence[tuple[int, int]]) -> int:
        """The row's length in ``input_ids`` (:meth:`count`'s ``total``, without the positions)."""
        if self.per_image is None:
            raise ValueError(f"{self.adapter.name}: image tokens cannot be counted from sizes with this processor")
        return len(ids) + sum(self.per_image(w, h) - 1 for w, h in sizes)
