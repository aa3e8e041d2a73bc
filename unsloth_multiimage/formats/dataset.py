"""Convert a whole ``datasets`` dataset (Arrow batches, explicit features) or a list of rows."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..rows.layouts import FORMATS, chat_of, detect, label
from .convert import DEFAULT_IMAGE_TAGS, to_messages

__all__ = ["consumed_columns", "convert_dataset"]

logger = logging.getLogger("unsloth_multiimage")


def consumed_columns(example: Mapping[str, Any], format: str = "auto") -> list[str]:
    """The columns of ``example`` that :func:`to_messages` reads and replaces (for ``remove_columns``)."""
    fmt = detect(example) if format == "auto" else format
    if fmt == "cauldron":
        keys: tuple[str | None, ...] = ("texts", "images")
    elif fmt == "prompt_completion":
        keys = ("prompt", "completion", "images")
    elif fmt in FORMATS:
        key = chat_of(example)[0]
        keys = (key, "image", "images") if fmt == "llava" else (key, "images")
    else:
        keys = ()
    keys += ("video", "videos") if fmt in FORMATS else ()  # to_messages writes a row's videos to `videos`
    return [k for k in dict.fromkeys(keys) if k is not None and k in example]


def _convert_batch(batch: Any, indices: list[int], *, schema: Any, **options: Any) -> Any:
    """``Dataset.map(batched=True)`` body: an Arrow batch in, an Arrow table of ``schema`` out.

    Images stay in their Arrow storage (``{"bytes", "path"}`` for ``Image()``), so they are never
    decoded or re-encoded and Pillow is not needed.
    """
    import pyarrow as pa

    out = [to_messages(r, row=i, **options) for r, i in zip(batch.to_pylist(), indices, strict=True)]
    return pa.Table.from_pylist(out, schema=schema)


def _element(feature: Any) -> Any:
    """The item feature of a list feature (``List``, ``Sequence``, ``LargeList``, ``[x]``)."""
    if isinstance(feature, list):
        return feature[0] if feature else None
    return getattr(feature, "feature", feature)


def _is_null(feature: Any) -> bool:
    return feature is None or getattr(feature, "dtype", None) == "null"


def _output_features(
    features: Mapping[str, Any], first: Mapping[str, Any], fmt: str, removed: Sequence[str], out_keys: Sequence[str]
) -> Any:
    from datasets import Features, Value

    image: Any = None
    if fmt == "openai":
        image = {"bytes": Value("binary"), "path": Value("string")}
    for key in ("image", "images") if fmt == "llava" else ("images",):
        if _is_null(image) and key in features and first.get(key) is not None:
            image = _element(features[key]) if isinstance(first[key], list) else features[key]
    if _is_null(image):
        image = _embedded_image_feature([features[k] for k in removed if k in features])
    if _is_null(image):
        image = Value("string")
    chat = [{"role": Value("string"), "content": [{"type": Value("string"), "text": Value("string")}]}]
    out = {k: v for k, v in features.items() if k not in removed}
    out.update({k: chat for k in out_keys})
    out["images"] = [image]
    video_keys = [k for k in ("video", "videos") if k in features]
    if video_keys:  # paths (or {"bytes", "path"} dicts), as the source column stores them
        video = features[video_keys[0]]
        video = _element(video)  # a list feature's item (a plain feature is its own item)
        out["videos"] = [Value("string") if _is_null(video) else video]
    return Features(out)


def _embedded_image_feature(features: list[Any]) -> Any:
    """The image feature of chat parts: their ``image`` key's, or the dict layout for ``image_url`` parts."""
    stack = list(features)
    while stack:
        feature = stack.pop()
        if isinstance(feature, Mapping):
            if "type" in feature and "image_url" in feature:
                from datasets import Value

                return {"bytes": Value("binary"), "path": Value("string")}
            if "type" in feature and not _is_null(feature.get("image")):
                return feature["image"]
            stack.extend(feature.values())
        elif _element(feature) is not feature:
            stack.append(_element(feature))
    return None


def convert_dataset(
    dataset: Any,
    *,
    format: str = "auto",
    image_root: str | os.PathLike[str] | None = None,
    image_tags: Sequence[str] = DEFAULT_IMAGE_TAGS,
    strip_tag_newline: bool = True,
    num_proc: int | None = None,
    **map_kwargs: Any,
) -> Any:
    """Convert a whole ``datasets.Dataset`` (or ``IterableDataset``, or a list of rows).

    The format is detected on the first row and then required of every row. For a ``Dataset``,
    rows are converted from Arrow batches, so images are never decoded and re-encoded, and the
    output schema is given explicitly, so any ``num_proc`` builds one schema. Consumed columns are
    removed; image features (e.g. ``Image()``) carry over to the new ``images`` column.

    Args:
        dataset: a ``Dataset``, ``IterableDataset`` or ``DatasetDict`` (every split), an iterable of
            rows, or the path of a dataset file or ``save_to_disk`` folder, read by the dataset
            service (:mod:`~unsloth_multiimage.formats.source`, whose default ``image_root`` applies).
        format: a name from :data:`FORMATS`, or ``"auto"``.
        image_root, image_tags, strip_tag_newline: as for :func:`to_messages`.
        num_proc: worker processes for ``Dataset.map``.
        **map_kwargs: passed on to ``map`` (e.g. ``batch_size``, ``desc``).

    Returns:
        The converted dataset (a list for an iterable of rows or a file).
    """
    if isinstance(dataset, (str, os.PathLike)):
        from .source import image_root_of, load_source

        dataset, image_root = load_source(dataset), image_root_of(dataset, image_root)
    options: dict[str, Any] = {
        "image_root": image_root,
        "image_tags": tuple(image_tags),
        "strip_tag_newline": strip_tag_newline,
    }
    if isinstance(dataset, Mapping):  # a DatasetDict: every split
        splits = {
            name: convert_dataset(split, format=format, num_proc=num_proc, **options, **map_kwargs)
            for name, split in dataset.items()
        }
        return type(dataset)(splits)  # type: ignore[call-arg]
    if not hasattr(dataset, "map"):
        rows = list(dataset)
        fmt = detect(rows[0]) if rows and format == "auto" else format
        return [to_messages(r, row=i, format=fmt, **options) for i, r in enumerate(rows)]
    is_table = hasattr(dataset, "with_format") and hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    if is_table and len(dataset) == 0:
        return dataset
    first = dataset.with_format("arrow")[0:1].to_pylist()[0] if is_table else next(iter(dataset))
    fmt = detect(first) if format == "auto" else format
    if fmt not in FORMATS:
        to_messages(first, row=0, format=fmt, **options)  # raises the UnknownFormatError
    removed = consumed_columns(first, fmt)
    out_keys = ["prompt", "completion"] if fmt == "prompt_completion" else ["messages"]
    columns = dataset.column_names or list(first)
    out_keys = [k for k in out_keys if k != "completion" or k in columns]
    logger.info("unsloth_multiimage: converting %s to the messages layout (removing %s)", label(fmt), removed)
    if not is_table:
        fn = functools.partial(to_messages, format=fmt, **options)
        return dataset.map(fn, with_indices=True, remove_columns=removed, **map_kwargs)
    features = _output_features(dataset.features, first, fmt, removed, out_keys)
    fn = functools.partial(_convert_batch, schema=features.arrow_schema, format=fmt, **options)
    converted = dataset.with_format("arrow").map(
        fn, batched=True, with_indices=True, remove_columns=removed, features=features, num_proc=num_proc, **map_kwargs
    )
    kind = dataset.format.get("type")
    return converted.with_format(kind, **dataset.format.get("format_kwargs", {}))
