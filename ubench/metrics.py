"""Per-image segmentation metrics at a fixed threshold, with the empty-mask rules written down.

ubench's rules (binary masks P = prediction > threshold after sigmoid, T = ground truth):
- IoU |P∩T|/|P∪T|, Dice 2|P∩T|/(|P|+|T|), SE (sensitivity, recall) TP/(TP+FN), PC (precision)
  TP/(TP+FP), F1 the harmonic mean of PC and SE, ACC (TP+TN)/pixels — computed with medpy
  (jc, dc, recall, precision, hd95) wherever they are defined.
- When a ratio's denominator is zero, the value is 1.0 if P and T are both empty (an empty
  prediction on an empty mask is a perfect score) and 0.0 otherwise. Nothing is ever NaN.
- HD95 (pixels, medpy): 0.0 when both are empty; when exactly one of them is empty, the image
  diagonal (the largest distance possible in the image), so a missed or hallucinated object is the
  worst case rather than a crash or a NaN.
Multi-class masks (class indices 0..C-1, 0 = background): each foreground class c is scored as
the binary pair (prediction == c, mask == c) under the rules above, and each metric is the mean
over the foreground classes (mean-foreground IoU, Dice …); per-class IoU and Dice are kept too
(``iou_<class>``, ``dice_<class>``). A class absent from both prediction and mask of an image
scores 1.0 there (the empty rule), as in the binary case.
Two implementations of the same rules: ``binary_metrics`` (NumPy + medpy, one image: the
reference) and ``batch_counts`` + ``metrics_from_counts`` (pixel counts of a whole batch on the
device, ratios formed on the host with medpy's formulas). Training and evaluation use the second;
``tests/test_metrics_device.py`` proves both give the same floats. HD95 needs distance transforms
on the CPU, so it is computed only where asked (``evaluate.hd95``), after the batch's inference.
U-Bench's own conventions differ (IoU and Dice 0 when both are empty, PC NaN on an empty prediction,
ACC against ``GT == max(GT)``); ``ubench_metrics`` computes those, labelled as such, for comparison
with U-Bench's published numbers.
"""

from __future__ import annotations

import math

import numpy as np

METRIC_NAMES = ("iou", "dice", "se", "pc", "f1", "acc", "hd95")
EMPTY_RULES = (
    "ratio with zero denominator: 1.0 if prediction and mask are both empty, else 0.0; "
    "hd95: 0.0 if both empty, image diagonal if exactly one is empty"
)


def _empty_rule(p_any: bool, t_any: bool) -> float:
    return 1.0 if not p_any and not t_any else 0.0


def _medpy():
    """medpy's binary metrics, imported on first use (scipy.ndimage and more: 0.3 s at start-up)."""
    from medpy.metric import binary

    return binary


def binary_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """ubench metrics of one binary prediction against one binary mask (same 2-D shape)."""
    mb = _medpy()
    p = np.asarray(pred).astype(bool)
    t = np.asarray(target).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} != mask shape {t.shape}")
    p_any, t_any = bool(p.any()), bool(t.any())
    both_empty = _empty_rule(p_any, t_any)
    iou = float(mb.jc(p, t)) if (p_any or t_any) else both_empty
    dice = float(mb.dc(p, t)) if (p_any or t_any) else both_empty
    se = float(mb.recall(p, t)) if t_any else both_empty
    pc = float(mb.precision(p, t)) if p_any else both_empty
    f1 = 2 * pc * se / (pc + se) if (pc + se) > 0 else 0.0
    acc = float(np.count_nonzero(p == t)) / p.size
    return {"iou": iou, "dice": dice, "se": se, "pc": pc, "f1": f1, "acc": acc, "hd95": hd95(p, t)}


def hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """HD95 in pixels (medpy) with the empty-mask rule: 0 if both empty, the diagonal if one is."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    p_any, t_any = bool(p.any()), bool(t.any())
    if p_any and t_any:
        return float(_medpy().hd95(p, t))
    return math.hypot(*p.shape) if (p_any or t_any) else 0.0


def batch_counts(pred, target):
    """(B, 4) int64 tensor of TP, FP, FN, TN per image of boolean (B, H, W) tensors, computed where
    the tensors are (the GPU in training): one small copy per batch instead of the masks."""
    import torch

    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != mask shape {tuple(target.shape)}")
    p, t = pred.flatten(1), target.flatten(1)
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    return torch.stack([tp, fp, fn, p.shape[1] - tp - fp - fn], 1)


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """``binary_metrics`` without HD95, from one image's pixel counts: medpy's formulas on the same
    integers, so the same floats."""
    p_any, t_any = tp + fp > 0, tp + fn > 0
    both_empty = _empty_rule(p_any, t_any)
    iou = float(tp) / float(tp + fp + fn) if (p_any or t_any) else both_empty
    dice = 2.0 * tp / float((tp + fp) + (tp + fn)) if (p_any or t_any) else both_empty
    se = tp / float(tp + fn) if t_any else both_empty
    pc = tp / float(tp + fp) if p_any else both_empty
    f1 = 2 * pc * se / (pc + se) if (pc + se) > 0 else 0.0
    acc = float(tp + tn) / (tp + fp + fn + tn)
    return {"iou": iou, "dice": dice, "se": se, "pc": pc, "f1": f1, "acc": acc}


def mean_over_classes(per_class: list[dict[str, float | None]], class_names: list[str]) -> dict[str, float | None]:
    """Mean-foreground metrics from each foreground class's metrics (plus per-class IoU and Dice);
    a metric that was not computed (None) stays None."""
    out = {}
    for name in METRIC_NAMES:
        values = [m.get(name) for m in per_class]
        out[name] = None if any(v is None for v in values) else float(np.mean(values))
    for name, m in zip(class_names, per_class):
        out[f"iou_{name}"] = m["iou"]
        out[f"dice_{name}"] = m["dice"]
    return out


def multiclass_metrics(pred: np.ndarray, target: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Mean-foreground metrics of one label prediction (plus per-class IoU and Dice)."""
    per_class = [binary_metrics(pred == c, target == c) for c in range(1, len(class_names) + 1)]
    return mean_over_classes(per_class, class_names)


def class_columns(class_names: list[str]) -> list[str]:
    """Per-class columns of a multi-class per-image table (none for binary)."""
    if len(class_names) < 2:
        return []
    return [f"{metric}_{name}" for name in class_names for metric in ("iou", "dice")]


def ubench_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """U-Bench's conventions (its utils/metrics_medpy.py) on one image; None where it gives NaN."""
    p = np.asarray(pred).astype(bool)
    t_raw = np.asarray(target)
    t = t_raw.astype(bool)
    inter, union = np.count_nonzero(p & t), np.count_nonzero(p | t)
    iou = inter / union if union else 0.0
    dice = float(_medpy().dc(p, t)) if union else 0.0  # medpy's ZeroDivision rule: 0 when both empty
    se = float(_medpy().recall(p, t)) if t.any() else 0.0
    pc = float(_medpy().precision(p, t)) if p.any() else None
    f1 = None if pc is None else (2 * pc * se / (pc + se) if (pc + se) > 0 else 0.0)
    gt_fg = t_raw == t_raw.max()  # on an empty mask every pixel counts as foreground
    acc = float(np.count_nonzero(p == gt_fg)) / p.size
    return {"iou": iou, "dice": dice, "se": se, "pc": pc, "f1": f1, "acc": acc}


def foreground_fraction(labels: np.ndarray) -> float:
    """Fraction of pixels that are not background (label 0 / False): the per-image ``pred_fg`` and
    ``true_fg`` columns, from which ubench.analysis.degenerate flags collapsed models."""
    arr = np.asarray(labels)
    return float(np.count_nonzero(arr)) / arr.size if arr.size else 0.0


def logit_threshold(threshold: float) -> float:
    """sigmoid(x) > threshold  <=>  x > log(threshold / (1 - threshold)): no sigmoid per pixel."""
    return math.log(threshold / (1.0 - threshold))


def threshold_logits(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary prediction: sigmoid(logits) > threshold, computed stably in logit space."""
    return np.asarray(logits) > logit_threshold(threshold)
