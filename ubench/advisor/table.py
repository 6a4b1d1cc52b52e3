"""The advisor's training table, assembled from the pipeline's outputs.

One row per (dataset, model) of the grid: the score to rank by (the leaderboard's mean test IoU,
or the U-Score computed per dataset from that IoU and the model's efficiency), the dataset's
attributes and modality (recorded by the evaluate stage in ``metrics/eval/<ds>/<model>.json``)
and the model's attributes (family and deep supervision from the registry, params and FLOPs from
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
    """Attributes of one model of the grid (from the registry and the efficiency stages)."""
    from ubench.models import model_info

    info = model_info(model)
    cx = _read(paths.complexity_json(model), "complexity")
    rec = {
        "family": info.family,
        "deep_supervision": int(bool(info.deep_supervision)),
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
    rows = []
    for ds in cfg.grid.datasets:
        entries = board["datasets"][ds]["models"]
        scores = {m: float(entries[m]["iou_mean"]) for m in cfg.grid.models}
        if by == "uscore":
            scores = per_dataset_uscore(scores, models)
        for m in cfg.grid.models:
            rows.append({"dataset": ds, "model": m, "score": scores[m],
                         **dataset_record(ds, m), **models[m]})
    return pd.DataFrame(rows), models


def per_dataset_uscore(ious: dict[str, float], models: dict[str, dict]) -> dict[str, float]:
    """U-Score of each model on one dataset (that dataset's IoU, the models' efficiency)."""
    from ubench.analysis.uscore import uscore_table

    rows = [{"model": m, "iou": ious[m], **{k: models[m][k] for k in ("params_m", "gflops", "fps")}}
            for m in sorted(ious)]
    table = uscore_table(rows)
    return {m: float(v["uscore"]) for m, v in table["models"].items()}
