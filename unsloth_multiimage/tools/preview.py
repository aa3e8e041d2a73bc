"""``unsloth-multiimage preview``: a PNG of what Llama-3.2-Vision is given for one row.

The picture has three panels, drawn with Pillow only (default font):

1. the row's images in slot order (``--strategy grid``: the one grid canvas the model gets);
2. the rendered chat, each ``<|image|>`` shown as ``[IMG k]`` in its place;
3. the cross-attention mask as a heat map: one row per text token, one column per image slot
   (first tile), bright where the token attends to the slot, dark where it does not.

The mask comes from running the processor (the tiny offline one, or ``--model PATH``'s)
through the plugin's code path on that one row: :func:`unsloth_multiimage.tools.common.prepare_rows`
(per-row images, file loading, policies, chat template) and the patched ``MllamaProcessor``, so it
is the mask the ``mllama_cross_attention`` setting in force builds (``latest`` or ``cumulative``;
``render_preview(..., cross_attention=...)`` picks one). The title says which mask is drawn, read
from the mask itself: for a row whose images form one group the two masks are the same.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ..settings import Strategy

__all__ = ["render_preview", "run", "MASK_ON", "MASK_OFF", "mask_colour"]

#: Heat-map colours for mask value 1 and 0 (other values are interpolated).
MASK_ON = (255, 214, 64)
MASK_OFF = (24, 24, 48)
_BG = (255, 255, 255)
_INK = (20, 20, 20)
_MUTED = (110, 110, 110)
_ACCENT = (200, 40, 40)
_GRID_LINE = (90, 90, 110)
_MARGIN = 12
_THUMB_H = 128
_CELL_W = 44
_MAX_HEATMAP_H = 4000


def mask_colour(value: float) -> tuple[int, int, int]:
    """The heat-map colour of a mask value in [0, 1]."""
    v = min(1.0, max(0.0, float(value)))
    return tuple(int(round(a + (b - a) * v)) for a, b in zip(MASK_OFF, MASK_ON))  # type: ignore[return-value]


def _font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default()


def _text_size(font: Any, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return int(right - min(0, left)), int(bottom - min(0, top))


def _marked_text(text: str, token: str) -> str:
    parts = text.split(token)
    out = parts[0]
    for k, part in enumerate(parts[1:], 1):
        out += f"[IMG {k}]" + part
    return out


def mask_kind(batch: Any, processor: Any) -> str:
    """Which cross-attention mask ``batch`` holds: ``latest``, ``cumulative``, ``same`` (the row's
    images form one group: both masks are this one) or ``none`` (no mask: a text-only row)."""
    from ..collate.cross_attention import cumulative_cross_attention_mask

    cam = batch.get("cross_attention_mask")
    image_id = getattr(processor, "image_token_id", None)
    if cam is None or image_id is None:
        return "none"
    ids = batch["input_ids"]
    groups = 0
    for row in ids.tolist() if hasattr(ids, "tolist") else ids:
        flags = [t == image_id for t in row]
        groups = max(groups, sum(1 for i, f in enumerate(flags) if f and (i == 0 or not flags[i - 1])))
    if groups <= 1:
        return "same"
    return "cumulative" if bool((cumulative_cross_attention_mask(ids, image_id, cam) == cam).all()) else "latest"


_MASK_WORDS = {
    "latest": "latest (upstream's: each token attends the latest image group before it)",
    "cumulative": "cumulative (each token attends every image before it)",
    "same": "latest = cumulative (one group of images)",
    "none": "none",
}


def render_preview(
    example: Any,
    processor: Any,
    out_path: str | os.PathLike[str],
    strategy: str = "native",
    cross_attention: str | None = None,
    row: int = 0,
) -> dict[str, Any]:
    """Write the preview PNG of ``example`` and return its metadata.

    ``cross_attention``: ``latest`` or ``cumulative`` for this preview (default: the
    ``mllama_cross_attention`` setting in force). ``row``: the number errors give the row.

    Returns a dict with ``path``; ``size`` (PNG width, height); ``mask_box`` (x0, y0, x1, y1 of
    the heat map in the PNG, x1/y1 exclusive); ``cell_size`` (width, height of one cell);
    ``mask_shape`` (the shape of the batch's ``cross_attention_mask``, ``(1, seq, slots, tiles)``,
    or ``None`` for a text-only row); ``heatmap`` (the ``seq x slots`` values drawn, first tile);
    ``tokens``; ``text`` (the rendered chat); ``n_images``; ``strategy``; ``image_sizes``;
    ``mask_kind`` (:func:`mask_kind`: ``latest``, ``cumulative``, ``same`` or ``none``).
    Raises the plugin's per-row errors (``ImageCountError`` / ``ImageLoadError``) for a bad row.
    """
    from PIL import Image, ImageDraw

    out_path = os.fspath(out_path)
    images, text, batch = _processed(example, processor, strategy, cross_attention, row)
    kind = mask_kind(batch, processor)
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = batch["input_ids"][0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    cam = batch.get("cross_attention_mask")
    n_slots = 0
    heat: list[list[float]] = [[] for _ in ids]
    mask_shape = None
    if cam is not None:
        mask_shape = tuple(int(d) for d in cam.shape)
        n_slots = int(cam.shape[2])
        heat = cam[0, :, :, 0].float().tolist()
    token = getattr(processor, "image_token", None) or "<|image|>"

    font = _font()
    line_h = _text_size(font, "Ag[|]")[1] + 4

    # Panel 1: thumbnails.
    thumbs = []
    for img in images:
        scale = _THUMB_H / img.height
        thumbs.append(img.resize((max(1, round(img.width * scale)), _THUMB_H), Image.Resampling.NEAREST))
    label = "GRID" if strategy == "grid" else "IMG"
    thumbs_w = sum(t.width for t in thumbs) + _MARGIN * max(0, len(thumbs) - 1)

    # Panel 2: the rendered chat, wrapped.
    wrap = 100
    lines = []
    for raw in _marked_text(text, token).split("\n"):
        lines.extend(
            textwrap.wrap(raw, width=wrap, break_long_words=True, break_on_hyphens=False, replace_whitespace=False)
            or [""]
        )
    text_w = max((_text_size(font, ln)[0] for ln in lines), default=0)

    # Panel 3: the heat map.
    seq = len(ids)
    cell_h = max(1, min(line_h, _MAX_HEATMAP_H // max(1, seq)))
    show_labels = cell_h >= line_h - 2
    label_texts = [f"{i:>4} {tok[:22]}" for i, tok in enumerate(tokens)]
    label_w = max((_text_size(font, t)[0] for t in label_texts), default=0) + 8 if show_labels else 40
    heat_w = label_w + max(1, n_slots) * _CELL_W

    title = (
        f"unsloth-multiimage preview: {len(images)} image(s) to the model, strategy {strategy}, "
        f"{seq} tokens, cross_attention_mask {list(mask_shape) if mask_shape else 'none (text-only row)'}"
        + (f", mask {_MASK_WORDS[kind]}" if mask_shape else "")
    )
    width = _MARGIN * 2 + max(thumbs_w, text_w, heat_w, _text_size(font, title)[0], 320)
    y_images = _MARGIN + line_h * 2
    y_text = y_images + (_THUMB_H + line_h + _MARGIN if thumbs else line_h) + line_h
    y_heat_title = y_text + len(lines) * line_h + _MARGIN
    y_heat = y_heat_title + line_h * 2
    height = y_heat + seq * cell_h + _MARGIN

    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((_MARGIN, _MARGIN), title, fill=_INK, font=font)

    draw.text(
        (_MARGIN, y_images - line_h),
        "Images, in slot order:" if thumbs else "No images (text-only row).",
        fill=_MUTED,
        font=font,
    )
    x = _MARGIN
    for k, (thumb, img) in enumerate(zip(thumbs, images), 1):
        canvas.paste(thumb, (x, y_images))
        draw.rectangle([x - 1, y_images - 1, x + thumb.width, y_images + thumb.height], outline=_GRID_LINE)
        draw.text((x, y_images + thumb.height + 2), f"{label} {k} ({img.width}x{img.height})", fill=_INK, font=font)
        x += thumb.width + _MARGIN

    _draw_chat(draw, font, lines, y_text, line_h)

    draw.text(
        (_MARGIN, y_heat_title),
        "cross_attention_mask (first tile): rows = tokens, columns = image slots; bright = attends",
        fill=_MUTED,
        font=font,
    )
    x0 = _MARGIN + label_w
    box = _draw_heatmap(
        draw,
        font,
        heat,
        seq,
        n_slots,
        (x0, y_heat),
        line_h,
        cell_h,
        label,
        label_texts if show_labels else None,
        tokens,
        token,
    )

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    canvas.save(out_path, format="PNG")
    return {
        "path": os.path.abspath(out_path),
        "size": canvas.size,
        "mask_box": box,
        "cell_size": (_CELL_W, cell_h),
        "mask_shape": mask_shape,
        "heatmap": heat,
        "tokens": tokens,
        "text": text,
        "n_images": len(images),
        "strategy": strategy,
        "image_sizes": [img.size for img in images],
        "mask_kind": kind,
        "title": title,
    }


def _processed(
    example: Any, processor: Any, strategy: str, cross_attention: str | None, row: int = 0
) -> tuple[list[Any], str, Any]:
    """The row's images (RGB), its rendered chat, and the processor's batch for it."""
    from ..settings import get_settings, overriding
    from .common import adds_special_tokens, prepare_rows

    settings = replace(get_settings(), strategy=cast("Strategy", strategy))
    _examples, plans, texts = prepare_rows([example], processor, settings, first_row=row)
    images = [img.convert("RGB") if getattr(img, "mode", "RGB") != "RGB" else img for img in plans[0].images]
    text = texts[0]
    kwargs: dict[str, Any] = {
        "text": [text],
        "return_tensors": "pt",
        "add_special_tokens": adds_special_tokens(processor, [text]),
    }
    if images:
        kwargs["images"] = [images]
    if cross_attention is None:
        batch = processor(**kwargs)
    else:
        with overriding(mllama_cross_attention=cross_attention):
            batch = processor(**kwargs)
    return images, text, batch


def _draw_chat(draw: Any, font: Any, lines: list[str], y_text: int, line_h: int) -> None:
    """Panel 2: the rendered chat, its ``[IMG k]`` markers in the accent colour."""
    draw.text((_MARGIN, y_text - line_h), "Rendered chat ([IMG k] = the k-th image token):", fill=_MUTED, font=font)
    for n, ln in enumerate(lines):
        draw.text((_MARGIN, y_text + n * line_h), ln, fill=_INK, font=font)
        if "[IMG " in ln:  # redraw the markers in the accent colour, in place
            start = 0
            while (pos := ln.find("[IMG ", start)) >= 0:
                end = ln.index("]", pos) + 1
                dx = _text_size(font, ln[:pos])[0] if pos else 0
                draw.text((_MARGIN + dx, y_text + n * line_h), ln[pos:end], fill=_ACCENT, font=font)
                start = end


def _draw_heatmap(
    draw: Any,
    font: Any,
    heat: list[list[float]],
    seq: int,
    n_slots: int,
    origin: tuple[int, int],
    line_h: int,
    cell_h: int,
    label: str,
    label_texts: list[str] | None,
    tokens: list[str],
    token: str,
) -> tuple[int, int, int, int]:
    """Panel 3: the ``seq x n_slots`` cells of ``heat`` from ``origin`` (token labels beside them when
    ``label_texts`` is given, image tokens in the accent colour); returns the cells' box."""
    x0, y_heat = origin
    for s in range(n_slots):
        draw.text((x0 + s * _CELL_W + 4, y_heat - line_h), f"{label} {s + 1}", fill=_INK, font=font)
    for i in range(seq):
        y = y_heat + i * cell_h
        if label_texts is not None:
            colour = _ACCENT if tokens[i] == token else _INK
            draw.text((_MARGIN, y), label_texts[i], fill=colour, font=font)
        for s in range(n_slots):
            draw.rectangle(
                [x0 + s * _CELL_W, y, x0 + (s + 1) * _CELL_W - 1, y + cell_h - 1], fill=mask_colour(heat[i][s])
            )
    box = (x0, y_heat, x0 + n_slots * _CELL_W, y_heat + seq * cell_h)
    if n_slots:  # thin separators on the cell borders (cell centres keep their colour)
        for s in range(n_slots + 1):
            draw.line([(x0 + s * _CELL_W, y_heat), (x0 + s * _CELL_W, box[3] - 1)], fill=_GRID_LINE)
    return box


def run(args: argparse.Namespace, default_rows: list[Any] | None = None) -> int:
    """``preview``: the PNG of row ``args.row`` of ``args.dataset`` (else of ``default_rows``, the
    demo data the CLI passes), under the settings in force and the setting options given.

    Raises:
        CommandError: the row does not exist, cannot be converted or cannot be sent to the model
            (the message names the row, the dataset and the fix), or ``--model`` does not load.
    """
    import dataclasses

    from ..errors import CommandError, RowError
    from ..settings import overriding
    from .common import load_processor
    from .options import settings_from, settings_line

    settings = settings_from(args)
    dataset = getattr(args, "dataset", None)
    row = int(getattr(args, "row", 0))
    out = getattr(args, "out", None) or "preview.png"
    if dataset:
        from ..formats.source import prepare_rows, training_views  # the dataset service every command reads through

        fmt, root = getattr(args, "format", "auto") or "auto", getattr(args, "image_root", None)
        prepared = list(prepare_rows(dataset, limit=row + 1, format=fmt, image_root=root))
        if row >= len(prepared):
            raise CommandError(
                f"--row {row}: {dataset} has {len(prepared)} row(s), numbered from 0. Fix: give --row 0 to "
                f"{max(0, len(prepared) - 1)}."
            )
        if prepared[row].row is None:
            raise CommandError(f"row {row} of {dataset} cannot be converted: {prepared[row].error}")
        rows, source = [training_views(p.row)[0] if p.row is not None else {} for p in prepared], dataset
    elif default_rows is not None:
        rows, source = default_rows, "the demo data"
    else:
        raise CommandError("give --dataset FILE (a .jsonl / .json / .parquet file or a save_to_disk folder)")
    if not 0 <= row < len(rows):
        raise CommandError(f"--row {row}: {source} has {len(rows)} row(s), numbered from 0.")
    processor = load_processor(getattr(args, "model", None), required=True)[0]
    try:
        with overriding(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}):
            meta = render_preview(rows[row], processor, out, strategy=settings.strategy, row=row)
    except RowError as exc:
        raise CommandError(f"row {row} of {source} cannot be sent to the model: {exc}") from None
    print(f"preview of row {row} of {source} written to {meta['path']} ({meta['size'][0]}x{meta['size'][1]} px)")
    print(
        f"  {meta['n_images']} image(s) to the model, {len(meta['tokens'])} tokens, "
        f"cross_attention_mask shape {list(meta['mask_shape']) if meta['mask_shape'] else 'none (text-only row)'}"
        + (f", mask {_MASK_WORDS[meta['mask_kind']]}" if meta["mask_shape"] else "")
    )
    print(f"  {settings_line(settings, args, ('rows', 'mask', 'video'))}")
    return 0
