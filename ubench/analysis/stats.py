"""Paired statistics for comparing a variant against the baseline on the same test images.

The unit of comparison is the test image: a variant and U-Net are scored on the same images, so
their per-image scores are paired. The paper reports a paired t-test; the Wilcoxon signed-rank
test is the robust check (IoU differences are bounded and often skewed); Holm's step-down
correction controls the family-wise error across the variants compared on one dataset.

Every result is JSON-ready: plain floats or ``None``, never NaN or inf. The degenerate cases that
make scipy return NaN/inf are decided here, once, and written down in ``paired_test``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from ubench.errors import AnalysisInputError


def check_probability(name: str, value: float, example: str) -> None:
    """Refuse a level (``alpha``, ``confidence``) outside the open interval (0, 1).

    For API callers: the pipeline's values were already checked when params.yaml was read
    (``ubench.config``), which names the key; this names the argument.
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (ok and 0.0 < float(value) < 1.0):
        raise AnalysisInputError(f"{name} must be in (0, 1), got {value!r}", f"use e.g. {example}")


def _as_finite_1d(values: Sequence[float], name: str) -> np.ndarray:
    """``values`` as a 1-D float array; NaN/inf refused because they would poison every mean."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise AnalysisInputError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}",
                                 "pass one score per test image")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise AnalysisInputError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN/inf) at position(s) "
            f"{np.flatnonzero(bad)[:5].tolist()}",
            "every per-image score must be a number; fix the metric that produced it")
    return arr


def _finite_or_none(x: float | None) -> float | None:
    """Python float, or ``None`` for a value JSON cannot hold."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _interval_input(values: Sequence[float], confidence: float) -> tuple[np.ndarray, dict | None]:
    """Checked scores, and the answer itself where no interval is needed (one value: unknown
    spread, so no interval; zero spread: the point itself)."""
    check_probability("confidence", confidence, "0.95")
    arr = _as_finite_1d(values, "values")
    n = int(arr.size)
    if n == 0:
        raise AnalysisInputError("cannot take the mean of no values", "pass at least one score")
    mean = float(arr.mean())
    if n == 1:
        return arr, {"mean": mean, "std": None, "ci_low": None, "ci_high": None, "n": 1}
    if float(arr.std(ddof=1)) == 0.0:
        return arr, {"mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean, "n": n}
    return arr, None


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean with a Student-t confidence interval (the sample is the test images).

    ``std`` is the sample standard deviation (ddof=1). With one value the spread is unknown, so
    ``std``, ``ci_low`` and ``ci_high`` are ``None``; with zero variance the interval is the mean.
    """
    arr, trivial = _interval_input(values, confidence)
    if trivial is not None:
        return trivial
    n, mean, std = int(arr.size), float(arr.mean()), float(arr.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
BOOTSTRAP_METHOD = (f"BCa bootstrap of the mean over test images ({BOOTSTRAP_RESAMPLES:,} resamples, "
                    f"seed {BOOTSTRAP_SEED}); it never leaves the range of the scores, so an IoU "
                    "interval stays inside [0, 1]")


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean with a bias-corrected and accelerated (BCa) bootstrap interval, for bounded scores.

    Why not the t-interval: IoU lives in [0, 1] and is often piled up at 0 or 1, where mean ± t·SE
    crosses the bound (a "[-0.02, 0.32]" interval for IoU says something impossible). Bootstrap
    intervals are percentiles of resampled means, so they stay within [min, max] of the scores.
    Seeded, so the same scores always give the same interval. Same degenerate cases as ``mean_ci``
    (one value: no interval; zero spread: the point itself). Where BCa is undefined (a sample so
    lopsided that its acceleration is NaN), the plain percentile interval is used.
    """
    arr, trivial = _interval_input(values, confidence)
    if trivial is not None:
        return trivial
    n, mean, std = int(arr.size), float(arr.mean()), float(arr.std(ddof=1))
    low = high = math.nan
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning: handled by the fallback
            res = sps.bootstrap((arr,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                                method=method, rng=np.random.default_rng(BOOTSTRAP_SEED))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            break
    lo_bound, hi_bound = float(arr.min()), float(arr.max())
    return {"mean": mean, "std": std, "ci_low": min(max(low, lo_bound), mean),
            "ci_high": max(min(high, hi_bound), mean), "n": n}


def paired_test(variant: Sequence[float], baseline: Sequence[float]) -> dict:
    """Paired t-test, Wilcoxon signed-rank test and Cohen's d_z of ``variant - baseline``.

    Both sequences hold per-image scores for the SAME images in the SAME order. Two-sided tests;
    Wilcoxon uses scipy's default handling of zero differences (they are dropped).

    Degenerate cases (decided here so no NaN/inf ever leaves this function):
    - n < 2: ``t``, ``p_ttest``, ``w``, ``p_wilcoxon`` and ``effect_size`` are ``None``.
    - every difference is zero: no evidence of a difference, so ``t = 0.0``, ``p_ttest = 1.0``,
      ``w = 0.0`` (both rank sums are empty), ``p_wilcoxon = 1.0``, ``effect_size = 0.0``.
    - the differences are all equal but not zero (zero spread): t and d_z are infinite, so ``t``
      and ``effect_size`` are ``None`` and ``p_ttest = 0.0`` (the limit); Wilcoxon is unaffected.
    """
    v = _as_finite_1d(variant, "variant")
    b = _as_finite_1d(baseline, "baseline")
    if v.size != b.size:
        raise AnalysisInputError(
            f"paired scores differ in length: variant has {v.size}, baseline has {b.size}",
            "score both models on the same test images (pair them by image id)")
    n = int(v.size)
    if n == 0:
        raise AnalysisInputError("no paired scores to compare", "pass at least one image's scores")
    diff = v - b
    out = {"n": n, "mean_variant": float(v.mean()), "mean_baseline": float(b.mean()),
           "delta": float(v.mean() - b.mean()), "t": None, "p_ttest": None, "w": None,
           "p_wilcoxon": None, "effect_size": None}
    if n < 2:
        return out
    if not diff.any():
        out.update(t=0.0, p_ttest=1.0, w=0.0, p_wilcoxon=1.0, effect_size=0.0)
        return out
    sd = float(diff.std(ddof=1))
    with warnings.catch_warnings():
        # scipy warns about precision loss on nearly identical data; the results are still used.
        warnings.simplefilter("ignore", RuntimeWarning)
        tt = sps.ttest_rel(v, b)
        wx = sps.wilcoxon(v, b)
    if sd == 0.0:
        out.update(t=None, p_ttest=0.0, effect_size=None)
    else:
        out.update(t=_finite_or_none(tt.statistic), p_ttest=_finite_or_none(tt.pvalue),
                   effect_size=float(diff.mean()) / sd)
    out.update(w=_finite_or_none(wx.statistic), p_wilcoxon=_finite_or_none(wx.pvalue))
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest of m p-values becomes ``(m - i + 1) * p``, made monotone
    (running maximum) and capped at 1. ``None`` entries (no test was possible) pass through as
    ``None`` and do not count in m.
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    for i in idx:
        p = pvalues[i]
        if not (isinstance(p, (int, float, np.floating, np.integer)) and 0.0 <= float(p) <= 1.0):
            raise AnalysisInputError(f"p-value at position {i} is {p!r}, not a number in [0, 1]",
                                     "pass p-values or None where no test was possible")
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    # stable sort: tied p-values keep input order, which does not change the adjusted values
    for rank, i in enumerate(sorted(idx, key=lambda j: float(pvalues[j]))):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out
