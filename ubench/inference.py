"""Inference: a split's Dataset and the per-image scores of a model over it.

Why a module of its own: training (validation after each epoch, ``ubench.train``) and evaluation
(``ubench.evaluate``) score a model the same way. Both import it from here, so that evaluation does
not depend on the training loop, and neither does anything in between.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ubench.config import Config
from ubench.data.dataset import SegmentationDataset
from ubench.metrics import binary_metrics, foreground_fraction, multiclass_metrics, threshold_logits
from ubench.runtime import final_output

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
def predict_scores(model, loader, threshold: float, dev, class_names: list[str] | None = None) -> list[dict]:
    """Per-image metrics of ``model`` over ``loader`` (rows carry index and id).

    One output channel: sigmoid > threshold. Several: the arg-max class, scored per class.
    """
    model.eval()
    rows = []
    for batch in loader:
        logits = final_output(model(batch["image"].to(dev))).float().cpu().numpy()
        masks = batch["mask"].numpy()
        for k in range(logits.shape[0]):
            if logits.shape[1] == 1:
                pred, true = threshold_logits(logits[k, 0], threshold), masks[k, 0] > 0.5
                m = binary_metrics(pred, true)
            else:
                pred, true = logits[k].argmax(axis=0), np.rint(masks[k, 0]).astype(np.int64)
                m = multiclass_metrics(pred, true, class_names or [])
            rows.append({"id": batch["id"][k], "index": int(batch["index"][k]), **m,
                         "pred_fg": foreground_fraction(pred), "true_fg": foreground_fraction(true)})
    return rows
