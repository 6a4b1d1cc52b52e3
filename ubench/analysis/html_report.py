"""reports/index.html: one self-contained page with everything the default run shows.

Why: ``dvc plots show`` writes HTML that loads Vega from a CDN, so offline most of its charts are
blank. This page needs no network: the figures are PNGs inlined as ``data:`` URIs, the styles are
inline, and the only script marks the page as rendered once every image has decoded (what the
browser test checks). It holds the leaderboard tables with their warnings and degenerate flags, the
IoU plot, the U-Score table and the IoU-vs-U-Score scatter, and the training curves (validation IoU
per epoch, one panel per dataset with every model overlaid).

Same inputs, same bytes (the PNGs are deterministic, see ``plots``), so DVC can hash the page.
"""

from __future__ import annotations

import base64
import csv
import html
from collections.abc import Mapping
from pathlib import Path

from ubench.analysis.leaderboard import format_p, significance_label
from ubench.errors import AnalysisInputError

VAL_IOU_TSV = Path("plots/metrics/val/iou.tsv")  # inside a dvclive folder, as train.py logs it

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;background:#fff}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0 1.2em}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.baseline td{color:#b00}tr.degenerate td{background:#fff1e6}
.flag{font-weight:bold;color:#b45309}ul.warn li{color:#8a4b00}img{max-width:100%;border:1px solid #eee}
p.meta{color:#555}
"""

_ONLOAD = """
window.addEventListener('load',function(){var ok=Array.prototype.every.call(document.images,
function(i){return i.complete&&i.naturalWidth>0;});document.body.setAttribute('data-rendered',
ok?'ok':'broken-images');});
"""


def read_curves(train_root: Path, datasets: list[str], models: list[str]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{dataset: {model: [(epoch, val IoU), ...]}} from the train stage's dvclive folders."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for d in datasets:
        for m in models:
            path = train_root / d / m / VAL_IOU_TSV
            if not path.is_file():
                raise AnalysisInputError(f"{path}: no training log for {m} on {d}; run `dvc repro` "
                                         "(the train stage writes it)")
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
            curves.setdefault(d, {})[m] = [(int(r["step"]) + 1, float(r["iou"])) for r in rows]
    return curves


def curve_rows(curves: Mapping) -> dict[str, list[dict]]:
    """Long-form rows per dataset (epoch, model, val_iou) for ``dvc plots`` (one chart per file)."""
    return {d: [{"epoch": e, "model": m, "val_iou": v} for m in sorted(per) for e, v in per[m]]
            for d, per in sorted(curves.items())}


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(x, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _board_table(section: Mapping, baseline: str, base_row: Mapping | None = None) -> str:
    """A leaderboard table; ``base_row`` when the baseline is not among the rows (imported weights)."""
    rows = section["models"]
    base_row = rows.get(baseline, base_row)
    order = sorted(rows, key=lambda m: (-rows[m]["iou_mean"], m))  # best first, as the ranks
    head = ("<tr><th>Rank</th><th>Model</th><th>IoU mean [CI]</th><th>Dice</th><th>ΔIoU vs baseline</th>"
            "<th>p (Holm)</th><th>Significance</th><th>Empty / full predictions</th></tr>")
    body = []
    for m in order:
        r = rows[m]
        cls = "baseline" if m == baseline else ("degenerate" if r.get("degenerate") else "")
        name = html.escape(m) + (" (baseline)" if m == baseline else "")
        if r.get("degenerate"):
            name += f' <span class="flag">degenerate: {html.escape(str(r.get("degenerate_kind")))}</span>'
        ci = f"{_fmt(r['iou_mean'])} [{_fmt(r.get('iou_ci_low'))}, {_fmt(r.get('iou_ci_high'))}]"
        shares = (f"{_pct(r.get('pred_empty_share'))} / {_pct(r.get('pred_full_share'))}")
        body.append(
            f'<tr class="{cls}"><td class="num">{r.get("rank", "–")}</td><td>{name}</td><td class="num">{ci}</td>'
            f'<td class="num">{_fmt(r.get("dice_mean"))}</td><td class="num">{_signed(r.get("delta_iou"))}</td>'
            f'<td class="num">{html.escape(format_p(r.get("p_holm")))}</td>'
            f'<td>{html.escape(significance_label(m, r, baseline, base_row))}</td>'
            f'<td class="num">{shares}</td></tr>')
    return f"<table>{head}{''.join(body)}</table>"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _signed(x) -> str:
    return "–" if x is None else f"{x:+.4f}"


def _uscore_table(report: Mapping) -> str:
    models = report["models"]
    order = sorted(report["uscore"], key=lambda m: (-report["uscore"][m], m))
    head = "<tr><th>Model</th><th>U-Score</th><th>Params (M)</th><th>GFLOPs</th><th>FPS</th></tr>"
    body = "".join(
        f'<tr><td>{html.escape(m)}</td><td class="num">{_fmt(report["uscore"][m])}</td>'
        f'<td class="num">{_fmt(models[m]["params_m"], 3)}</td><td class="num">{_fmt(models[m]["gflops"], 3)}</td>'
        f'<td class="num">{_fmt(models[m]["fps"], 1)}</td></tr>' for m in order)
    return f"<table>{head}{body}</table>"


def render_html(board: Mapping, uscore: Mapping, figures: Mapping[str, bytes]) -> str:
    """The page. ``figures``: PNG bytes for 'leaderboard', 'uscore' and 'training'."""
    for key in ("leaderboard", "uscore", "training"):
        if key not in figures:
            raise AnalysisInputError(f"report: the {key} figure is missing")
    base = board["baseline"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>ubench report</title>", f"<style>{_STYLE}</style>",
             f"<script>{_ONLOAD}</script></head><body>", "<h1>ubench report</h1>",
             f'<p class="meta">Protocol <code>{html.escape(str(board["protocol"]))}</code>; baseline '
             f'<code>{html.escape(base)}</code>; {html.escape(str(board.get("interval_method", "")))}</p>',
             f'<p class="meta">Degenerate (flagged, never starred): {html.escape(str(board["degenerate_criterion"]))}</p>']
    warnings = board.get("warnings") or []
    parts.append("<h2>Warnings</h2>")
    if warnings:
        parts.append('<ul class="warn">' + "".join(f"<li>⚠ {html.escape(w)}</li>" for w in warnings) + "</ul>")
    else:
        parts.append("<p>None: no model is degenerate on any dataset.</p>")
    parts.append("<h2>In-domain leaderboard</h2>")
    for d in sorted(board["datasets"]):
        sec = board["datasets"][d]
        parts.append(f"<h3>{html.escape(d)} (n = {sec['n_images']} test images)</h3>")
        parts.append(_board_table(sec, base))
    parts.append(_img(figures["leaderboard"], "mean IoU per model with its confidence interval"))
    if board.get("zeroshot"):
        parts.append("<h2>Zero-shot</h2>")
        for key in sorted(board["zeroshot"]):
            sec = board["zeroshot"][key]
            parts.append(f"<h3>{html.escape(sec['source'])} → {html.escape(sec['target'])} "
                         f"(n = {sec['n_images']} images)</h3>")
            parts.append(_board_table(sec, base))
    imp = board.get("imported")
    if imp:
        parts.append(f"<h2>{html.escape(imp['label'])}</h2>")
        parts.append("<p>U-Bench's released checkpoints (<code>ubench weights import</code>): trained by U-Bench, "
                     f"evaluated here on the same images, each tested against <code>{html.escape(base)}</code> "
                     "trained here (no rank: they are not part of the grid).</p>")
        for d in sorted(imp["datasets"]):
            parts.append(f"<h3>{html.escape(d)}</h3>")
            parts.append(_board_table(imp["datasets"][d], base, board["datasets"][d]["models"].get(base)))
        for key in sorted(imp["zeroshot"]):
            sec = imp["zeroshot"][key]
            parts.append(f"<h3>{html.escape(sec['source'])} → {html.escape(sec['target'])} (zero-shot)</h3>")
            parts.append(_board_table(sec, base, board["zeroshot"][key]["models"].get(base)))
    parts.append("<h2>U-Score</h2>")
    parts.append(f'<p class="meta">{html.escape(str(uscore.get("definition_text", "")))}</p>')
    fps_note = (uscore.get("device") or {}).get("note")
    if fps_note:  # CPU FPS beside U-Bench's GPU percentiles: said beside the table, as in uscore.md
        parts.append(f'<ul class="warn"><li>⚠ FPS: {html.escape(fps_note)}</li></ul>')
    parts.append(_uscore_table(uscore))
    imported = uscore.get("imported")
    if imported:  # U-Bench's weights, scored apart (never ranked with the grid)
        rows = [(key, label, r) for key, labels in imported["datasets"].items() for label, r in labels.items()]
        parts.append(f"<h3>{html.escape(imported['label'])}: trained by U-Bench, evaluated here (not ranked)</h3>")
        parts.append("<table><tr><th>Dataset</th><th>Model</th><th>IoU</th><th>U-Score</th></tr>" + "".join(
            f'<tr><td>{html.escape(key)}</td><td>{html.escape(label)}</td><td class="num">{_fmt(r["iou"])}</td>'
            f'<td class="num">{_fmt(r["uscore"]) if r["uscore"] is not None else html.escape("– (" + r["why_none"] + ")")}'
            "</td></tr>" for key, label, r in rows) + "</table>")
    parts.append(_img(figures["uscore"], "IoU against U-Score"))
    parts.append("<h2>Training curves</h2>")
    parts.append("<p>Validation IoU per epoch; the checkpoint kept is each model's best epoch.</p>")
    parts.append(_img(figures["training"], "validation IoU per epoch, per dataset"))
    parts.append("</body></html>\n")
    return "\n".join(parts)
