"""Leaderboard: every variant against the baseline, per dataset and zero-shot, with paired tests.

Input is per-image score tables (one row per test image, ``id`` the image key). A variant and the
baseline are always paired by merging on ``id`` (never by row order), so a reordered CSV cannot
silently pair the wrong images. Holm's correction runs across the variants within one dataset (or
one zero-shot pair), the family of comparisons a reader of that table makes. The output holds
only str/bool/int/float/None, never NaN, so it can be written as JSON and diffed byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from ubench.analysis import ubench_reference as ubref
from ubench.analysis.degenerate import CRITERION, degeneracy, describe
from ubench.analysis.stats import BOOTSTRAP_METHOD, bootstrap_ci, check_probability, holm, paired_test
from ubench.errors import AnalysisInputError
from ubench.io import json_safe

#: columns of a per-image score table
SCORE_COLUMNS = ("id", "iou", "dice", "se", "pc", "f1", "acc", "hd95")
#: metrics averaged over the images where they are finite. ``ubench.metrics`` defines each of them on
#: every image, hd95 included (0.0 when prediction and mask are both empty, the image diagonal when
#: exactly one is); a missing or NaN value (a table written elsewhere) is skipped, not averaged
SECONDARY = ("dice", "se", "pc", "f1", "acc", "hd95")


def _check_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Validate one per-image table: all columns, unique ids, at least one row, finite IoU."""
    if not isinstance(frame, pd.DataFrame):
        raise AnalysisInputError(f"{where}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise AnalysisInputError(f"{where}: per-image table lacks column(s) {missing}",
                                 f"the table needs {list(SCORE_COLUMNS)}; re-run evaluate")
    if len(frame) == 0:
        raise AnalysisInputError(f"{where}: per-image table has no rows", "re-run evaluate")
    dup = frame["id"][frame["id"].duplicated()].tolist()
    if dup:
        raise AnalysisInputError(f"{where}: image id(s) appear more than once: {dup[:5]}",
                                 "each test image must have exactly one row")
    iou = pd.to_numeric(frame["iou"], errors="coerce")
    if not np.isfinite(iou.to_numpy(dtype=float)).all():
        raise AnalysisInputError(f"{where}: iou has missing or non-finite values",
                                 "IoU is defined for every image (ubench's empty-mask rules); "
                                 "re-run evaluate")
    return frame


def _defined_mean(col: pd.Series) -> float | None:
    """Mean of the finite values of ``col`` (None/NaN/inf skipped); None if there are none."""
    vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else None


def _pair(variant: pd.DataFrame, base: pd.DataFrame, where: str, baseline: str) -> pd.DataFrame:
    """IoU of variant and baseline side by side, merged on ``id`` and sorted by it."""
    v_ids, b_ids = set(variant["id"]), set(base["id"])
    if v_ids != b_ids:
        only_v = sorted(map(str, v_ids - b_ids))
        only_b = sorted(map(str, b_ids - v_ids))
        raise AnalysisInputError(
            f"{where}: image ids differ from the baseline {baseline!r} "
            f"({len(only_v)} only in the variant, e.g. {only_v[:3]}; "
            f"{len(only_b)} only in the baseline, e.g. {only_b[:3]})",
            "evaluate both models on the same test split (same dataset version and split seed)")
    merged = variant[["id", "iou"]].merge(base[["id", "iou"]], on="id", suffixes=("_v", "_b"),
                                          validate="one_to_one")
    return merged.sort_values("id", kind="mergesort").reset_index(drop=True)


def _compare(frames: Mapping[str, pd.DataFrame], baseline: str, where: str,
             confidence: float, alpha: float) -> dict[str, dict]:
    """Per-model summary + paired test vs the baseline, Holm across the variants."""
    if baseline not in frames:
        raise AnalysisInputError(
            f"{where}: no results for the baseline model {baseline!r} "
            f"(models present: {sorted(frames)})",
            f"add {baseline!r} to grid.models in params.yaml (every variant is tested against it)")
    for m in frames:
        _check_frame(frames[m], f"{where}, model {m!r}")
    base = frames[baseline]
    rows: dict[str, dict] = {}
    for m in sorted(frames):
        f = frames[m]
        ci = bootstrap_ci(pd.to_numeric(f["iou"]).to_numpy(dtype=float), confidence)
        deg = degeneracy(f)
        row = {"iou_mean": ci["mean"], "iou_std": ci["std"], "iou_ci_low": ci["ci_low"],
               "iou_ci_high": ci["ci_high"], "pred_empty_share": deg["empty_share"],
               "pred_full_share": deg["full_share"], "degenerate": deg["degenerate"],
               "degenerate_kind": deg["kind"], "trivial_share": deg["trivial_share"]}
        for c in SECONDARY:
            row[f"{c}_mean"] = _defined_mean(f[c])
        if m == baseline:
            row.update(delta_iou=0.0, p_ttest=None, p_wilcoxon=None, effect_size=None)
        else:
            pair = _pair(f, base, f"{where}, model {m!r}", baseline)
            test = paired_test(pair["iou_v"].to_numpy(dtype=float),
                               pair["iou_b"].to_numpy(dtype=float))
            row.update(delta_iou=test["delta"], p_ttest=test["p_ttest"],
                       p_wilcoxon=test["p_wilcoxon"], effect_size=test["effect_size"])
        rows[m] = row
    variants = [m for m in sorted(rows) if m != baseline]
    adjusted = holm([rows[m]["p_ttest"] for m in variants])
    rows[baseline].update(p_holm=None, significant=False)
    for m, p in zip(variants, adjusted):
        rows[m].update(p_holm=p, significant=bool(p is not None and p < alpha))
    return rows


def _ranks(rows: Mapping[str, Mapping]) -> dict[str, int]:
    """1-based rank by mean IoU, highest first; ties share the lowest rank (method='min')."""
    s = pd.Series({m: r["iou_mean"] for m, r in rows.items()}, dtype=float)
    return {m: int(v) for m, v in s.rank(method="min", ascending=False).items()}


#: how ubench's order is compared with U-Bench's published one (written into every published block)
AGREEMENT_STATISTIC = "kendall_tau_b"
AGREEMENT_TEXT = "Kendall's tau-b (scipy.stats.kendalltau, two-sided p-value)"
AGREEMENT_SCOPE = ("only models both in this grid and in U-Bench's published top 10 are compared: "
                   "U-Bench publishes only its top 10, so a model outside it has no published rank")


def rank_agreement(shared: list[dict]) -> dict:
    """Kendall's tau-b between U-Bench's published ranks and ubench's ranks of the same models.

    ``shared``: entries with ``model``, ``rank`` (published) and ``rank_here`` (ubench's). Ties in
    ubench's ranks are handled by tau-b; tau and p are None, with the reason, when undefined.
    """
    out = {"statistic": AGREEMENT_STATISTIC, "description": AGREEMENT_TEXT, "compared": AGREEMENT_SCOPE,
           "models": [e["model"] for e in shared], "n": len(shared), "tau": None, "p_value": None,
           "reason": None}
    if len(shared) < 2:
        out["reason"] = (f"{len(shared)} model(s) of this grid in U-Bench's published top 10: "
                         "a rank correlation needs at least 2")
        return out
    res = kendalltau([e["rank"] for e in shared], [e["rank_here"] for e in shared])
    tau, p = float(res.statistic), float(res.pvalue)
    if not math.isfinite(tau):
        out["reason"] = "every shared model has the same rank here (equal mean IoU): tau is undefined"
        return out
    out.update(tau=tau, p_value=p if math.isfinite(p) else None)
    return out


def published_block(name: str, setting: str, ranks: Mapping[str, int]) -> dict | None:
    """U-Bench's published IoU top 10 for a table named like one of its datasets (or zero-shot
    pairs), with ubench's rank of each model it has here and the rank agreement; else None.

    So a reader sees at once whether this grid reproduces the published order.
    """
    key = ubref.resolve_dataset(name)
    if key is None or key not in ubref.ranked_datasets(setting):
        return None
    top10, seen = [], set()
    for e in ubref.published_top10(key, "iou"):
        here = ranks.get(e["model"]) if e["model"] is not None and e["model"] not in seen else None
        if here is not None:
            seen.add(e["model"])
        top10.append({"rank": int(e["rank"]), "name": e["name"], "model": e["model"],
                      "rank_here": None if here is None else int(here)})
    return {"dataset": key, "ranked_by": "iou", "source": ubref.source_label(),
            "note": "published by U-Bench, not measured here",
            "top10": top10,
            "agreement": rank_agreement([e for e in top10 if e["rank_here"] is not None])}


#: how imported U-Bench weights are named in every table (their rows never mix with trained ones)
IMPORTED_LABEL = "U-Bench weights"


def imported_label(model: str) -> str:
    return f"{model} ({IMPORTED_LABEL})"


def _imported_rows(frames: Mapping[str, pd.DataFrame], base: pd.DataFrame, baseline: str, where: str,
                   trained: Mapping[str, Mapping], confidence: float, alpha: float) -> dict[str, dict]:
    """Imported weights against the baseline trained here (paired, Holm across the imports of
    this table), each beside the IoU of the same model trained here when the grid has it."""
    labelled = {imported_label(m): f for m, f in frames.items()}
    rows = _compare({**labelled, baseline: base}, baseline, where, confidence, alpha)
    out = {}
    for m in sorted(frames):
        row = rows[imported_label(m)]
        here = trained.get(m)
        row["model"] = m
        row["trained_here_iou_mean"] = None if here is None else here["iou_mean"]
        out[imported_label(m)] = row
    return out


def build_leaderboard(in_domain: Mapping[str, Mapping[str, pd.DataFrame]],
                      zeroshot: Mapping[tuple[str, str], Mapping[str, pd.DataFrame]],
                      baseline: str = "unet", alpha: float = 0.05, confidence: float = 0.95,
                      protocol: str = "holdout",
                      imported: Mapping[str, Mapping[str, pd.DataFrame]] | None = None,
                      imported_zeroshot: Mapping[tuple[str, str], Mapping[str, pd.DataFrame]] | None = None,
                      ) -> dict:
    """Leaderboard dict (JSON-ready) from per-image score tables.

    ``in_domain``: dataset -> model -> per-image table on that dataset's test split.
    ``zeroshot``: (source, target) -> model -> per-image table of the model trained on ``source``,
    evaluated on all of ``target``. Every dataset and pair must include ``baseline``.

    Per dataset and model: IoU mean/std/CI, means of the other metrics (over the images where they
    are finite, None if none), delta IoU vs the baseline, paired t-test and Wilcoxon p-values,
    Cohen's d_z, Holm-adjusted t-test p across the variants, ``significant`` (p_holm < alpha) and
    rank by mean IoU. The baseline's own row has delta 0.0, no tests, significant False.
    Zero-shot rows add ``drop_vs_in_domain`` = in-domain IoU on the source minus zero-shot IoU
    (positive = worse out of domain; None without an in-domain result). ``overall`` aggregates
    the in-domain datasets: mean IoU and mean rank over datasets, and wins/losses = datasets where
    the variant is significantly better/worse than the baseline.

    A dataset or pair that U-Bench ranked (found by name, see ``ubench_reference.resolve_dataset``)
    also gets ``published``: U-Bench's top 10 by IoU, its source and the rank agreement
    (:func:`published_block`); the synthetic datasets have none.

    ``imported`` / ``imported_zeroshot`` (same shapes): U-Bench's released weights evaluated here.
    They go to ``board["imported"]``, apart from the trained models (no rank, not in ``overall``,
    the U-Score or the advisor), each tested against the baseline trained here, labelled
    "MODEL (U-Bench weights)".
    """
    check_probability("alpha", alpha, "0.05")
    check_probability("confidence", confidence, "0.95")
    if not in_domain:
        raise AnalysisInputError("no in-domain results to rank",
                                 "run the evaluate stages for grid.models x grid.datasets first")

    datasets: dict[str, dict] = {}
    for ds in sorted(in_domain):
        frames = in_domain[ds]
        rows = _compare(frames, baseline, f"dataset {ds!r}", confidence, alpha)
        ranks = _ranks(rows)
        for m, rank in ranks.items():
            rows[m]["rank"] = rank
        datasets[ds] = {"n_images": int(len(frames[baseline])), "models": rows}
        pub = published_block(ds, "in-domain", ranks)
        if pub is not None:
            datasets[ds]["published"] = pub

    zs: dict[str, dict] = {}
    for source, target in sorted(zeroshot):
        key = f"{source}->{target}"
        frames = zeroshot[(source, target)]
        rows = _compare(frames, baseline, f"zero-shot {key}", confidence, alpha)
        keep = ("iou_mean", "iou_ci_low", "iou_ci_high", "delta_iou", "p_ttest", "p_wilcoxon",
                "p_holm", "significant", "pred_empty_share", "pred_full_share", "degenerate",
                "degenerate_kind", "trivial_share")
        models = {}
        for m, r in rows.items():
            src = datasets.get(source, {}).get("models", {}).get(m)
            drop = None if src is None else src["iou_mean"] - r["iou_mean"]
            models[m] = {**{k: r[k] for k in keep}, "drop_vs_in_domain": drop}
        zs[key] = {"source": source, "target": target,
                   "n_images": int(len(frames[baseline])), "models": models}
        pub = published_block(key, "zero-shot", _ranks(rows))
        if pub is not None:
            zs[key]["published"] = pub

    overall: dict[str, dict] = {}
    def counts(d: Mapping, m: str) -> bool:
        """A win or loss counts only between two models that both learnt something."""
        return not (d["models"][m].get("degenerate") or d["models"][baseline].get("degenerate"))

    for m in sorted({m for d in datasets.values() for m in d["models"]}):
        per = [d["models"][m] for d in datasets.values() if m in d["models"]]
        fair = [d["models"][m] for d in datasets.values() if m in d["models"] and counts(d, m)]
        overall[m] = {
            "mean_iou": float(np.mean([r["iou_mean"] for r in per])),
            "mean_rank": float(np.mean([r["rank"] for r in per])),
            "n_datasets": len(per),
            "wins": sum(1 for r in fair if r["significant"] and r["delta_iou"] > 0),
            "losses": sum(1 for r in fair if r["significant"] and r["delta_iou"] < 0),
            "degenerate_on": sorted(ds for ds, d in datasets.items() if d["models"].get(m, {}).get("degenerate")),
        }

    imp: dict[str, dict] = {"label": IMPORTED_LABEL, "datasets": {}, "zeroshot": {}}
    for ds, frames in sorted((imported or {}).items()):
        if ds not in in_domain:
            raise AnalysisInputError(f"imported weights on {ds!r}, which has no trained results here",
                                     "list the dataset in grid.datasets (the imports are tested against its baseline)")
        imp["datasets"][ds] = {"models": _imported_rows(frames, in_domain[ds][baseline], baseline,
                                                        f"imported on {ds!r}", datasets[ds]["models"],
                                                        confidence, alpha)}
    for (source, target), frames in sorted((imported_zeroshot or {}).items()):
        key = f"{source}->{target}"
        if key not in zs:
            raise AnalysisInputError(f"imported weights zero-shot on {key}, which is not a grid.transfer pair",
                                     "add the pair to grid.transfer")
        rows = _imported_rows(frames, zeroshot[(source, target)][baseline], baseline,
                              f"imported, zero-shot {key}", zs[key]["models"], confidence, alpha)
        for label, r in rows.items():
            src = imp["datasets"].get(source, {}).get("models", {}).get(label)
            r["drop_vs_in_domain"] = None if src is None else src["iou_mean"] - r["iou_mean"]
        imp["zeroshot"][key] = {"source": source, "target": target, "models": rows}

    board = {"baseline": baseline, "protocol": protocol, "alpha": float(alpha),
             "confidence": float(confidence), "interval_method": BOOTSTRAP_METHOD,
             "degenerate_criterion": CRITERION, "datasets": datasets, "zeroshot": zs,
             "overall": overall, "warnings": degenerate_warnings(datasets, zs, baseline)}
    if imp["datasets"] or imp["zeroshot"]:
        board["imported"] = imp
        # a degenerate import is named like a trained model (the baseline's line is there already)
        board["warnings"] += [w for w in degenerate_warnings(imp["datasets"], imp["zeroshot"], baseline)
                              if w not in board["warnings"]]
    json_safe(board)  # a NaN here is a bug: fail before run_leaderboard writes the plot, not after
    return board


def degenerate_warnings(datasets: Mapping[str, Mapping], zeroshot: Mapping[str, Mapping],
                        baseline: str) -> list[str]:
    """One line per degenerate (model, dataset); a comparison with a degenerate baseline says so."""
    out = []
    tables = [(ds, d) for ds, d in sorted(datasets.items())] + \
             [(f"{z['source']} → {z['target']} (zero-shot)", z) for _, z in sorted(zeroshot.items())]
    for where, d in tables:
        for m, r in sorted(d["models"].items()):
            if r.get("degenerate"):
                out.append(describe(m, where, {"kind": r["degenerate_kind"], "trivial_share": r["trivial_share"]}))
        if d["models"].get(baseline, {}).get("degenerate"):
            out.append(f"every comparison on {where} is against a degenerate baseline ({baseline}): "
                       f"a variant that is 'better' there has beaten a model that learnt nothing")
    return out


# ---------------------------------------------------------------------------------------------
# Markdown

def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.4f}"


def format_p(x: float | None) -> str:
    """A p-value as the reports print it: 4 decimals, "<0.0001" below that, "–" when absent."""
    if x is None:
        return "–"
    return "<0.0001" if x < 0.0001 else f"{x:.4f}"


def _ci(r: Mapping) -> str:
    if r["iou_ci_low"] is None:
        return _f(r["iou_mean"])
    return f"{r['iou_mean']:.4f} [{r['iou_ci_low']:.4f}, {r['iou_ci_high']:.4f}]"


def significance_label(m: str, r: Mapping, baseline: str, base_row: Mapping | None = None) -> str:
    """The Significance cell of a leaderboard row (the markdown table and the HTML report)."""
    if r.get("degenerate"):
        return f"degenerate ({r['degenerate_kind']})" + (" · baseline" if m == baseline else "")
    if m == baseline:
        return "baseline"
    if base_row is not None and base_row.get("degenerate"):
        return "vs degenerate baseline"
    if not r["significant"]:
        return "n.s."
    return "better *" if r["delta_iou"] > 0 else "worse *"


def _shares(r: Mapping) -> str:
    if r.get("pred_empty_share") is None:
        return "–"
    return f"{r['pred_empty_share']:.0%} / {r['pred_full_share']:.0%}"


def _published_lines(pub: Mapping | None) -> list[str]:
    """The published top 10 with ubench's rank beside each model this grid has, and the agreement."""
    if not pub:
        return []
    items = [f"{e['rank']}. {e['name']}"
             + (f" (here: rank {e['rank_here']})" if e["rank_here"] is not None else "")
             for e in pub["top10"]]
    a = pub["agreement"]
    if a["tau"] is None:
        agree = f"not computed: {a['reason']}"
    else:
        agree = f"tau = {a['tau']:.3f}, p = {format_p(a['p_value'])}, n = {a['n']} ({', '.join(a['models'])})"
    return [f"U-Bench published top-10 (IoU), {pub['note']} ({pub['source']}): " + "; ".join(items) + ".",
            "",
            f"Rank agreement with U-Bench, {a['description']}: {agree}. Note: {a['compared']}.", ""]


def _imported_lines(board: Mapping) -> list[str]:
    """The tables of imported U-Bench weights (trained by U-Bench, evaluated here)."""
    imp, base = board.get("imported"), board["baseline"]
    if not imp:
        return []
    lines = [f"## {imp['label']}", "",
             "U-Bench's released checkpoints (`ubench weights import`), trained by U-Bench and evaluated here on "
             f"the same images, each tested against `{base}` trained here. \"Trained here\" is the same model "
             "trained by ubench, when the grid has it.", ""]
    head = ["| Model | IoU mean [CI] | ΔIoU vs baseline | p (t-test) | p (Wilcoxon) | p (Holm) | Significance "
            "| Empty / full predictions | Trained here |", "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    sections = [(ds, d["models"], board["datasets"][ds]["models"].get(base))
                for ds, d in sorted(imp["datasets"].items())]
    sections += [(f"{z['source']} → {z['target']} (zero-shot)", z["models"], board["zeroshot"][key]["models"].get(base))
                 for key, z in sorted(imp["zeroshot"].items())]
    for title, rows, base_row in sections:
        lines += [f"### {title}", "", *head]
        for label, r in sorted(rows.items(), key=lambda kv: (-kv[1]["iou_mean"], kv[0])):
            lines.append(f"| {label} | {_ci(r)} | {_signed(r['delta_iou'])} | {format_p(r['p_ttest'])} | "
                         f"{format_p(r['p_wilcoxon'])} | {format_p(r['p_holm'])} | "
                         f"{significance_label(label, r, base, base_row)} | {_shares(r)} | "
                         f"{_f(r['trained_here_iou_mean'])} |")
        lines.append("")
    return lines


def render_markdown(board: Mapping) -> str:
    """Readable leaderboard report; the same board always renders to the same text.

    Per dataset: model, IoU mean [CI], Dice, delta IoU vs baseline, p (t-test), p (Wilcoxon),
    p (Holm), significance, rank (rows by rank, then name). Then the zero-shot tables and the
    overall table (by mean rank, then name). Under a table U-Bench also ranked: its published
    top-10 by IoU, ubench's rank beside each model of the grid, and the rank agreement.
    """
    base = board["baseline"]
    conf = round(board["confidence"] * 100, 4)
    lines = ["# ubench leaderboard", "",
             f"- Protocol: `{board['protocol']}`",
             f"- Baseline: `{base}`; paired tests over the same test images (t-test as in the "
             f"paper, Wilcoxon signed-rank as a robust check), Holm-corrected across the variants "
             f"of each table; significance at alpha = {board['alpha']:g}",
             f"- IoU intervals: {conf:g}% {board.get('interval_method', 't-interval of the mean')}",
             f"- Degenerate (flagged, never starred): {board.get('degenerate_criterion', '–')}", ""]
    if board.get("warnings"):
        lines += ["## Warnings", ""] + [f"- ⚠ {w}" for w in board["warnings"]] + [""]
    if board["protocol"] == "ubench":
        lines += ["**Protocol `ubench`: the best epoch was chosen on the reported split, as U-Bench "
                  "does, so these numbers are optimistic.**", ""]

    lines += ["## In-domain", ""]
    for ds, d in sorted(board["datasets"].items()):
        lines += [f"### {ds} (n = {d['n_images']} test images)", "",
                  "| Model | IoU mean [CI] | Dice | ΔIoU vs baseline | p (t-test) | p (Wilcoxon) "
                  "| p (Holm) | Significance | Empty / full predictions | Rank |",
                  "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
        base_row = d["models"].get(base)
        for m, r in sorted(d["models"].items(), key=lambda kv: (kv[1]["rank"], kv[0])):
            lines.append(f"| {m} | {_ci(r)} | {_f(r['dice_mean'])} | {_signed(r['delta_iou'])} | "
                         f"{format_p(r['p_ttest'])} | {format_p(r['p_wilcoxon'])} | {format_p(r['p_holm'])} | "
                         f"{significance_label(m, r, base, base_row)} | {_shares(r)} | {r['rank']} |")
        lines.append("")
        lines += _published_lines(d.get("published"))

    if board["zeroshot"]:
        lines += ["## Zero-shot", "",
                  "Trained on the source dataset, evaluated on all of the target.", ""]
        for _key, z in sorted(board["zeroshot"].items()):
            lines += [f"### {z['source']} → {z['target']} (n = {z['n_images']} images)", "",
                      "| Model | IoU mean [CI] | ΔIoU vs baseline | p (t-test) | p (Wilcoxon) "
                      "| p (Holm) | Significance | Empty / full predictions | Drop vs in-domain |",
                      "|---|---|---:|---:|---:|---:|---|---:|---:|"]
            base_row = z["models"].get(base)
            for m, r in sorted(z["models"].items(), key=lambda kv: (-kv[1]["iou_mean"], kv[0])):
                lines.append(f"| {m} | {_ci(r)} | {_signed(r['delta_iou'])} | {format_p(r['p_ttest'])} | "
                             f"{format_p(r['p_wilcoxon'])} | {format_p(r['p_holm'])} | "
                             f"{significance_label(m, r, base, base_row)} | "
                             f"{_shares(r)} | {_signed(r['drop_vs_in_domain'])} |")
            lines.append("")
            lines += _published_lines(z.get("published"))

    lines += _imported_lines(board)
    lines += ["## Overall", "",
              "| Model | Mean IoU | Mean rank | Datasets | Wins | Losses | Degenerate on |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for m, r in sorted(board["overall"].items(), key=lambda kv: (kv[1]["mean_rank"], kv[0])):
        lines.append(f"| {m} | {r['mean_iou']:.4f} | {r['mean_rank']:.4f} | {r['n_datasets']} | "
                     f"{r['wins']} | {r['losses']} | {', '.join(r.get('degenerate_on', [])) or '–'} |")
    lines += ["", "Wins/losses: datasets where neither the variant nor the baseline is degenerate and "
              "the variant is significantly better/worse than "
              f"`{base}` (Holm-adjusted t-test p < {board['alpha']:g}).", ""]
    return "\n".join(lines)
