"""The two report figures: a reliability diagram and precision vs share answered.

Uses matplotlib's object API with the Agg canvas directly, so no global backend is switched
and no display is needed (safe inside a web server or CI).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qa.evaluation.metrics import CalibrationBin, SweepPoint


def _figure(width: float = 5.5, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_reliability(bins: Sequence[CalibrationBin], path: str | Path, ece: float | None = None) -> Path:
    """Bars of accuracy per score bin against the diagonal of perfect calibration."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    width = bins[0].upper - bins[0].lower if bins else 0.1
    filled = [b for b in bins if b.count]
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax.bar(
        [b.lower for b in filled], [b.accuracy or 0.0 for b in filled],
        width=width, align="edge", edgecolor="black", alpha=0.75, label="share correct",
    )
    ax.plot(
        [b.confidence for b in filled], [b.accuracy for b in filled],
        marker="o", linestyle="", color="C3", label="mean score",
    )
    for b in filled:
        ax.annotate(str(b.count), (b.lower + width / 2, (b.accuracy or 0.0) + 0.02), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("score of the best span")
    ax.set_ylabel("share whose best span is an exact match")
    title = "Reliability diagram"
    if ece is not None:
        title += f" (ECE {ece:.3f})"
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def plot_precision_coverage(
    points: Sequence[SweepPoint],
    path: str | Path,
    current: SweepPoint | None = None,
    tuned: SweepPoint | None = None,
) -> Path:
    """Answer precision against share of questions answered, one point per threshold;
    `current`/`tuned` (see `metrics.sweep_point`) are marked when given."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    curve = sorted((p for p in points if p.precision is not None), key=lambda p: p.coverage)
    ax.plot([p.coverage for p in curve], [p.precision for p in curve], marker=".", linewidth=1)
    marked = False
    for label, point, color in (("current", current, "C2"), ("tuned", tuned, "C3")):
        if point is not None and point.precision is not None:
            marked = True
            ax.plot([point.coverage], [point.precision], marker="o", markersize=9, color=color, linestyle="",
                    label=f"{label} threshold {point.threshold:.3f}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("share of questions answered")
    ax.set_ylabel("precision of given answers (exact match)")
    ax.set_title("Precision vs share answered across thresholds")
    if marked:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path

