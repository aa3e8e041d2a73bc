"""``unsloth-multiimage ask``: ask a fine-tuned checkpoint a multi-image question, offline.

``ask --model PATH --image a.png --image b.png "question"`` or ``ask --model PATH --dataset FILE
--row N`` (the row's prompt: its answer turn is left out). The prompt goes through the training
pipeline (:func:`unsloth_multiimage.prepare_inputs`: the settings in force, from the environment
or the options here), the model generates greedily, and the answer is printed with the settings
that shaped the input (adapter, strategy, cap, budget, resize, cross-attention).
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any

__all__ = ["run", "load_checkpoint", "add_arguments"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``ask`` options (the CLI builds its sub-parser with them)."""
    from ..formats.source import LAYOUTS
    from . import options

    p.add_argument(
        "question", nargs="?", help="the question (with --image); not with --dataset, whose row holds its own"
    )
    p.add_argument(
        "--model",
        required=True,
        type=options.model_folder,
        help="folder of a local checkpoint (model + processor), never downloaded",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="FILE",
        type=options.image_file,
        help="an image, in order (repeat); a relative path is read from the working directory",
    )
    p.add_argument(
        "--dataset",
        type=options.dataset_path,
        help="a .jsonl / .json / .parquet file or a save_to_disk folder: ask its row --row",
    )
    p.add_argument("--row", type=options.ROW, default=0, help="with --dataset: the row, from 0 (default 0)")
    options.add_dataset_options(p, ["auto", *LAYOUTS])
    p.add_argument(
        "--max-new-tokens",
        type=options.int_in(1, 32_768, "an answer, generated greedily"),
        default=32,
        help="most tokens of the answer (default 32)",
    )
    p.add_argument(
        "--resize",
        default="min",
        type=_resize,
        help="the collator's resize used in training: min (default), max, or N pixels",
    )
    options.add_setting_options(p)


def _resize(text: str) -> Any:
    if text in ("min", "max"):
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"must be min, max or a number of pixels above 0, got {text!r}")


def load_checkpoint(path: str) -> tuple[Any, Any]:
    """``(model, processor)`` of the local checkpoint folder ``path`` (``local_files_only``).

    Raises:
        CommandError: the folder holds no loadable processor or model (naming ``--model`` and the fix).
    """
    import os

    import transformers

    from ..errors import CommandError, first_line

    if not os.path.isdir(path):
        raise CommandError(
            f"--model {path}: no such folder. Fix: give the folder of a local checkpoint; models are never downloaded."
        )
    try:
        processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = first_line(exc)
        raise CommandError(
            f"--model {path}: its processor does not load ({first}). Fix: give the folder of a local checkpoint "
            f"with its processor files (processor.save_pretrained(DIR))."
        ) from None
    errors = []
    for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM"):
        auto = getattr(transformers, name, None)
        if auto is None:
            continue
        try:
            model = auto.from_pretrained(path, local_files_only=True)
        except (ValueError, KeyError) as exc:  # the config is not one this auto class maps
            errors.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        return model.eval(), processor
    raise CommandError(
        f"--model {path}: no transformers auto class loads the model ({'; '.join(errors) or 'no weights'}). Fix: give "
        f"the folder of a checkpoint written by model.save_pretrained(DIR)."
    )


def _prompt(args: argparse.Namespace) -> tuple[Any, list[Any] | None, str | None, str]:
    """``(messages or row, images, image_root, what was asked)``."""
    from ..errors import CommandError

    if args.dataset:
        from ..formats.source import convert_row, image_root_of, read_source, training_views

        row = next(itertools.islice(read_source(args.dataset, limit=args.row + 1), args.row, None), None)
        if row is None:
            raise CommandError(
                f"--row {args.row}: {args.dataset} has no row {args.row} (rows are numbered from 0). Fix: give the "
                f"number of a row of the dataset."
            )
        root = image_root_of(args.dataset, args.image_root)
        converted = training_views(convert_row(row, args.row, format=args.format))[0]
        return converted, None, root, f"row {args.row} of {args.dataset}"
    if not args.question:
        raise CommandError(
            "no question given. Fix: give the question (and --image FILE for each image), or --dataset FILE --row N",
            usage=True,
        )
    content: list[dict[str, Any]] = [{"type": "image"} for _ in args.image]
    content.append({"type": "text", "text": args.question})
    return [{"role": "user", "content": content}], list(args.image), None, repr(args.question)


def run(args: argparse.Namespace) -> int:
    """``ask``: the answer, and what shaped the input. Errors propagate to the CLI (which names them)."""
    from ..inference import generate_answer
    from .options import settings_from

    settings = settings_from(args)
    messages, images, root, asked = _prompt(args)
    model, processor = load_checkpoint(args.model)
    answer = generate_answer(
        model,
        processor,
        messages,
        images,
        settings=settings,
        max_new_tokens=args.max_new_tokens,
        resize=args.resize,
        image_root=root,
        row=args.row if args.dataset else 0,
    )
    print(f"asked: {asked}")
    print(f"answer: {answer.text}")
    print("input shaped by:")
    for line in answer.prompt.describe():
        print(f"  {line}")
    return 0
