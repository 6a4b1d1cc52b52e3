"""Batched metrics (pixel counts on the device, ratios on the host) give the medpy path's floats.

``ubench.metrics.binary_metrics`` / ``multiclass_metrics`` (NumPy + medpy, one image) are the
reference; ``inference.predict_scores`` scores whole batches with ``batch_counts`` and
``metrics_from_counts``. Equality is exact (``==`` on floats), on random masks and on the edge
cases of the empty-mask rules.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ubench.inference import predict_scores
from ubench.metrics import batch_counts, binary_metrics, metrics_from_counts, multiclass_metrics, threshold_logits


def _edge_pairs(h: int = 16, w: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    z = np.zeros((h, w), bool)
    full = np.ones((h, w), bool)
    blob = z.copy()
    blob[3:9, 2:7] = True
    other = z.copy()
    other[10:14, 8:11] = True
    pixel = z.copy()
    pixel[0, 0] = True
    return [(z, z), (z, blob), (blob, z), (full, full), (full, z), (z, full), (blob, blob),
            (blob, other), (pixel, blob), (blob, pixel), (full, blob)]


def _random_pairs(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        density = rng.uniform(0.0, 0.6)
        p = rng.random((16, 12)) < density
        t = rng.random((16, 12)) < (density if k % 2 else rng.uniform(0.0, 0.6))
        out.append((p, t))
    return out


@pytest.mark.parametrize("pairs", [_edge_pairs(), _random_pairs(40, 3)], ids=["edge", "random"])
def test_counts_give_medpy_floats(pairs):
    pred = torch.from_numpy(np.stack([p for p, _ in pairs]))
    true = torch.from_numpy(np.stack([t for _, t in pairs]))
    counts = batch_counts(pred, true).tolist()
    for (p, t), c in zip(pairs, counts):
        ref = binary_metrics(p, t)
        got = metrics_from_counts(*c)
        assert got == {k: v for k, v in ref.items() if k != "hd95"}, (c, ref, got)


class _Fixed(torch.nn.Module):
    """Returns stored logits for the batch's items (by index), whatever the input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, x):
        out = self.logits[self.calls: self.calls + x.shape[0]]
        self.calls += x.shape[0]
        return out + 0 * self.anchor


def _batches(masks: np.ndarray, batch: int):
    for s in range(0, len(masks), batch):
        m = torch.from_numpy(masks[s: s + batch]).float().unsqueeze(1)
        yield {"image": torch.zeros(m.shape[0], 3, *m.shape[2:]), "mask": m,
               "index": torch.arange(s, s + m.shape[0]), "id": [f"i{i}" for i in range(s, s + m.shape[0])]}


@pytest.mark.parametrize("hd95", [True, False])
def test_predict_scores_binary_equals_per_image_reference(hd95):
    rng = np.random.default_rng(5)
    n = 13
    logits = rng.normal(0.0, 2.0, (n, 1, 16, 12)).astype(np.float32)
    logits[0] = -5.0  # empty prediction
    logits[1] = 5.0   # full prediction
    masks = (rng.random((n, 16, 12)) < 0.3).astype(np.uint8)
    masks[0] = 0  # both empty
    masks[2] = 0  # empty mask
    rows = predict_scores(_Fixed(torch.from_numpy(logits)), _batches(masks, 4), 0.5, torch.device("cpu"),
                          ["foreground"], hd95=hd95)
    assert [r["index"] for r in rows] == list(range(n))
    for k, r in enumerate(rows):
        pred, true = threshold_logits(logits[k, 0], 0.5), masks[k] > 0.5
        ref = binary_metrics(pred, true)
        if not hd95:
            ref["hd95"] = None
        assert {m: r[m] for m in ref} == ref
        assert r["pred_fg"] == np.count_nonzero(pred) / pred.size
        assert r["true_fg"] == np.count_nonzero(true) / true.size


def test_predict_scores_multiclass_equals_per_image_reference():
    rng = np.random.default_rng(9)
    n, classes = 7, ["a", "b", "c"]
    logits = rng.normal(0.0, 1.0, (n, 4, 10, 10)).astype(np.float32)
    logits[0, 0] += 10.0  # predicts background everywhere
    masks = rng.integers(0, 4, (n, 10, 10)).astype(np.uint8)
    masks[1] = 0
    masks[3][masks[3] == 2] = 0  # a class absent from the mask
    rows = predict_scores(_Fixed(torch.from_numpy(logits)), _batches(masks, 3), 0.5, torch.device("cpu"),
                          classes, hd95=True)
    for k, r in enumerate(rows):
        pred = logits[k].argmax(0)
        ref = multiclass_metrics(pred, masks[k].astype(np.int64), classes)
        assert {m: r[m] for m in ref} == ref
        assert r["pred_fg"] == np.count_nonzero(pred) / pred.size


def test_counts_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        batch_counts(torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(2, 4, 5, dtype=torch.bool))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_counts_on_cuda_equal_cpu():
    pairs = _random_pairs(64, 11) + _edge_pairs()
    pred = torch.from_numpy(np.stack([p for p, _ in pairs]))
    true = torch.from_numpy(np.stack([t for _, t in pairs]))
    assert torch.equal(batch_counts(pred.cuda(), true.cuda()).cpu(), batch_counts(pred, true))


def test_monai_hd95_is_another_definition():
    """Why HD95 stays medpy's (U-Bench's): MONAI's ``compute_hausdorff_distance(percentile=95)`` is
    the larger of the two directed 95th percentiles, medpy's ``hd95`` the 95th percentile of both
    directions' surface distances pooled. They agree on symmetric cases and differ otherwise."""
    from monai.metrics import compute_hausdorff_distance

    from ubench.metrics import hd95

    def monai_hd95(p: np.ndarray, t: np.ndarray) -> float:
        as_batch = lambda a: torch.from_numpy(a)[None, None].float()  # noqa: E731
        return float(compute_hausdorff_distance(as_batch(p), as_batch(t), include_background=True, percentile=95))

    z = np.zeros((40, 40), bool)
    square, shifted = z.copy(), z.copy()
    square[10:20, 10:20] = True
    shifted[12:22, 10:20] = True
    assert hd95(square, shifted) == pytest.approx(monai_hd95(square, shifted))  # symmetric: equal
    # a 15x15 square (56 surface pixels) against the same square plus a far 2x2 blob (4 more): the
    # blob is 6.7 % of one direction's distances (in its 95th percentile) but 3.4 % of the pooled ones
    square, with_blob = z.copy(), z.copy()
    square[3:18, 3:18] = True
    with_blob[3:18, 3:18] = True
    with_blob[34:36, 34:36] = True
    medpy_value, monai_value = hd95(square, with_blob), monai_hd95(square, with_blob)
    assert monai_value > medpy_value + 10.0, (medpy_value, monai_value)
