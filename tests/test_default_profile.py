"""The default profile learns: every default model gives a non-trivial prediction on most test
images of every default dataset (``ubench.analysis.degenerate``: not degenerate).

Two checks. The committed results of the default run (in git, `cache: false`) must come from
today's params.yaml and show no degenerate in-domain result. And, live, U-Net, the baseline, is
trained with today's params.yaml on synth_small, the case that collapsed to empty masks under the
old profile (3 epochs of batch 8), and must learn it.
"""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import REPO_ROOT, project_params
from ubench import paths
from ubench.analysis.degenerate import degeneracy
from ubench.config import as_dict, config_from_dict


def test_committed_default_results_come_from_these_params_and_are_not_degenerate():
    cfg = config_from_dict(project_params())
    board = json.loads((REPO_ROOT / paths.LEADERBOARD_JSON).read_text())
    assert sorted(board["datasets"]) == sorted(cfg.grid.datasets)
    for ds in cfg.grid.datasets:
        rows = board["datasets"][ds]["models"]
        assert sorted(rows) == sorted(cfg.grid.models)
        for m in cfg.grid.models:
            record = json.loads((REPO_ROOT / paths.eval_json(ds, m)).read_text())
            assert record["train"] == as_dict(cfg.train), f"{paths.eval_json(ds, m)} is from other train params"
            assert rows[m]["degenerate"] is False, f"{m} on {ds} is degenerate in the committed default run"
            assert rows[m]["trivial_share"] <= 0.2, (m, ds, rows[m]["trivial_share"])


def test_unet_learns_synth_small_with_the_default_profile(workdir):
    from ubench.pipeline import run_evaluate, run_prepare, run_train

    cfg = config_from_dict(project_params())
    run_prepare(cfg, "synth_small")
    best = run_train(cfg, "unet", "synth_small")
    run_evaluate(cfg, "unet", "synth_small")
    frame = pd.read_csv(paths.per_image_csv("synth_small", "unet"))
    d = degeneracy(frame)
    assert d["degenerate"] is False and d["trivial_share"] <= 0.2, d
    assert frame["iou"].mean() > 0.5, frame["iou"].mean()
    assert best["epoch"] > 1  # it improved after the first epoch (no collapse kept from epoch 1)
