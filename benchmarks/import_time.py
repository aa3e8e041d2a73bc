"""Cost of ``import unsloth_multiimage`` (the activation included) in fresh interpreters.

    python benchmarks/import_time.py [--python /path/to/python] [--runs 30]

Every number is a median over ``--runs`` new interpreters (``python -c ...``), run interleaved
with their baselines so that machine noise hits both alike:

1. wall time of ``import unsloth_multiimage`` minus ``pass`` (target: under 150 ms), and
   ``-X importtime``'s cumulative figure for the package; how many modules it brings in, and that
   none of torch, transformers, PIL and numpy is among them;
2. the same with ``UNSLOTH_MULTIIMAGE_DISABLE=1`` (nothing but the package itself);
3. where transformers is installed: ``import transformers`` with the plugin imported first vs
   disabled, and ``import unsloth_multiimage`` after transformers (activation at once);
4. what a script pays for the plugin: ``import unsloth_multiimage`` then transformers' Mllama
   processor module (patched on import), and ``import unsloth_multiimage`` alone. Run with
   ``--checkout PATH`` on another checkout to compare bootstraps (the activation deferred to the
   first patched import by a trigger finder, up to 3c9f415, against activating at import).

Byte-code is compiled first (``compileall``), as ``pip install`` does: with
``PYTHONDONTWRITEBYTECODE=1`` and an editable install every run would recompile the package.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout measured (--checkout replaces it)
_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def _set_root(path: Path) -> None:
    global ROOT
    ROOT = path.resolve()


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSLOTH_MULTIIMAGE_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _wall(python: str, code: str, **env: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", code], env=_env(**env), check=True)
    return time.perf_counter() - t0


def _inner(python: str, code: str, **env: str) -> dict:
    out = subprocess.run([python, "-c", code], env=_env(**env), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _importtime(python: str) -> float:
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", "import unsloth_multiimage"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    for line in proc.stderr.splitlines():
        m = _LINE.match(line)
        if m and m.group(4) == "unsloth_multiimage":
            return int(m.group(2)) / 1e3
    raise AssertionError(proc.stderr[-2000:])


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.1f} ms (min {min(values) * 1e3:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--section4-only", action="store_true", help="run section 4 alone")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose package is measured")
    args = parser.parse_args()
    py, runs = args.python, args.runs
    _set_root(args.checkout)
    compileall.compile_dir(str(ROOT / "unsloth_multiimage"), quiet=1)
    if args.section4_only:
        print(f"checkout {ROOT}; load average at start: {tuple(round(x, 2) for x in os.getloadavg())}")
        _script_cost(py, runs)
        return

    info = _inner(
        py,
        "import json, platform, importlib.metadata as m, unsloth_multiimage as u\n"
        "def v(d):\n"
        "    try: return m.version(d)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(json.dumps([platform.python_version(), u.__version__, v('wrapt'), v('pluggy'), v('transformers')]))",
    )
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} CPU(s); python {info[0]}; "
        f"unsloth_multiimage {info[1]}; wrapt {info[2]}; pluggy {info[3]}; transformers {info[4]}"
    )
    print(f"load average at start: {tuple(round(x, 2) for x in os.getloadavg())}")

    base, imp = [], []
    for _ in range(runs):
        base.append(_wall(py, "pass"))
        imp.append(_wall(py, "import unsloth_multiimage"))
    diff = [i - b for i, b in zip(imp, base)]
    print("\n1. import unsloth_multiimage in a fresh interpreter, the activation included (target < 150 ms)")
    print(f"   python -c pass                       {_ms(base)}")
    print(f"   python -c 'import unsloth_multiimage' {_ms(imp)}")
    print(f"   difference, paired per run           {_ms(diff)}")
    cum = [_importtime(py) for _ in range(runs)]
    print(f"   -X importtime cumulative             {statistics.median(cum):7.1f} ms (min {min(cum):.1f})")
    new = _inner(
        py,
        "import json, sys; before = set(sys.modules); import unsloth_multiimage as u\n"
        "heavy = [m for m in ('torch', 'transformers', 'PIL', 'numpy') if m in sys.modules]\n"
        "print(json.dumps([len(set(sys.modules) - before), heavy]))",
    )
    print(f"   it imports {new[0]} modules; torch, transformers, PIL or numpy among them: {new[1] or 'none'}")

    off = [_wall(py, "import unsloth_multiimage", UNSLOTH_MULTIIMAGE_DISABLE="1") for _ in range(runs)]
    print("\n2. the same with UNSLOTH_MULTIIMAGE_DISABLE=1 (the package itself, no activation)")
    print(f"   difference to python -c pass, paired {_ms([o - b for o, b in zip(off, base)])}")

    if info[4] is None:
        print("\n3. transformers is not installed in this interpreter: skipped")
        return
    code = (
        "import json, time; t = time.perf_counter(); import unsloth_multiimage, transformers\n"
        "from transformers.models.mllama import processing_mllama\n"
        "print(json.dumps(time.perf_counter() - t))"
    )
    on, off = [], []
    for _ in range(max(5, runs // 3)):
        on.append(_inner(py, code))
        off.append(_inner(py, code, UNSLOTH_MULTIIMAGE_DISABLE="1"))
    print("\n3. with transformers (import unsloth_multiimage, transformers, then the Mllama processor module)")
    print(f"   plugin disabled                      {_ms(off)}")
    print(f"   plugin active (activation included)  {_ms(on)}")
    print(f"   difference, paired per run           {_ms([a - b for a, b in zip(on, off)])}")
    after = [
        _inner(
            py,
            "import json, time, transformers; t = time.perf_counter(); import unsloth_multiimage\n"
            "print(json.dumps(time.perf_counter() - t))",
        )
        for _ in range(max(5, runs // 3))
    ]
    print(f"   import unsloth_multiimage after transformers (activates at once) {_ms(after)}")
    _script_cost(py, runs)


def _script_cost(py: str, runs: int) -> None:
    """Section 4: a script importing the plugin then a patched library, and one importing it alone."""
    script = (
        "import json, time; t = time.perf_counter(); import unsloth_multiimage\n"
        "import transformers\nfrom transformers.models.mllama import processing_mllama\n"
        "assert hasattr(processing_mllama.MllamaProcessor.__call__, '__wrapped__')\n"
        "print(json.dumps(time.perf_counter() - t))"
    )
    patched, base, alone = [], [], []
    for _ in range(max(5, runs // 3)):
        patched.append(_inner(py, script))
        base.append(_wall(py, "pass"))
        alone.append(_wall(py, "import unsloth_multiimage"))
    print("\n4. what a script pays")
    print(f"   import unsloth_multiimage, then the Mllama processor module (patched)  {_ms(patched)}")
    print(
        f"   import unsloth_multiimage alone, minus python -c pass, paired          {_ms([a - b for a, b in zip(alone, base)])}"
    )


if __name__ == "__main__":
    main()
