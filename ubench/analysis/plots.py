"""Figures for the leaderboard and U-Score reports, byte-for-byte reproducible.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so no global backend or figure
state is touched), saved with a fixed dpi and without the "Software" PNG metadata (which carries
the matplotlib version), and written atomically. Same input, same bytes: DVC can hash them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ubench.errors import AnalysisInputError
from ubench.io import write_bytes_atomic

DPI = 100
BASELINE_COLOR = "#d62728"
MODEL_COLOR = "#1f77b4"
# matplotlib's tab10 without its red, which marks the baseline
MODEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes, with deterministic settings."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _save(fig: Figure, path: str | Path) -> None:
    write_bytes_atomic(path, _png(fig))


def model_label(model: str, row: Mapping, baseline: str) -> str:
    """A model's tick label: the baseline and a degenerate (collapsed) result say so."""
    notes = (["baseline"] if model == baseline else []) + (
        [f"degenerate: {row.get('degenerate_kind')}"] if row.get("degenerate") else [])
    return f"{model} ({', '.join(notes)})" if notes else model


def plot_iou_ci(board: Mapping, path: str | Path) -> None:
    """One PNG, one panel per dataset: mean IoU per model with its CI, baseline in red, degenerate
    (collapsed) results hollow and labelled."""
    datasets = sorted(board["datasets"])
    if not datasets:
        raise AnalysisInputError("leaderboard has no datasets to plot")
    base = board["baseline"]
    n_models = max(len(board["datasets"][d]["models"]) for d in datasets)
    fig = Figure(figsize=(6.5, max(2.0, 0.35 * n_models + 1.2) * len(datasets)))
    axes = fig.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for ax, ds in zip(axes, datasets):
        rows = board["datasets"][ds]["models"]
        # best at the top: barh draws the first row at the bottom
        order = sorted(rows, key=lambda m: (rows[m]["iou_mean"], m))
        for y, m in enumerate(order):
            r = rows[m]
            color = BASELINE_COLOR if m == base else MODEL_COLOR
            if r["iou_ci_low"] is not None:
                xerr = [[r["iou_mean"] - r["iou_ci_low"]], [r["iou_ci_high"] - r["iou_mean"]]]
            else:
                xerr = None
            # a collapsed model is drawn hollow and named so: its IoU measures no learnt segmentation
            face = "white" if r.get("degenerate") else color
            ax.errorbar([r["iou_mean"]], [y], xerr=xerr, fmt="o", color=color, mfc=face, capsize=3)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([model_label(m, rows[m], base) for m in order])
        for lab, m in zip(ax.get_yticklabels(), order):
            if m == base:
                lab.set_color(BASELINE_COLOR)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(f"IoU (mean, {board['confidence'] * 100:g}% CI)")
        ax.set_title(f"{ds} (n = {board['datasets'][ds]['n_images']})")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_iou_vs_uscore(report: Mapping, path: str | Path) -> None:
    """IoU (x) against U-Score x 100 (y), from a ``uscore_report`` (metrics/uscore.json).

    Small grey points: each (model, in-domain dataset). Labelled points: each model's mean IoU
    over the in-domain datasets against its overall U-Score (the mean of its per-dataset ones).
    The title names the definition, reference and floor, and flags FPS that is not comparable
    with the reference.
    """
    datasets = report["datasets"]
    overall = report["uscore"]
    if not overall:
        raise AnalysisInputError("U-Score report has no models to plot")
    fig = Figure(figsize=(6.5, 5.0))
    ax = fig.subplots()
    for d in datasets.values():
        ms = sorted(d["uscore"])
        ax.scatter([d["iou"][m] for m in ms], [100 * d["uscore"][m] for m in ms], color="#bbbbbb", s=12)
    names = sorted(overall)
    xs = [sum(d["iou"][m] for d in datasets.values() if m in d["iou"])
          / sum(1 for d in datasets.values() if m in d["iou"]) for m in names]
    ys = [100 * overall[m] for m in names]
    ax.scatter(xs, ys, color=MODEL_COLOR)
    # a leader line ties a label that separate_labels moves up to its point
    labels = [ax.annotate(m, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8,
                          arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.6, "shrinkA": 0, "shrinkB": 4})
              for m, x, y in zip(names, xs, ys)]
    ax.set_xlabel(f"IoU (labelled: mean over {len(datasets)} in-domain dataset(s); grey: per dataset)")
    ax.set_ylabel("U-Score x 100")
    ax.set_ylim(-5, 105)
    title = (f"IoU vs U-Score ({report['definition']} definition, reference {report['reference']}, "
             f"floor {report['floor']:g})")
    if report["device"]["comparable_with_reference"] is False:
        title += "\nFPS not measured on a GPU: not comparable with U-Bench's U-Scores"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    separate_labels(fig, labels)
    _save(fig, path)


def separate_labels(fig: Figure, labels: list, pad_points: float = 1.0, rounds: int = 40) -> None:
    """Move point labels up, lowest point first, until no two overlap (models with close IoU and
    U-Score otherwise print their names over each other). Deterministic: same points, same places."""
    from matplotlib.text import Text

    renderer = FigureCanvasAgg(fig).get_renderer()

    def text_box(label):  # the text alone, not its leader line, where it is now
        label.update_positions(renderer)
        return Text.get_window_extent(label, renderer)

    placed = []
    for label in sorted(labels, key=lambda t: (t.xy[1], t.xy[0], t.get_text())):
        for _ in range(rounds):
            box = text_box(label)
            if not any(box.overlaps(other) for other in placed):
                break
            dx, dy = label.xyann
            label.xyann = (dx, dy + box.height * 72.0 / fig.dpi + pad_points)
        placed.append(text_box(label))


def training_curves_png(curves: Mapping, baseline: str) -> bytes:
    """Validation IoU per epoch: one panel per dataset, every model overlaid, baseline in red.

    ``curves``: {dataset: {model: [(epoch, val IoU), ...]}} (``html_report.read_curves``).
    """
    datasets = sorted(curves)
    if not datasets:
        raise AnalysisInputError("no training curves to plot")
    cols = min(3, len(datasets))
    rows = -(-len(datasets) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    # one colour per model across panels; red is the baseline's alone
    others = sorted({m for ds in datasets for m in curves[ds]} - {baseline})
    colors = {m: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(others)}
    for ax, ds in zip(axes, datasets):
        for m in sorted(curves[ds]):
            pts = curves[ds][m]
            style = ({"color": BASELINE_COLOR, "linewidth": 2.2} if m == baseline
                     else {"color": colors[m], "linewidth": 1.2})
            ax.plot([e for e, _ in pts], [v for _, v in pts], marker=".", label=m, **style)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation IoU")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def leaderboard_plot_rows(board: Mapping) -> dict[str, list[dict]]:
    """Rows for ``dvc plots``, one table per in-domain dataset (so each bar chart shows one
    dataset's models, never a sum over datasets): model, iou_mean, ci_low, ci_high."""
    return {ds: [{"model": m, "iou_mean": r["iou_mean"], "ci_low": r["iou_ci_low"], "ci_high": r["iou_ci_high"]}
                 for m, r in sorted(board["datasets"][ds]["models"].items())]
            for ds in sorted(board["datasets"])}
