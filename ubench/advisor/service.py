"""Training the advisor from the pipeline's outputs, and answering `ubench advise`.

The model file (``models/advisor.json``) carries everything `advise` needs besides the new
dataset: the ranker, what it ranks by, and the attributes of each model it knows (params, FLOPs,
FPS, family), so a published advisor can be pulled (`dvc pull models/advisor.json`) and used
without training anything. With fewer than two datasets in the grid nothing can be learnt or held
out: the stage then writes both files with ``trained: false`` and the reason, and `advise` says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ubench import paths
from ubench.config import Config, as_dict
from ubench.errors import UbenchError
from ubench.io import json_dumps, write_json_atomic, write_text_atomic

ADVICE_COLUMNS = ("model", "family", "params_m", "gflops", "fps", "predicted")


def train_advisor(cfg: Config, model_path: Path = paths.ADVISOR_MODEL,
                  metrics_path: Path = paths.ADVISOR_METRICS) -> dict:
    """Build the table, evaluate leave-one-dataset-out, train on everything, write both files."""
    from ubench.advisor.ranker import CATEGORICAL_FEATURES, evaluate_lodo, train_ranker
    from ubench.advisor.table import build_table, numeric_features

    ac = cfg.advisor
    datasets = list(cfg.grid.datasets)
    if len(datasets) < 2:
        reason = (f"the grid has {len(datasets)} in-domain dataset ({', '.join(datasets)}): the advisor "
                  "needs at least 2 to learn how rankings change with the data and to hold one out")
        doc = {"trained": False, "reason": reason, "by": ac.by, "datasets": datasets}
        write_text_atomic(model_path, json_dumps(doc))
        write_json_atomic(metrics_path, doc)
        return doc
    table, models = build_table(cfg, ac.by)
    numeric = numeric_features(ac.by)
    params = {"n_estimators": ac.n_estimators}
    lodo = evaluate_lodo(table, k=ac.k, seed=ac.seed, params=params, numeric=numeric,
                         categorical=list(CATEGORICAL_FEATURES))
    advisor = train_ranker(table, seed=ac.seed, params=params, numeric=numeric,
                           categorical=list(CATEGORICAL_FEATURES))
    doc = {**advisor.to_dict(), "trained": True, "by": ac.by, "model_table": models,
           "config": as_dict(ac)}
    write_text_atomic(model_path, json_dumps(doc))
    metrics = {"trained": True, "by": ac.by, "k": ac.k, "lodo": lodo,
               f"advisor_ndcg_at_{ac.k}": lodo["mean"]["advisor"]["ndcg_at_k"],
               f"baseline_ndcg_at_{ac.k}": lodo["mean"]["baseline"]["ndcg_at_k"],
               "advisor_spearman": lodo["mean"]["advisor"]["spearman"],
               "baseline_spearman": lodo["mean"]["baseline"]["spearman"]}
    write_json_atomic(metrics_path, metrics)
    return metrics


def load_model_file(path: Path):
    """(Advisor, the file's ubench metadata) — clear errors for a missing or untrained file."""
    from ubench.advisor.ranker import load_advisor

    path = Path(path)
    if not path.exists():
        raise UbenchError(
            f"advisor model {path} not found",
            "train it with `dvc repro advisor`, or fetch the published one with `dvc pull models/advisor.json`",
        )
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not doc.get("trained", False):
        raise UbenchError(f"the advisor in {path} was not trained: {doc.get('reason', 'unknown reason')}",
                          "add a second dataset to grid.datasets and `dvc repro advisor`")
    return load_advisor(path), doc


def dataset_features(dataset: str, prepared_root: Path = Path("data/prepared")) -> tuple[str, dict]:
    """(name, {modality, attributes…}) of a prepared dataset, given its name or its folder.

    A manifest without attributes (prepared by an older ubench) gets them computed from the arrays.
    """
    from ubench.advisor.features import dataset_attributes
    from ubench.advisor.ranker import DATASET_FEATURES

    folder = Path(dataset)
    if not (folder / "manifest.json").exists():
        folder = Path(prepared_root) / dataset
    if not (folder / "manifest.json").exists():
        from ubench.data.registry import list_datasets

        known = dataset in list_datasets()
        raise UbenchError(
            f"no prepared dataset at {dataset!r}" + (f" (it is registered but not prepared: {folder} is missing)" if known else ""),
            f"run `ubench prepare {Path(dataset).name}` first" if known else
            "pass a registered dataset name you have prepared, or a folder with manifest.json, images.npy and masks.npy",
        )
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    attrs = manifest.get("attributes")
    if not attrs:
        attrs = dataset_attributes(np.load(folder / "images.npy", mmap_mode="r"),
                                   np.load(folder / "masks.npy", mmap_mode="r"),
                                   int(manifest.get("num_classes", 1)))
    return manifest.get("name", folder.name), {
        "modality": manifest.get("modality", "unknown"), **{k: attrs.get(k) for k in DATASET_FEATURES}}


def _fps(model: str, rec: dict) -> float | None:
    """FPS from the model file (advisors ranking by U-Score), else this workspace's measurement."""
    if rec.get("fps") is not None:
        return float(rec["fps"])
    p = paths.speed_json(model)
    return float(json.loads(p.read_text(encoding="utf-8"))["fps"]) if p.exists() else None


def _limit_text(max_params, max_gflops, min_fps) -> str:
    parts = [f"params <= {max_params} M" if max_params is not None else "",
             f"GFLOPs <= {max_gflops}" if max_gflops is not None else "",
             f"FPS >= {min_fps}" if min_fps is not None else ""]
    return ", ".join(p for p in parts if p) or "none"


def recommend(dataset: str, model_path: Path = paths.ADVISOR_MODEL, *, by: str | None = None,
              max_params: float | None = None, max_gflops: float | None = None,
              min_fps: float | None = None, top: int = 5) -> tuple[pd.DataFrame, dict]:
    """The advisor's ranking of its known models for ``dataset`` under the resource limits."""
    for name, value in (("--max-params", max_params), ("--max-gflops", max_gflops), ("--min-fps", min_fps)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UbenchError(f"{name} must be a non-negative number, got {value}", f"e.g. {name} 5")
    if top < 1:
        raise UbenchError(f"--top must be >= 1, got {top}", "e.g. --top 5")
    advisor, doc = load_model_file(model_path)
    if by is not None and by != doc["by"]:
        raise UbenchError(
            f"the advisor in {model_path} ranks by {doc['by']}, not {by}",
            f"retrain it with `dvc exp run -S advisor.by={by}` (or drop --by)",
        )
    name, feats = dataset_features(dataset)
    rows = [{"dataset": name, "model": m, **feats, **rec, "fps": _fps(m, rec)}
            for m, rec in sorted(doc["model_table"].items())]
    table = pd.DataFrame(rows)
    keep = pd.Series(True, index=table.index)
    if max_params is not None:
        keep &= table["params_m"] <= max_params
    if max_gflops is not None:
        keep &= table["gflops"] <= max_gflops
    if min_fps is not None:
        if table["fps"].isna().all():
            raise UbenchError("--min-fps needs FPS measurements, and none are available here",
                              "run the speed stages (`dvc repro speed`) or drop --min-fps")
        keep &= table["fps"].fillna(-1.0) >= min_fps
    if not keep.any():
        best = (f"smallest params {table['params_m'].min():.3g} M, smallest GFLOPs "
                f"{table['gflops'].min():.3g}, highest FPS "
                + (f"{table['fps'].max():.3g}" if table["fps"].notna().any() else "unmeasured"))
        raise UbenchError(
            f"no model the advisor knows meets the limits ({_limit_text(max_params, max_gflops, min_fps)})",
            f"relax them: {best}",
        )
    table = table[keep].reset_index(drop=True)
    table["predicted"] = advisor.predict(table)
    table = table.sort_values(["predicted", "model"], ascending=[False, True], kind="stable")
    info = {"dataset": name, "by": doc["by"], "features": feats,
            "limits": _limit_text(max_params, max_gflops, min_fps), "candidates": int(keep.sum()),
            "trained_on": list(doc["training"]["datasets"])}
    return table.head(top).reset_index(drop=True)[list(ADVICE_COLUMNS)], info


def render_advice(table: pd.DataFrame, info: dict) -> str:
    """The ranked table as Markdown, with the dataset's attributes above it."""
    f = info["features"]

    def num(v, fmt):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    head = [
        f"Advice for {info['dataset']} (ranked by predicted {info['by']}; advisor trained on "
        f"{', '.join(info['trained_on'])})",
        f"attributes: modality {f['modality']}, foreground fraction {num(f.get('foreground_fraction'), '.3f')}, "
        f"boundary contrast {num(f.get('boundary_contrast'), '.2f')}, solidity {num(f.get('solidity'), '.3f')}",
        f"limits: {info['limits']} ({info['candidates']} model(s) qualify)",
        "",
        "| rank | model | family | predicted score | params (M) | GFLOPs | FPS |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in table.iterrows():
        head.append(f"| {i + 1} | {r['model']} | {r['family']} | {r['predicted']:.3f} | "
                    f"{r['params_m']:.3f} | {r['gflops']:.3f} | {num(r['fps'], '.1f')} |")
    head.append("\nThe predicted score orders models for this dataset; it is not an IoU.")
    return "\n".join(head)
