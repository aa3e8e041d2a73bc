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
    from typing import get_args

    from ..settings import CrossAttention, OnExcess, Strategy

    p.add_argument(
        "question", nargs="?", help="the question (with --image); not with --dataset, whose row holds its own"
    )
    p.add_argument("--model", required=True, help="folder of a local checkpoint (model + processor), never downloaded")
    p.add_argument("--image", action="append", default=[], metavar="FILE", help="an image, in order (repeat)")
    p.add_argument("--dataset", help="a .jsonl / .json / .parquet file or a save_to_disk folder: ask its row --row")
    p.add_argument("--row", type=int, default=0, help="with --dataset: the row (default 0)")
    p.add_argument("--image-root", help="folder relative image paths are read from (default: the dataset's folder)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--strategy", choices=get_args(Strategy), help="as in training (default: the setting in force)")
    p.add_argument("--max-images", type=int, help="as in training (default: the setting in force)")
    p.add_argument("--on-excess", choices=get_args(OnExcess), help="as in training")
    p.add_argument("--max-pixels", type=int, help="max_pixels_per_example, as in training")
    p.add_argument("--cross-attention", choices=get_args(CrossAttention), help="Llama 3.2 Vision mask, as in training")
    p.add_argument(
        "--resize", default="min", help="the collator's resize used in training: min (default), max, or N pixels"
    )


def load_checkpoint(path: str) -> tuple[Any, Any]:
    """``(model, processor)`` of the local checkpoint folder ``path`` (``local_files_only``)."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
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
    raise ValueError(f"no transformers auto class loads the model at {path}: " + "; ".join(errors))


def _settings(args: argparse.Namespace) -> Any:
    """The settings in force, with the options given on the command line."""
    import dataclasses

    from ..settings import get_settings

    changes = {
        "strategy": args.strategy,
        "max_images": args.max_images,
        "on_excess": args.on_excess,
        "max_pixels_per_example": args.max_pixels,
        "mllama_cross_attention": args.cross_attention,
    }
    return dataclasses.replace(get_settings(), **{k: v for k, v in changes.items() if v is not None})


def _prompt(args: argparse.Namespace) -> tuple[Any, list[Any] | None, str | None, str]:
    """``(messages or row, images, image_root, what was asked)``."""
    if args.dataset:
        if args.image or args.question:
            raise ValueError("--dataset asks the row's own prompt: give no question and no --image with it")
        from ..formats.source import image_root_of, read_source  # the dataset service every command reads through

        row = next(itertools.islice(read_source(args.dataset, limit=args.row + 1), args.row, None), None)
        if row is None:
            raise ValueError(f"{args.dataset} has no row {args.row}")
        root = image_root_of(args.dataset, args.image_root)
        return row, None, root, f"row {args.row} of {args.dataset}"
    if not args.question:
        raise ValueError("give a question (and --image FILE for each image), or --dataset FILE --row N")
    content: list[dict[str, Any]] = [{"type": "image"} for _ in args.image]
    content.append({"type": "text", "text": args.question})
    return [{"role": "user", "content": content}], list(args.image), args.image_root, repr(args.question)


def run(args: argparse.Namespace) -> int:
    from ..errors import RowError
    from ..inference import generate_answer

    try:
        messages, images, root, asked = _prompt(args)
        resize: Any = int(args.resize) if str(args.resize).isdigit() else args.resize
        model, processor = load_checkpoint(args.model)
        answer = generate_answer(
            model,
            processor,
            messages,
            images,
            settings=_settings(args),
            max_new_tokens=args.max_new_tokens,
            resize=resize,
            image_root=root,
        )
    except (OSError, ValueError, ImportError) as exc:
        kind = "" if isinstance(exc, RowError) else f"{type(exc).__name__}: "
        print(f"ask: {kind}{exc}")
        return 1
    print(f"asked: {asked}")
    print(f"answer: {answer.text}")
    print("input shaped by:")
    for line in answer.prompt.describe():
        print(f"  {line}")
    return 0
