"""``doctor --dataset FILE --all``: rows per second over a large dataset of image paths.

    python benchmarks/dataset_check.py [--rows 100000] [--num-proc 2] [--images 2000]
    python benchmarks/dataset_check.py --break-even 2000,10000,30000   # 1 process vs --num-proc, per size

Writes a JSON Lines file of ``--rows`` rows in the demo layout (2-3 images per row as paths in
the ``images`` column or in the message content, multi-turn rows, text-only rows), the images
being ``--images`` distinct PNG files on disk, then runs the check every row gets from
``doctor --all`` (image headers read, chat rendered by the tiny Llama-3.2-Vision processor's
template, placeholders counted, the release's verdict) and prints the time and rows/s.
Goal: 100,000 rows in under 2 minutes on 2 cores.

``--break-even N,N,...`` times the check of the first N rows on one process and on ``--num-proc``
workers (forced, below ``formats.source.MIN_ROWS_FOR_WORKERS`` too), for each N: where the
workers start paying off, which sets that threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_dataset(folder: Path, n_rows: int, n_images: int, seed: int = 0) -> Path:
    from unsloth_multiimage.demo import demo_data

    rng = random.Random(seed)
    image_dir = folder / "img"
    image_dir.mkdir()
    names = []
    for k in range(n_images):
        name = f"img/{k:05d}.png"
        demo_data.make_image(rng.randint(0, 5), rng).save(folder / name)
        names.append(name)
    templates = demo_data.make_rows(n=16, seed=seed)
    path = folder / "rows.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n_rows):
            row = json.loads(json.dumps(templates[i % len(templates)], default=lambda _img: "x"))
            for message in row["messages"]:
                for part in message["content"]:
                    if part.get("image") == "x":
                        part["image"] = rng.choice(names)
            if row.get("images"):
                row["images"] = [rng.choice(names) for _ in row["images"]]
            fh.write(json.dumps(row) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--break-even", help="comma-separated row counts: 1 process vs --num-proc at each")
    args = parser.parse_args()
    if args.break_even:
        break_even([int(n) for n in args.break_even.split(",")], args.images, args.num_proc)
        return

    from unsloth_multiimage.tools.doctor import check_dataset

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
        t0 = time.perf_counter()
        check = check_dataset(str(path), limit=None, decode=False, num_proc=args.num_proc)
        wall = time.perf_counter() - t0
    counts = {v: sum(r.verdict == v for r in check.reports) for v in ("ok", "fixed", "error")}
    print(
        f"doctor --all --num-proc {args.num_proc}: {len(check.reports)} rows in {wall:.1f} s wall "
        f"({len(check.reports) / wall:,.0f} rows/s; {check.seconds:.1f} s in the check loop); verdicts {counts}"
    )
    print(
        f"goal: 100,000 rows in under 120 s: {'met' if wall * 100_000 / len(check.reports) < 120 else 'NOT met'} "
        f"(scaled to 100,000 rows: {wall * 100_000 / len(check.reports):.0f} s)"
    )


def break_even(sizes: list[int], n_images: int, num_proc: int) -> None:
    """The check on 1 process and on ``num_proc`` workers, for the first N rows of one file."""
    from unsloth_multiimage.formats import source
    from unsloth_multiimage.tools.doctor import check_dataset

    source.MIN_ROWS_FOR_WORKERS = 0  # force the workers, whatever the size
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_dataset(Path(tmp), max(sizes), n_images)
        check_dataset(str(path), limit=10, decode=False)  # imports and the processor, paid once, not timed
        for n in sizes:
            times = {}
            for procs in (1, num_proc):
                t0 = time.perf_counter()
                check_dataset(str(path), limit=n, decode=False, num_proc=procs)
                times[procs] = time.perf_counter() - t0
            print(
                f"{n:>7} rows: 1 process {times[1]:.1f} s, {num_proc} processes {times[num_proc]:.1f} s "
                f"({'workers faster' if times[num_proc] < times[1] else 'one process faster'})"
            )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
