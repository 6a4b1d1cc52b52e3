"""Ranking metrics for the model advisor: NDCG@k, AP@k (averaged over datasets: MAP@k), Spearman.

Each function scores ONE ranking: the models of one dataset, their true scores (IoU or U-Score,
higher is better) and the scores a ranker predicted for them. The advisor's evaluation averages
them over held-out datasets.

Conventions, written down so that a number means one thing:

- **Gain (NDCG).** The relevance of a model is its true score min-max scaled within the dataset,
  ``(s - min) / (max - min)``: the best model has gain 1, the worst 0, and the gaps between models
  are kept (two nearly tied models have nearly equal gains). Scaling makes datasets with different
  IoU levels comparable and is invariant to an affine change of the score. The gain is linear
  (no ``2^rel - 1``). DCG@k = sum over positions i = 1..k of gain_i / log2(i + 1); NDCG@k = DCG@k
  of the predicted order / DCG@k of the ideal order (by true score). When every model has the same
  true score no order is better than another and NDCG is undefined: ``None``.
- **Ties in the prediction** are broken pessimistically: among models with equal predicted scores,
  the one with the lower true score is placed first (then by input position). So a ranker cannot
  earn credit by predicting ties, and the result never depends on the order of the input rows'
  equal predictions. A constant predictor gets the worst order.
- **Relevant set (MAP).** The relevant models are the true top ``relevant_top`` (default ``k``);
  a model tied with the ``relevant_top``-th true score is relevant too, so the set can be larger.
  AP@k = (1 / min(R, k)) * sum over positions i <= k that hold a relevant model of precision@i,
  with R the number of relevant models; 1.0 means the first min(R, k) predicted are all relevant.
- **Spearman** is ``scipy.stats.spearmanr`` (average ranks for ties); ``None`` (never NaN) when it
  is undefined: fewer than two models, or either input constant.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

from ubench.errors import AnalysisInputError


def _pair(true_scores: Sequence[float],
          pred_scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as finite 1-D float arrays of the same, non-zero length."""
    t = np.asarray(true_scores, dtype=float)
    p = np.asarray(pred_scores, dtype=float)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise AnalysisInputError(
            f"true and predicted scores must be 1-D and of equal length, got shapes {t.shape} "
            f"and {p.shape}", "pass one true and one predicted score per model of the dataset")
    if t.size == 0:
        raise AnalysisInputError("no models to rank", "pass at least one model's scores")
    for name, arr in (("true", t), ("predicted", p)):
        if not np.isfinite(arr).all():
            raise AnalysisInputError(f"{name} scores contain NaN/inf",
                                     "every model needs a finite score")
    return t, p


def _check_k(k: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise AnalysisInputError(f"{name} must be an integer >= 1, got {k!r}", "use e.g. k=5")
    return int(k)


def predicted_order(true_scores: Sequence[float], pred_scores: Sequence[float]) -> np.ndarray:
    """Indices by predicted score, highest first; ties: lower true score first, then position."""
    t, p = _pair(true_scores, pred_scores)
    # np.lexsort sorts by the last key first, and is stable: -p, then t, then the index.
    return np.lexsort((np.arange(t.size), t, -p))


def min_max(scores: Sequence[float]) -> np.ndarray:
    """``(s - min) / (max - min)``; all zeros when the scores are all equal (no information)."""
    s = np.asarray(scores, dtype=float)
    lo, hi = float(s.min()), float(s.max())
    if hi == lo:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


def _dcg(gains: np.ndarray) -> float:
    return float(np.sum(gains / np.log2(np.arange(2, gains.size + 2))))


def ndcg_at_k(true_scores: Sequence[float], pred_scores: Sequence[float], k: int) -> float | None:
    """NDCG@k with min-max scaled true scores as linear gains; None when all true scores tie.

    ``k`` larger than the number of models means all of them.
    """
    k = _check_k(k)
    t, p = _pair(true_scores, pred_scores)
    gains = min_max(t)
    k = min(k, t.size)
    ideal = _dcg(np.sort(gains)[::-1][:k])
    if ideal == 0.0:
        return None
    return _dcg(gains[predicted_order(t, p)][:k]) / ideal


def map_at_k(true_scores: Sequence[float], pred_scores: Sequence[float], k: int,
             relevant_top: int | None = None) -> float:
    """AP@k of one dataset's ranking; relevant = the true top ``relevant_top`` (default ``k``).

    Averaged over datasets by the caller, this is MAP@k.
    """
    k = _check_k(k)
    relevant_top = k if relevant_top is None else _check_k(relevant_top, "relevant_top")
    t, p = _pair(true_scores, pred_scores)
    cutoff = np.sort(t)[::-1][min(relevant_top, t.size) - 1]
    relevant = t >= cutoff
    hits = relevant[predicted_order(t, p)][:min(k, t.size)]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(np.sum(precision * hits) / min(int(relevant.sum()), k))


def spearman(true_scores: Sequence[float], pred_scores: Sequence[float]) -> float | None:
    """Spearman's rho (scipy.stats.spearmanr); None when undefined (n < 2 or a constant input)."""
    t, p = _pair(true_scores, pred_scores)
    if t.size < 2 or np.ptp(t) == 0 or np.ptp(p) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(stats.spearmanr(t, p).statistic)
    return rho if math.isfinite(rho) else None
