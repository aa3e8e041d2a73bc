"""Throughput of the REAL UnslothVisionDataCollator, patched vs unpatched.

Run with an interpreter that has unsloth_zoo (the newest release: upstream then handles every
image itself, so patched and unpatched build the same batch and the ratio is the pure cost of
the plugin):

    /work/scratch/envs/rows/h/bin/python benchmarks/collator_throughput.py

Cases: 8 rows x {1, 2, 4} images of {560, 1120} px, the tiny offline processor with real-size
tiles (tile_size=560, max_image_tiles=4), so the image work is what Llama-3.2-Vision's
processor does. Patched and unpatched calls are interleaved (``deactivate()`` /
``activate()`` between them) to spread machine noise over both. Also reports, from cProfile,
the time spent in unsloth_multiimage's own code per patched call, which does not depend on
the noise of the image work.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("UNSLOTH_ZOO_DISABLE_GPU_INIT", "1")

from _timing import alternating  # noqa: E402

import unsloth_multiimage  # noqa: E402


def _rows(n_images: int, px: int, seed: int) -> list[dict]:
    from unsloth_multiimage.demo.demo_data import QUESTION, make_image

    rng = random.Random(seed)
    rows = []
    for _ in range(8):
        images = [make_image(rng.randint(0, 5), rng, size=px) for _ in range(n_images)]
        rows.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [*({"type": "image"} for _ in images), {"type": "text", "text": QUESTION}],
                    },
                    {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
                ],
                "images": images,
            }
        )
    return rows


def _plugin_seconds(collator, rows, calls: int) -> float:
    """Seconds per call that the patches add, from cProfile: (collator wrapper - upstream
    collator) + (processor proxy - upstream MllamaProcessor.__call__), cumulative times."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        collator(rows)
    prof.disable()
    cum: dict[tuple[str, str], float] = {}
    for (filename, _line, func), v in pstats.Stats(prof).stats.items():
        key = ("/".join(filename.replace(os.sep, "/").split("/")[-2:]), func)
        cum[key] = cum.get(key, 0.0) + v[3]
    wrapper = cum[("patches/unsloth_collator.py", "wrapper")]
    upstream = cum[("unsloth_zoo/vision_utils.py", "__call__")]
    proxy = cum[("patches/zoo_proxy.py", "__call__")]
    processor = cum[("mllama/processing_mllama.py", "__call__")]
    return ((wrapper - upstream) + (proxy - processor)) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[560, 1120])
    parser.add_argument("--images", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    import torch
    import transformers

    from tests.support.zoo import load_vision_utils
    from unsloth_multiimage import tiny_mllama

    vision_utils, how = load_vision_utils()
    import importlib.metadata as md

    print(
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; {platform.platform()}; {os.cpu_count()} CPU(s); "
        f"python {platform.python_version()}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"unsloth_zoo {md.version('unsloth_zoo')} ({how} import); unsloth_multiimage {unsloth_multiimage.__version__}"
    )
    try:
        print(f"load average at start: {os.getloadavg()}")
    except OSError:
        pass
    processor = tiny_mllama.build_processor(tile_size=560, max_image_tiles=4)
    model = tiny_mllama.build_model(processor)
    collator = vision_utils.UnslothVisionDataCollator(model, processor)
    print("median / min wall time per collator call (ms) over the repeats; ratio = patched / unpatched;")
    print("added = time the patches add per call, from cProfile (wrapper minus upstream, see _plugin_seconds)")
    print(
        f"{'case':<22}{'unpatched':>16}{'patched':>16}{'ratio med':>10}{'ratio min':>10}{'added ms':>10}{'added %':>9}"
    )
    for px in args.sizes:
        for n in args.images:
            rows = _rows(n, px, seed=n * 10_000 + px)
            unsloth_multiimage.activate()
            collator(rows)  # warm-up, patched
            unsloth_multiimage.deactivate()
            collator(rows)  # warm-up, unpatched
            t_off, t_on, batch = alternating(collator, rows, repeats=args.repeats)
            assert int((batch["aspect_ratio_ids"] > 0).sum()) == 8 * n, "patched batch lost images"
            own = _plugin_seconds(collator, rows, calls=2)
            off, on = statistics.median(t_off), statistics.median(t_on)
            off_min, on_min = min(t_off), min(t_on)
            print(
                f"{f'8 rows x {n} img @{px}px':<22}{f'{off * 1e3:.1f} / {off_min * 1e3:.1f}':>16}"
                f"{f'{on * 1e3:.1f} / {on_min * 1e3:.1f}':>16}{on / off:>10.3f}{on_min / off_min:>10.3f}"
                f"{own * 1e3:>10.2f}{own / off_min * 100:>8.2f}%"
            )
            del batch
    unsloth_multiimage.activate()


if __name__ == "__main__":
    main()
