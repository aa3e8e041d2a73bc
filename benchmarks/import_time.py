"""Cost of ``import unsloth_multiimage`` in a fresh interpreter.

    python benchmarks/import_time.py [--python /path/to/python] [--runs 20]

Reports the median over ``--runs`` fresh interpreters of (a) ``-X importtime``'s cumulative
time for ``unsloth_multiimage`` and (b) wall time of ``python -c "import unsloth_multiimage"``
minus wall time of ``python -c pass``; lists the modules with the largest self time under the
import; checks that torch / transformers / PIL are not imported; and prints the top of a
cProfile of the import.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _importtime(python: str) -> tuple[float, dict[str, float]]:
    proc = subprocess.run([python, "-X", "importtime", "-c", "import unsloth_multiimage"],
                          capture_output=True, text=True, env=_env(), check=True)
    total, selfs = None, {}
    for line in proc.stderr.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        self_us, cum_us, name = int(m.group(1)), int(m.group(2)), m.group(4)
        selfs[name] = self_us / 1e3
        if name == "unsloth_multiimage":
            total = cum_us / 1e3
    assert total is not None, proc.stderr[-2000:]
    return total, selfs


def _wall(python: str, code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", code], env=_env(), check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    py = args.python

    info = subprocess.run(
        [py, "-c", "import platform, importlib.metadata as m, unsloth_multiimage as u; "
                   "print(platform.python_version(), u.__version__, m.version('wrapt'), m.version('pluggy'))"],
        capture_output=True, text=True, env=_env(), check=True).stdout.split()
    print(f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} CPU(s); python {info[0]} ({py}); "
          f"unsloth_multiimage {info[1]}; wrapt {info[2]}; pluggy {info[3]}")
    try:
        print(f"load average at start: {os.getloadavg()}")
    except OSError:
        pass

    cums, selfs_all = [], defaultdict(list)
    for _ in range(args.runs):
        total, selfs = _importtime(py)
        cums.append(total)
        for k, v in selfs.items():
            selfs_all[k].append(v)
    base = [_wall(py, "pass") for _ in range(args.runs)]
    imp = [_wall(py, "import unsloth_multiimage") for _ in range(args.runs)]
    print(f"-X importtime cumulative (unsloth_multiimage): median {statistics.median(cums):.1f} ms "
          f"(min {min(cums):.1f}, max {max(cums):.1f}) over {args.runs} runs")
    print(f"wall: python -c pass {statistics.median(base) * 1e3:.1f} ms; with the import "
          f"{statistics.median(imp) * 1e3:.1f} ms; difference {(statistics.median(imp) - statistics.median(base)) * 1e3:.1f} ms")
    # Modules imported under unsloth_multiimage (those not imported by `python -c pass`).
    _, base_selfs = subprocess.run([py, "-X", "importtime", "-c", "pass"], capture_output=True, text=True), None
    base_names = {m.group(4) for m in map(_LINE.match, _.stderr.splitlines()) if m}
    top = sorted(((statistics.median(v), k) for k, v in selfs_all.items() if k not in base_names), reverse=True)[:15]
    print("largest self times (median ms) of the modules the import brings in:")
    for ms, name in top:
        print(f"  {ms:7.2f}  {name}")
    heavy = subprocess.run(
        [py, "-c", "import sys, unsloth_multiimage; print(sorted(m for m in ('torch','transformers','PIL','numpy',"
                   "'unsloth_zoo','unsloth') if m in sys.modules)); print(len(sys.modules))"],
        capture_output=True, text=True, env=_env(), check=True).stdout.splitlines()
    print(f"heavy modules imported by `import unsloth_multiimage`: {heavy[0]} ({heavy[1]} modules in sys.modules)")
    prof = subprocess.run(
        [py, "-c", "import cProfile, pstats; p = cProfile.Profile(); p.enable(); import unsloth_multiimage; "
                   "p.disable(); pstats.Stats(p).sort_stats('cumulative').print_stats(18)"],
        capture_output=True, text=True, env=_env(), check=True).stdout
    lines = [ln for ln in prof.splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
    print("cProfile of the import (cumulative, top 18):")
    print("\n".join(lines[start:]))


if __name__ == "__main__":
    main()
