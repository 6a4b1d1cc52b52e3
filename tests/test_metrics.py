"""Per-image metrics: values on small hand-made masks, and the written-down empty-mask rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ubench.metrics import binary_metrics, threshold_logits, ubench_metrics


def _masks():
    t = np.zeros((10, 10), bool)
    t[2:6, 2:6] = True  # 16 px
    p = np.zeros((10, 10), bool)
    p[2:6, 4:8] = True  # 16 px, 8 overlap
    return p, t


def test_overlap_values_by_hand():
    p, t = _masks()
    m = binary_metrics(p, t)
    # TP 8, FP 8, FN 8, TN 76
    assert m["iou"] == pytest.approx(8 / 24)
    assert m["dice"] == pytest.approx(16 / 32)
    assert m["se"] == pytest.approx(0.5) and m["pc"] == pytest.approx(0.5) and m["f1"] == pytest.approx(0.5)
    assert m["acc"] == pytest.approx(84 / 100)
    assert m["hd95"] == pytest.approx(2.0)  # the shifted edge is 2 px away


def test_empty_rules_are_defined_never_nan():
    z = np.zeros((8, 8), bool)
    o = z.copy()
    o[1:3, 1:3] = True
    both = binary_metrics(z, z)
    assert all(v == 1.0 for k, v in both.items() if k != "hd95") and both["hd95"] == 0.0
    for pred, target in ((o, z), (z, o)):
        m = binary_metrics(pred, target)
        assert m["iou"] == m["dice"] == m["se"] == m["pc"] == m["f1"] == 0.0
        assert m["hd95"] == pytest.approx(math.hypot(8, 8))
        assert all(math.isfinite(v) for v in m.values())


def test_ubench_conventions_differ_on_empty_masks():
    z = np.zeros((8, 8), bool)
    u = ubench_metrics(z, np.zeros((8, 8), np.uint8))
    assert u["iou"] == 0.0 and u["dice"] == 0.0 and u["pc"] is None and u["acc"] == 0.0


def test_threshold_in_logit_space_matches_sigmoid():
    logits = np.array([-3.0, -0.01, 0.0, 0.01, 2.0])
    sig = 1 / (1 + np.exp(-logits))
    assert (threshold_logits(logits, 0.5) == (sig > 0.5)).all()
    assert (threshold_logits(logits, 0.7) == (sig > 0.7)).all()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(np.zeros((4, 4)), np.zeros((4, 5)))
