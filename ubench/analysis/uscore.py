"""U-Score: U-Bench's one number for accuracy against efficiency, as U-Bench defines it.

U-Bench (Tang et al. 2025, Eq. 1-3, and the "U-Score Calculator" of its project page) scores a
model on one dataset from four terms, each normalised by a 10th and a 90th percentile Q10/Q90:

    a = clip((IoU - Q10) / (Q90 - Q10), 0, 1)                 IoU, linear, per dataset
    p = clip((ln Q90 - ln P) / (ln Q90 - ln Q10), 0, 1)        parameters (M), log scale
    g = clip((ln Q90 - ln G) / (ln Q90 - ln Q10), 0, 1)        GFLOPs, log scale
    s = clip((S - Q10) / (Q90 - Q10), 0, 1)                    FPS, linear

    efficiency = 3 / (1/p + 1/g + 1/s)         harmonic mean, equal weights (Eq. 2)
    U-Score    = 2 / (1/a + 1/efficiency)      harmonic mean, alpha = 0.5 (Eq. 3)

The calculator raises each of a, p, g, s to at least a floor (0.05) before the harmonic means;
the printed equations have none. The floor is a parameter here (``uscore.floor``): 0.05 gives the
calculator's numbers, 0 the equations as printed (a zero term then makes the mean 0, its limit).

The percentiles are the reference. ``reference='ubench'`` uses U-Bench's published constants
(ubench/analysis/ubench_reference.py): params, GFLOPs and FPS percentiles of its 100-model zoo,
shared by all datasets, and IoU percentiles for its 20 in-domain datasets; a dataset it publishes
none for takes its IoU percentiles from the grid's models, and the report says so. With
``reference='grid'`` every percentile is computed over the models present (numpy's linear
percentiles; for params and GFLOPs the log of the percentile, as in Eq. 1). Where a grid
percentile pair is degenerate (Q90 == Q10: one model, or all alike) the term is 1.0 for every
model, so it neither rewards nor penalises anyone.

U-Bench measured FPS on a GPU. A U-Score from CPU FPS set against U-Bench's FPS percentiles is not
comparable with U-Bench's, and every output says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from ubench.analysis import ubench_reference as ubref
from ubench.errors import AnalysisInputError, UbenchError

DEFINITION = "U-Bench"
DEFINITION_TEXT = (
    "U-Bench's U-Score (Tang et al. 2025, Eq. 1-3; the project page's calculator): "
    "a = clip((IoU - Q10)/(Q90 - Q10)), s = clip((FPS - Q10)/(Q90 - Q10)), "
    "p = clip((ln Q90 - ln params)/(ln Q90 - ln Q10)), g likewise for GFLOPs; each term raised to "
    "at least `floor`; efficiency = harmonic mean of p, g, s; U-Score = harmonic mean of a and "
    "efficiency, in [0, 1] (U-Bench prints 100 x U-Score)"
)
REFERENCES = ("ubench", "grid")
#: below this many models grid percentiles are a poor stand-in for U-Bench's 100-model zoo
MIN_MODELS_FOR_PERCENTILES = 5
PCT_LOW, PCT_HIGH = 10, 90


# --- the terms -------------------------------------------------------------------------------

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


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def linear_term(x: float, q10: float, q90: float) -> float:
    """(x - Q10) / (Q90 - Q10) clipped to [0, 1]; 1.0 when Q90 == Q10 (see module docstring)."""
    if q90 == q10:
        return 1.0
    return _clip01((x - q10) / (q90 - q10))


def log_term(x: float, ln_q10: float, ln_q90: float) -> float:
    """(ln Q90 - ln x) / (ln Q90 - ln Q10) clipped to [0, 1]: smaller x scores higher."""
    if ln_q90 == ln_q10:
        return 1.0
    return _clip01((ln_q90 - math.log(x)) / (ln_q90 - ln_q10))


def check_floor(floor: float) -> float:
    if not (isinstance(floor, (int, float)) and 0.0 <= float(floor) < 1.0):
        raise UbenchError(f"U-Score floor must be in [0, 1), got {floor!r}",
                          "use 0.05 (U-Bench's calculator) or 0 (Eq. 1-3 as printed)")
    return float(floor)


def check_reference(reference: str) -> str:
    if reference not in REFERENCES:
        raise UbenchError(f"unknown U-Score reference {reference!r}",
                          "use `ubench` (U-Bench's published percentiles) or `grid` (the models present)")
    return reference


def _check_inputs(where: str, iou=None, params_m=None, gflops=None, fps=None) -> None:
    if iou is not None:
        if not (isinstance(iou, (int, float, np.number)) and math.isfinite(float(iou))):
            raise AnalysisInputError(f"{where}: IoU must be a number, got {iou!r}")
        if float(iou) > 1.0:
            raise AnalysisInputError(f"{where}: IoU {iou} is above 1: IoU is a fraction here",
                                     f"give it as a fraction: {float(iou) / 100:g}, not {iou}")
        if float(iou) < 0.0:
            raise AnalysisInputError(f"{where}: IoU must be in [0, 1], got {iou}")
    for key, val, stage in (("params", params_m, "complexity"), ("GFLOPs", gflops, "complexity"),
                            ("FPS", fps, "speed")):
        if val is None:
            continue
        if not (isinstance(val, (int, float, np.number)) and math.isfinite(float(val)) and float(val) > 0):
            raise AnalysisInputError(f"{where}: {key} must be a finite number > 0, got {val!r}",
                                     f"check its {stage} metrics file (or the value given)")


@dataclass(frozen=True)
class EfficiencyReference:
    """Percentiles of the three efficiency terms (params and GFLOPs as natural logs)."""

    ln_params_q10: float
    ln_params_q90: float
    ln_gflops_q10: float
    ln_gflops_q90: float
    fps_q10: float
    fps_q90: float
    source: str  # "ubench" or "grid"
    n_models: int | None = None  # grid: how many models the percentiles are over

    def to_dict(self) -> dict:
        d = asdict(self)
        return {
            "source": d["source"], "n_models": d["n_models"],
            "params": {"ln_q10": self.ln_params_q10, "ln_q90": self.ln_params_q90,
                       "q10": math.exp(self.ln_params_q10), "q90": math.exp(self.ln_params_q90)},
            "gflops": {"ln_q10": self.ln_gflops_q10, "ln_q90": self.ln_gflops_q90,
                       "q10": math.exp(self.ln_gflops_q10), "q90": math.exp(self.ln_gflops_q90)},
            "fps": {"q10": self.fps_q10, "q90": self.fps_q90},
        }


def ubench_efficiency_reference() -> EfficiencyReference:
    """U-Bench's published constants (its page states ln Q for params and GFLOPs)."""
    c = ubref.calculator()
    return EfficiencyReference(c["ln_params_q10"], c["ln_params_q90"], c["ln_gflops_q10"],
                               c["ln_gflops_q90"], c["fps_q10"], c["fps_q90"], "ubench")


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = np.percentile(np.asarray(values, dtype=float), [PCT_LOW, PCT_HIGH])
    return float(lo), float(hi)


def grid_efficiency_reference(models: Mapping[str, Mapping]) -> EfficiencyReference:
    """Percentiles over ``models`` ({name: {params_m, gflops, fps}}); ln of the percentile."""
    if not models:
        raise AnalysisInputError("no models to compute U-Score percentiles over",
                                 "run the complexity and speed stages first")
    for m, r in models.items():
        _check_inputs(f"model {m!r}", params_m=r.get("params_m"), gflops=r.get("gflops"), fps=r.get("fps"))
    names = sorted(models)
    p10, p90 = _percentiles([models[m]["params_m"] for m in names])
    g10, g90 = _percentiles([models[m]["gflops"] for m in names])
    s10, s90 = _percentiles([models[m]["fps"] for m in names])
    return EfficiencyReference(math.log(p10), math.log(p90), math.log(g10), math.log(g90), s10, s90,
                               "grid", len(names))


def efficiency_terms(params_m: float, gflops: float, fps: float, ref: EfficiencyReference,
                     floor: float) -> dict:
    """p, g, s (clipped, before the floor) and the efficiency (of the floored terms)."""
    p = log_term(params_m, ref.ln_params_q10, ref.ln_params_q90)
    g = log_term(gflops, ref.ln_gflops_q10, ref.ln_gflops_q90)
    s = linear_term(fps, ref.fps_q10, ref.fps_q90)
    eff = harmonic_mean([max(p, floor), max(g, floor), max(s, floor)])
    return {"norm_params": p, "norm_gflops": g, "norm_fps": s, "efficiency": eff}


def uscore_value(a: float, efficiency: float, floor: float) -> float:
    """Harmonic mean of the floored IoU term and the efficiency (Eq. 3)."""
    return harmonic_mean([max(a, floor), efficiency])


def percent_text(uscore: float) -> str:
    """100 x U-Score with two decimals, as the page's ``(uscore * 100).toFixed(2)``: the product
    is a double first, whose exact decimal value is then rounded, ties away from zero."""
    return str(Decimal(uscore * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# --- one model, as the calculator ------------------------------------------------------------

def calculate(iou: float, params_m: float, gflops: float, fps: float, iou_q10: float, iou_q90: float,
              eff_ref: EfficiencyReference, floor: float) -> dict:
    """Every term of one U-Score: normalised (``norm_*``), floored (``used_*``) and the result."""
    floor = check_floor(floor)
    _check_inputs("U-Score", iou=iou, params_m=params_m, gflops=gflops, fps=fps)
    a = linear_term(float(iou), iou_q10, iou_q90)
    eff = efficiency_terms(float(params_m), float(gflops), float(fps), eff_ref, floor)
    u = uscore_value(a, eff["efficiency"], floor)
    terms = {"norm_iou": a, **{k: eff[k] for k in ("norm_params", "norm_gflops", "norm_fps")}}
    return {**terms, **{k.replace("norm_", "used_"): max(v, floor) for k, v in terms.items()},
            "efficiency": eff["efficiency"], "uscore": u, "uscore_x100": percent_text(u)}


def calculator(iou: float, params_m: float, gflops: float, fps: float, dataset: str, *,
               reference: str, floor: float, grid: tuple[Mapping, Mapping] | None = None) -> dict:
    """``ubench uscore calc``: one model's U-Score on ``dataset``, as U-Bench's web page computes it.

    ``reference='ubench'``: U-Bench's constants; ``dataset`` is one of its 20 in-domain datasets
    (ubench name, page label or calculator key), or a dataset of ``grid`` (then its IoU
    percentiles come from the grid's models, as in the stage). ``reference='grid'``: every
    percentile from ``grid`` = (leaderboard, {model: efficiency record}) of the workspace.
    """
    reference, floor = check_reference(reference), check_floor(floor)
    _check_inputs("U-Score calculator", iou=iou, params_m=params_m, gflops=gflops, fps=fps)
    board, efficiency = grid if grid is not None else (None, None)
    grid_sets = {}
    if board is not None:
        grid_sets.update({ds: (d["models"], False) for ds, d in board["datasets"].items()})
        grid_sets.update({k: (z["models"], True) for k, z in board.get("zeroshot", {}).items()})
    notes = []
    published = ubref.iou_percentiles(dataset) if reference == "ubench" else None
    if published is not None:
        key = ubref.resolve_dataset(dataset)
        iou_ref = {"source": "ubench", "q10": published[0], "q90": published[1], "n_models": None}
    elif dataset in grid_sets:
        key = dataset
        rows, zero_shot = grid_sets[dataset]
        iou_ref = iou_reference(dataset, {m: float(rows[m]["iou_mean"]) for m in efficiency if m in rows},
                                reference, zero_shot)
        notes.append(f"IoU percentiles of {dataset} from the grid's {iou_ref['n_models']} model(s) "
                     f"({_why_grid(reference, zero_shot)})")
    elif reference == "ubench":
        raise UbenchError(
            f"U-Bench publishes no IoU percentiles for dataset {dataset!r}"
            + (" and it is not a dataset of this grid" if board is not None else ""),
            f"use one of U-Bench's datasets: {', '.join(ubref.iou_datasets())} (or the page's labels, "
            "e.g. ISIC2018, isic); for your own dataset run the pipeline and use `--reference grid`")
    else:
        known = sorted(grid_sets)
        raise UbenchError(f"dataset {dataset!r} is not in this grid's leaderboard",
                          f"known here: {', '.join(known) or 'none'}")
    eff_ref = (ubench_efficiency_reference() if reference == "ubench"
               else grid_efficiency_reference(efficiency))
    terms = calculate(iou, params_m, gflops, fps, iou_ref["q10"], iou_ref["q90"], eff_ref, floor)
    if reference == "ubench":
        notes.append(f"s assumes FPS measured on a GPU: U-Bench's FPS percentiles were "
                     f"(Q10 {eff_ref.fps_q10:g}, Q90 {eff_ref.fps_q90:g}); a CPU FPS is not comparable")
    return {
        "definition": DEFINITION, "floor": floor, "reference": reference,
        "reference_source": (ubref.source_label() if reference == "ubench"
                             else f"the grid's {eff_ref.n_models} model(s)"),
        "dataset": key, "dataset_given": dataset,
        "inputs": {"iou": float(iou), "params_m": float(params_m), "gflops": float(gflops), "fps": float(fps)},
        "percentiles": {"iou": {"q10": iou_ref["q10"], "q90": iou_ref["q90"], "source": iou_ref["source"]},
                        **{k: v for k, v in eff_ref.to_dict().items() if k in ("params", "gflops", "fps")}},
        **terms, "notes": notes,
    }


def render_calculation(c: Mapping) -> str:
    """The calculator's text: the U-Score as the page prints it, then every term."""
    pct, x = c["percentiles"], c["inputs"]
    floor = c["floor"]

    def used(norm: float) -> str:
        return f"{max(norm, floor):.4f}" + (" (floor)" if norm < floor else "")

    rows = [
        ("a", "IoU", f"{x['iou']:.10g}", f"{pct['iou']['q10']:.6g}", f"{pct['iou']['q90']:.6g}", c["norm_iou"]),
        ("p", "params (M)", f"{x['params_m']:.10g}", f"{pct['params']['q10']:.6g} (ln {pct['params']['ln_q10']:.6g})",
         f"{pct['params']['q90']:.6g} (ln {pct['params']['ln_q90']:.6g})", c["norm_params"]),
        ("g", "GFLOPs", f"{x['gflops']:.10g}", f"{pct['gflops']['q10']:.6g} (ln {pct['gflops']['ln_q10']:.6g})",
         f"{pct['gflops']['q90']:.6g} (ln {pct['gflops']['ln_q90']:.6g})", c["norm_gflops"]),
        ("s", "FPS", f"{x['fps']:.10g}", f"{pct['fps']['q10']:.6g}", f"{pct['fps']['q90']:.6g}", c["norm_fps"]),
    ]
    out = [f"U-Score: {c['uscore_x100']}",
           f"dataset {c['dataset']}, reference {c['reference']} ({c['reference_source']}), floor {floor:g}, "
           f"{c['definition']} definition", "",
           f"{'term':<16}{'value':>14}  {'Q10':>20}  {'Q90':>20}  {'normalised':>10}  used"]
    for sym, name, val, q10, q90, norm in rows:
        out.append(f"{sym + ' ' + name:<16}{val:>14}  {q10:>20}  {q90:>20}  {norm:>10.4f}  {used(norm)}")
    out.append(f"{'efficiency':<16}{'':>14}  {'':>20}  {'':>20}  {c['efficiency']:>10.4f}  "
               "harmonic mean of the used p, g, s")
    out.append(f"{'U-Score':<16}{'':>14}  {'':>20}  {'':>20}  {c['uscore']:>10.4f}  "
               "harmonic mean of the used a and efficiency")
    out += [f"note: {n}" for n in c["notes"]]
    return "\n".join(out)


# --- the grid: per (model, dataset) ----------------------------------------------------------

def iou_reference(dataset: str, ious: Mapping[str, float], reference: str,
                  zero_shot: bool = False) -> dict:
    """IoU Q10/Q90 for ``dataset``: U-Bench's where it publishes them (reference 'ubench', an
    in-domain dataset), else over ``ious`` (the grid's models there); with where they came from."""
    published = None if (zero_shot or reference == "grid") else ubref.iou_percentiles(dataset)
    if published is not None:
        return {"source": "ubench", "q10": published[0], "q90": published[1], "n_models": None}
    q10, q90 = _percentiles([ious[m] for m in sorted(ious)])
    return {"source": "grid", "q10": q10, "q90": q90, "n_models": len(ious)}


def _why_grid(reference: str, zero_shot: bool) -> str:
    if reference == "grid":
        return "reference: grid"
    if zero_shot:
        return "U-Bench publishes no IoU percentiles for zero-shot targets"
    return "U-Bench publishes no IoU percentiles for this dataset"


def _fps_check(devices: Mapping[str, str], reference: str, eff_ref: EfficiencyReference) -> dict:
    """Whether the FPS term can stand beside the reference's FPS percentiles, and why not.

    ``devices``: {model: 'cuda: NAME' | 'cpu: NAME' | 'unknown'} from metrics/speed/<model>.json.
    """
    not_gpu = sorted(m for m, d in devices.items() if d.split(":", 1)[0].strip() != "cuda")
    several = sorted(set(devices.values()))
    notes = []
    if reference == "ubench" and not_gpu:
        where = ", ".join(sorted({devices[m] for m in not_gpu}))
        notes.append(
            f"FPS of {', '.join(not_gpu)} was measured on {where}, not on a GPU: U-Bench's FPS "
            f"percentiles (Q10 {eff_ref.fps_q10:g}, Q90 {eff_ref.fps_q90:g} FPS) were measured on a GPU, "
            "so the FPS term s, the efficiency and the U-Score are NOT comparable with U-Bench's. Set "
            "`uscore.reference: grid` (percentiles over this grid's models) or run the speed stages "
            "on a GPU.")
    if len(several) > 1:
        notes.append(f"FPS was measured on several devices ({', '.join(several)}): the FPS terms of these "
                     "models are not comparable with each other; rerun the speed stages on one device.")
    return {"comparable_with_reference": (not not_gpu) if reference == "ubench" else None,
            "by_model": dict(sorted(devices.items())), "note": " ".join(notes) or None}


def uscore_report(board: Mapping, efficiency: Mapping[str, Mapping], reference: str, floor: float) -> dict:
    """metrics/uscore.json: U-Score of every (model, dataset) of the leaderboard, and overall.

    ``board``: metrics/leaderboard.json (``datasets``/``zeroshot`` -> ``models`` -> ``iou_mean``).
    ``efficiency``: {model: {params_m, gflops, fps, device}} with ``device`` as 'cuda: NAME' or
    'cpu: NAME'. The overall U-Score of a model is the mean of its per-dataset U-Scores over the
    in-domain datasets; ``zeroshot.uscore`` the mean over the zero-shot pairs.
    """
    reference, floor = check_reference(reference), check_floor(floor)
    models = sorted(efficiency)
    if not models:
        raise AnalysisInputError("no models to score", "run the complexity and speed stages first")
    for m in models:
        r = efficiency[m]
        _check_inputs(f"model {m!r}", params_m=r.get("params_m"), gflops=r.get("gflops"), fps=r.get("fps"))
    eff_ref = (ubench_efficiency_reference() if reference == "ubench"
               else grid_efficiency_reference({m: efficiency[m] for m in models}))
    per_model = {}
    for m in models:
        r = efficiency[m]
        terms = efficiency_terms(float(r["params_m"]), float(r["gflops"]), float(r["fps"]), eff_ref, floor)
        per_model[m] = {"params_m": float(r["params_m"]), "gflops": float(r["gflops"]),
                        "fps": float(r["fps"]), **terms}

    notes: list[str] = []

    def score_set(key: str, rows: Mapping[str, Mapping], zero_shot: bool) -> dict:
        ious = {m: float(rows[m]["iou_mean"]) for m in models if m in rows}
        if not ious:
            raise AnalysisInputError(f"{key}: none of the models {models} has a result there",
                                     "run `dvc repro` so that the leaderboard covers grid.models")
        for m, v in ious.items():
            _check_inputs(f"model {m!r} on {key}", iou=v)
        ref = iou_reference(key, ious, reference, zero_shot)
        if ref["source"] == "grid":
            why = _why_grid(reference, zero_shot)
            text = f"{key}: IoU percentiles from the grid's {ref['n_models']} model(s) ({why})"
            if ref["n_models"] < MIN_MODELS_FOR_PERCENTILES:
                text += "; fewer than 5 models: compare these U-Scores only within this grid"
            notes.append(text)
        norm = {m: linear_term(v, ref["q10"], ref["q90"]) for m, v in ious.items()}
        return {"iou_reference": ref["source"], "iou_q10": ref["q10"], "iou_q90": ref["q90"],
                "iou_reference_models": ref["n_models"], "iou": ious, "norm_iou": norm,
                "uscore": {m: uscore_value(norm[m], per_model[m]["efficiency"], floor) for m in ious}}

    datasets = {ds: score_set(ds, board["datasets"][ds]["models"], False) for ds in sorted(board["datasets"])}
    pairs = {}
    for key in sorted(board.get("zeroshot", {})):
        z = board["zeroshot"][key]
        pairs[key] = {"source": z["source"], "target": z["target"],
                      **score_set(key, z["models"], True)}

    def mean_over(sets: Mapping[str, Mapping]) -> dict[str, float]:
        out = {}
        for m in models:
            vals = [s["uscore"][m] for s in sets.values() if m in s["uscore"]]
            if vals:
                out[m] = float(np.mean(vals))
        return out

    imported = _imported_scores(board, datasets, pairs, per_model, floor)
    if reference == "grid" and len(models) < MIN_MODELS_FOR_PERCENTILES:
        notes.append(f"params, GFLOPs and FPS percentiles over {len(models)} model(s); U-Bench's come "
                     "from 100: compare these U-Scores only within this grid")
    devices = {m: str(efficiency[m].get("device") or "unknown") for m in models}
    report = {
        "definition": DEFINITION,
        "definition_text": DEFINITION_TEXT,
        "floor": floor,
        "reference": reference,
        "reference_source": (f"U-Bench's published constants ({ubref.source_label()})" if reference == "ubench"
                             else f"percentiles over the grid's {len(models)} model(s)"),
        "overall": ("uscore = mean of each model's per-dataset U-Scores over the grid's "
                    f"{len(datasets)} in-domain dataset(s); zeroshot.uscore = mean over its "
                    f"{len(pairs)} zero-shot pair(s)"),
        "uscore": mean_over(datasets),
        "models": per_model,
        "percentiles": eff_ref.to_dict(),
        "datasets": datasets,
        "zeroshot": {"uscore": mean_over(pairs), "pairs": pairs},
        "device": _fps_check(devices, reference, eff_ref),
        "notes": notes,
    }
    if imported is not None:  # only with grid.imported: a grid without imports keeps its bytes
        report["imported"] = imported
    return report


#: the leaderboard's name for imported weights (analysis.leaderboard.IMPORTED_LABEL; not imported
#: from there, so that the uscore stage runs without the leaderboard's code)
IMPORTED_LABEL = "U-Bench weights"


def _imported_scores(board: Mapping, datasets: Mapping, pairs: Mapping, per_model: Mapping,
                     floor: float) -> dict | None:
    """U-Bench's released weights evaluated here (``board["imported"]``), scored like a trained
    model: the IoU term against the same dataset's IoU percentiles (an import never moves them) and
    the efficiency of the same architecture as measured here; no U-Score, with the reason, where
    the grid does not measure that architecture. Labelled "MODEL (U-Bench weights)"; never ranked
    with the grid's models, nor in its overall means. None when nothing was imported."""
    imp = board.get("imported")
    if not imp:
        return None

    def score(sets: Mapping, section: Mapping) -> dict:
        out: dict[str, dict] = {}
        for key in sorted(section):
            ref = sets[key]
            for label, row in sorted(section[key]["models"].items()):
                model, iou = row["model"], float(row["iou_mean"])
                _check_inputs(f"{label} on {key}", iou=iou)
                a = linear_term(iou, ref["iou_q10"], ref["iou_q90"])
                eff = per_model.get(model)
                out.setdefault(key, {})[label] = {
                    "model": model, "iou": iou, "norm_iou": a,
                    "uscore": None if eff is None else uscore_value(a, eff["efficiency"], floor),
                    "why_none": None if eff is not None else (
                        f"{model} is not in grid.models, so its params, FLOPs and FPS are not measured "
                        "here: add it to grid.models for a U-Score")}
        return out

    scored = score(datasets, imp.get("datasets", {}))
    overall: dict[str, float] = {}
    for label in sorted({lb for rows in scored.values() for lb in rows}):
        vals = [rows[label]["uscore"] for rows in scored.values() if rows.get(label, {}).get("uscore") is not None]
        if vals:
            overall[label] = float(np.mean(vals))
    return {"label": IMPORTED_LABEL, "uscore": overall, "datasets": scored,
            "zeroshot": score(pairs, imp.get("zeroshot", {}))}


# --- the Markdown report ---------------------------------------------------------------------

def _x100(v: float | None) -> str:
    return "-" if v is None else percent_text(v)


def render_uscore_markdown(report: Mapping) -> str:
    """reports/uscore.md: overall table, one table per dataset, where each percentile came from."""
    ref = report["percentiles"]
    lines = ["# U-Score", ""]
    lines.append(f"Definition: {report['definition_text']}. Floor: {report['floor']:g}"
                 + (" (U-Bench's calculator)." if report["floor"] == 0.05 else
                    " (0 = Eq. 1-3 as printed)." if report["floor"] == 0 else "."))
    lines.append("")
    lines.append(f"Reference: `{report['reference']}`, {report['reference_source']}. "
                 "U-Scores below are 100 x U-Score, as U-Bench prints them.")
    lines.append("")
    fps = report["device"]
    if fps["note"]:
        lines += [f"> **FPS:** {fps['note']}", ""]
    for note in report["notes"]:
        lines.append(f"- {note}")
    if report["notes"]:
        lines.append("")
    lines.append(f"## Overall ({report['overall']})")
    lines.append("")
    lines.append("| rank | model | U-Score | zero-shot U-Score | params (M) | GFLOPs | FPS | p | g | s | efficiency |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    overall, zs = report["uscore"], report["zeroshot"]["uscore"]
    order = sorted(report["models"], key=lambda m: (-overall.get(m, -1.0), m))
    for rank, m in enumerate(order, start=1):
        r = report["models"][m]
        lines.append(f"| {rank} | {m} | {_x100(overall.get(m))} | {_x100(zs.get(m))} | {r['params_m']:.3f} | "
                     f"{r['gflops']:.3f} | {r['fps']:.1f} | {r['norm_params']:.3f} | {r['norm_gflops']:.3f} | "
                     f"{r['norm_fps']:.3f} | {r['efficiency']:.3f} |")
    lines.append("")
    sections = [("In-domain datasets", report["datasets"]), ("Zero-shot pairs", report["zeroshot"]["pairs"])]
    for title, sets in sections:
        if not sets:
            continue
        lines += [f"## {title}", ""]
        for key, d in sets.items():
            src = ("U-Bench's" if d["iou_reference"] == "ubench"
                   else f"the grid's {d['iou_reference_models']} model(s)")
            lines.append(f"### {key}: IoU Q10 {d['iou_q10']:.4f}, Q90 {d['iou_q90']:.4f} ({src})")
            lines.append("")
            lines.append("| rank | model | IoU | a | U-Score |")
            lines.append("|---:|---|---:|---:|---:|")
            for rank, m in enumerate(sorted(d["uscore"], key=lambda m: (-d["uscore"][m], m)), start=1):
                lines.append(f"| {rank} | {m} | {d['iou'][m]:.4f} | {d['norm_iou'][m]:.3f} | {_x100(d['uscore'][m])} |")
            lines.append("")
    imp = report.get("imported")
    if imp:
        lines += [f"## {imp['label']} (trained by U-Bench, evaluated here; not ranked with the grid)", ""]
        lines.append("The IoU term against each dataset's percentiles above; the efficiency of the same "
                     "architecture as measured here.")
        lines.append("")
        lines.append("| dataset / pair | model | IoU | a | U-Score |")
        lines.append("|---|---|---:|---:|---:|")
        for section in (imp["datasets"], imp["zeroshot"]):
            for key, rows in section.items():
                for label, r in rows.items():
                    score = _x100(r["uscore"]) if r["uscore"] is not None else f"- ({r['why_none']})"
                    lines.append(f"| {key} | {label} | {r['iou']:.4f} | {r['norm_iou']:.3f} | {score} |")
        lines.append("")
    lines += ["## Efficiency percentiles", ""]
    lines.append("U-Bench's published constants (shared by all datasets)." if ref["source"] == "ubench"
                 else f"Over the grid's {ref['n_models']} model(s) (shared by all datasets).")
    lines.append("")
    lines.append(f"- params (M): Q10 {ref['params']['q10']:.4g} (ln {ref['params']['ln_q10']:.4g}), "
                 f"Q90 {ref['params']['q90']:.4g} (ln {ref['params']['ln_q90']:.4g})")
    lines.append(f"- GFLOPs: Q10 {ref['gflops']['q10']:.4g} (ln {ref['gflops']['ln_q10']:.4g}), "
                 f"Q90 {ref['gflops']['q90']:.4g} (ln {ref['gflops']['ln_q90']:.4g})")
    lines.append(f"- FPS: Q10 {ref['fps']['q10']:.4g}, Q90 {ref['fps']['q90']:.4g}"
                 + (" (measured by U-Bench on a GPU)" if ref["source"] == "ubench" else ""))
    lines.append("- FPS devices: " + ", ".join(f"{m} {d}" for m, d in fps["by_model"].items()))
    return "\n".join(lines) + "\n"
