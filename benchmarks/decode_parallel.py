"""Decoding a batch's image files on a thread pool: the REAL collator, patched vs unpatched.

    python benchmarks/decode_parallel.py [--repeats 9] [--threads N]

8 rows x 4 JPEG files of 1120 x 840 pixels (photo-like: smooth colour fields plus grain), given as
paths in the ``images`` column, through the REAL ``UnslothVisionDataCollator`` of the installed
unsloth_zoo (2026.10.9 decodes path entries itself, serially) and the tiny offline
Llama-3.2-Vision processor with real-size tiles (560 px, 4 tiles). Unpatched: upstream loads,
resizes and processes. Patched: the plugin loads every file on its thread pool
(``decode_threads``), then upstream resizes and processes what it is handed. Patched and
unpatched calls alternate, so machine noise falls on both. Both batches are checked equal.
Goal: patched / unpatched <= 0.7 (median).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("UNSLOTH_ZOO_DISABLE_GPU_INIT", "1")

from _timing import alternating  # noqa: E402

import unsloth_multiimage  # noqa: E402


def photo(seed: int, size: tuple[int, int] = (1120, 840)):
    """A photo-like RGB image: smooth random colour fields with fine grain (JPEG-realistic)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (size[1] // 40 + 1, size[0] // 40 + 1, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(low).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, field.shape, dtype=np.int16)
    return Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8))


def rows(folder: Path, n_rows: int = 8, n_images: int = 4) -> list[dict]:
    out = []
    for r in range(n_rows):
        paths = []
        for k in range(n_images):
            path = folder / f"r{r}_i{k}.jpg"
            photo(r * 100 + k).save(path, format="JPEG", quality=90)
            paths.append(str(path))
        out.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [*({"type": "image"} for _ in paths), {"type": "text", "text": "compare them ."}],
                    },
                    {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
                ],
                "images": paths,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="decode_threads (default: the setting's default)")
    args = parser.parse_args()

    import importlib.metadata as md

    import torch
    import transformers

    from tests.support.zoo import load_vision_utils
    from unsloth_multiimage import tiny_mllama

    vision_utils, how = load_vision_utils()
    if args.threads is not None:
        unsloth_multiimage.configure(decode_threads=args.threads)
    threads = unsloth_multiimage.get_settings().decode_threads
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; {platform.platform()}; {os.cpu_count()} CPU(s); "
        f"python {platform.python_version()}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"unsloth_zoo {md.version('unsloth_zoo')} ({how} import); decode_threads {threads}"
    )
    try:
        print(f"load average at start: {os.getloadavg()}")
    except OSError:
        pass
    processor = tiny_mllama.build_processor(tile_size=560, max_image_tiles=4)
    collator = vision_utils.UnslothVisionDataCollator(tiny_mllama.build_model(processor), processor)
    with tempfile.TemporaryDirectory() as tmp:
        batch_rows = rows(Path(tmp))
        unsloth_multiimage.deactivate()
        reference = collator(batch_rows)  # warm-up, and the batch both must build
        unsloth_multiimage.activate()
        patched = collator(batch_rows)
        for key in reference:
            assert torch.equal(reference[key], patched[key]), f"patched and unpatched batches differ in {key}"
        t_off, t_on, _ = alternating(collator, batch_rows, repeats=args.repeats)
    off, on = statistics.median(t_off), statistics.median(t_on)
    print(f"8 rows x 4 JPEG paths of 1120x840, {args.repeats} alternating calls each (ms, median / min):")
    print(f"  unpatched {off * 1e3:8.1f} / {min(t_off) * 1e3:8.1f}")
    print(f"  patched   {on * 1e3:8.1f} / {min(t_on) * 1e3:8.1f}")
    print(f"  ratio patched/unpatched: median {on / off:.3f}, min {min(t_on) / min(t_off):.3f} (goal <= 0.7)")


if __name__ == "__main__":
    main()
