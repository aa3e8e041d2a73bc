"""``doctor --dataset FILE --all --max-seq-length N``: the token report's rows per second.

    python benchmarks/token_count.py [--rows 100000] [--num-proc 2] [--images 2000] [--max-seq-length 40]
    python benchmarks/token_count.py --whole-command   # the CLI end to end: imports, dataset check, tokens

Writes the same dataset as ``dataset_check.py`` (``--rows`` rows of the demo layout, image paths
in the ``images`` column or in the message content, multi-turn and text-only rows, ``--images``
distinct PNG files), then counts every row's tokens with the tiny Llama-3.2-Vision processor
(Mllama: image tokens exact from the image headers, nothing decoded; the chat rendered and
tokenized by the processor's own template and tokenizer), and prints the time, rows/s, the
percentiles and how many rows ``--max-seq-length`` cuts. Goal: 100,000 rows in under 2 minutes on
2 cores. ``--whole-command`` times what a user runs instead: ``unsloth-multiimage doctor --dataset
FILE --all --max-seq-length N`` in a fresh interpreter (imports, the dataset check's pass, then the
token report's), against the same goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--max-seq-length", type=int, default=40)
    parser.add_argument("--whole-command", action="store_true", help="time the CLI command end to end")
    args = parser.parse_args()

    from dataset_check import write_dataset

    from unsloth_multiimage.tools.doctor import check_tokens

    print(
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; {platform.platform()}; {os.cpu_count()} CPU(s); "
        f"python {platform.python_version()}"
    )
    try:
        print(f"load average at start: {os.getloadavg()}")
    except OSError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_dataset(Path(tmp), args.rows, args.images)
        print(f"wrote {args.rows} rows ({args.images} image files) in {time.perf_counter() - t0:.1f} s")
        if args.whole_command:
            return _whole_command(path, args)
        t0 = time.perf_counter()
        check = check_tokens(str(path), args.max_seq_length, limit=None, num_proc=args.num_proc)
        wall = time.perf_counter() - t0
    r = check.report
    errors = sum(t.error is not None for t in r.rows)
    print(
        f"doctor --all --max-seq-length {args.max_seq_length} --num-proc {args.num_proc} (token report): "
        f"{len(r.rows)} rows in {wall:.1f} s wall ({len(r.rows) / wall:,.0f} rows/s; {check.seconds:.1f} s counting); "
        f"p50 {r.p50}, p95 {r.p95}, max {r.p100}; {len(r.cut)} rows cut, {len(r.truncated)} text-cut, {errors} errors"
    )
    scaled = wall * 100_000 / max(1, len(r.rows))
    print(f"goal: 100,000 rows in under 120 s: {'met' if scaled < 120 else 'NOT met'} (scaled: {scaled:.0f} s)")


def _whole_command(path: Path, args: argparse.Namespace) -> None:
    """Run and time ``unsloth-multiimage doctor --dataset PATH --all --max-seq-length N`` as a user would."""
    command = [sys.executable, "-m", "unsloth_multiimage", "doctor", "--dataset", str(path), "--all"]
    command += ["--num-proc", str(args.num_proc), "--max-seq-length", str(args.max_seq_length)]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    tail = [line for line in done.stdout.splitlines() if line.strip()][-3:]
    print(f"$ unsloth-multiimage {' '.join(command[3:])}: exit {done.returncode}, {wall:.1f} s wall")
    print("\n".join(f"  | {line}" for line in tail))
    if done.returncode not in (0, 1):  # 1: the report found rows to fix, which is not a failure here
        print(done.stderr[-2000:])
    scaled = wall * 100_000 / max(1, args.rows)
    print(f"goal: 100,000 rows in under 120 s: {'met' if scaled < 120 else 'NOT met'} (scaled: {scaled:.0f} s)")


if __name__ == "__main__":
    main()
