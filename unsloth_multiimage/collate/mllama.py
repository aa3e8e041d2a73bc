"""Llama 3.2 Vision's processor (``MllamaProcessor.__call__``) given every image of every sample.

Before upstream runs, the images are nested per sample by each text's ``<|image|>`` count
(:func:`nest_images`), which also gives text-only samples their empty slot and names the sample
when counts disagree; batches mixing text-only and image samples are built the way transformers
builds them natively where it does (``mixed_text_only_rows``); truncation that cuts ``<|image|>``
tokens is reported per sample. With ``mllama_cross_attention="cumulative"`` the output's
``cross_attention_mask`` is made cumulative (:mod:`.cross_attention`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from ..adapters import id_list
from ..engine.decision import StrEnum
from ..engine.swap import swapped
from ..errors import ImageCountError
from ..settings import get_settings
from .cross_attention import CUMULATIVE, cumulative_cross_attention_mask

__all__ = ["Fix", "IMAGE_TOKEN", "call", "cumulative_wanted", "nest_images", "truncation_error", "with_cumulative_mask"]

IMAGE_TOKEN = "<|image|>"


class Fix(StrEnum):
    """The upstream bugs the ``mllama_processor`` patch repairs (``[patches.mllama_processor]`` fixes)."""

    FLAT_IMAGES_REGROUP = "flat_images_regroup"
    DROPPED_ROWS_REALIGN = "dropped_rows_realign"
    MIXED_TEXT_ONLY_ROWS = "mixed_text_only_rows"
    ROW_NAMED_ERRORS = "row_named_errors"
    TRUNCATION_CHECK = "truncation_check"
    PADDING_SIDE_KWARG = "padding_side_kwarg"


# Keys shaped (batch, seq_len, ...) that are padded to a common length when merging.
_TOKEN_KEYS = ("input_ids", "attention_mask", "cross_attention_mask", "token_type_ids")


def _is_list(x: Any) -> bool:
    return isinstance(x, (list, tuple))


def nest_images(images: Any, counts: Sequence[int], *, realign: bool = True) -> list[list[Any]]:
    """Group ``images`` per sample so that sample ``i`` gets ``counts[i]`` images (a flat list is one
    sample to upstream, or refused where it ``rejects_flat_images``).

    Accepts a single image, a flat list (regrouped in order by the counts, when the totals
    agree) or a nested list (one sub-list per sample; with ``realign``, a list that holds only
    the samples that have image tokens gets an empty slot for each text-only sample).
    Raises :class:`ImageCountError` naming the sample when counts disagree.
    """
    n = len(counts)
    if not _is_list(images):
        images = [images]
    images = list(images)
    nested = bool(images) and all(_is_list(x) for x in images)
    if images and not nested and any(_is_list(x) for x in images):
        kinds = ["list" if _is_list(x) else "image" for x in images]
        raise ImageCountError(
            f"unsloth_multiimage: images mix sub-lists and bare images ({kinds}). Fix: pass one list of images "
            f"per sample, e.g. [[img_a, img_b], [], [img_c]] for {n} samples."
        )
    if not nested:
        return _regroup_flat(images, counts)
    groups = [list(g) for g in images]
    if len(groups) != n and realign:
        with_images = [i for i, c in enumerate(counts) if c > 0]
        if len(groups) == len(with_images):
            by_sample = dict(zip(with_images, groups))
            groups = [by_sample.get(i, []) for i in range(n)]
    if len(groups) != n:
        raise ImageCountError(
            f"unsloth_multiimage: {len(groups)} image lists for {n} texts ({IMAGE_TOKEN} tokens per text: "
            f"{list(counts)}). Fix: pass exactly one list per text, [] for a text without images."
        )
    for i, (group, c) in enumerate(zip(groups, counts)):
        if len(group) != c:
            raise ImageCountError(
                f"unsloth_multiimage: sample {i} has {c} {IMAGE_TOKEN} token(s) in its text but {len(group)} image(s). "
                f"Fix: give sample {i} exactly one image per {IMAGE_TOKEN} token, in order "
                f"(tokens per sample: {list(counts)}; images per sample: {[len(g) for g in groups]})."
            )
    return groups


def _regroup_flat(images: list[Any], counts: Sequence[int]) -> list[list[Any]]:
    """A flat list of images cut into one group per sample, in order, by the counts."""
    if len(images) != sum(counts):
        raise ImageCountError(
            f"unsloth_multiimage: the {len(counts)} texts have {list(counts)} {IMAGE_TOKEN} tokens ({sum(counts)} in all) "
            f"but {len(images)} images were given as a flat list. Fix: pass one list of images per sample, "
            f"in the order of its {IMAGE_TOKEN} tokens."
        )
    out, start = [], 0
    for c in counts:
        out.append(images[start : start + c])
        start += c
    return out


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, tuple[Any, ...], dict[str, Any]]:
    """Split (images, text) out of a call made positionally or by keyword."""
    kwargs = dict(kwargs)
    positional = list(args)
    images = positional.pop(0) if positional else kwargs.pop("images", None)
    text = positional.pop(0) if positional else kwargs.pop("text", None)
    return images, text, tuple(positional), kwargs


def call(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], fixes: frozenset[str]
) -> Any:
    """Upstream's ``__call__`` with the active ``fixes`` around it, and the cumulative mask when
    configured (whatever the fixes: it is a setting, not an upstream bug)."""
    side = kwargs.get("padding_side") if Fix.PADDING_SIDE_KWARG in fixes else None
    tokenizer = getattr(instance, "tokenizer", None)
    # Before the release `padding_side_kwarg` is native, __call__ drops a `padding_side` argument:
    # the tokenizer pads on that side for the call instead.
    honour = side in ("left", "right") and tokenizer is not None and getattr(tokenizer, "padding_side", side) != side
    with swapped(tokenizer, padding_side=side) if honour else contextlib.nullcontext():
        out = _call(wrapped, instance, args, kwargs, fixes)
    if instance is not None and cumulative_wanted():
        out = with_cumulative_mask(instance, out)
    return out


def cumulative_wanted() -> bool:
    """Whether the configured Mllama cross-attention mask is the cumulative one."""
    return get_settings().mllama_cross_attention == CUMULATIVE


def with_cumulative_mask(processor: Any, out: Any) -> Any:
    """``out`` (a processor output) with its ``cross_attention_mask`` made cumulative, in place.

    Outputs without a mask (text-only batches) or without ``input_ids`` come back unchanged."""
    get = getattr(out, "get", None)
    image_id = getattr(processor, "image_token_id", None)
    if get is None or image_id is None or get("cross_attention_mask") is None or get("input_ids") is None:
        return out
    out["cross_attention_mask"] = cumulative_cross_attention_mask(
        out["input_ids"], image_id, out["cross_attention_mask"]
    )
    return out


def _call(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], fixes: frozenset[str]
) -> Any:
    """Upstream's ``__call__`` with the active ``fixes`` around it."""
    images, text, rest, kw = _bind(args, kwargs)
    if instance is None or rest or text is None or images is None or not (isinstance(text, str) or _is_list(text)):
        return wrapped(*args, **kwargs)
    texts = [text] if isinstance(text, str) else list(text)
    if not all(isinstance(t, str) for t in texts):
        return wrapped(*args, **kwargs)  # pre-tokenized input: upstream's business
    token = getattr(instance, "image_token", None) or IMAGE_TOKEN
    counts = [t.count(token) for t in texts]
    groups = nest_images(images, counts, realign=Fix.DROPPED_ROWS_REALIGN in fixes)
    check = Fix.TRUNCATION_CHECK in fixes and bool(kw.get("truncation")) and kw.get("max_length") is not None
    try:
        if not any(groups):
            out = wrapped(text=text, **kw)  # every sample text-only: no images at all
        elif all(groups) or Fix.MIXED_TEXT_ONLY_ROWS not in fixes:
            out = wrapped(images=groups, text=text, **kw)
        else:
            out = _mixed_batch(wrapped, instance, texts, groups, kw)
    except ValueError as exc:
        if check:  # upstream's own truncation error names no sample, or a shape error
            _check_truncation(instance, texts, counts, kw, cause=exc)
        raise
    if check and _image_tokens_cut(instance, out, counts):  # cheap: count ids in the output
        _check_truncation(instance, texts, counts, kw)  # then re-tokenize to say what is needed
    return out


def _image_tokens_cut(processor: Any, out: Any, counts: Sequence[int]) -> bool:
    """True if some sample of ``out`` holds fewer ``<|image|>`` ids than its text had tokens."""
    image_id = getattr(processor, "image_token_id", None)
    ids = out.get("input_ids") if hasattr(out, "get") else None
    if image_id is None or ids is None:
        return False
    return any(id_list(row).count(image_id) < n for row, n in zip(ids, counts))


def _check_truncation(
    processor: Any, texts: Sequence[str], counts: Sequence[int], kw: dict[str, Any], cause: Exception | None = None
) -> None:
    """Raise naming the first sample whose ``<|image|>`` tokens fall past ``max_length``."""
    tokenizer = getattr(processor, "tokenizer", None)
    image_id = getattr(processor, "image_token_id", None)
    if tokenizer is None or image_id is None:
        return
    max_length = int(kw["max_length"])
    left = (kw.get("truncation_side") or getattr(tokenizer, "truncation_side", "right")) == "left"
    full = tokenizer(list(texts), add_special_tokens=kw.get("add_special_tokens", True))["input_ids"]
    for i, (ids, expected) in enumerate(zip(full, counts)):
        kept = ids[-max_length:] if left else ids[:max_length]
        found = kept.count(image_id)
        if found < expected:
            positions = [p for p, t in enumerate(ids) if t == image_id]
            needed = len(ids) - positions[0] if left else positions[-1] + 1
            raise truncation_error(i, expected - found, expected, max_length, len(ids), needed) from cause


def truncation_error(
    sample: int, lost: int, expected: int, max_length: int, length: int, needed: int
) -> ImageCountError:
    """The error for a sample whose ``<|image|>`` tokens truncation cuts (also what the token report
    of ``doctor --max-seq-length`` quotes, before training)."""
    return ImageCountError(
        f"unsloth_multiimage: sample {sample} loses {lost} of its {expected} {IMAGE_TOKEN} token(s) to "
        f"truncation at max_length={max_length} (its text is {length} tokens; the image tokens need at least "
        f"{needed}). Fix: raise max_length (max_seq_length in Unsloth/TRL) to at least {length}, or shorten "
        f"sample {sample}; its images cannot be matched to their tokens."
    )


def _mixed_batch(
    wrapped: Callable[..., Any], processor: Any, texts: list[str], groups: list[list[Any]], kw: dict[str, Any]
) -> Any:
    """Process image samples and text-only samples separately and merge them in order, tensor-equal
    to what transformers builds natively for a mixed batch where `mixed_text_only_rows` is native: an empty image slot
    (``aspect_ratio_ids`` 0, tile 0 of ``aspect_ratio_mask`` on), zero pixels and an all-zero
    cross-attention mask for text-only rows. When the image rows need more padding to reach the
    merged length, their cross-attention mask is extended as upstream's one-pass mask is: with
    right padding the last image group attends to the end of the padded sequence, so the new
    positions repeat the last one; with left padding the new positions come before every image
    token and stay 0."""
    import torch
    from transformers import BatchFeature

    requested = kw.pop("return_tensors", None)
    img_rows = [i for i, g in enumerate(groups) if g]
    txt_rows = [i for i, g in enumerate(groups) if not g]
    with_images = wrapped(
        images=[groups[i] for i in img_rows], text=[texts[i] for i in img_rows], return_tensors="pt", **kw
    )
    text_only = wrapped(text=[texts[i] for i in txt_rows], return_tensors="pt", **kw)

    tokenizer = getattr(processor, "tokenizer", processor)
    side = kw.get("padding_side") or getattr(tokenizer, "padding_side", "right")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    length = max(with_images["input_ids"].shape[1], text_only["input_ids"].shape[1])

    def pad(t: Any, value: int, repeat_last: bool = False) -> Any:  # torch tensors
        missing = length - t.shape[1]
        if missing == 0:
            return t
        if repeat_last and side != "left" and t.shape[1] > 0:
            filler = t[:, -1:].expand(-1, missing, *t.shape[2:])
        else:
            filler = torch.full((t.shape[0], missing, *t.shape[2:]), value, dtype=t.dtype)
        return torch.cat([filler, t] if side == "left" else [t, filler], dim=1)

    merged: dict[str, Any] = {}
    n_txt = len(txt_rows)
    for key, a in with_images.items():
        if key in text_only:
            b = text_only[key]
        elif key == "cross_attention_mask":
            b = torch.zeros((n_txt, text_only["input_ids"].shape[1], *a.shape[2:]), dtype=a.dtype)
        else:  # image-only keys: an empty slot per text-only row
            b = torch.zeros((n_txt, *a.shape[1:]), dtype=a.dtype)
            if key == "aspect_ratio_mask":
                b[..., 0] = 1
        if key in _TOKEN_KEYS:
            value = pad_id if key == "input_ids" else 0
            a, b = pad(a, value, repeat_last=key == "cross_attention_mask"), pad(b, value)
        merged[key] = torch.cat([a, b], dim=0)
    order = torch.tensor(img_rows + txt_rows).argsort()  # back to the caller's row order
    merged = {k: v[order] for k, v in merged.items()}
    if requested is None:
        merged = {k: (v.tolist() if k in ("input_ids", "attention_mask") else v.numpy()) for k, v in merged.items()}
        return BatchFeature(data=merged)
    return BatchFeature(data=merged, tensor_type=requested)
