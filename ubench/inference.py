"""Inference: a split's Dataset and the per-image scores of a model over it.

Why a module of its own: training (validation after each epoch, ``ubench.train``) and evaluation
(``ubench.evaluate``) score a model the same way. Both import it from here, so that evaluation does
not depend on the training loop, and neither does anything in between.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ubench.config import Config
from ubench.data.dataset import SegmentationDataset
from ubench.metrics import batch_counts, hd95, logit_threshold, mean_over_classes, metrics_from_counts
from ubench.runtime import autocast, final_output

# Metrics are computed per image, so the evaluation batch size changes speed, not results
# (U-Bench validates with batch 1 because its metrics run over the whole batch tensor).
EVAL_BATCH = 8


def make_dataset(prepared: Path, split: str | None, cfg: Config, augment: bool) -> SegmentationDataset:
    """The Dataset of one split with the protocol's normalisation."""
    d = cfg.data
    return SegmentationDataset(
        prepared, split, mean=d.mean, std=d.std, max_pixel_value=d.max_pixel_value,
        extra_divide=d.extra_divide, augment=augment, seed=cfg.train.seed,
    )


@torch.no_grad()
def predict_scores(model, batches, threshold: float, dev, class_names: list[str] | None = None, *,
                   hd95: bool = True, amp: str = "off") -> list[dict]:
    """Per-image metrics of ``model`` over ``batches`` (rows carry index and id), ``hd95`` None
    unless asked for.

    One output channel: sigmoid > threshold. Several: the arg-max class, scored per class. Pixel
    counts are computed on the device and copied once at the end (no sync per batch); HD95, when
    asked for, runs on the CPU in a thread pool, overlapping the next batches' inference.
    """
    model.eval()
    counts, fg, ids, indices, pending = [], [], [], [], []
    # HD95 (distance transforms, on the CPU) runs in threads while the next batches are inferred;
    # scipy releases the GIL there. Each image's value is computed alone: same numbers either way.
    pool = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) if hd95 else None
    n_fg = max(len(class_names or []), 1)
    multi = False
    try:
        for batch in batches:
            with autocast(dev, amp):
                out = final_output(model(batch["image"].to(dev, non_blocking=True)))
            logits = out.float()
            mask = batch["mask"].to(dev, non_blocking=True)[:, 0]
            if logits.shape[1] == 1:
                pred, true = logits[:, 0] > logit_threshold(threshold), mask > 0.5
                counts.append(batch_counts(pred, true).unsqueeze(1))  # (B, 1, 4)
            else:
                multi = True
                pred, true = logits.argmax(1), torch.round(mask).long()
                counts.append(torch.stack([batch_counts(pred == c, true == c) for c in range(1, n_fg + 1)], 1))
            fg.append(torch.stack([(pred != 0).flatten(1).sum(1), (true != 0).flatten(1).sum(1)], 1))
            if pool is not None:
                pred_np, true_np = pred.cpu().numpy(), true.cpu().numpy()
                pending.extend(pool.submit(_hd95_classes, p, t, n_fg) for p, t in zip(pred_np, true_np))
            ids.extend(batch["id"])
            indices.extend(int(i) for i in batch["index"])
        distances = [f.result() for f in pending] if pool is not None else None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if not counts:
        return []
    counts_np = torch.cat(counts).cpu().numpy().tolist()
    fg_np = torch.cat(fg).cpu().numpy().tolist()
    rows = []
    for k, (image_counts, (pred_fg, true_fg)) in enumerate(zip(counts_np, fg_np)):
        per_class = [{**metrics_from_counts(*c), "hd95": distances[k][j] if distances else None}
                     for j, c in enumerate(image_counts)]
        m = mean_over_classes(per_class, class_names or []) if multi else per_class[0]
        pixels = sum(image_counts[0])
        rows.append({"id": ids[k], "index": indices[k], **m,
                     "pred_fg": float(pred_fg) / pixels, "true_fg": float(true_fg) / pixels})
    return rows


def _hd95_classes(pred: np.ndarray, true: np.ndarray, n_fg: int) -> list[float]:
    """HD95 of one image: of the binary pair, or of each foreground class of a label map."""
    if pred.dtype == bool:
        return [hd95(pred, true)]
    return [hd95(pred == c, true == c) for c in range(1, n_fg + 1)]
