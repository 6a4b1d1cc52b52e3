"""U-Score: one number that trades accuracy against efficiency (U-Bench, section 2.4 / appendix E).

For each model the four terms are made "higher is better" (IoU, 1/params, 1/FLOPs, FPS) and
normalised to [0, 1] by the 10th and 90th percentiles over the models compared. Efficiency is the
equal-weight harmonic mean of the three efficiency terms, and the U-Score is the harmonic mean of
normalised IoU and efficiency. Because of the percentiles a U-Score means something only within
its reference set of models, which is why the table records that set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ubench.analysis.stats import AnalysisInputError

#: the four terms, in the order they are normalised and reported
TERMS = ("iou", "inv_params", "inv_flops", "fps")
#: below this many models the percentiles are a poor stand-in for the paper's ~100-model set
MIN_MODELS_FOR_PERCENTILES = 5


def harmonic_mean(values: Iterable[float]) -> float:
    """Equal-weight harmonic mean of non-negative terms; 0 if any term is 0 (the limit)."""
    vals = [float(v) for v in values]
    if not vals:
        raise AnalysisInputError("harmonic mean of no terms", "pass at least one term")
    if any(v < 0 or not math.isfinite(v) for v in vals):
        raise AnalysisInputError(f"harmonic mean needs finite non-negative terms, got {vals}")
    if any(v == 0.0 for v in vals):
        return 0.0
    return len(vals) / sum(1.0 / v for v in vals)


def _positive(row: Mapping, key: str, model: str) -> float:
    """``row[key]`` as a finite positive float, or a clear error naming the model."""
    val = row.get(key)
    if val is None:
        what = "no FPS measurement" if key == "fps" else f"no {key}"
        stage = "speed" if key == "fps" else "complexity"
        raise AnalysisInputError(f"model {model!r} has {what}",
                                 f"run the `ubench {stage} --model {model}` stage first")
    try:
        val = float(val)
    except (TypeError, ValueError):
        raise AnalysisInputError(f"model {model!r}: {key} is {val!r}, not a number") from None
    if not math.isfinite(val) or val <= 0:
        raise AnalysisInputError(f"model {model!r}: {key} must be a finite number > 0, got {val}",
                                 "check its complexity/speed metrics file")
    return val


def _normalise(x: np.ndarray, low_pct: float, high_pct: float) -> tuple[np.ndarray, float, float]:
    """(x - p_low) / (p_high - p_low) clipped to [0, 1]; all ones when p_high == p_low."""
    p_lo, p_hi = (float(v) for v in np.percentile(x, [low_pct, high_pct]))
    if p_hi == p_lo:
        return np.ones_like(x), p_lo, p_hi
    return np.clip((x - p_lo) / (p_hi - p_lo), 0.0, 1.0), p_lo, p_hi


def uscore_table(rows: Sequence[Mapping], low_pct: float = 10, high_pct: float = 90) -> dict:
    """U-Score of every model in ``rows``, normalised over exactly these models.

    ``rows``: dicts with ``model``, ``iou`` (in [0, 1]), ``params_m`` (millions), ``gflops`` and
    ``fps``. Each term is normalised as ``(x - p10) / (p90 - p10)`` clipped to [0, 1], percentiles
    by numpy's linear interpolation. When ``p90 == p10`` for a term (all models alike on it, or a
    single model) that term cannot tell the models apart and is set to 1.0 for every model, so it
    neither rewards nor penalises anyone. A harmonic mean with a zero term is 0.

    Returns ``reference_models`` (sorted), ``percentiles`` per term (keys ``p10``/``p90`` name the
    low/high percentile whatever ``low_pct``/``high_pct`` are), per-model raw and normalised
    terms with ``efficiency`` and ``uscore``, and a ``warning`` (str or None) when fewer than
    five models make the reference set.
    """
    if not 0 <= low_pct < high_pct <= 100:
        raise AnalysisInputError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}",
                                 "use the paper's 10 and 90")
    if not rows:
        raise AnalysisInputError("no models to score", "run the complexity and speed stages first")
    names: list[str] = []
    raw: dict[str, dict[str, float]] = {}
    for row in rows:
        model = row.get("model")
        if not isinstance(model, str) or not model:
            raise AnalysisInputError(f"U-Score row without a model name: {dict(row)!r}")
        if model in raw:
            raise AnalysisInputError(f"model {model!r} appears twice in the U-Score input",
                                     "give one row per model")
        iou = row.get("iou")
        if iou is None or not (isinstance(iou, (int, float, np.number)) and 0.0 <= float(iou) <= 1.0):
            raise AnalysisInputError(f"model {model!r}: iou must be a number in [0, 1], got {iou!r}",
                                     "pass IoU as a fraction, not a percentage")
        raw[model] = {"iou": float(iou), "params_m": _positive(row, "params_m", model),
                      "gflops": _positive(row, "gflops", model), "fps": _positive(row, "fps", model)}
        names.append(model)
    names.sort()

    term_values = {
        "iou": [raw[m]["iou"] for m in names],
        "inv_params": [1.0 / raw[m]["params_m"] for m in names],
        "inv_flops": [1.0 / raw[m]["gflops"] for m in names],
        "fps": [raw[m]["fps"] for m in names],
    }
    normed: dict[str, np.ndarray] = {}
    percentiles: dict[str, dict[str, float]] = {}
    for term in TERMS:
        normed[term], p_lo, p_hi = _normalise(np.asarray(term_values[term]), low_pct, high_pct)
        percentiles[term] = {"p10": p_lo, "p90": p_hi}

    models = {}
    for i, m in enumerate(names):
        a = float(normed["iou"][i])
        eff_terms = [float(normed[t][i]) for t in ("inv_params", "inv_flops", "fps")]
        e = harmonic_mean(eff_terms)
        models[m] = {**raw[m], "norm_iou": a, "norm_inv_params": eff_terms[0],
                     "norm_inv_flops": eff_terms[1], "norm_fps": eff_terms[2],
                     "efficiency": e, "uscore": harmonic_mean([a, e])}

    warning = None
    if len(names) < MIN_MODELS_FOR_PERCENTILES:
        warning = (f"U-Score normalised over {len(names)} models; the paper's percentiles assume "
                   "many — compare only within this set")
    return {"reference_models": names, "percentiles": percentiles, "models": models,
            "warning": warning}


def render_uscore_markdown(table: Mapping) -> str:
    """Markdown report: models by U-Score (highest first, ties by name), reference set, warning."""
    lines = ["# U-Score", ""]
    refs = table["reference_models"]
    lines.append(f"Normalised over {len(refs)} model(s): {', '.join(refs)}. "
                 "A U-Score is comparable only within this reference set.")
    lines.append("")
    if table.get("warning"):
        lines += [f"> **Warning:** {table['warning']}", ""]
    lines.append("| Rank | Model | IoU | Params (M) | FLOPs (G) | FPS | Norm IoU | Efficiency | U-Score |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    order = sorted(table["models"].items(), key=lambda kv: (-kv[1]["uscore"], kv[0]))
    for rank, (m, r) in enumerate(order, start=1):
        lines.append(f"| {rank} | {m} | {r['iou']:.4f} | {r['params_m']:.4f} | {r['gflops']:.4f} | "
                     f"{r['fps']:.4f} | {r['norm_iou']:.4f} | {r['efficiency']:.4f} | "
                     f"{r['uscore']:.4f} |")
    lines.append("")
    lines.append("Percentiles (p10 / p90) per term:")
    lines.append("")
    for term in TERMS:
        p = table["percentiles"][term]
        lines.append(f"- {term}: {p['p10']:.4f} / {p['p90']:.4f}")
    return "\n".join(lines) + "\n"
