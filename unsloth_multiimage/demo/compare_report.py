"""The report of ``demo --compare``: the table, the summary line and the plot."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..tools.text_table import table as text_table

__all__ = ["ArmResult", "table", "summary_line", "plot", "loss_head", "loss_tail"]


@dataclass
class ArmResult:
    """One arm's outcome: held-out accuracy (all rows and per kind), losses, timings, or its error."""

    arm: str
    accuracy: float = float("nan")
    generated_accuracy: float = float("nan")  # exact match of the greedy generation (prepare_inputs + generate)
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (correct, rows)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    images_per_row: float = 0.0
    error: str | None = None
    traceback: str | None = None

    def kind_accuracy(self, kind: str) -> float | None:
        correct, n = self.by_kind.get(kind, (0, 0))
        return 100.0 * correct / n if n else None


def loss_head(losses: Sequence[float]) -> float:
    k = max(1, len(losses) // 10)
    return sum(losses[:k]) / k if losses else float("nan")


def loss_tail(losses: Sequence[float]) -> float:
    k = max(1, len(losses) // 10)
    return sum(losses[-k:]) / k if losses else float("nan")


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}%"


def table(results: Sequence[ArmResult]) -> str:
    rows = [("arm", "accuracy", "generated", "same-turn", "later-turn", "loss first->last 10%", "train s", "eval s")]
    for r in results:
        rows.append(
            (
                r.arm,
                "FAILED" if r.error else _pct(r.accuracy),
                "-" if r.error else _pct(r.generated_accuracy),
                _pct(r.kind_accuracy("same_turn")),
                _pct(r.kind_accuracy("later_turn")),
                f"{loss_head(r.losses):.3f} -> {loss_tail(r.losses):.3f}",
                f"{r.train_seconds:.1f}",
                f"{r.eval_seconds:.1f}",
            )
        )
    return text_table(rows[1:], rows[0])


def summary_line(results: Sequence[ArmResult], chance: float, n_rows: int) -> str:
    arms = " ".join(f"{r.arm}={'FAILED' if r.error else f'{r.accuracy:.1f}%'}" for r in results)
    return f"compare: {arms} (chance {chance:.1f}%, {n_rows} held-out rows)"


_KINDS = (("all", None), ("same-turn", "same_turn"), ("later-turn", "later_turn"))
_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


def _smooth(losses: Sequence[float]) -> list[float]:
    k = max(1, len(losses) // 50)
    return [sum(losses[max(0, i - k + 1) : i + 1]) / len(losses[max(0, i - k + 1) : i + 1]) for i in range(len(losses))]


def _bar_values(r: ArmResult) -> list[float]:
    values = [r.accuracy if kind is None else r.kind_accuracy(kind) for _, kind in _KINDS]
    return [0.0 if v is None or math.isnan(v) else v for v in values]


def plot(results: Sequence[ArmResult], chance: float, path: str, title: str) -> tuple[str, str]:
    """Write a PNG: the loss curves (left) and the accuracy bars (right).

    Drawn with matplotlib (in the ``demo`` extra); without it, a plainer chart drawn with Pillow.
    Returns ``(absolute path, what drew it)``."""
    import importlib.util

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if importlib.util.find_spec("matplotlib") is None:
        _plot_pillow(results, chance, path, title)
        return os.path.abspath(path), "Pillow (matplotlib is not installed)"
    _plot_matplotlib(results, chance, path, title)
    return os.path.abspath(path), "matplotlib"


def _plot_matplotlib(results: Sequence[ArmResult], chance: float, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for j, r in enumerate(results):
        if r.losses:
            smooth = _smooth(r.losses)
            left.plot(range(1, len(smooth) + 1), smooth, label=r.arm, color=[c / 255 for c in _COLOURS[j % 6]])
    left.set_xlabel("step")
    left.set_ylabel("training loss (running mean over 2% of the steps)")
    left.set_yscale("log")
    left.legend()
    left.set_title("loss on the answer")
    width = 0.8 / max(1, len(results))
    for j, r in enumerate(results):
        values = _bar_values(r)
        xs = [i + (j - (len(results) - 1) / 2) * width for i in range(len(_KINDS))]
        bars = right.bar(xs, values, width, label=r.arm, color=[c / 255 for c in _COLOURS[j % 6]])
        for bar, v in zip(bars, values):
            right.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, f"{v:.0f}", ha="center", fontsize=7)
    right.axhline(chance, color="gray", linestyle="--", linewidth=1, label=f"chance {chance:.1f}%")
    right.set_xticks(range(len(_KINDS)), [k for k, _ in _KINDS])
    right.set_ylim(0, 128)  # room above the bars for the legend
    right.set_yticks(range(0, 101, 20))
    right.set_ylabel("held-out accuracy (%)")
    right.legend(fontsize=8, loc="upper center", ncol=3)
    right.set_title("answer accuracy")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _plot_pillow(results: Sequence[ArmResult], chance: float, path: str, title: str) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    W, H, top, pad = 1200, 450, 40, 50
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((pad, 10), title, fill=(0, 0, 0), font=font)
    # left: log-loss curves
    x0, x1, y0, y1 = pad, W // 2 - pad, top, H - pad
    curves = [(_smooth(r.losses), j) for j, r in enumerate(results) if r.losses]
    values = [v for c, _ in curves for v in c if v > 0]
    if values:
        lo, hi = math.log(min(values)), math.log(max(values))
        span = (hi - lo) or 1.0
        n = max(len(c) for c, _ in curves)
        for c, j in curves:
            pts = [
                (x0 + (x1 - x0) * i / max(1, n - 1), y1 - (y1 - y0) * (math.log(max(v, 1e-12)) - lo) / span)
                for i, v in enumerate(c)
            ]
            draw.line(pts, fill=_COLOURS[j % 6], width=2)
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    draw.text((x0, y1 + 5), "training loss (log scale) by step", fill=(0, 0, 0), font=font)
    # right: accuracy bars
    x0, x1 = W // 2 + pad, W - pad
    group_w = (x1 - x0) / len(_KINDS)
    bar_w = group_w * 0.8 / max(1, len(results))
    for g, (name, _kind) in enumerate(_KINDS):
        draw.text((x0 + g * group_w + group_w / 2 - 20, y1 + 5), name, fill=(0, 0, 0), font=font)
        for j, r in enumerate(results):
            v = _bar_values(r)[g]
            bx = x0 + g * group_w + group_w * 0.1 + j * bar_w
            draw.rectangle([bx, y1 - (y1 - y0) * v / 100, bx + bar_w - 2, y1], fill=_COLOURS[j % 6])
            draw.text((bx, y1 - (y1 - y0) * v / 100 - 12), f"{v:.0f}", fill=(0, 0, 0), font=font)
    cy = y1 - (y1 - y0) * chance / 100
    draw.line([(x0, cy), (x1, cy)], fill=(128, 128, 128), width=1)
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    for j, r in enumerate(results):  # legend
        draw.rectangle([x0 + 5, y0 + 5 + 14 * j, x0 + 15, y0 + 15 + 14 * j], fill=_COLOURS[j % 6])
        draw.text((x0 + 20, y0 + 4 + 14 * j), r.arm, fill=(0, 0, 0), font=font)
    draw.text((x0 + 5, y0 + 8 + 14 * len(results)), f"--- chance {chance:.1f}%", fill=(128, 128, 128), font=font)
    img.save(path, format="PNG")
