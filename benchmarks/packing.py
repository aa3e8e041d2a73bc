"""Packing vs padding: training steps on a realistic multi-image length mix, through the REAL collator.

Run with an interpreter that has unsloth_zoo and the test dependencies (the default nox session's):

    .nox/tests/bin/python benchmarks/packing.py

The rows (seeded): LLaVA-like single-image instructions (one image, a question, a long answer),
Mantis-like comparisons (2-8 images, a short answer) and video rows (8-16 frames, given as a list
of frames: ``video="frames"``), image sizes drawn per image. The model is the Qwen2-VL family of
the test suite's tiny VLMs (tests/support/tiny_vlms, its real processor and model classes) made
wider (``--hidden``, ``--layers``) and with a real checkpoint's image sizes (56*56 to
``--max-pixels`` pixels per image), so that a training step's time follows its tokens: that is
measured first (one sequence of 256, 512 and 1024 tokens) and printed before any number that
depends on it.

Each batch of ``--batch-size`` rows goes through the REAL ``UnslothVisionDataCollator`` of the
installed unsloth_zoo with ``configure(packing=True)``: padded (a plain call) and packed (inside
``packing_for(model)``, as a Trainer's training dataloader calls it), each into one training step
(forward, backward, SGD) of its own copy of the model (the same seed), the two interleaved batch by
batch (their order alternating), over ``--passes`` passes of the rows. Reported: the padding share
of each arm's token slots, and real tokens (the rows' own, the same in both arms) per second of
the whole step (collation included; the model's share alone too).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("UNSLOTH_ZOO_DISABLE_GPU_INIT", "1")

import unsloth_multiimage  # noqa: E402

WORDS = "the a image left right red blue green which more than first second shows picture of and is in on with".split()


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _image(rng: random.Random, low: int, high: int) -> Any:
    from PIL import Image

    size = (rng.randint(low, high), rng.randint(low, high))
    return Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))


def make_rows(n: int, seed: int) -> list[dict]:
    """``n`` rows of the mix (see the module docstring): 50 % LLaVA-like, 40 % Mantis-like, 10 % video."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.5:  # LLaVA-Instruct: one image, a question, a detailed answer
            images, question, answer = [_image(rng, 160, 448)], _text(rng, 8, 25), _text(rng, 20, 120)
        elif kind < 0.9:  # Mantis-Instruct: 2-8 images, a comparison, a short answer
            images = [_image(rng, 112, 336) for _ in range(rng.randint(2, 8))]
            question, answer = _text(rng, 10, 40), _text(rng, 1, 15)
        else:  # a video as frames (ShareGPT4Video-like clips, sampled)
            frames = [_image(rng, 112, 168)] * rng.randint(8, 16)
            video = {"type": "video", "video": frames}
            rows.append(_chat([video], _text(rng, 6, 15), _text(rng, 10, 40)))
            continue
        rows.append(_chat([{"type": "image"}] * len(images), question, answer, images))
    return rows


def _chat(parts: list[dict], question: str, answer: str, images: list[Any] | None = None) -> dict:
    row: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": [*parts, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
    }
    if images is not None:
        row["images"] = images
    return row


def build(hidden: int, layers: int, max_pixels: int) -> Any:
    """The tiny Qwen2-VL family row of tests/support/tiny_vlms, wider, with free image sizes."""
    from tests.support.tiny_vlms import build_family, qwen_families
    from tests.support.tiny_vlms.markers import Rope

    fam = next(f for f in qwen_families.TABLE if f.name == "qwen2_vl")
    heads = max(2, hidden // 64)
    head_dim = hidden // heads
    text = fam.config["text_config"]
    wide_text = Rope(
        {
            **text.text,
            "hidden_size": hidden,
            "intermediate_size": 4 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "max_position_embeddings": 16384,
        },
        # M-RoPE sections (time, height, width) over half the head, as Qwen2-VL's [16, 24, 24] of 64
        mrope=[head_dim // 4, head_dim // 8, head_dim // 8],
    )
    vision = {**fam.config["vision_config"], "hidden_size": hidden, "embed_dim": 32}
    pkg, ip_name, ip_kwargs = fam.image_processor
    ip = (pkg, ip_name, {**ip_kwargs, "min_pixels": 56 * 56, "max_pixels": max_pixels})
    wide = dataclasses.replace(
        fam, config={**fam.config, "text_config": wide_text, "vision_config": vision}, image_processor=ip
    )
    return build_family(wide)


def _step(model: Any, optimizer: Any, batch: Any) -> float:
    t0 = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def calibrate(tiny: Any, model: Any) -> list[tuple[int, float]]:
    """Seconds of a forward and backward of one text sequence of 256, 512 and 1024 tokens (median of 3)."""
    import torch

    out = []
    vocab = len(tiny.processor.tokenizer)
    for n in (256, 512, 1024):
        ids = torch.randint(10, vocab, (1, n), generator=torch.Generator().manual_seed(n))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        out.append((n, statistics.median(times)))
    return out


def padding_share(batch: Any, pad_id: int) -> tuple[int, int]:
    """(real tokens, token slots) of a batch."""
    ids = batch["input_ids"]
    return int((ids != pad_id).sum()), int(ids.numel())


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=48, help="rows of the mix (default 48)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per training batch (default 8)")
    parser.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="longest packed sequence (default: the smallest power of two that holds the longest row)",
    )
    parser.add_argument("--passes", type=int, default=2, help="passes over the rows (default 2)")
    parser.add_argument("--hidden", type=int, default=256, help="text model width (default 256)")
    parser.add_argument("--layers", type=int, default=4, help="text model layers (default 4)")
    parser.add_argument("--max-pixels", type=int, default=224 * 224, help="the image processor's max_pixels")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared machine, OpenMP threads that wait for a busy core make "
        "every step erratic)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _calibrated_models(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The wide tiny Qwen2-VL and one model per arm (the same seed); prints the calibration."""
    tiny = build(args.hidden, args.layers, args.max_pixels)
    models = {arm: tiny.make_model() for arm in ("padded", "packed")}  # the same seed: the same weights
    for m in models.values():
        m.set_attn_implementation("sdpa")
    params = sum(p.numel() for p in models["padded"].parameters())
    print(
        f"model: Qwen2VLForConditionalGeneration, text {args.layers} x {args.hidden} (sdpa), {params / 1e6:.1f} M params"
    )
    calibration = calibrate(tiny, models["padded"])
    print(
        "step time follows tokens (one text sequence, forward + backward): "
        + ", ".join(f"{n} tokens {t * 1e3:.0f} ms" for n, t in calibration)
        + f"; x{calibration[-1][1] / calibration[0][1]:.1f} for x4 tokens"
    )
    if calibration[-1][1] < 2 * calibration[0][1]:
        print(
            "WARNING: the step time does not follow the tokens here (a fixed cost dominates): widen the model "
            "(--hidden, --layers) or idle the machine before trusting the tokens/s below"
        )
    return tiny, models


class Arms:
    """The padded and the packed arm: one collator, one model and optimizer each, their totals."""

    def __init__(self, tiny: Any, models: dict[str, Any], collator: Any) -> None:
        import torch

        self.models, self.collator = models, collator
        self.pad = tiny.processor.tokenizer.pad_token_id
        self.optimizers = {arm: torch.optim.SGD(m.parameters(), lr=1e-3) for arm, m in models.items()}
        self.totals = {arm: {"real": 0, "slots": 0, "collate": 0.0, "model": 0.0, "sequences": 0} for arm in models}
        #: the padded batches' images, to time the vision tower alone (the same work in both arms)
        self.images: list[tuple[Any, Any]] = []

    def run(self, arm: str, chunk: list[dict], count: bool = True) -> None:
        """One training step of ``arm`` on ``chunk``: collated (packed inside ``packing_for``), trained."""
        from unsloth_multiimage.collate.train_packing import packing_for

        t0 = time.perf_counter()
        if arm == "packed":
            with packing_for(self.models[arm]):
                batch = self.collator(chunk)
        else:
            batch = self.collator(chunk)
        collate = time.perf_counter() - t0
        seconds = _step(self.models[arm], self.optimizers[arm], batch)
        if count and arm == "padded" and batch.get("pixel_values") is not None:
            self.images.append((batch["pixel_values"], batch["image_grid_thw"]))
        if count:
            real, slots = padding_share(batch, self.pad)
            t = self.totals[arm]
            t["real"] += real
            t["slots"] += slots
            t["collate"] += collate
            t["model"] += seconds
            t["sequences"] += int(batch["input_ids"].shape[0])

    def vision_seconds(self) -> float:
        """Seconds of the vision tower alone (forward and backward) over the padded arm's batches."""
        model = self.models["padded"]
        total = 0.0
        for pixels, grid in self.images:
            t0 = time.perf_counter()
            out = model.get_image_features(pixels, grid)
            features = getattr(out, "pooler_output", out)
            parts = features if isinstance(features, (list, tuple)) else [features]
            sum(p.float().sum() for p in parts).backward()
            total += time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        return total

    def report(self, steps: int) -> None:
        totals = self.totals
        assert totals["padded"]["real"] == totals["packed"]["real"], totals  # the same rows, every token
        rate, share = {}, {}
        for arm, t in totals.items():
            share[arm] = 1 - t["real"] / t["slots"]
            rate[arm] = t["real"] / (t["collate"] + t["model"])
            print(
                f"{arm:>6}: {t['sequences'] / steps:.2f} sequences per batch; padding {share[arm]:.1%} of "
                f"{t['slots']:,} slots; {(t['collate'] + t['model']) / steps * 1e3:.0f} ms per step "
                f"({t['collate'] / steps * 1e3:.0f} ms collating); {rate[arm]:,.0f} real tokens/s "
                f"({t['real'] / t['model']:,.0f} in the model alone)"
            )
        vision = self.vision_seconds()
        padded = totals["padded"]
        print(
            f"the same in both arms: the vision tower alone {vision / steps * 1e3:.0f} ms per step (of the padded "
            f"arm's {(padded['collate'] + padded['model']) / steps * 1e3:.0f} ms); token slots padded / packed "
            f"x{padded['slots'] / totals['packed']['slots']:.2f}"
        )
        print(
            f"packing: padding {share['padded']:.1%} -> {share['packed']:.1%}, tokens/s "
            f"x{rate['packed'] / rate['padded']:.2f}"
        )


def main() -> None:
    args = _arguments()

    import importlib.metadata as md

    import torch
    import transformers

    from tests.support.zoo import load_vision_utils

    torch.set_num_threads(args.threads)
    vision_utils, how = load_vision_utils()
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; {platform.platform()}; {os.cpu_count()} CPU(s); torch threads "
        f"{torch.get_num_threads()}; python {platform.python_version()}; torch {torch.__version__}; transformers "
        f"{transformers.__version__}; unsloth_zoo {md.version('unsloth_zoo')} ({how} import)"
    )
    print(f"load average at start: {tuple(round(x, 2) for x in os.getloadavg())}")
    tiny, models = _calibrated_models(args)

    rows = make_rows(args.rows, args.seed)
    unsloth_multiimage.configure(video="frames", video_sampling="uniform")
    collator = vision_utils.UnslothVisionDataCollator(models["padded"], tiny.processor)
    chunks = [rows[b : b + args.batch_size] for b in range(0, len(rows), args.batch_size)]
    lengths = [int(n) for chunk in chunks for n in collator(chunk)["attention_mask"].sum(1)]
    longest = args.max_seq_length or 1 << (max(lengths) - 1).bit_length()
    unsloth_multiimage.configure(packing=True, packing_max_seq_length=longest)
    images = [len(r.get("images") or r["messages"][0]["content"][0]["video"]) for r in rows]
    print(
        f"rows: {len(rows)} (images per row {min(images)}-{max(images)}, mean {statistics.mean(images):.1f}); "
        f"tokens per row p50 {statistics.median(lengths):.0f}, max {max(lengths)}; batch size {args.batch_size}; "
        f"packed max_seq_length {longest}"
    )
    arms = Arms(tiny, models, collator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for arm in models:
            arms.run(arm, chunks[0], count=False)  # warm-up
        for p in range(args.passes):
            for k, chunk in enumerate(chunks):
                for arm in ("padded", "packed") if (p + k) % 2 == 0 else ("packed", "padded"):
                    arms.run(arm, chunk)
    arms.report(args.passes * len(chunks))


if __name__ == "__main__":
    main()
