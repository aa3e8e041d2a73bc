"""``unsloth-multiimage demo``: fine-tune a Llama-3.2-Vision-shaped model on multi-image rows.

Offline and CPU-friendly: the tiny model and processor of :mod:`unsloth_multiimage.tiny_mllama`
(or local weights with ``--model PATH``), the synthetic dataset of
:mod:`unsloth_multiimage.demo_data`, and the REAL ``UnslothVisionDataCollator`` when
``unsloth_zoo`` can be imported (else a minimal collator that renders the chat template and
calls the patched ``MllamaProcessor`` with one image list per row). Training is a plain torch
loop (AdamW), so it runs the same on every transformers release from 4.46 to 5.x without
``accelerate``.

Exit code 0 when every step ran, every image of every row reached the model (native
strategy) and the loss went down; 1 otherwise, with the reason.

``demo --compare`` trains the same model four ways (first image only, grid, every image, every
image with the cumulative cross-attention mask) and compares held-out accuracy:
:mod:`unsloth_multiimage.tools.compare`.

The ``demo`` extra (``pip install "unsloth-multiimage[demo]"``) installs ``unsloth_zoo``, so the
demo runs the real collator; ``UNSLOTH_ZOO_DISABLE_GPU_INIT=1`` is set before ``unsloth_zoo`` is
imported (its package ``__init__`` refuses to start on a CPU-only machine otherwise).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("unsloth_multiimage")

__all__ = ["run", "load_zoo_collator", "SimpleCollator", "prepare_rows", "render_chat", "build_model_and_processor"]


def load_zoo_collator() -> tuple[Any | None, str]:
    """``(UnslothVisionDataCollator class or None, why)``; never raises."""
    # The demo needs the collator only: skip unsloth_zoo's device init, which refuses to start
    # on a CPU-only machine (and, on a GPU, without `unsloth` installed and imported first).
    os.environ.setdefault("UNSLOTH_ZOO_DISABLE_GPU_INIT", "1")
    try:
        import unsloth_zoo.vision_utils as vision_utils
    except Exception as exc:  # ImportError, or a zoo release refusing to start without a GPU
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    cls = getattr(vision_utils, "UnslothVisionDataCollator", None)
    if cls is None:
        return None, "unsloth_zoo.vision_utils has no UnslothVisionDataCollator"
    return cls, "unsloth_zoo " + _version("unsloth_zoo")


def _version(dist: str) -> str:
    from ..engine.compat import installed_version

    return installed_version(dist) or "?"


class SimpleCollator:
    """A minimal vision collator: per-row images (plan_row + decode + policies), the processor's
    chat template, one image list per row to the processor, labels = input ids with padding and
    image tokens ignored. What the plugin's per-row logic makes possible without Unsloth."""

    def __init__(self, processor: Any, ignore_index: int = -100) -> None:
        self.processor = processor
        self.ignore_index = ignore_index

    def __call__(self, examples: Sequence[Any]) -> Any:
        examples, plans, texts = prepare_rows(examples, self.processor)
        images = [[_rgb(img) for img in p.images] for p in plans]
        kwargs: dict[str, Any] = {
            "text": texts,
            "return_tensors": "pt",
            "padding": True,
            "add_special_tokens": not starts_with_bos(self.processor, texts),
        }
        if any(images):
            kwargs["images"] = images
        batch = self.processor(**kwargs)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = self.ignore_index
        image_id = getattr(self.processor, "image_token_id", None)
        if image_id is not None:
            labels[labels == image_id] = self.ignore_index
        batch["labels"] = labels
        return batch


def prepare_rows(examples: Sequence[Any], processor: Any, settings: Any | None = None) -> tuple[list, list, list[str]]:
    """The row pipeline on ``examples`` (:func:`unsloth_multiimage.rows.pipeline.prepare_batch`:
    the settings in force unless ``settings`` is given), then each chat rendered.
    Returns ``(examples, plans, texts)`` after the policies."""
    from ..rows.pipeline import prepare_batch

    prepared = prepare_batch(examples, settings)
    rows = [p.example for p in prepared]
    return rows, [p.plan for p in prepared], [render_chat(processor, e) for e in rows]


def starts_with_bos(processor: Any, texts: Sequence[str]) -> bool:
    """True when the chat template already wrote the BOS token (then the tokenizer must not add one)."""
    bos = getattr(getattr(processor, "tokenizer", processor), "bos_token", None)
    return isinstance(bos, str) and bool(bos) and all(t.startswith(bos) for t in texts)


def _rgb(img: Any) -> Any:
    return img.convert("RGB") if getattr(img, "mode", "RGB") != "RGB" else img


def render_chat(processor: Any, example: Any) -> str:
    """The chat of ``example`` rendered by the processor's chat template (no generation prompt)."""
    from ..rows.chat import messages_of

    messages = messages_of(example)
    template_owner = (
        processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)
    )
    return template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def build_model_and_processor(model_path: str | None, seed: int) -> tuple[Any, Any, str]:
    from . import tiny_mllama

    processor = tiny_mllama.processor_of(model_path)
    if model_path is None:
        return tiny_mllama.build_model(processor, seed=seed), processor, "tiny offline Mllama (random weights)"
    from transformers import MllamaForConditionalGeneration

    model = MllamaForConditionalGeneration.from_pretrained(model_path, local_files_only=True)
    return model, processor, f"local weights at {model_path}"


def _expected_images(examples: Sequence[Any], grid: bool = False) -> int:
    """Image slots the batch must fill: every image (native), or one canvas per image row (grid)."""
    from ..rows.plan import plan_row

    counts = [len(plan_row(e, i).images) for i, e in enumerate(examples)]
    return sum(min(c, 1) if grid else c for c in counts)


def _slots_used(batch: Any) -> int:
    ids = batch.get("aspect_ratio_ids") if hasattr(batch, "get") else None
    if ids is None:
        return 0
    return int((ids > 0).sum())


def _given(args: argparse.Namespace, name: str, default: Any) -> Any:
    """``args.name``, or ``default`` when it is missing or None (``--steps`` defaults differ with ``--compare``)."""
    value = getattr(args, name, None)
    return default if value is None else value


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "compare", False):
        from . import compare

        return compare.run(args)
    import torch

    from ..settings import configure, get_settings
    from . import demo_data

    steps = int(_given(args, "steps", 30))
    strategy = getattr(args, "strategy", "native")
    batch_size = int(_given(args, "batch_size", 4))
    seed = int(_given(args, "seed", 0))
    model_path = getattr(args, "model", None)
    if steps < 2 or batch_size < 1:
        print("demo: --steps must be at least 2 and --batch-size at least 1")
        return 1

    start = time.perf_counter()
    torch.manual_seed(seed)
    previous_strategy = get_settings().strategy
    configure(strategy=strategy)
    zoo_cls, zoo_why = load_zoo_collator()
    model, processor, model_desc = build_model_and_processor(model_path, seed)
    device = "cuda" if model_path is not None and torch.cuda.is_available() else "cpu"
    model.to(device)
    model.train()

    collator: Callable[[Sequence[Any]], Any]
    if zoo_cls is not None:
        try:
            collator = zoo_cls(model, processor)
            path = f"the real UnslothVisionDataCollator ({zoo_why}), patched by unsloth_multiimage"
        except Exception as exc:
            collator, path = SimpleCollator(processor), f"a minimal collator (UnslothVisionDataCollator failed: {exc})"
    else:
        collator = SimpleCollator(processor)
        path = (
            f"a minimal chat-template collator + the patched MllamaProcessor, the fallback: unsloth_zoo cannot "
            f'be imported ({zoo_why}); `pip install "unsloth-multiimage[demo]"` installs it'
        )

    rows = demo_data.make_rows(n=max(64, batch_size * 8), seed=seed)
    n_img = [
        len(r.get("images") or [])
        or sum(1 for m in r["messages"] for p in m["content"] if isinstance(p, dict) and p.get("type") == "image")
        for r in rows
    ]
    kinds = collections.Counter(demo_data.row_kind(i) for i in range(len(rows)))
    print("unsloth-multiimage demo")
    print(f"  model     : {model_desc}")
    print(f"  collator  : {path}")
    print(f"  strategy  : {get_settings().strategy}")
    print(
        f"  dataset   : {len(rows)} synthetic rows ({', '.join(f'{v} {k}' for k, v in kinds.items())}), "
        f"{sum(n_img)} images, up to {max(n_img)} per row"
    )
    print(f"  training  : {steps} steps, batch {batch_size}, AdamW lr 5e-3, device {device}")

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    order = list(range(len(rows)))
    rng = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    images_sent = images_expected = 0
    pos = len(order)
    error: str | None = None
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="fine-tuning", unit="step", dynamic_ncols=True)
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        bar = None
    try:
        for step in range(steps):
            if pos + batch_size > len(order):
                order = torch.randperm(len(rows), generator=rng).tolist()
                pos = 0
            examples = [rows[i] for i in order[pos : pos + batch_size]]
            pos += batch_size
            batch = collator(examples)
            images_sent += _slots_used(batch)
            images_expected += _expected_images(examples, grid=strategy == "grid")
            batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if not torch.isfinite(loss):
                error = f"the loss is not finite at step {step + 1}"
                break
            if bar is not None:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                bar.update(1)
            if (step + 1) % 5 == 0 or step == 0:
                logger.info("step %d loss %.4f", step + 1, losses[-1])
    except Exception as exc:
        error = f"training failed at step {len(losses) + 1}: {type(exc).__name__}: {exc}"
    finally:
        if bar is not None:
            bar.close()
        configure(strategy=previous_strategy)

    elapsed = time.perf_counter() - start
    print()
    if losses:
        every = max(1, len(losses) // 6)
        print(
            "  loss by step: "
            + ", ".join(
                f"{i + 1}:{loss:.3f}" for i, loss in enumerate(losses) if i % every == 0 or i == len(losses) - 1
            )
        )
    if error is None and len(losses) < steps:
        error = f"only {len(losses)} of {steps} steps ran"
    if error is not None:
        print(f"demo FAILED: {error}")
        return 1
    k = min(5, max(1, steps // 2))
    first, last = _mean(losses[:k]), _mean(losses[-k:])
    print(f"  loss: first {k} steps {first:.4f} -> last {k} steps {last:.4f} ({(last - first) / first * 100:+.1f}%)")
    if strategy == "native":
        print(f"  images sent to the model: {images_sent} of {images_expected} in the batches")
    else:
        print(f"  grid: {images_sent} grid image(s) sent, {images_expected} expected (one per row with images)")
    print(f"  time: {elapsed:.1f} s")
    if images_sent != images_expected:
        print(f"demo FAILED: {images_expected - images_sent} image(s) did not reach the model")
        return 1
    if not last < first:
        print("demo FAILED: the loss did not go down")
        return 1
    print("demo OK: every step ran and the loss went down")
    return 0
