"""Degenerate predictions: a model that predicts nothing, or everything, has not learnt the task.

Why: a collapsed model still gets numbers. An empty prediction scores 1.0 on every empty mask (the
empty-mask rule) and 0 elsewhere; an all-foreground one scores IoU = precision = the foreground
fraction. Compared against such a model, every variant looks "significantly better" (or a
collapsed candidate "significantly worse"), and the statistics are right about a meaningless
question. So every result says how often the model's prediction was trivial, and is flagged when
that is the rule rather than the exception.

The criterion, per test image (``pred_fg``/``true_fg``: the fraction of pixels predicted / labelled
foreground, any class but background):
- *empty*: ``pred_fg == 0``;
- *all-foreground*: ``pred_fg >= FULL_FRACTION`` (95 % of the image);
- *trivial*: empty or all-foreground.
A model is **degenerate** on a dataset when its prediction is trivial on more than
``DEGENERATE_SHARE`` (half) of the test images whose mask is itself non-trivial (some foreground,
less than 95 %): on those, neither an empty nor an all-foreground answer can be right. A model
that learnt the task gives a non-trivial prediction on most such images.
"""

from __future__ import annotations

import pandas as pd

FULL_FRACTION = 0.95
DEGENERATE_SHARE = 0.5
CRITERION = (f"trivial prediction (empty, or >= {FULL_FRACTION:.0%} of the image foreground) on more "
             f"than {DEGENERATE_SHARE:.0%} of the test images whose mask is non-trivial")


def degeneracy(frame: pd.DataFrame) -> dict:
    """Shares of empty / all-foreground predictions in a per-image table, and the flag.

    Tables written before these columns existed give ``None`` everywhere (unknown, not "fine").
    """
    if "pred_fg" not in frame.columns or "true_fg" not in frame.columns:
        return {"empty_share": None, "full_share": None, "trivial_share": None, "degenerate": None,
                "kind": None}
    pred = pd.to_numeric(frame["pred_fg"], errors="coerce").to_numpy(dtype=float)
    true = pd.to_numeric(frame["true_fg"], errors="coerce").to_numpy(dtype=float)
    empty, full = pred <= 0.0, pred >= FULL_FRACTION
    informative = (true > 0.0) & (true < FULL_FRACTION)
    trivial_share = float((empty | full)[informative].mean()) if informative.any() else None
    degenerate = trivial_share is not None and trivial_share > DEGENERATE_SHARE
    kind = None
    if degenerate:
        kind = "empty" if empty[informative].sum() >= full[informative].sum() else "all-foreground"
    return {"empty_share": float(empty.mean()), "full_share": float(full.mean()),
            "trivial_share": trivial_share, "degenerate": bool(degenerate), "kind": kind}


def describe(model: str, where: str, d: dict) -> str:
    """One warning line for a degenerate result."""
    share = d["trivial_share"] or 0.0
    return (f"{model} on {where} is degenerate: it predicts {d['kind']} masks ({share:.0%} of the "
            f"test images with a non-trivial mask); its scores measure a collapsed model, not the "
            f"architecture")
