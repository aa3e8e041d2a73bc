"""Command line: ``unsloth-multiimage doctor | convert | demo | preview | ask`` (also ``python -m unsloth_multiimage``).

The contract every command keeps (tests/tools/test_cli_contract.py checks it over the parser's own
option table): it ends with exit status 0 and its result, or with a non-zero status and one short
message on stderr that names the input at fault (the option, the environment variable, the path or
the row) and the fix. Arguments are checked before anything heavy runs: each value by its type
(:mod:`~unsloth_multiimage.tools.options`), then the options that need another (:data:`NEEDS`) or
exclude one (:data:`EXCLUDES`), then the ``UNSLOTH_MULTIIMAGE_*`` variables. An option the command
did not use, after a run that ended with 0, is a bug of this module, reported as one (status 70).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from ..errors import CommandError, RowError, SettingsError
from . import options
from .doctor import doctor_report

__all__ = ["main", "build_parser", "doctor_report", "NEEDS", "EXCLUDES", "INTERNAL_ERROR"]

logger = logging.getLogger("unsloth_multiimage")

#: The exit status of a failure that is the CLI's own bug (sysexits' EX_SOFTWARE).
INTERNAL_ERROR = 70

DESCRIPTION = (
    "Multi-image fine-tuning with Unsloth and transformers: check the set-up and a dataset (doctor), "
    "convert a dataset to the layout its trainer reads (convert), see what the model gets for a row (preview), "
    "ask a fine-tuned checkpoint (ask), and fine-tune the embedded tiny model (demo)."
)
EPILOG = (
    "Run `unsloth-multiimage COMMAND --help` for a command's options. Relative image paths in a dataset file are "
    "read from the file's folder, or from --image-root (README, 'Your data')."
)

_ROWS = "the settings shape the rows of a dataset"
#: Rows of the demo data ``preview`` draws without --dataset (made on the fly).
DEMO_ROWS = 1000
#: Worker processes of --num-proc: each is a Python with torch imported (hundreds of MB).
PROCESSES = options.int_in(1, 256, "each worker is a Python process with torch imported")
#: command -> option dest -> (the dest it needs, why): an option given without the one it needs is refused.
NEEDS: dict[str, dict[str, tuple[str, str]]] = {
    "doctor": {
        "all": ("dataset", "it checks every row of a dataset"),
        "rows": ("dataset", "it says how many rows of a dataset to check"),
        "decode": ("all", "without --all every checked row is decoded already"),
        "num_proc": ("dataset", "the processes check the rows of a dataset"),
        "max_seq_length": ("dataset", "it counts the tokens of a dataset's rows"),
        "packing": ("max_seq_length", "it packs the counted rows into sequences of that length"),
        "batch_size": ("packing", "it is the number of rows each packed batch is planned from"),
        "image_root": ("dataset", "it says where a dataset's relative image paths are"),
        "format": ("dataset", "it names the layout of a dataset's rows"),
        **{o.dest: ("dataset", _ROWS) for o in options.SETTING_OPTIONS},
    },
    "preview": {
        "image_root": ("dataset", "it says where a dataset's relative image paths are"),
        "format": ("dataset", "it names the layout of a dataset's rows"),
    },
    "ask": {
        "row": ("dataset", "it picks a row of a dataset"),
        "image_root": (
            "dataset",
            "it says where a dataset's relative image paths are (--image paths are read as typed)",
        ),
        "format": ("dataset", "it names the layout of a dataset's rows"),
    },
    "demo": {
        "arms": ("compare", "the arms are those of the A/B"),
        "plot": ("compare", "it plots the A/B's arms"),
        "dataset": ("compare", "the plain demo trains on its synthetic rows"),
        "eval_rows": ("compare", "the held-out rows score the A/B's arms"),
        "layout": ("compare", "it shapes the tiny model of the A/B"),
    },
}
#: command -> (dest, other dest, why) pairs that cannot be given together.
EXCLUDES: dict[str, list[tuple[str, str, str]]] = {
    "doctor": [("rows", "all", "--all checks every row")],
    "ask": [
        ("dataset", "question", "a dataset row holds its own question"),
        ("dataset", "image", "a dataset row holds its own images"),
    ],
    "demo": [
        *[
            (o.dest, "compare", "--compare sets these settings itself, one arm at a time")
            for o in options.SETTING_OPTIONS
            if o.group in ("rows", "mask")
        ],
        ("layout", "model", "--layout shapes the tiny model; --model trains yours"),
    ],
}


class _Parser(argparse.ArgumentParser):
    """argparse with a short error: the command, the argument at fault and where the options are
    listed, without the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}. See `{self.prog} --help`.", file=sys.stderr)
        sys.exit(2)


class _Args(argparse.Namespace):
    """The parsed arguments, recording which of them the command reads (see :func:`main`)."""

    def __init__(self, **kwargs: Any) -> None:
        object.__setattr__(self, "_read", set())
        super().__init__(**kwargs)

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            object.__getattribute__(self, "_read").add(name)
        return object.__getattribute__(self, name)

    def forget_reads(self) -> None:
        object.__getattribute__(self, "_read").clear()

    def reads(self) -> set[str]:
        return set(object.__getattribute__(self, "_read"))


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


# ------------------------------------------------------------------------------------------ doctor


def _doctor(args: argparse.Namespace) -> int:
    from .common import load_processor

    settings = options.settings_from(args) if args.dataset else None
    processor = load_processor(args.model, required=True)[0] if args.model else None
    print(doctor_report(import_targets=not args.no_import, processor=processor))
    if not args.dataset:
        return 0
    from .doctor import check_dataset, format_dataset_check

    limit = None if args.all else args.rows
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
            settings=settings,
        )
    if not check.reports:
        raise CommandError(f"--dataset {args.dataset}: the dataset has no rows. Fix: give a dataset with rows.")
    print()
    print(format_dataset_check(check, settings_line=options.settings_line(check.settings, args, ("rows", "mask"))))
    bad = sum(r.verdict == "error" for r in check.reports)
    cut = _token_report(args, limit, settings) if args.max_seq_length is not None else 0
    what = [f"{bad} of {len(check.reports)} row(s) would fail training"] if bad else []
    what += [f"{cut} row(s) would lose image tokens at --max-seq-length {args.max_seq_length}"] if cut else []
    if check.refused_layout is not None:
        n = check.layouts[check.refused_layout]
        what.append(f"{n} {check.refused_layout} row(s) are refused by the collator as they are")
    if what:
        fixes = ["correct the rows named above"] if bad or cut else []
        if check.refused_layout is not None:
            fixes.append(f"convert the file first: unsloth-multiimage convert {args.dataset} OUT.jsonl")
        read_as = f", read as --format {args.format}" if args.format != "auto" else ""
        _say("doctor", f"{'; '.join(what)} ({args.dataset}{read_as}). Fix: {'; '.join(fixes)}.")
        return 1
    return 0


def _token_report(args: argparse.Namespace, limit: int | None, settings: Any) -> int:
    """``doctor --dataset FILE --max-seq-length N``: the rows training would fail on."""
    from .doctor import check_tokens, format_token_check

    with _progress(limit, "counting tokens") as progress:
        tokens = check_tokens(
            args.dataset,
            args.max_seq_length,
            limit=limit,
            num_proc=args.num_proc,
            model=args.model,
            image_root=args.image_root,
            progress=progress,
            settings=settings,
            fmt=args.format,
        )
    print()
    print(format_token_check(tokens))
    if args.packing:  # measure.packing_report: the packing plan of the counted rows
        from ..measure.packing_report import packing_report

        print()
        print(packing_report(tokens.report, args.batch_size).format())
    return len(tokens.report.cut)


# ------------------------------------------------------------------------------------------ convert


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_file, format_result

    with _progress(None, "converting") as progress:
        result = convert_file(
            args.source,
            args.target,
            fmt=args.format,
            image_root=args.image_root,
            num_proc=args.num_proc,
            skip_bad=args.skip_bad,
            progress=progress,
            to=args.to,
        )
    print(format_result(result, args.source, args.target, args.skip_bad))
    read_as = f" as --format {args.format}" if args.format != "auto" else ""
    if not result.rows:
        raise CommandError(f"{args.source} has no rows; nothing written. Fix: give a dataset with rows.")
    if result.errors and (not args.skip_bad or not result.written):
        others = result.rows - len(result.errors)
        fix = f"correct them, or pass --skip-bad to write the {others} other row(s)" if others else "correct them"
        _say(
            "convert",
            f"{len(result.errors)} of the {result.rows} row(s) of {args.source} cannot be converted{read_as} (listed "
            f"above); nothing written. Fix: {fix}.",
        )
        return 1
    return 0


# ------------------------------------------------------------------------------------------ the rest


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

    if args.row >= DEMO_ROWS:
        raise CommandError(
            f"--row {args.row}: the demo data has {DEMO_ROWS} rows (0 to {DEMO_ROWS - 1}). Fix: give a smaller "
            f"--row, or --dataset FILE.",
            usage=True,
        )
    return int(preview.run(args, default_rows=make_rows(n=max(16, args.row + 1), seed=0)) or 0)


def _ask(args: argparse.Namespace) -> int:
    from . import ask

    return int(ask.run(args) or 0)


def _formats() -> list[str]:
    from ..formats.source import LAYOUTS

    return ["auto", *LAYOUTS]


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


# ------------------------------------------------------------------------------------------ the parser


def _doctor_parser(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="versions, plugins, each patch's decision; --dataset dry-runs rows",
        description="Versions, plugins, each patch's decision and why, the adapters; with --dataset, what training "
        "does with each row (and with --max-seq-length, the tokens of each row).",
    )
    p.add_argument("--no-import", action="store_true", help="do not import the patched libraries")
    p.add_argument(
        "--dataset",
        type=options.dataset_path,
        help="a .jsonl / .json / .parquet file or a save_to_disk folder to dry-run",
    )
    p.add_argument("--rows", type=options.ROWS, default=20, help="rows to check with --dataset (default 20)")
    p.add_argument("--all", action="store_true", help="check every row (image headers only, unless --decode)")
    p.add_argument("--decode", action="store_true", help="with --all: decode every image too")
    p.add_argument(
        "--num-proc",
        type=PROCESSES,
        default=1,
        help="processes for --dataset (default 1; one process below 30,000 rows, where workers cost more than they save)",
    )
    p.add_argument(
        "--model", type=options.model_folder, help="folder of a local checkpoint whose processor renders the rows"
    )
    options.add_dataset_options(p, _formats())
    p.add_argument(
        "--max-seq-length",
        type=options.positive_int,
        help="with --dataset: count each row's tokens, name the rows this length would cut, say what fits",
    )
    p.add_argument(
        "--packing",
        action="store_true",
        help="with --max-seq-length: the packing plan of the counted rows (sequences per batch, fill, padding saved)",
    )
    p.add_argument(
        "--batch-size",
        type=options.int_in(1, 4096, "a batch's rows are planned in memory"),
        default=8,
        help="with --packing: rows per training batch (default 8)",
    )
    options.add_setting_options(p)
    p.set_defaults(func=_doctor)


def _convert_parser(sub: Any) -> None:
    from ..formats.source import TARGETS

    p = sub.add_parser(
        "convert",
        help="convert a LLaVA / Mantis / LLaMA-Factory / cauldron / OpenAI / DPO / GRPO dataset",
        description="Convert a dataset to the layout its trainer reads: SFT rows to the messages layout, preference "
        "rows to TRL's DPO layout, GRPO rows to GRPO prompts; relative image paths are written absolute.",
    )
    p.add_argument(
        "source", type=options.dataset_path, help="a .jsonl / .json / .parquet file or a save_to_disk folder"
    )
    p.add_argument("target", help="a .jsonl / .json / .parquet file, or a folder (save_to_disk)")
    options.add_dataset_options(p, _formats())
    p.add_argument(
        "--to",
        default="auto",
        choices=TARGETS,
        help="auto: each row in the layout its trainer reads (default); grpo: every row as a GRPO prompt + answer",
    )
    p.add_argument(
        "--num-proc",
        type=PROCESSES,
        default=1,
        help="processes (default 1; one process below 30,000 rows, where workers cost more than they save)",
    )
    p.add_argument("--skip-bad", action="store_true", help="write the good rows even if some cannot be converted")
    p.set_defaults(func=_convert)


def _demo_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="fine-tune the embedded tiny Llama-3.2-Vision-shaped model on multi-image data",
        description="Fine-tune the embedded tiny Llama-3.2-Vision-shaped model (or --model PATH) through the real, "
        "patched collator; --compare trains it five ways and compares held-out accuracy.",
    )
    p.add_argument(
        "--steps",
        type=options.int_in(1, 10_000_000, "a demo, not a pre-training run"),
        default=None,
        help="training steps (default 30; with --compare 1200)",
    )
    p.add_argument(
        "--model",
        type=options.model_folder,
        help="folder of local Mllama weights (a GPU user's checkpoint) instead of the tiny model",
    )
    p.add_argument(
        "--batch-size",
        type=options.int_in(1, 4096, "the rows of a step are built in memory"),
        default=None,
        help="rows per step (default 4; with --compare 16)",
    )
    p.add_argument(
        "--seed",
        type=options.int_in(0, 2**32 - 1, "torch's seeds"),
        default=0,
        help="the seed of the model, data and batches",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="train the same model 5 ways (first_image, grid, every_image, every_image_cumulative, serial) and compare held-out accuracy",
    )
    p.add_argument("--arms", help="with --compare: comma-separated arms to run (default: all five)")
    p.add_argument(
        "--plot",
        metavar="FILE",
        type=options.output_file((".png",)),
        help="with --compare: write a PNG of the loss curves and the accuracies",
    )
    p.add_argument(
        "--dataset",
        metavar="FILE",
        type=options.dataset_path,
        help="with --compare: your rows (.jsonl/.json/.parquet/save_to_disk folder, any layout `convert` reads) instead of the synthetic task",
    )
    p.add_argument(
        "--eval-rows",
        type=options.int_in(1, 100_000, "the held-out rows are scored in memory"),
        metavar="N",
        help="with --compare: held-out rows (default 300; with --dataset a fifth of the rows, at most 300)",
    )
    p.add_argument(
        "--layout",
        choices=("cross-last", "checkpoint"),
        default="cross-last",
        help="with --compare, tiny model: cross-attention as the last layer (default: isolates the mask) or self/cross/self (the real checkpoints' pattern)",
    )
    options.add_setting_options(p, ("rows", "mask"))
    p.set_defaults(func=_demo)


def _preview_parser(sub: Any) -> None:
    p = sub.add_parser(
        "preview",
        help="write a PNG of what the model sees for one row",
        description="Write a PNG of what Llama 3.2 Vision gets for one row: its images in slot order, the rendered "
        "chat, and the cross-attention mask.",
    )
    p.add_argument(
        "--dataset",
        type=options.dataset_path,
        help="a .jsonl / .json / .parquet file or a save_to_disk folder (default: the demo data)",
    )
    p.add_argument("--row", type=options.ROW, default=0, help="the row to draw, from 0 (default 0)")
    p.add_argument(
        "--out",
        default="preview.png",
        type=options.output_file((".png",)),
        help="the PNG to write (default preview.png)",
    )
    p.add_argument(
        "--model",
        type=options.model_folder,
        help="folder of a local Mllama checkpoint whose processor renders the row (default: the tiny one)",
    )
    options.add_dataset_options(p, _formats())
    options.add_setting_options(p)
    p.set_defaults(func=_preview)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (tests walk its option table)."""
    parser = _Parser(prog="unsloth-multiimage", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what the plugin does, and all other libraries' lines"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    _doctor_parser(sub)
    _convert_parser(sub)
    _demo_parser(sub)
    _preview_parser(sub)
    from . import ask  # cheap: its heavy imports run in ask.run

    p = sub.add_parser(
        "ask",
        help="ask a local checkpoint a multi-image question, the prompt shaped as in training",
        description="Ask a local checkpoint a multi-image question (or a dataset row's), the prompt shaped as in "
        "training; prints the answer and what shaped the input.",
    )
    ask.add_arguments(p)
    p.set_defaults(func=_ask)
    return parser


# ------------------------------------------------------------------------------------------ main


def _given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """dest -> flag (a positional: its name) of every argument of the command whose value is not
    its default (what was typed)."""
    command = _subparser(parser, args.command)
    given = {}
    for action in command._actions:
        if action.dest in ("help",):
            continue
        if getattr(args, action.dest, None) != action.default:
            given[action.dest] = max(action.option_strings, key=len) if action.option_strings else action.dest
    return given


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise KeyError(name)  # pragma: no cover - every command has a sub-parser


def _say(command: str, message: str) -> None:
    """The closing message of a run that failed: one line on stderr, naming the command."""
    text = " ".join(str(message).split())
    print(f"unsloth-multiimage {command}: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (see the module docstring for the contract)."""
    parser = build_parser()
    args = parser.parse_args(argv, namespace=_Args())
    command = str(args.command)
    setup_logging(bool(args.verbose))
    try:
        given = _given(parser, args)
        options.check_needs(given, NEEDS.get(command, {}), EXCLUDES.get(command, []))
        from ..settings import get_settings

        get_settings()  # a bad UNSLOTH_MULTIIMAGE_* value: named now, before any work
        if isinstance(args, _Args):
            args.forget_reads()
        status = int(args.func(args) or 0)
    except CommandError as exc:
        _say(command, str(exc))
        return 2 if exc.usage else 1
    except (SettingsError, RowError) as exc:
        _say(command, str(exc))
        return 1
    except (OSError, ValueError, ImportError) as exc:
        _say(command, f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        _say(command, "interrupted")
        return 130
    except Exception as exc:  # the CLI's own bug: one line, the traceback with -v
        if args.verbose:
            traceback.print_exc()
        _say(
            command,
            f"internal error: {type(exc).__name__}: {exc}. This is a bug of unsloth-multiimage: please report it "
            f"with the output of `unsloth-multiimage -v {command} ...`.",
        )
        return INTERNAL_ERROR
    if status == 0 and isinstance(args, _Args):
        unused = sorted(flag for dest, flag in given.items() if dest not in args.reads())
        if unused:
            _say(
                command,
                f"internal error: {', '.join(unused)} had no effect on this run. This is a bug of unsloth-multiimage: "
                f"please report it.",
            )
            return INTERNAL_ERROR
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
