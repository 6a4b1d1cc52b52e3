"""Multi-class end to end: softmax loss, per-class and mean-foreground metrics, leaderboard and
paired statistics on ACDC-shaped data (4 classes: background, RV, MYO, LV)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from tests.conftest import tiny_params
from ubench.config import config_from_dict
from ubench.data.synthetic import generate
from ubench.errors import UbenchError
from ubench.metrics import binary_metrics, class_columns, multiclass_metrics

CLASSES = ["RV", "MYO", "LV"]


def test_multiclass_metrics_by_hand():
    target = np.array([[0, 1, 1, 0], [0, 2, 2, 0], [3, 3, 0, 0], [0, 0, 0, 0]])
    pred = np.array([[0, 1, 0, 0], [0, 2, 2, 2], [3, 3, 0, 0], [0, 0, 0, 0]])
    m = multiclass_metrics(pred, target, CLASSES)
    # RV: |P∩T| 1, |P∪T| 2 → 0.5; MYO: 2/3; LV: 1
    assert m["iou_RV"] == pytest.approx(0.5) and m["iou_MYO"] == pytest.approx(2 / 3) and m["iou_LV"] == 1.0
    assert m["iou"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["dice_RV"] == pytest.approx(2 / 3) and m["dice"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    for name in ("se", "pc", "acc", "hd95"):
        expect = np.mean([binary_metrics(pred == c, target == c)[name] for c in (1, 2, 3)])
        assert m[name] == pytest.approx(expect)
    # a class absent from both prediction and mask scores 1.0 (the empty rule)
    m2 = multiclass_metrics(np.where(pred == 3, 0, pred), np.where(target == 3, 0, target), CLASSES)
    assert m2["iou_LV"] == 1.0
    assert class_columns(CLASSES) == ["iou_RV", "dice_RV", "iou_MYO", "dice_MYO", "iou_LV", "dice_LV"]
    assert class_columns(["foreground"]) == []


def _write_prepared(root: Path, name: str, n: int, seed: int, num_classes: int = 4) -> None:
    """A prepared dataset with nested class rings (ACDC-like: RV outside MYO outside LV)."""
    images, masks, ids = generate(n, 32, seed)
    labels = (masks > 0).astype(np.uint8)
    if num_classes == 4:
        for i in range(n):
            fg = masks[i] > 0
            labels[i][ndimage.binary_erosion(fg, iterations=2)] = 2
            labels[i][ndimage.binary_erosion(fg, iterations=4)] = 3
    d = root / "data" / "prepared" / name
    d.mkdir(parents=True)
    np.save(d / "images.npy", images)
    np.save(d / "masks.npy", labels)
    third = n // 3
    splits = {"train": list(range(n - 2 * third)), "val": list(range(n - 2 * third, n - third)),
              "test": list(range(n - third, n)), "protocol": "holdout", "seed": 1, "source": "seeded"}
    (d / "splits.json").write_text(json.dumps(splits))
    names = CLASSES if num_classes == 4 else ["foreground"]
    manifest = {"name": name, "ids": ids, "num_classes": num_classes, "class_names": names,
                "zero_shot_targets": []}
    (d / "manifest.json").write_text(json.dumps(manifest))


def test_multiclass_train_evaluate_leaderboard(workdir):
    from ubench.pipeline import run_evaluate, run_leaderboard, run_train

    _write_prepared(workdir, "mc", 18, 3)
    _write_prepared(workdir, "mc_shift", 6, 5)
    _write_prepared(workdir, "bin", 6, 7, num_classes=1)
    cfg = config_from_dict(tiny_params(
        grid={"models": ["unet", "unext"], "datasets": ["mc"], "synthetic": [], "raw": ["mc", "mc_shift"],
              "transfer": [{"source": "mc", "target": "mc_shift"}]},
        train={"epochs": 2, "batch_size": 4, "threads": 2},
        candidate={"model": "unet", "datasets": []},
    ))
    for model in ("unet", "unext"):
        best = run_train(cfg, model, "mc")
        assert 0.0 <= best["val_iou"] <= 1.0
        summary = run_evaluate(cfg, model, "mc")
        assert summary["num_classes"] == 4 and summary["class_names"] == CLASSES
        assert {"iou_RV", "dice_LV"} <= set(summary["metrics"])
        run_evaluate(cfg, model, "mc", target="mc_shift")
    frame = pd.read_csv("results/per_image/mc/unet.csv")
    assert list(frame.columns) == ["id", "index", "iou", "dice", "se", "pc", "f1", "acc", "hd95",
                                   *class_columns(CLASSES), "pred_fg", "true_fg"]
    assert len(frame) == 6
    per_class_mean = frame[["iou_RV", "iou_MYO", "iou_LV"]].mean(axis=1)
    assert np.allclose(frame["iou"], per_class_mean)
    board = run_leaderboard(cfg)
    models = board["datasets"]["mc"]["models"]
    assert set(models) == {"unet", "unext"}
    assert models["unext"]["p_ttest"] is None or 0.0 <= models["unext"]["p_ttest"] <= 1.0
    assert models["unext"]["delta_iou"] == pytest.approx(models["unext"]["iou_mean"] - models["unet"]["iou_mean"])
    # a binary dataset is not a valid zero-shot target of a 4-class model
    with pytest.raises(UbenchError, match="4 class"):
        run_evaluate(cfg, "unet", "mc", target="bin")
