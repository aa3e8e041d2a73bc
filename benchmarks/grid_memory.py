"""pixel_values per batch: every image to the model (``native``) vs one composed canvas (``grid``).

Runs the package's own policy code (:func:`unsloth_multiimage.rows.policy.apply_policies`) and a real
``MllamaProcessor`` with the checkpoint's image geometry (560 px tiles, at most 4 tiles per image;
the tiny tokenizer of :mod:`unsloth_multiimage.tiny_mllama`, which does not change the image
tensors). No model, no GPU, no network.

    python benchmarks/grid_memory.py [--rows 8] [--counts 2 4 8] [--sizes 560 1120]

Mllama pads ``pixel_values`` to ``(batch, most images in a row, max_image_tiles, 3, 560, 560)``,
so its size is set by the row with the most images, whatever an image's own tile count; the
vision tower encodes every one of those tiles. The bytes are the processor's float32 output
(half that once cast to bf16 for the model).
"""

from __future__ import annotations

import argparse
import time

from PIL import Image

from unsloth_multiimage import tiny_mllama
from unsloth_multiimage.rows.plan import plan_row
from unsloth_multiimage.rows.policy import apply_policies
from unsloth_multiimage.settings import Settings

TILE = 560


def make_rows(n_rows: int, n_images: int, side: int) -> list[dict]:
    rows = []
    for r in range(n_rows):
        images = [Image.new("RGB", (side, side), ((37 * r) % 256, (53 * k) % 256, 200)) for k in range(n_images)]
        rows.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [*({"type": "image"} for _ in images), {"type": "text", "text": "compare"}],
                    },
                    {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
                ],
                "images": images,
            }
        )
    return rows


def measure(processor, rows: list[dict], strategy: str) -> dict:
    plans = [plan_row(e, i) for i, e in enumerate(rows)]
    t0 = time.perf_counter()
    examples, plans = apply_policies(rows, plans, Settings(strategy=strategy))
    t_policy = time.perf_counter() - t0
    texts = [processor.apply_chat_template(e["messages"], tokenize=False) for e in examples]
    t0 = time.perf_counter()
    batch = processor(text=texts, images=[list(p.images) for p in plans], return_tensors="pt")
    t_proc = time.perf_counter() - t0
    pv = batch["pixel_values"]
    real_tiles = int(batch["aspect_ratio_mask"].sum())
    return {
        "shape": tuple(pv.shape),
        "bytes": pv.element_size() * pv.nelement(),
        "tiles": pv.shape[0] * pv.shape[1] * pv.shape[2],
        "real_tiles": real_tiles,
        "canvas": plans[0].images[0].size,
        "policy_s": t_policy,
        "processor_s": t_proc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--sizes", type=int, nargs="+", default=[560, 1120])
    args = parser.parse_args()

    processor = tiny_mllama.build_processor(tile_size=TILE, max_image_tiles=4)
    print(f"MllamaProcessor: tile {TILE}px, max_image_tiles 4; batch of {args.rows} rows; float32 pixel_values")
    header = f"{'image':>9} {'n/row':>5} {'strategy':>8} {'pixel_values shape':>30} {'MiB':>8} {'tiles':>6} {'real':>5} {'canvas':>11} {'policy s':>8} {'proc s':>7}"
    print(header)
    print("-" * len(header))
    for side in args.sizes:
        for n in args.counts:
            rows = make_rows(args.rows, n, side)
            results = {s: measure(processor, rows, s) for s in ("native", "grid")}
            for strategy, res in results.items():
                canvas = "x".join(map(str, res["canvas"])) if strategy == "grid" else "-"
                print(
                    f"{side:>4}x{side:<4} {n:>5} {strategy:>8} {str(res['shape']):>30} {res['bytes'] / 2**20:>8.1f} "
                    f"{res['tiles']:>6} {res['real_tiles']:>5} {canvas:>11} {res['policy_s']:>8.2f} {res['processor_s']:>7.2f}"
                )
            ratio = results["native"]["bytes"] / results["grid"]["bytes"]
            print(f"{'':>9} {'':>5} {'':>8} {'native / grid':>30} {ratio:>8.1f}x")


if __name__ == "__main__":
    main()
