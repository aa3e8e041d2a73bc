"""One prompt through the training pipeline: :func:`prepare_inputs` for ``model.generate``.

What a training row goes through in the patched ``UnslothVisionDataCollator``, applied to a prompt
(each step is the collator's own code, not a copy):

1. the layout: a chat (``messages`` + optional ``images``) or a dataset row in any layout
   :mod:`unsloth_multiimage.formats` reads (converted by :func:`~unsloth_multiimage.formats.to_messages`);
   a ``messages`` row loses its trailing assistant turn(s) (the answer), a prompt/completion row
   its completion;
2. the row pipeline (:func:`unsloth_multiimage.rows.pipeline.prepare_batch`): shape check, every
   image in placeholder order, ``max_images`` / ``on_excess``, decoding, the pixel budget, the
   ``grid`` / ``serial`` strategy, a one-image family's refusal;
3. the collator's resize (``resize="min"``: images wider than the model's vision ``image_size``
   are scaled down to it, as unsloth_zoo's own resize does (``own_resize``); :func:`resize_like_collator`);
4. the chat template with the generation prompt, the rendered placeholders checked against the
   images (:func:`~unsloth_multiimage.rows.plan.check_rendered_counts`), the images laid out for
   the family's processor (its adapter), and the processor call as the collator makes it (no
   special tokens added: the template writes them); on Llama 3.2 Vision the ``mllama_processor``
   patch and the configured cross-attention mask (``mllama_cross_attention``).

So for a training row, the tensors returned for its prompt equal the collator's batch for the row
cut where the answer starts (tests/inference/test_parity.py). Not reproduced: images embedded in
the message content are additionally snapped to the patch grid by unsloth_zoo's content path
(``process_vision_info``); rows that carry their images in an ``images`` column (the TRL/Unsloth
layout, and every row ``prepare_inputs`` builds from ``images=``) are not.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..adapters import ModelAdapter, group_masked_family
from ..errors import RowShapeError
from ..rows.chat import chat_sides, has_column, image_parts, is_chat, part_payload, without_none_keys
from ..rows.pipeline import prepare_batch
from ..rows.plan import check_rendered_counts
from ..settings import Settings, get_settings, overriding

__all__ = ["PreparedPrompt", "prepare_inputs", "prepare_prompt", "collator_image_size", "resize_like_collator"]

logger = logging.getLogger("unsloth_multiimage")

#: unsloth_zoo's fallback when the model config has no vision ``image_size`` (``resize="min"``).
COLLATOR_DEFAULT_IMAGE_SIZE = 512


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt after the training pipeline.

    Attributes:
        inputs: what ``model.generate(**inputs)`` takes (the processor's ``BatchFeature``).
        text: the rendered prompt (chat template, generation prompt included).
        images: the images the processor got, in placeholder order (after policies and resize).
        given: how many images the prompt held before the policies.
        adapter: the model family's adapter (None for an unknown processor without ``image_token``).
        settings: the settings that shaped the prompt.
        image_size: the collator's resize target that was applied (None: no resize).
        example: the prompt row as the pipeline left it (serial turns, grid placeholder ...).
    """

    inputs: Any
    text: str
    images: tuple[Any, ...]
    given: int
    adapter: ModelAdapter | None
    settings: Settings
    image_size: int | tuple[int, int] | None
    example: Any

    def describe(self) -> list[str]:
        """One line per setting that shaped the prompt (what ``ask`` prints)."""
        s = self.settings
        family = self.adapter.name if self.adapter is not None else "none (unknown processor: placeholders not checked)"
        cap = "none" if s.max_images is None else f"{s.max_images} (on_excess={s.on_excess})"
        budget = "none" if s.max_pixels_per_example is None else f"{s.max_pixels_per_example:,} pixels per example"
        lines = [
            f"adapter: {family}",
            f"strategy: {s.strategy}",
            f"max_images: {cap}",
            f"pixel budget: {budget}",
            f"images: {self.given} given, {len(self.images)} sent"
            + ("" if not self.images else f" ({', '.join(_size(img) for img in self.images)})"),
            f"collator resize: {'none' if self.image_size is None else self.image_size}",
        ]
        if self.adapter is not None and self.adapter.name == "mllama":
            lines.append(f"mllama_cross_attention: {s.mllama_cross_attention}")
        return lines


def _size(image: Any) -> str:
    size = getattr(image, "size", None)
    return f"{size[0]}x{size[1]}" if isinstance(size, tuple) and len(size) == 2 else type(image).__name__


# ------------------------------------------------------------------------------------ the prompt row


def _as_row(messages: Any, images: Sequence[Any] | None, image_root: Any, row: int) -> Any:
    """The prompt as a dataset row of the ``messages`` or prompt/completion layout."""
    if isinstance(messages, Mapping):
        if images is not None:
            raise TypeError(
                "prepare_inputs: give `images` with a list of messages only; a dataset row carries its own images"
            )
        example: Any = dict(messages)
    elif is_chat(messages):
        example = {"messages": list(messages)}
        if images is not None:
            example["images"] = list(images) if isinstance(images, (list, tuple)) else [images]
    else:
        raise TypeError(
            f"prepare_inputs: `messages` must be a list of {{'role', 'content'}} messages or a dataset row (a dict), "
            f"got {type(messages).__name__}"
        )
    # The dataset service's rules (formats.source): a row is converted iff the collator cannot read
    # its layout as it is; relative paths are read from ``image_root`` (None: the working directory).
    from ..formats.convert import resolve_paths
    from ..formats.source import convert_row

    example = convert_row(example, row)
    return example if image_root is None else resolve_paths(example, image_root)


def _prompt_of(example: Any, add_generation_prompt: bool, row: int) -> dict[str, Any]:
    """The row cut where the answer starts: a prompt/completion row's prompt, a chat without its
    trailing assistant turn(s) (without a generation prompt: the whole chat). Column images that
    belonged to the cut turns leave with them (they were part of the answer, not of the prompt)."""
    chat = example.get("messages") if example.get("messages") is not None else example.get("prompt")
    completion: Any = example.get("completion") if example.get("messages") is None else None
    if not add_generation_prompt and is_chat(chat) and is_chat(completion):
        chat = list(chat) + list(completion)  # no generation prompt: the whole training chat
    if not is_chat(chat) or not chat:
        raise RowShapeError(
            f"unsloth_multiimage: row {row} has no chat to prompt with (keys: {sorted(example)}). Fix: give a list of "
            f"{{'role', 'content'}} messages, or a row with `messages` or `prompt`.",
            row=row,
        )
    keep = list(chat)
    if add_generation_prompt:
        while keep and isinstance(keep[-1], Mapping) and keep[-1].get("role") == "assistant":
            keep.pop()
        if not keep:
            raise RowShapeError(
                f"unsloth_multiimage: row {row} holds only assistant turns: there is no prompt to answer. Fix: start the "
                f"chat with a user turn.",
                row=row,
            )
    out = {k: v for k, v in example.items() if k not in ("messages", "prompt", "completion")}
    out["messages"] = keep
    if has_column(example) and len(keep) < len(chat):
        bare_kept = sum(1 for p in image_parts(keep) if part_payload(p) is None)
        column = out["images"] if isinstance(out["images"], (list, tuple)) else [out["images"]]
        bare_all = sum(1 for p in image_parts(chat) if part_payload(p) is None)
        if bare_all == len(column) and bare_kept < bare_all:
            logger.info(
                "unsloth_multiimage: row %d: %d image(s) of the answer turn(s) are not part of the prompt",
                row,
                bare_all - bare_kept,
            )
            out["images"] = list(column[:bare_kept])
    return out


# ---------------------------------------------------------------------------------- the collator resize


def collator_image_size(model: Any, resize: Any = "min") -> int | tuple[int, int] | None:
    """The size ``UnslothVisionDataCollator(model, processor, resize=resize)`` resizes images to.

    ``"min"`` (the collator's default): the model config's ``vision_config.image_size`` (a list
    becomes an exact ``(width, height)``; none: 512, as unsloth_zoo); None without a model.
    ``"max"``: no resize. An int or a 2-tuple: that size.
    """
    if resize == "max" or resize is None:
        return None
    if isinstance(resize, (tuple, list)):
        if len(resize) != 2:
            raise ValueError(f"resize must be 'min', 'max', an int or a (width, height) pair, got {resize!r}")
        return int(resize[0]), int(resize[1])
    if isinstance(resize, int) and not isinstance(resize, bool):
        return resize
    if resize != "min":
        raise ValueError(f"resize must be 'min', 'max', an int or a (width, height) pair, got {resize!r}")
    if model is None:
        return None
    vision = getattr(getattr(model, "config", None), "vision_config", None)
    size = getattr(vision, "image_size", None)
    if size is None:
        return COLLATOR_DEFAULT_IMAGE_SIZE
    if isinstance(size, (tuple, list)):
        return (int(size[0]), int(size[1])) if len(size) == 2 else None
    return int(size)


def resize_like_collator(images: Sequence[Any], image_size: int | tuple[int, int] | None) -> list[Any]:
    """``images`` resized as unsloth_zoo's collator (``own_resize``, ``resize_dimension=0``) resizes the
    images it sends: a pair is an exact size; an int caps the width (aspect ratio kept, rounded to
    the nearest pixel, at least 1); LANCZOS. Images already within the size are the same objects."""
    if image_size is None:
        return list(images)
    from PIL import Image

    out = []
    for img in images:
        if not hasattr(img, "resize"):
            out.append(img)
        elif isinstance(image_size, tuple):
            out.append(img.resize(image_size, Image.Resampling.LANCZOS))
        elif img.size[0] > image_size:
            w, h = img.size
            size = (max(1, (w * image_size + w // 2) // w), max(1, (h * image_size + w // 2) // w))
            out.append(img.resize(size, Image.Resampling.LANCZOS))
        else:
            out.append(img)
    return out


# ------------------------------------------------------------------------------------ the processor call


def _template_owner(processor: Any) -> Any:
    return processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)


def _render(processor: Any, example: Any, add_generation_prompt: bool, row: int) -> str:
    chat = [m for _key, side in chat_sides(without_none_keys(example)) for m in side]
    try:
        return str(
            _template_owner(processor).apply_chat_template(
                chat, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RowShapeError(
            f"unsloth_multiimage: row {row} cannot be rendered by the processor's chat template: "
            f"{type(exc).__name__}{': ' + first[:300] if first else ''}. Fix: compare the prompt with the layout the "
            f"template expects (the one the model was trained with).",
            row=row,
        ) from exc


@contextlib.contextmanager
def _cross_attention(adapter: ModelAdapter | None, settings: Settings) -> Iterator[None]:
    """The ``mllama_processor`` patch reads the setting in force: make it the prompt's for the call."""
    if (
        adapter is None
        or adapter.name != "mllama"
        or get_settings().mllama_cross_attention == settings.mllama_cross_attention
    ):
        yield
        return
    with overriding(mllama_cross_attention=settings.mllama_cross_attention):
        yield


def _call_processor(
    processor: Any, text: str, images: list[Any], adapter: ModelAdapter | None, settings: Settings, return_tensors: str
) -> Any:
    from ..collate.proxy import BatchImages

    kwargs: dict[str, Any] = {
        "text": [text],
        "return_tensors": return_tensors,
        "padding": True,
        "add_special_tokens": _collator_adds_special_tokens(),
    }
    if images:
        kwargs["images"] = BatchImages([], None, adapter).layout([images], None)
    with _cross_attention(adapter, settings):
        out = processor(**kwargs)
    out.pop(
        "labels", None
    )  # PaliGemma's processor writes training labels; the collator replaces them, generate takes none
    if adapter is not None and adapter.name == "mllama" and settings.mllama_cross_attention == "cumulative":
        from ..collate.mllama import with_cumulative_mask

        out = with_cumulative_mask(processor, out)  # idempotent; also where the patch is not applied
    return _without_processor_suffix(processor, text, out)


def _collator_adds_special_tokens() -> bool:
    """As the installed unsloth_zoo's collator calls the processor: from ``no_special_tokens`` on
    (and without unsloth_zoo) the chat template alone writes the special tokens; before, the
    tokenizer added its own too (a second BOS, which the model then trained with)."""
    from ..collate.release import collator_adds_special_tokens, installed_decision

    return collator_adds_special_tokens(installed_decision())


#: keys shaped (batch, seq_len, ...)
_SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "cross_attention_mask")


def _without_processor_suffix(processor: Any, text: str, out: Any) -> Any:
    """``out`` without the tokens the processor appends after the text (PaliGemma ends every text
    with ``"\n"``): in training they follow the answer, so the answer starts right after the text."""
    ids = out.get("input_ids") if hasattr(out, "get") else None
    if ids is None or not hasattr(ids, "shape") or len(ids.shape) != 2 or ids.shape[0] != 1:
        return out
    tokenizer = getattr(processor, "tokenizer", processor)
    try:
        tail = list(tokenizer(text, add_special_tokens=False)["input_ids"])[-4:]
    except Exception:  # a processor without a plain tokenizer: nothing to compare with
        return out
    row = ids[0].tolist()
    if not tail or row[-len(tail) :] == tail:
        return out
    for extra in (1, 2):  # the processor's own suffix is one or two tokens
        if row[-len(tail) - extra : -extra] == tail:
            logger.debug("unsloth_multiimage: %d token(s) the processor appends after the prompt left out", extra)
            for key in _SEQUENCE_KEYS:
                value = out.get(key)
                if value is not None and hasattr(value, "shape") and len(value.shape) >= 2:
                    out[key] = value[:, :-extra]
            return out
    return out


def _to_model(inputs: Any, model: Any) -> Any:
    """Pixel tensors in the model's dtype (as the collator casts them), everything on its device."""
    import torch

    dtype = getattr(model, "dtype", None)
    for key in ("pixel_values", "pixel_values_videos"):
        value = inputs.get(key)
        if isinstance(value, torch.Tensor) and dtype is not None and value.is_floating_point() and value.dtype != dtype:
            inputs[key] = value.to(dtype)
    device = getattr(model, "device", None)
    if device is not None and hasattr(inputs, "to"):
        inputs = inputs.to(device)
    return inputs


def _adapter_of(processor: Any) -> ModelAdapter | None:
    from ..engine.activation import find_adapter

    return find_adapter(processor)


def _check_serial(processor: Any, prepared: Sequence[Any], adapter: ModelAdapter | None, settings: Settings) -> None:
    if settings.strategy != "serial":
        return
    from ..collate.zoo_collator import check_serial_template

    check_serial_template(processor, prepared, adapter.name if adapter is not None else None)


def prepare_prompt(
    processor: Any,
    messages: Any,
    images: Sequence[Any] | None = None,
    *,
    add_generation_prompt: bool = True,
    settings: Settings | None = None,
    model: Any = None,
    resize: Any = "min",
    image_root: Any = None,
    row: int = 0,
    return_tensors: str = "pt",
) -> PreparedPrompt:
    """:func:`prepare_inputs`, with what shaped the prompt (:class:`PreparedPrompt`)."""
    settings = settings or get_settings()
    example = _prompt_of(_as_row(messages, images, image_root, row), add_generation_prompt, row)
    adapter = _adapter_of(processor)
    single = adapter.name if adapter is not None and not adapter.multi_image else None
    prepared = prepare_batch(
        [example], settings, single_image_family=single, first_row=row, group_masked_family=group_masked_family(adapter)
    )
    _check_serial(processor, prepared, adapter, settings)
    done = prepared[0]
    image_size = collator_image_size(model, resize)
    sent = resize_like_collator(done.plan.images, image_size)
    text = _render(processor, done.example, add_generation_prompt, row)
    if adapter is not None:
        check_rendered_counts([text], [len(sent)], adapter.placeholder, examples=[done.example], first_row=row)
    inputs = _call_processor(processor, text, sent, adapter, settings, return_tensors)
    if model is not None:
        inputs = _to_model(inputs, model)
    return PreparedPrompt(inputs, text, tuple(sent), done.given, adapter, settings, image_size, done.example)


def prepare_inputs(
    processor: Any,
    messages: Any,
    images: Sequence[Any] | None = None,
    *,
    add_generation_prompt: bool = True,
    settings: Settings | None = None,
    model: Any = None,
    resize: Any = "min",
    image_root: Any = None,
    row: int = 0,
    return_tensors: str = "pt",
) -> Any:
    """The inputs of ``model.generate(**inputs)`` for a multi-image prompt, shaped as training shaped rows.

    Args:
        processor: the model's processor (the one the collator used in training).
        messages: a list of ``{"role", "content"}`` messages (image parts bare, filled by ``images``,
            or carrying their image), or one dataset row in any layout ``formats`` reads (a
            ``messages`` row's trailing assistant turn and a prompt/completion row's completion are
            left out: they are the answer).
        images: the images of the bare ``{"type": "image"}`` parts, in order (paths, bytes, PIL ...);
            only with a list of messages.
        add_generation_prompt: end the prompt with the assistant header (and drop trailing assistant
            turns); False renders the chat as given.
        settings: the image policies (default: the settings in force, as the collator uses them).
        model: the model: images are resized as the collator resized them for it (``resize``),
            pixel values cast to its dtype and every tensor moved to its device.
        resize: the collator's ``resize`` argument used in training (``"min"``, ``"max"``, an int,
            or a ``(width, height)`` pair): see :func:`collator_image_size`. The rule followed is
            the rule of unsloth_zoo's own resize (``own_resize`` in ``compat_table.toml``); the
            first releases resize nothing (pass ``"max"``), and the ones before ``own_resize``
            round a resized height down where it rounds to the nearest pixel.
        image_root: folder relative image paths are read from.
        row: the number errors give the prompt.
        return_tensors: passed to the processor.

    Returns:
        The processor's ``BatchFeature``: ``input_ids``, ``attention_mask``, the family's pixel and
        image-size tensors, and for Llama 3.2 Vision ``cross_attention_mask`` as configured.

    Raises:
        RowError: the prompt cannot be sent as it is (a ``ValueError`` naming what was found and the
            fix), as in training.
    """
    return prepare_prompt(
        processor,
        messages,
        images,
        add_generation_prompt=add_generation_prompt,
        settings=settings,
        model=model,
        resize=resize,
        image_root=image_root,
        row=row,
        return_tensors=return_tensors,
    ).inputs
