"""Command line: ``unsloth-multiimage doctor | demo | preview`` (also ``python -m unsloth_multiimage``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import platform
import sys
from typing import Sequence

from .. import _env
from ..engine import activation, compat

__all__ = ["main", "doctor_report"]

_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "trl", "unsloth", "unsloth_zoo", "wrapt", "pluggy")


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = "  ".join("-" * w for w in widths)
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), line, *(fmt(r) for r in rows)])


def _import_targets() -> None:
    """Import each patch target that is installed, so the decisions are final, not pending."""
    for st in activation.status():
        if st.decision != "pending":
            continue
        module = st.target.split(":")[0]
        try:
            importlib.import_module(module)
        except Exception as exc:  # e.g. unsloth_zoo refusing to start without a GPU
            logging.getLogger("unsloth_multiimage").info("doctor: cannot import %s: %s", module, exc)


def doctor_report(import_targets: bool = True) -> str:
    """The text ``unsloth-multiimage doctor`` prints: versions, plugins, patch decisions."""
    from .._version import __version__

    if import_targets:
        _import_targets()
    out = [f"unsloth-multiimage {__version__}", ""]
    versions = [("python", platform.python_version())]
    versions += [(d, compat.installed_version(d) or "not installed") for d in _DISTRIBUTIONS]
    out += [_table(versions, ("package", "version")), ""]
    plugins = [
        (r.name, r.distribution or "-", "blocked" if r.blocked else ("loaded" if r.loaded else "FAILED"), r.value)
        for r in activation.plugin_records()
    ]
    out += ["Plugins (entry-point group 'unsloth_multiimage')", _table(plugins, ("plugin", "from", "state", "object")), ""]
    patches = [
        (s.name, s.installed_version or "-", s.decision, "yes" if s.applied else "no", s.reason)
        for s in activation.status()
    ]
    out += ["Patches", _table(patches, ("patch", "version", "decision", "applied", "why"))]
    if activation.is_disabled():
        out += ["", f"The plugin is disabled ({_env.DISABLE.name}=1)."]
    return "\n".join(out)


def _doctor(args: argparse.Namespace) -> int:
    print(doctor_report(import_targets=not args.no_import))
    if args.dataset:
        from .dataset_check import check_dataset_file

        report, ok = check_dataset_file(args.dataset, limit=args.rows)
        print()
        print(report)
        return 0 if ok else 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unsloth-multiimage", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the plugin does")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="versions, plugins and the decision of every patch")
    p.add_argument("--no-import", action="store_true", help="do not import the patched libraries")
    p.add_argument("--dataset", help="dry-run the first rows of a JSON/JSONL dataset through the row checks")
    p.add_argument("--rows", type=int, default=20, help="rows to check with --dataset (default 20)")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("demo", help="fine-tune the embedded tiny Llama-3.2-Vision-shaped model on multi-image data")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--strategy", choices=("native", "grid"), default="native")
    p.add_argument("--model", help="path of local Mllama weights (a GPU user's checkpoint) instead of the tiny model")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: _lazy("demo", a))

    p = sub.add_parser("preview", help="write a PNG of what the model sees for one row")
    p.add_argument("--dataset", help="JSON/JSONL file (default: the demo data)")
    p.add_argument("--row", type=int, default=0)
    p.add_argument("--out", default="preview.png")
    p.add_argument("--strategy", choices=("native", "grid"), default="native")
    p.add_argument("--model", help="folder of a local Mllama checkpoint whose processor renders the row")
    p.set_defaults(func=lambda a: _lazy("preview", a))

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return int(args.func(args) or 0)


def _lazy(name: str, args: argparse.Namespace) -> int:
    module = importlib.import_module(f"unsloth_multiimage.tools.{name}")
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
