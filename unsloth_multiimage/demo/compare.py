"""``unsloth-multiimage demo --compare``: the same model, data, seed and steps, five ways of giving it the images.

Arms (each one a plugin setting, run through the plugin's real code paths):

======================== ======================================================================
arm                      what the model gets
======================== ======================================================================
first_image              each row's first image only (what Unsloth did before the plugin):
                         ``configure(max_images=1, on_excess="keep_first")``
grid                     early fusion, one canvas per row at the first image's placeholder:
                         ``configure(strategy="grid")``
every_image              every image, Mllama's own (``latest``) cross-attention mask
every_image_cumulative   every image, ``configure(mllama_cross_attention="cumulative")``: each
                         text token attends every image shown before it
serial                   one user turn per image (``configure(strategy="serial")``: "Image i:"
                         labels, the question in the last turn) with the cumulative mask (with
                         the ``latest`` one the question would see only the last image)
======================== ======================================================================

Each arm trains a fresh model with the same weights, data, seed and steps through the REAL
``UnslothVisionDataCollator`` (when unsloth_zoo imports; else the minimal collator of
:mod:`~unsloth_multiimage.demo.training`, and the output says so), then answers held-out rows two
ways: the candidate answer with the highest likelihood, and greedy generation through
:func:`unsloth_multiimage.generate_answer` on exactly the prompt the arm's collator built. How the
arms, the evaluation, the data and the model are set up: docs/compare.md.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..settings import overriding
from .answers import generated_exact
from .compare_data import answer_of, as_chat, row_kind, with_answer
from .compare_report import ArmResult, loss_head, loss_tail, plot, summary_line, table
from .training import collator_description, load_zoo_collator, make_collator

__all__ = [
    "ARMS",
    "ARM_SETTINGS",
    "COLLATOR_RESIZE",
    "generated_answers",
    "LAYOUTS",
    "CompareConfig",
    "ArmResult",
    "run",
    "run_compare",
    "answer_spans",
    "answer_labels",
]

logger = logging.getLogger("unsloth_multiimage")

ARMS = ("first_image", "grid", "every_image", "every_image_cumulative", "serial")

#: The plugin settings of each arm (every other policy at its default).
ARM_SETTINGS: dict[str, dict[str, Any]] = {
    "first_image": {"max_images": 1, "on_excess": "keep_first"},
    "grid": {"strategy": "grid"},
    "every_image": {},
    "every_image_cumulative": {"mllama_cross_attention": "cumulative"},
    "serial": {"strategy": "serial", "mllama_cross_attention": "cumulative"},
}
_ARM_DEFAULTS = {"max_images": None, "on_excess": "error", "strategy": "native", "mllama_cross_attention": "latest"}

#: Text decoder layouts of the tiny model: ``(layers, cross-attention layer indices, description)``.
LAYOUTS: dict[str, tuple[int, tuple[int, ...], str]] = {
    "cross-last": (
        2,
        (1,),
        "self-attention, cross-attention (the cross-attention layer is last: a text token knows "
        "only the images its mask shows it, which isolates what the mask changes)",
    ),
    "checkpoint": (
        3,
        (1,),
        "self-attention, cross-attention, self-attention (the real checkpoints' pattern: text "
        "tokens can relay an earlier image to later tokens)",
    ),
}


@dataclass(frozen=True)
class CompareConfig:
    """Everything that is the same for every arm."""

    arms: tuple[str, ...] = ARMS
    steps: int = 1200
    batch_size: int = 16
    seed: int = 0
    eval_rows: int | None = None  # None: 300 (synthetic task) or a fifth of the dataset, at most 300
    train_rows: int = 2048  # synthetic task: at most this many, and no more than steps x batch_size
    layout: str = "cross-last"
    text_hidden: int = 64
    later_turn_share: float = 1 / 3
    colours_per_image: int = 3
    lr: float | None = None  # None: 3e-3 (tiny model) or 1e-5 (--model)
    model_path: str | None = None
    dataset: str | None = None
    plot: str | None = None
    threads: int | None = None  # None: 1 for the tiny model on the CPU (fastest on a few shared cores)


# ------------------------------------------------------------------------------------------ labels


def _end_ids(tokenizer: Any) -> set[int]:
    ids = set()
    for token in ("<|eot_id|>", getattr(tokenizer, "eos_token", None)):
        if token:
            tid = tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != getattr(tokenizer, "unk_token_id", None):
                ids.add(tid)
    return ids


def _generation_prompt_ids(processor: Any) -> list[int]:
    """The ids the chat template writes before an assistant answer (its generation prompt)."""
    owner = processor if getattr(processor, "chat_template", None) else getattr(processor, "tokenizer", processor)
    chat = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    bare = owner.apply_chat_template(chat, tokenize=False)
    prompted = owner.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    if not prompted.startswith(bare) or prompted == bare:
        raise ValueError("the chat template has no generation prompt to find the answer by")
    tokenizer = getattr(processor, "tokenizer", processor)
    ids: list[int] = tokenizer(prompted[len(bare) :], add_special_tokens=False)["input_ids"]
    return ids


def answer_spans(batch: Mapping[str, Any], processor: Any) -> list[tuple[int, int]]:
    """Per row: ``(start, end)`` of the last assistant answer's tokens in ``batch["input_ids"]``:
    after the row's last generation prompt, up to the token that closes the turn (excluded)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    header = _generation_prompt_ids(processor)
    ends = _end_ids(tokenizer)
    spans = []
    ids_batch, attention = batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    for r, (ids, att) in enumerate(zip(ids_batch, attention)):
        real = [i for i, a in enumerate(att) if a]
        lo, hi = (real[0], real[-1] + 1) if real else (0, 0)
        start = None
        for p in range(hi - len(header), lo - 1, -1):
            if ids[p : p + len(header)] == header:
                start = p + len(header)
                break
        if start is None or start >= hi:
            raise ValueError(f"row {r} of the batch has no assistant answer after its last generation prompt")
        end = start
        while end < hi and ids[end] not in ends:
            end += 1
        if end == start:
            raise ValueError(f"row {r} of the batch has an empty assistant answer")
        spans.append((start, end))
    return spans


def answer_labels(batch: Mapping[str, Any], processor: Any, ignore_index: int = -100) -> Any:
    labels = batch["input_ids"].clone().fill_(ignore_index)
    for r, (a, b) in enumerate(answer_spans(batch, processor)):
        labels[r, a:b] = batch["input_ids"][r, a:b]
    return labels


# ------------------------------------------------------------------------------------------ one arm


class _Quiet:
    """Silence the plugin's per-call keep_first warnings while the arms run."""

    def __enter__(self) -> None:
        self.level = logger.level
        logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        logger.setLevel(self.level)


#: The ``resize`` of every arm's collator: images as they are (the default ``"min"`` would shrink
#: the grid canvas to one tile). Generation is given the same (:func:`~.answers.generated_exact`).
COLLATOR_RESIZE = "max"


def _collator(model: Any, processor: Any, zoo_cls: Any) -> Callable[[Sequence[Any]], Any]:
    from ..collate import release

    # A release without ``resize_images`` takes no ``resize=`` and sends images as they are: "max".
    takes_resize = zoo_cls is not None and release.does(release.installed_decision(), "resize_images")
    return make_collator(model, processor, zoo_cls, **({"resize": COLLATOR_RESIZE} if takes_resize else {}))


def generated_answers(model: Any, processor: Any, rows: Sequence[dict[str, Any]]) -> list[bool]:
    """Per held-out row: is the greedy generation its answer? The prompt is shaped by the settings
    in force (the arm's) and resized as the arm's collator resized its training rows."""
    return generated_exact(model, processor, rows, [answer_of(r) for r in rows], resize=COLLATOR_RESIZE)


def _to(batch: Mapping[str, Any], device: str) -> dict[str, Any]:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def _check_mask(arm: str, batch: Mapping[str, Any], processor: Any) -> None:
    """The cumulative arms' batches must hold cumulative masks (the patch built them)."""
    from ..collate.cross_attention import cumulative_cross_attention_mask

    cam = batch.get("cross_attention_mask")
    if ARM_SETTINGS[arm].get("mllama_cross_attention") != "cumulative" or cam is None:
        return
    want = cumulative_cross_attention_mask(batch["input_ids"], processor.image_token_id, cam)
    if not bool((want == cam).all()):
        raise RuntimeError(
            "the collator's batch does not hold the cumulative mask: is the mllama_processor patch "
            "applied? (unsloth-multiimage doctor)"
        )


def _score(model: Any, batch: Mapping[str, Any], spans: Sequence[tuple[int, int]]) -> list[float]:
    import torch

    logits = model(**batch).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    ids = batch["input_ids"]
    out = []
    for r, (a, b) in enumerate(spans):
        positions = torch.arange(a, b, device=ids.device)
        out.append(float(logp[r, positions - 1, ids[r, a:b]].sum()))
    return out


def run_arm(
    arm: str,
    cfg: CompareConfig,
    env: _Env,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    candidates: Sequence[Sequence[str]],
) -> ArmResult:
    result = ArmResult(arm)
    t0 = time.perf_counter()
    with overriding(**{**_ARM_DEFAULTS, **ARM_SETTINGS[arm]}):
        try:
            model = env.build_model()
            collator = _collator(model, env.processor, env.zoo_cls)
            result.images_per_row = _train_arm(arm, cfg, env, model, collator, train_rows, result.losses)
            t1 = time.perf_counter()
            result.train_seconds = t1 - t0
            model.eval()
            correct = _pick_answers(model, collator, env, eval_rows, candidates)
            # the same held-out rows answered by generation, the prompt shaped as in training
            exact = generated_answers(model, env.processor, eval_rows)
            result.generated_accuracy = 100.0 * sum(exact) / max(1, len(exact))
            result.eval_seconds = time.perf_counter() - t1
            result.accuracy = 100.0 * sum(correct) / max(1, len(correct))
            for ok, row in zip(correct, eval_rows):
                kind = row_kind(row)
                c, n = result.by_kind.get(kind, (0, 0))
                result.by_kind[kind] = (c + ok, n + 1)
            del model
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.traceback = traceback.format_exc()
    result.seconds = time.perf_counter() - t0
    return result


def _train_arm(
    arm: str,
    cfg: CompareConfig,
    env: _Env,
    model: Any,
    collator: Callable[[Sequence[Any]], Any],
    train_rows: Sequence[dict[str, Any]],
    losses: list[float],
) -> float:
    """Train ``model`` for ``cfg.steps`` (each step's loss appended to ``losses`` as it comes);
    returns the image slots the batches filled per row."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=env.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)  # the same batches for every arm
    order: list[int] = []
    slots = rows_seen = 0
    model.train()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(train_rows), generator=generator).tolist()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        batch = collator([train_rows[i] for i in idx])
        if step == 0:
            _check_mask(arm, batch, env.processor)
        batch["labels"] = answer_labels(batch, env.processor)
        if "aspect_ratio_ids" in batch:
            slots += int((batch["aspect_ratio_ids"] > 0).sum())
            rows_seen += len(idx)
        loss = model(**_to(batch, env.device)).loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"the loss is not finite at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        env.progress(arm, step + 1, cfg.steps, losses[-1])
    return slots / max(1, rows_seen)


def _pick_answers(
    model: Any,
    collator: Callable[[Sequence[Any]], Any],
    env: _Env,
    eval_rows: Sequence[dict[str, Any]],
    candidates: Sequence[Sequence[str]],
) -> list[bool]:
    """For each held-out row, whether the model scores its right answer highest among its candidates
    (rows batched up to ``env.eval_batch`` candidate sequences)."""
    import torch

    correct: list[bool] = []
    with torch.no_grad():
        i = 0
        while i < len(eval_rows):
            chunk: list[int] = []
            n_seq = 0
            while i < len(eval_rows) and (not chunk or n_seq + len(candidates[i]) <= env.eval_batch):
                chunk.append(i)
                n_seq += len(candidates[i])
                i += 1
            variants = [with_answer(eval_rows[k], c) for k in chunk for c in candidates[k]]
            batch = collator(variants)
            spans = answer_spans(batch, env.processor)
            batch.pop("labels", None)
            scores = _score(model, _to(batch, env.device), spans)
            at = 0
            for k in chunk:
                n = len(candidates[k])
                best = max(range(n), key=lambda j: scores[at + j])
                correct.append(candidates[k][best] == answer_of(eval_rows[k]))
                at += n
    return correct


# ------------------------------------------------------------------------------------------ the run


@dataclass
class _Env:
    processor: Any
    build_model: Callable[[], Any]
    model_desc: str
    zoo_cls: Any
    collator_desc: str
    device: str
    lr: float
    eval_batch: int
    progress: Callable[[str, int, int, float], None]


def _make_env(cfg: CompareConfig, progress: Callable[[str, int, int, float], None]) -> _Env:
    import torch

    zoo_cls, zoo_why = load_zoo_collator()
    collator_desc = collator_description(zoo_cls, zoo_why)
    if cfg.model_path is None:
        from .. import tiny_mllama

        if cfg.layout not in LAYOUTS:
            raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {cfg.layout!r}")
        layers, cross, desc = LAYOUTS[cfg.layout]
        processor = tiny_mllama.build_processor()
        sizes = dict(text_hidden=cfg.text_hidden, text_layers=layers, cross_attention_layers=cross)
        model_desc = (
            f"tiny offline Mllama (random weights, seed {cfg.seed}), text hidden {cfg.text_hidden}, "
            f"layout {cfg.layout}: {layers} text layers, {desc}"
        )
        return _Env(
            processor,
            lambda: tiny_mllama.build_model(processor, seed=cfg.seed, **sizes),
            model_desc,
            zoo_cls,
            collator_desc,
            "cpu",
            cfg.lr or 3e-3,
            192,
            progress,
        )
    from transformers import MllamaForConditionalGeneration

    from .training import mllama_processor_of

    device = "cuda" if torch.cuda.is_available() else "cpu"
    processor = mllama_processor_of(cfg.model_path)

    def build() -> Any:
        torch.manual_seed(cfg.seed)
        model: Any = MllamaForConditionalGeneration.from_pretrained(cfg.model_path, local_files_only=True)
        return model.to(device)

    return _Env(
        processor,
        build,
        f"local weights at {cfg.model_path} (every parameter trained)",
        zoo_cls,
        collator_desc,
        device,
        cfg.lr or 1e-5,
        max(8, cfg.batch_size),
        progress,
    )


def _data(cfg: CompareConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[list[str]], str]:
    """``(train rows, held-out rows, candidates per held-out row, description)``."""
    if cfg.dataset is None:
        from . import compare_data

        n_eval = cfg.eval_rows if cfg.eval_rows is not None else 300
        n_train = max(cfg.batch_size, min(cfg.train_rows, cfg.steps * cfg.batch_size))
        share, k = cfg.later_turn_share, cfg.colours_per_image
        train = compare_data.make_rows(n_train, seed=2 * cfg.seed, later_turn_share=share, colours_per_image=k)
        held = compare_data.make_rows(n_eval, seed=2 * cfg.seed + 1, later_turn_share=share, colours_per_image=k)
        desc = f'synthetic "{compare_data.QUESTION}" ({len(compare_data.PALETTE)} colour words)'
        return train, held, [list(r["candidates"]) for r in held], desc
    from ..formats.source import prepare_rows  # the dataset service every command reads through

    rows = []
    for prepared in prepare_rows(cfg.dataset):
        if prepared.row is None:
            raise ValueError(f"--dataset {cfg.dataset}: {prepared.error}")
        try:
            rows.append(as_chat(prepared.row))
        except ValueError as exc:
            raise ValueError(
                f"--dataset {cfg.dataset}: row {prepared.index} ({prepared.layout}): {exc}. Fix: every row of the "
                f"A/B ends with its answer, an assistant turn (SFT rows, not preference or GRPO prompts)"
            ) from None
    n_eval = cfg.eval_rows if cfg.eval_rows is not None else min(300, max(1, len(rows) // 5))
    if not 0 < n_eval < len(rows):
        raise ValueError(
            f"--eval-rows {n_eval}: --dataset {cfg.dataset} has {len(rows)} rows. Fix: --eval-rows 1 to {len(rows) - 1}"
            if len(rows) > 1
            else f"--dataset {cfg.dataset} has {len(rows)} row(s): the A/B needs training rows and held-out rows. "
            f"Fix: give a dataset of several rows"
        )
    order = list(range(len(rows)))
    random.Random(cfg.seed).shuffle(order)
    held = [rows[i] for i in order[:n_eval]]
    train = [rows[i] for i in order[n_eval:]]
    answers = sorted({answer_of(r) for r in held})
    if len(answers) < 2:
        raise ValueError(
            f"the {n_eval} held-out rows of --dataset {cfg.dataset} all have the same answer: nothing to compare. "
            f"Fix: more --eval-rows, or rows with different answers"
        )
    return train, held, [answers] * len(held), f"{cfg.dataset} ({len(answers)} distinct held-out answers)"


def run_compare(cfg: CompareConfig, print_fn: Callable[[str], None] = print) -> tuple[list[ArmResult], float, int]:
    """Run the arms; returns ``(results, chance in %, held-out rows)``."""
    import torch

    unknown = [a for a in cfg.arms if a not in ARMS]
    if unknown:
        raise ValueError(
            f"--arms: unknown arm(s) {', '.join(unknown)}. Fix: pick from {', '.join(ARMS)} (comma-separated)"
        )
    last_print = [0.0]

    def progress(arm: str, step: int, steps: int, loss: float) -> None:
        now = time.perf_counter()
        if step == steps or now - last_print[0] > 10:
            last_print[0] = now
            logger.info("compare: %s step %d/%d loss %.4f", arm, step, steps, loss)

    env = _make_env(cfg, progress)
    threads_before = torch.get_num_threads()
    threads = (
        cfg.threads
        if cfg.threads is not None
        else (1 if cfg.model_path is None else None)  # the tiny model runs on the CPU
    )
    train, held, candidates, data_desc = _data(cfg)
    n_later = sum(row_kind(r) == "later_turn" for r in held)
    n_candidates = sorted({len(c) for c in candidates})
    chance = 100.0 * sum(1 / len(c) for c in candidates) / len(candidates)
    print_fn("unsloth-multiimage demo --compare")
    print_fn(f"  model     : {env.model_desc}")
    print_fn(f"  collator  : {env.collator_desc}")
    print_fn(
        f"  data      : {data_desc}: {len(train)} training rows, {len(held)} held-out rows ({n_later} later-turn), "
        f"{'/'.join(map(str, n_candidates))} candidate answers per row (chance {chance:.1f}%)"
    )
    print_fn(
        f"  training  : {cfg.steps} steps, batch {cfg.batch_size}, AdamW lr {env.lr:g}, loss on the last answer, "
        f"seed {cfg.seed}, device {env.device}" + (f", {threads} torch thread(s)" if threads else "")
    )
    print_fn("  arms      : " + "; ".join(f"{a} ({_arm_desc(a)})" for a in cfg.arms))
    results = []
    try:
        if threads:
            torch.set_num_threads(threads)
        with _Quiet():
            for arm in cfg.arms:
                r = run_arm(arm, cfg, env, train, held, candidates)
                results.append(r)
                if r.error:
                    print_fn(f"  {arm:<24} FAILED after {r.seconds:.1f} s: {r.error}")
                    logger.debug("compare: %s failed:\n%s", arm, r.traceback)
                else:
                    print_fn(
                        f"  {arm:<24} {r.accuracy:5.1f}%  loss {loss_head(r.losses):.3f} -> {loss_tail(r.losses):.3f}  "
                        f"{r.images_per_row:.1f} image slot(s)/row  {r.seconds:.1f} s"
                    )
    finally:
        torch.set_num_threads(threads_before)
    return results, chance, len(held)


def _arm_desc(arm: str) -> str:
    s = ARM_SETTINGS[arm]
    return ", ".join(f"{k}={v}" for k, v in s.items()) or "every image, the native mask"


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    arms = getattr(args, "arms", None)
    steps, batch = getattr(args, "steps", None), getattr(args, "batch_size", None)
    return CompareConfig(
        arms=tuple(a.strip() for a in arms.split(",") if a.strip()) if arms else ARMS,
        steps=int(steps) if steps is not None else CompareConfig.steps,
        batch_size=int(batch) if batch is not None else CompareConfig.batch_size,
        seed=int(getattr(args, "seed", 0) or 0),
        eval_rows=getattr(args, "eval_rows", None),
        layout=getattr(args, "layout", None) or CompareConfig.layout,
        model_path=getattr(args, "model", None),
        dataset=getattr(args, "dataset", None),
        plot=getattr(args, "plot", None),
    )


def run(args: argparse.Namespace) -> int:
    """``demo --compare``: exit 0 when every arm ran, 1 otherwise."""
    start = time.perf_counter()
    # transformers' Mllama vision layers warn that `hidden_state` is deprecated on some releases.
    warnings.filterwarnings("ignore", message=".*hidden_state.*deprecated", category=FutureWarning)
    try:
        cfg = config_from_args(args)
        if cfg.steps < 1 or cfg.batch_size < 1:
            raise ValueError("--steps and --batch-size must be at least 1")
        results, chance, n_rows = run_compare(cfg)
    except (ValueError, OSError) as exc:
        from ..errors import CommandError

        raise CommandError(str(exc)) from None
    print()
    print(table(results))
    by = {r.arm: r for r in results if not r.error}
    if "every_image" in by and "first_image" in by:
        print(f"every_image - first_image: {by['every_image'].accuracy - by['first_image'].accuracy:+.1f} points")
    if "every_image" in by and "every_image_cumulative" in by:
        a, b = by["every_image"].kind_accuracy("later_turn"), by["every_image_cumulative"].kind_accuracy("later_turn")
        if a is not None and b is not None:
            print(f"every_image_cumulative - every_image on later-turn rows: {b - a:+.1f} points")
    if cfg.plot:
        title = f"demo --compare, seed {cfg.seed}, {cfg.steps} steps, layout {cfg.layout if cfg.model_path is None else cfg.model_path}"
        written, how = plot(results, chance, cfg.plot, title)
        print(f"plot written to {written} (drawn with {how})")
    print(f"time: {time.perf_counter() - start:.1f} s")
    print(summary_line(results, chance, n_rows))
    failed = [r.arm for r in results if r.error]
    if failed:
        from ..errors import CommandError

        raise CommandError(
            f"--arms: the arm(s) {', '.join(failed)} failed (their errors are above). Fix: rerun with "
            f"`unsloth-multiimage -v demo --compare --arms {','.join(failed)} ...` for the tracebacks."
        )
    return 0
