"""Evaluation: per-image metrics of a checkpoint on a split (in-domain) or a whole target dataset
(zero-shot), written as a per-image CSV (the unit of the paired tests) and a summary JSON."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ubench.analysis.degenerate import CRITERION as DEGENERATE_CRITERION
from ubench.analysis.degenerate import degeneracy
from ubench.checkpoint import load_checkpoint
from ubench.config import Config, as_dict
from ubench.data.batches import SplitBatches
from ubench.errors import UbenchError
from ubench.inference import EVAL_BATCH, make_dataset, predict_scores
from ubench.io import json_dumps, write_files_atomic
from ubench.metrics import EMPTY_RULES, METRIC_NAMES, class_columns
from ubench.models import uses_selective_scan
from ubench.runtime import device, make_deterministic, platform_fingerprint

PROTOCOL_NOTES = {
    "holdout": "best epoch chosen on the validation split; reported on a separate test split",
    "ubench": "U-Bench protocol: best epoch chosen on the reported split itself (optimistic; "
              "comparable with U-Bench's published numbers, not an unbiased estimate)",
}

# Per-image foreground fractions of prediction and mask (inference.predict_scores): CSV columns that
# ubench.analysis.degenerate reads, not metrics to average.
PREDICTION_COLUMNS = ("pred_fg", "true_fg")


def per_image_frame(rows: list[dict], class_names: list[str] | None = None) -> pd.DataFrame:
    cols = ["id", "index", *METRIC_NAMES, *class_columns(class_names or []), *PREDICTION_COLUMNS]
    return pd.DataFrame(rows, columns=cols).sort_values("index", kind="stable").reset_index(drop=True)


def summarize(frame: pd.DataFrame) -> dict:
    """Mean and sample std of each metric over images (std None for a single image; both None for a
    metric that was not computed)."""
    out = {}
    for name in [c for c in frame.columns if c not in ("id", "index", *PREDICTION_COLUMNS)]:
        v = frame[name].to_numpy(dtype=float)
        if np.isnan(v).all():  # not computed (hd95 with evaluate.hd95: false)
            out[name] = {"mean": None, "std": None}
            continue
        out[name] = {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None}
    return out


def csv_text(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def _dataset_record(ds) -> dict:
    """What the model advisor needs to know about the evaluated dataset (from its manifest)."""
    return {
        "name": ds.manifest.get("name", ds.prepared_dir.name),
        "modality": ds.manifest.get("modality", "unknown"),
        "attributes": ds.manifest.get("attributes"),
    }


def _imported_record(ckpt: dict) -> dict | None:
    imp = ckpt.get("imported")
    if not isinstance(imp, dict):
        return None
    return {k: imp.get(k) for k in ("from", "file", "sha256", "ubench_model", "epoch")}


def evaluate_checkpoint(model_name: str, ckpt_path: Path, prepared: Path, split: str | None,
                        cfg: Config, csv_path: Path, json_path: Path, *, role: dict) -> dict:
    """Evaluate a checkpoint on ``prepared`` (``split`` None = every image) and write both files."""
    make_deterministic(cfg.train.seed, cfg.train.threads, tame_heap=uses_selective_scan(model_name))
    model, ckpt = load_checkpoint(ckpt_path, model_name)
    dev = device()
    model.to(dev)
    ds = make_dataset(prepared, split, cfg, augment=False)
    if len(ds) == 0:
        raise UbenchError(f"{prepared}: split {split!r} is empty", "check params.yaml `split`")
    n_ckpt = int(ckpt.get("num_classes", 1))
    if ds.num_classes != n_ckpt:
        raise UbenchError(
            f"{model_name} was trained for {n_ckpt} class(es) but {prepared.name} has {ds.num_classes}",
            "evaluate zero-shot only between datasets with the same classes (grid.transfer)",
        )
    class_names = list(ckpt.get("class_names", ds.class_names))
    rows = predict_scores(model, SplitBatches(ds, EVAL_BATCH, device=dev), cfg.evaluate.threshold, dev,
                          class_names, hd95=cfg.evaluate.hd95)
    frame = per_image_frame(rows, class_names)
    protocol = ckpt.get("protocol", cfg.split.protocol)
    summary = {
        "model": model_name,
        **role,
        "split": split or "all",
        "n_images": int(len(frame)),
        "threshold": cfg.evaluate.threshold,
        "protocol": protocol,
        "protocol_note": PROTOCOL_NOTES[protocol],
        "best_epoch": int(ckpt["epoch"]),
        "empty_rules": EMPTY_RULES,
        "num_classes": n_ckpt,
        "class_names": class_names,
        "metrics": summarize(frame),
        "prediction": {**degeneracy(frame), "criterion": DEGENERATE_CRITERION},
        "train": as_dict(cfg.train),
        # what the checkpoint was trained from (ubench/models/pretrained.py); older checkpoints
        # predate the record: null
        "pretrained": ckpt.get("pretrained"),
        # U-Bench's released weights (`ubench weights import`): they were trained by U-Bench, so
        # "train" above is this run's params, not theirs. null for a checkpoint ubench trained.
        "imported": _imported_record(ckpt),
        "dataset_info": _dataset_record(ds),
        "platform": platform_fingerprint(dev),  # where it was computed (ubench verify)
    }
    # One set: a summary that cannot be written must not leave a new CSV beside an old JSON. The
    # JSON goes last, so a new summary always sits beside its own per-image rows.
    write_files_atomic({csv_path: csv_text(frame), json_path: json_dumps(summary)})
    return summary
