"""Command line: ``unsloth-multiimage doctor | convert | demo | preview | ask`` (also ``python -m unsloth_multiimage``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, get_args

from ..settings import CrossAttention, Strategy
from .doctor import doctor_report

__all__ = ["main", "doctor_report"]


@contextlib.contextmanager
def _progress(total: int | None, desc: str) -> Iterator[Callable[[int], Any] | None]:
    """The ``update`` of a tqdm bar (drawn on a terminal only), closed on exit; None without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield None
        return
    bar = tqdm(total=total, desc=desc, unit="row", dynamic_ncols=True, disable=not sys.stderr.isatty())
    try:
        yield bar.update
    finally:
        bar.close()


def _doctor(args: argparse.Namespace) -> int:
    if args.packing and (not args.dataset or args.max_seq_length is None or args.batch_size < 1):
        print("doctor --packing needs --dataset FILE, --max-seq-length N and a --batch-size of at least 1")
        return 2
    processor = None
    if args.model and not args.dataset:
        from .common import load_processor

        processor = load_processor(args.model)[0]
    print(doctor_report(import_targets=not args.no_import, processor=processor))
    if not args.dataset:
        return 0
    from .doctor import check_dataset, format_dataset_check

    limit = None if args.all else args.rows
    try:
        with _progress(limit, "checking") as progress:
            check = check_dataset(
                args.dataset,
                limit=limit,
                num_proc=args.num_proc,
                decode=args.decode or not args.all,
                model=args.model,
                image_root=args.image_root,
                fmt=args.format,
                progress=progress,
            )
    except (OSError, ValueError, ImportError) as exc:
        print(f"\nDataset check: {args.dataset}\ncannot read the dataset: {exc}")
        return 1
    print()
    print(format_dataset_check(check))
    bad = check.refused is not None or any(r.verdict == "error" for r in check.reports)
    if args.max_seq_length is not None:
        bad = _token_report(args, limit) or bad
    return 1 if bad else 0


def _token_report(args: argparse.Namespace, limit: int | None) -> bool:
    """``doctor --dataset FILE --max-seq-length N``: True when training would fail on a row."""
    from .doctor import check_tokens, format_token_check

    try:
        with _progress(limit, "counting tokens") as progress:
            tokens = check_tokens(
                args.dataset,
                args.max_seq_length,
                limit=limit,
                num_proc=args.num_proc,
                model=args.model,
                image_root=args.image_root,
                progress=progress,
            )
    except (OSError, ValueError, ImportError) as exc:
        print(f"\nToken report: {args.dataset}\ncannot count the tokens: {exc}")
        return True
    print()
    print(format_token_check(tokens))
    if args.packing:  # measure.packing_report: the packing plan of the counted rows
        from ..measure.packing_report import packing_report

        print()
        print(packing_report(tokens.report, args.batch_size).format())
    return bool(tokens.report.cut)


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_file, format_result

    try:
        with _progress(None, "converting") as progress:
            result = convert_file(
                args.source,
                args.target,
                fmt=args.format,
                image_root=args.image_root,
                num_proc=args.num_proc,
                skip_bad=args.skip_bad,
                progress=progress,
            )
    except (OSError, ValueError, ImportError) as exc:
        print(f"convert: cannot convert {args.source}: {exc}")
        return 1
    print(format_result(result, args.source, args.target, args.skip_bad))
    return 1 if result.errors and not args.skip_bad else 0


def _formats() -> list[str]:
    from ..rows.layouts import FORMATS

    return ["auto", *FORMATS]


def _version() -> str:
    from .._version import __version__

    return __version__


def setup_logging(verbose: bool) -> None:
    """The CLI's logging: the plugin's warnings (with ``-v`` its info lines too); other libraries'
    known noise hidden (:mod:`~unsloth_multiimage.tools.noise`) unless ``-v``."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        from .noise import quiet_known_noise

        quiet_known_noise()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unsloth-multiimage", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what the plugin does, and all other libraries' lines"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="versions, plugins, each patch's decision; --dataset dry-runs rows")
    p.add_argument("--no-import", action="store_true", help="do not import the patched libraries")
    p.add_argument("--dataset", help="a .jsonl / .json / .parquet file or a save_to_disk folder to dry-run")
    p.add_argument("--rows", type=int, default=20, help="rows to check with --dataset (default 20)")
    p.add_argument("--all", action="store_true", help="check every row (image headers only, unless --decode)")
    p.add_argument("--decode", action="store_true", help="with --all: decode every image too")
    p.add_argument("--num-proc", type=int, default=1, help="processes for --dataset (default 1)")
    p.add_argument("--model", help="folder of a local checkpoint whose processor renders the rows")
    p.add_argument("--image-root", help="folder relative image paths are read from (default: the dataset's folder)")
    p.add_argument("--format", default="auto", choices=_formats(), help="the rows' layout (default: detected)")
    p.add_argument(
        "--max-seq-length",
        type=int,
        help="with --dataset: count each row's tokens, name the rows this length would cut, say what fits",
    )
    p.add_argument("--packing", action="store_true", help="with --max-seq-length: what packing does to the batches")
    p.add_argument("--batch-size", type=int, default=8, help="with --packing: rows per training batch (default 8)")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("convert", help="convert a LLaVA / Mantis / LLaMA-Factory / cauldron / OpenAI dataset")
    p.add_argument("source", help="a .jsonl / .json / .parquet file or a save_to_disk folder")
    p.add_argument("target", help="a .jsonl / .json / .parquet file, or a folder (save_to_disk)")
    p.add_argument("--format", default="auto", choices=_formats(), help="the rows' layout (default: detected per row)")
    p.add_argument("--image-root", help="folder that relative image paths are relative to (they become absolute)")
    p.add_argument("--num-proc", type=int, default=1, help="processes (default 1)")
    p.add_argument("--skip-bad", action="store_true", help="write the good rows even if some cannot be converted")
    p.set_defaults(func=_convert)

    p = sub.add_parser("demo", help="fine-tune the embedded tiny Llama-3.2-Vision-shaped model on multi-image data")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 30; with --compare 1200)")
    p.add_argument("--strategy", choices=get_args(Strategy), default="native")
    p.add_argument("--model", help="path of local Mllama weights (a GPU user's checkpoint) instead of the tiny model")
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (default 4; with --compare 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--compare",
        action="store_true",
        help="train the same model 5 ways (first_image, grid, every_image, every_image_cumulative, serial) and compare held-out accuracy",
    )
    p.add_argument("--arms", help="with --compare: comma-separated arms to run (default: all five)")
    p.add_argument("--plot", metavar="FILE", help="with --compare: write a PNG of the loss curves and the accuracies")
    p.add_argument(
        "--dataset",
        metavar="FILE",
        help="with --compare: your rows (.jsonl/.json/.parquet/save_to_disk folder, any layout `convert` reads) instead of the synthetic task",
    )
    p.add_argument(
        "--eval-rows",
        type=int,
        metavar="N",
        help="with --compare: held-out rows (default 300; with --dataset a fifth of the rows, at most 300)",
    )
    p.add_argument(
        "--layout",
        choices=("cross-last", "checkpoint"),
        default="cross-last",
        help="with --compare, tiny model: cross-attention as the last layer (default: isolates the mask) or self/cross/self (the real checkpoints' pattern)",
    )
    p.set_defaults(func=_demo)

    p = sub.add_parser("preview", help="write a PNG of what the model sees for one row")
    p.add_argument("--dataset", help="JSON/JSONL file (default: the demo data)")
    p.add_argument("--row", type=int, default=0)
    p.add_argument("--out", default="preview.png")
    p.add_argument("--strategy", choices=get_args(Strategy), default="native")
    p.add_argument("--model", help="folder of a local Mllama checkpoint whose processor renders the row")
    p.add_argument(
        "--cross-attention",
        choices=get_args(CrossAttention),
        help="the Llama 3.2 Vision mask to draw (default: the mllama_cross_attention setting in force)",
    )
    p.set_defaults(func=_preview)

    from . import ask  # cheap: its heavy imports run in ask.run

    p = sub.add_parser("ask", help="ask a local checkpoint a multi-image question, the prompt shaped as in training")
    ask.add_arguments(p)
    p.set_defaults(func=ask.run)

    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return int(args.func(args) or 0)


def _demo(args: argparse.Namespace) -> int:
    # The demo harness is the CLI's to import (the runtime and the other commands never do).
    if args.compare:
        from ..demo import compare

        return int(compare.run(args) or 0)
    from ..demo import demo

    return int(demo.run(args) or 0)


def _preview(args: argparse.Namespace) -> int:
    from . import preview

    if args.dataset:
        return int(preview.run(args) or 0)
    from ..demo.demo_data import make_rows  # no dataset: the demo's synthetic rows

    return int(preview.run(args, default_rows=make_rows(n=max(16, args.row + 1), seed=0)) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
