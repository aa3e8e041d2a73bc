"""``unsloth-multiimage demo``: fine-tune a Llama-3.2-Vision-shaped model on multi-image rows.

Offline and CPU-friendly: the tiny model and processor of :mod:`unsloth_multiimage.tiny_mllama`
(or local weights with ``--model PATH``), the synthetic dataset of
:mod:`unsloth_multiimage.demo.demo_data`, and the REAL ``UnslothVisionDataCollator`` when
``unsloth_zoo`` can be imported (else a minimal collator that renders the chat template and
calls the patched ``MllamaProcessor`` with one image list per row). Training is a plain torch
loop (AdamW), so it runs the same on every transformers release of compat/matrix.toml without
``accelerate``.

Exit code 0 when every step ran, every image of every row reached the model (native
strategy) and the loss went down; 1 otherwise, with the reason. After training, a few held-out
multi-image questions are answered by generation (:mod:`unsloth_multiimage.inference`: the prompt
shaped as the training rows) and printed beside the expected answers.

``demo --compare`` trains the same model five ways (first image only, grid, every image, every
image with the cumulative cross-attention mask, one turn per image) and compares held-out accuracy:
:mod:`unsloth_multiimage.demo.compare` (the CLI dispatches ``--compare`` there).

The ``demo`` extra (``pip install "unsloth-multiimage[demo]"``) installs ``unsloth_zoo``, so the
demo runs the real collator (:mod:`unsloth_multiimage.demo.training`).
"""

from __future__ import annotations

import argparse
import collections
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("unsloth_multiimage")

__all__ = ["run"]


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
    import dataclasses

    import torch

    from ..errors import CommandError
    from ..settings import overriding
    from ..tools.options import settings_from, settings_line
    from . import demo_data
    from .training import build_model_and_processor, load_zoo_collator

    steps = int(_given(args, "steps", 30))
    batch_size = int(_given(args, "batch_size", 4))
    seed = int(_given(args, "seed", 0))
    model_path = getattr(args, "model", None)
    if steps < 2 or batch_size < 1:
        raise CommandError(
            f"--steps {steps}, --batch-size {batch_size}: the demo needs at least 2 steps (the loss must go down "
            f"between them) and 1 row a step. Fix: --steps 2 or more.",
            usage=True,
        )
    settings = settings_from(args)
    strategy = settings.strategy
    chosen = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}

    start = time.perf_counter()
    torch.manual_seed(seed)
    with overriding(**chosen):
        zoo_cls, zoo_why = load_zoo_collator()
        model, processor, model_desc = build_model_and_processor(model_path, seed)
        device = "cuda" if model_path is not None and torch.cuda.is_available() else "cpu"
        model.to(device)
        model.train()
        collator, path = _collator(model, processor, zoo_cls, zoo_why)
        rows = demo_data.make_rows(n=max(64, batch_size * 8), seed=seed)
        _print_setup(rows, model_desc, path, steps, batch_size, device, settings_line(settings, args, ("rows", "mask")))
        trained = _train(model, collator, rows, steps, batch_size, seed, strategy == "grid", device)
        if not _report(trained, steps, strategy, time.perf_counter() - start):
            return 1
        try:
            _print_answers(model, processor, seed, strategy)
        except Exception as exc:
            print(f"demo FAILED: answering held-out questions by generation failed: {type(exc).__name__}: {exc}")
            return 1
    print("demo OK: every step ran and the loss went down")
    return 0


def _collator(model: Any, processor: Any, zoo_cls: Any, zoo_why: Any) -> tuple[Callable[[Sequence[Any]], Any], str]:
    """The collator the demo trains with, and its description: the real one, else the minimal one."""
    from .training import collator_description, make_collator

    path = collator_description(zoo_cls, zoo_why)
    try:
        collator = make_collator(model, processor, zoo_cls)
    except Exception as exc:
        collator = make_collator(model, processor, None)
        path = f"a minimal collator (UnslothVisionDataCollator failed: {exc})"
    return collator, path


def _print_setup(
    rows: Sequence[dict[str, Any]],
    model_desc: str,
    path: str,
    steps: int,
    batch_size: int,
    device: str,
    settings: str = "",
) -> None:
    from ..settings import get_settings
    from . import demo_data

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
    if settings:
        print(f"  {settings}")
    print(
        f"  dataset   : {len(rows)} synthetic rows ({', '.join(f'{v} {k}' for k, v in kinds.items())}), "
        f"{sum(n_img)} images, up to {max(n_img)} per row"
    )
    print(f"  training  : {steps} steps, batch {batch_size}, AdamW lr 5e-3, device {device}")


@dataclass
class _Trained:
    """What the training loop did: the loss of each step, the image slots filled and expected, and
    why it stopped early (None when every step ran)."""

    losses: list[float] = field(default_factory=list)
    images_sent: int = 0
    images_expected: int = 0
    error: str | None = None


def _batches(n_rows: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Row indices of each batch: the rows reshuffled (seeded) whenever a batch would run past them."""
    import torch

    order = list(range(n_rows))
    rng = torch.Generator().manual_seed(seed)
    pos = len(order)
    while True:
        if pos + batch_size > len(order):
            order = torch.randperm(n_rows, generator=rng).tolist()
            pos = 0
        yield order[pos : pos + batch_size]
        pos += batch_size


def _progress_bar(steps: int) -> Any:
    try:
        from tqdm.auto import tqdm

        return tqdm(total=steps, desc="fine-tuning", unit="step", dynamic_ncols=True)
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None


def _train(
    model: Any,
    collator: Callable[[Sequence[Any]], Any],
    rows: Sequence[dict[str, Any]],
    steps: int,
    batch_size: int,
    seed: int,
    grid: bool,
    device: str,
) -> _Trained:
    """The plain torch loop (AdamW); an exception or a non-finite loss ends it, said in ``error``."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    batches = _batches(len(rows), batch_size, seed)
    trained = _Trained()
    losses = trained.losses
    bar = _progress_bar(steps)
    try:
        for step in range(steps):
            examples = [rows[i] for i in next(batches)]
            batch = collator(examples)
            trained.images_sent += _slots_used(batch)
            trained.images_expected += _expected_images(examples, grid=grid)
            batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if not torch.isfinite(loss):
                trained.error = f"the loss is not finite at step {step + 1}"
                break
            if bar is not None:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                bar.update(1)
            if (step + 1) % 5 == 0 or step == 0:
                logger.info("step %d loss %.4f", step + 1, losses[-1])
    except Exception as exc:
        trained.error = f"training failed at step {len(losses) + 1}: {type(exc).__name__}: {exc}"
    finally:
        if bar is not None:
            bar.close()
    return trained


def _report(trained: _Trained, steps: int, strategy: str, elapsed: float) -> bool:
    """Print how training went; False (with the reason printed) when the demo failed."""
    losses, error = trained.losses, trained.error
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
        return False
    k = min(5, max(1, steps // 2))
    first, last = _mean(losses[:k]), _mean(losses[-k:])
    print(f"  loss: first {k} steps {first:.4f} -> last {k} steps {last:.4f} ({(last - first) / first * 100:+.1f}%)")
    images_sent, images_expected = trained.images_sent, trained.images_expected
    if strategy == "native":
        print(f"  images sent to the model: {images_sent} of {images_expected} in the batches")
    else:
        print(f"  grid: {images_sent} grid image(s) sent, {images_expected} expected (one per row with images)")
    print(f"  time: {elapsed:.1f} s")
    if images_sent != images_expected:
        print(f"demo FAILED: {images_expected - images_sent} image(s) did not reach the model")
        return False
    if not last < first:
        print("demo FAILED: the loss did not go down")
        return False
    return True


def _print_answers(model: Any, processor: Any, seed: int, strategy: str) -> None:
    """After training: a few held-out multi-image questions answered by generation, the prompt
    shaped as the training rows were (``prepare_inputs``, the strategy the demo trained with)."""
    from ..settings import overriding
    from .answers import answer_rows, held_out_image_rows

    with overriding(strategy=strategy):
        answered = answer_rows(model, processor, held_out_image_rows(3, seed))
    print(f"  held-out questions answered by generation (prepare_inputs + generate, strategy {strategy}):")
    for a in answered:
        mark = "right" if a.correct else "wrong"
        print(f"    {a.images} images: {a.question!r} -> {a.generated!r} (expected {a.expected!r}: {mark})")
