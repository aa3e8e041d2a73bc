"""``unsloth-multiimage demo --compare`` in full, on several seeds: the accuracy goals and the time.

Runs the exact user command once per seed and layout, in a fresh interpreter (so the wall time
includes the imports), parses its table and prints one table for all runs:

    python benchmarks/compare_fusion.py                            # seeds 0 1 2, layout cross-last
    python benchmarks/compare_fusion.py --layouts cross-last checkpoint   # + the ablation
    python benchmarks/compare_fusion.py --seeds 0 --json out.json

Goals (on the default layout, cross-last; CPU, 2 cores): every_image >= first_image + 25 points;
every_image_cumulative >= every_image on the later-turn rows; the whole command under 5 minutes.
The ``serial`` arm (one user turn per image, cumulative mask) is reported, with no goal.
The ``checkpoint`` layout (a self-attention layer after the cross-attention layer, the real
checkpoints' pattern) is an ablation: its goals are printed, not enforced. Exit code 0 when every
default-layout run meets the goals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# arm, accuracy, generated (exact match by generation), same-turn, later-turn
ROW = re.compile(
    r"^(first_image|grid|every_image|every_image_cumulative|serial)\s+([\d.]+)%\s+([\d.]+|-)%?\s+([\d.]+|-)%?\s+"
    r"([\d.]+|-)%?\s",
    re.M,
)
SUMMARY = re.compile(r"^compare: .*\(chance ([\d.]+)%, (\d+) held-out rows\)$", re.M)
GOAL_GAP, GOAL_SECONDS = 25.0, 300.0


def run(seed: int, layout: str, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "unsloth_multiimage",
        "demo",
        "--compare",
        "--seed",
        str(seed),
        "--layout",
        layout,
        *extra,
    ]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=env)
    wall = time.perf_counter() - t0
    arms = {
        m.group(1): {
            "acc": float(m.group(2)),
            "generated": _num(m.group(3)),
            "same": _num(m.group(4)),
            "later": _num(m.group(5)),
        }
        for m in ROW.finditer(proc.stdout)
    }
    summary = SUMMARY.search(proc.stdout)
    collator = next(
        (line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.strip().startswith("collator")), "?"
    )
    return {
        "seed": seed,
        "layout": layout,
        "wall_s": wall,
        "rc": proc.returncode,
        "arms": arms,
        "collator": collator,
        "chance": float(summary.group(1)) if summary else None,
        "held_out": int(summary.group(2)) if summary else None,
        "last_line": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "",
        "command": " ".join(cmd[1:]),
        "stderr_tail": proc.stderr[-2000:] if proc.returncode else "",
    }


def _num(text: str) -> float | None:
    return None if text == "-" else float(text)


def goals(r: dict) -> tuple[float | None, float | None, bool]:
    a = r["arms"]
    gap = a["every_image"]["acc"] - a["first_image"]["acc"] if {"every_image", "first_image"} <= set(a) else None
    later = (
        a["every_image_cumulative"]["later"] - a["every_image"]["later"]
        if {"every_image", "every_image_cumulative"} <= set(a) and a["every_image"]["later"] is not None
        else None
    )
    met = (
        r["rc"] == 0
        and gap is not None
        and gap >= GOAL_GAP
        and later is not None
        and later >= 0
        and r["wall_s"] < GOAL_SECONDS
    )
    return gap, later, met


def _run_all(layouts: list[str], seeds: list[int], extra: list[str]) -> list[dict[str, Any]]:
    """Every (layout, seed) run, each said as it ends."""
    runs = []
    for layout in layouts:
        for seed in seeds:
            r = run(seed, layout, extra)
            runs.append(r)
            print(f"  {layout} seed {seed}: {r['wall_s']:.1f} s, exit {r['rc']}: {r['last_line']}", flush=True)
            if r["rc"]:
                print(r["stderr_tail"])
    return runs


def _table_row(r: dict[str, Any]) -> tuple[tuple[str, ...], bool]:
    """One run's row of the results table, and whether it met the goals."""
    a = r["arms"]
    gap, later, met = goals(r)

    def cell(arm: str, with_later: bool = False) -> str:
        if arm not in a:
            return "-"
        return f"{a[arm]['acc']:.1f}" + (
            f" ({a[arm]['later']:.1f})" if with_later and a[arm]["later"] is not None else ""
        )

    row = (
        r["layout"],
        str(r["seed"]),
        cell("first_image"),
        cell("grid"),
        cell("every_image", True),
        cell("every_image_cumulative", True),
        cell("serial", True),
        "-" if gap is None else f"{gap:+.1f}",
        "-" if later is None else f"{later:+.1f}",
        f"{r['wall_s']:.0f}",
        ("met" if met else "MISSED") + ("" if r["layout"] == "cross-last" else " (ablation)"),
    )
    return row, met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layouts", nargs="+", default=["cross-last"], choices=["cross-last", "checkpoint"])
    parser.add_argument("--json", help="write every run's numbers here")
    parser.add_argument("extra", nargs="*", help="more arguments for `demo --compare` (after --)")
    args = parser.parse_args(argv)
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.platform()}; {os.cpu_count()} CPU(s); "
        f"python {platform.python_version()}; load average at start {load}"
    )
    runs = _run_all(args.layouts, args.seeds, args.extra)
    print()
    print(f"collator: {runs[0]['collator'] if runs else '?'}")
    header = (
        "layout",
        "seed",
        "first_image",
        "grid",
        "every_image (later-turn)",
        "cumulative (later-turn)",
        "serial (later-turn)",
        "every - first",
        "cum - every, later-turn",
        "wall s",
        "goals",
    )
    rows = []
    ok = True
    for r in runs:
        row, met = _table_row(r)
        if r["layout"] == "cross-last":
            ok &= met
        rows.append(row)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if runs and runs[0]["chance"] is not None:
        print(
            f"\naccuracy in % on {runs[0]['held_out']} held-out rows; chance {runs[0]['chance']:.1f}%; goals: every_image "
            f">= first_image + {GOAL_GAP:.0f}, cumulative >= every_image on later-turn rows, wall < {GOAL_SECONDS:.0f} s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
