"""The advisor's training table, assembled from the pipeline's outputs.

One row per (dataset, model) of the grid: the score to rank by (the leaderboard's mean test IoU,
or the model's U-Score on that dataset as the uscore stage wrote it in metrics/uscore.json), the dataset's
attributes and modality (recorded by the evaluate stage in ``metrics/eval/<ds>/<model>.json``)
and the model's attributes (family, deep supervision, params and FLOPs as recorded by
``metrics/complexity``, FPS from ``metrics/speed``).

FPS is a measurement: it differs between runs and machines. So it is a feature only when ranking
by U-Score (which depends on it anyway); ranking by IoU uses computed features only, and the
advisor stage stays a pure function of its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ubench import paths
from ubench.advisor.ranker import DATASET_FEATURES
from ubench.config import Config
from ubench.errors import UbenchError

STATIC_MODEL_FEATURES = ("params_m", "gflops", "deep_supervision")


def numeric_features(by: str) -> list[str]:
    """The numeric features used when ranking ``by`` 'iou' or 'uscore' (see module docstring)."""
    return [*DATASET_FEATURES, *STATIC_MODEL_FEATURES, *(("fps",) if by == "uscore" else ())]


def _read(path: Path, what: str) -> dict:
    if not path.exists():
        raise UbenchError(f"{what} {path} missing", "run `dvc repro` (the stages before advisor) first")
    return json.loads(path.read_text(encoding="utf-8"))


def model_record(model: str, with_speed: bool) -> dict:
    """Attributes of one model of the grid, as its complexity stage recorded them (registry facts
    included), so the advisor stage depends on that stage's output, not on the model code."""
    cx = _read(paths.complexity_json(model), "complexity")
    if "deep_supervision" not in cx:
        raise UbenchError(f"{paths.complexity_json(model)} predates this ubench (no `deep_supervision`)",
                          "run `dvc repro` to recompute the complexity stage")
    rec = {
        "family": str(cx["family"]),
        "deep_supervision": int(bool(cx["deep_supervision"])),
        "params_m": float(cx["params_m"]),
        "gflops": float(cx["gflops"]),
        "fps": None,
    }
    if with_speed:  # a measurement: kept out of the file when ranking by IoU (determinism)
        rec["fps"] = float(_read(paths.speed_json(model), "speed")["fps"])
    return rec


def dataset_record(dataset: str, model: str) -> dict:
    """A dataset's modality and attributes, as the evaluate stage recorded them."""
    summary = _read(paths.eval_json(dataset, model), "evaluation summary")
    info = summary.get("dataset_info") or {}
    attrs = info.get("attributes")
    if not attrs:
        raise UbenchError(
            f"{paths.eval_json(dataset, model)} has no dataset attributes (written by an older ubench)",
            "rerun the prepare and evaluate stages: `dvc repro -f -s prepare@... evaluate@...`",
        )
    return {"modality": info.get("modality", "unknown"), **{k: attrs.get(k) for k in DATASET_FEATURES}}


def build_table(cfg: Config, by: str) -> tuple[pd.DataFrame, dict[str, dict]]:
    """(table of (dataset, model) rows, per-model records) for the grid's in-domain datasets."""
    board = _read(paths.LEADERBOARD_JSON, "leaderboard")
    models = {m: model_record(m, with_speed=by == "uscore") for m in cfg.grid.models}
    uscores = _read(paths.USCORE_JSON, "U-Score") if by == "uscore" else None
    rows = []
    for ds in cfg.grid.datasets:
        entries = board["datasets"][ds]["models"]
        scores = {m: float(entries[m]["iou_mean"]) for m in cfg.grid.models}
        if by == "uscore":
            scores = per_dataset_uscore(uscores, ds, cfg.grid.models)
        for m in cfg.grid.models:
            rows.append({"dataset": ds, "model": m, "score": scores[m],
                         **dataset_record(ds, m), **models[m]})
    return pd.DataFrame(rows), models


def per_dataset_uscore(report: dict, dataset: str, models) -> dict[str, float]:
    """Each model's U-Score on ``dataset``, as the uscore stage wrote it in metrics/uscore.json.

    The stage's file is the one source of U-Scores (U-Bench's definition, with the reference and
    floor of params.yaml's ``uscore`` section), so the advisor ranks by exactly what the report shows.
    """
    per = report.get("datasets", {}).get(dataset, {}).get("uscore")
    if report.get("definition") != "U-Bench" or per is None or any(m not in per for m in models):
        raise UbenchError(
            f"{paths.USCORE_JSON} has no U-Bench U-Score for every model on {dataset} "
            "(written by an older ubench, or for another grid)",
            "rerun the uscore stage: `dvc repro uscore`")
    return {m: float(per[m]) for m in models}
