"""Collapsed models are flagged, never counted as wins, and intervals stay inside [0, 1]."""

from __future__ import annotations

import pandas as pd
import pytest

from ubench.analysis.degenerate import degeneracy, describe
from ubench.analysis.leaderboard import build_leaderboard, render_markdown
from ubench.analysis.stats import bootstrap_ci, mean_ci

IDS = [f"img{i}" for i in range(8)]
TRUE_FG = [0.20, 0.10, 0.30, 0.15, 0.25, 0.05, 0.0, 0.12]  # img6 has an empty mask


def frame(iou, pred_fg, true_fg=TRUE_FG):
    n = len(iou)
    return pd.DataFrame({"id": IDS[:n], "iou": iou, "dice": iou, "se": iou, "pc": iou, "f1": iou,
                         "acc": [0.9] * n, "hd95": [1.0] * n, "pred_fg": pred_fg, "true_fg": true_fg})


LEARNT = frame([0.70, 0.60, 0.80, 0.75, 0.65, 0.55, 1.0, 0.72],
               [0.21, 0.09, 0.28, 0.16, 0.22, 0.06, 0.0, 0.11])
BETTER = frame([0.80, 0.70, 0.85, 0.82, 0.75, 0.66, 1.0, 0.80],
               [0.20, 0.10, 0.30, 0.15, 0.25, 0.05, 0.0, 0.12])
# predicts nothing: 1.0 on the empty mask (the empty-mask rule), 0 elsewhere
EMPTY = frame([0.0] * 6 + [1.0, 0.0], [0.0] * 8)
# predicts everything: IoU = the foreground fraction
FULL = frame([0.20, 0.10, 0.30, 0.15, 0.25, 0.05, 0.0, 0.12], [1.0] * 8)


def test_degeneracy_of_learnt_empty_and_full_models():
    ok = degeneracy(LEARNT)
    assert ok["degenerate"] is False and ok["kind"] is None
    assert ok["empty_share"] == pytest.approx(1 / 8)  # the one empty mask, correctly empty
    assert ok["trivial_share"] == 0.0  # informative images only: img6 (empty mask) is not one
    e = degeneracy(EMPTY)
    assert (e["degenerate"], e["kind"], e["empty_share"], e["trivial_share"]) == (True, "empty", 1.0, 1.0)
    f = degeneracy(FULL)
    assert (f["degenerate"], f["kind"], f["full_share"]) == (True, "all-foreground", 1.0)
    assert "predicts empty masks (100%" in describe("unet", "synth", e)


def test_degeneracy_threshold_is_more_than_half():
    # trivial on exactly half of the 7 informative images is not "more than half"; 4 of 7 is
    pred = [0.0, 0.0, 0.0, 0.16, 0.22, 0.06, 0.0, 0.11]
    assert degeneracy(frame([0.5] * 8, pred))["degenerate"] is False  # 3 of 7
    pred[3] = 0.0
    assert degeneracy(frame([0.5] * 8, pred))["degenerate"] is True  # 4 of 7
    # no informative image (all masks empty): unknown, not degenerate
    none = degeneracy(frame([1.0] * 8, [0.0] * 8, true_fg=[0.0] * 8))
    assert none["trivial_share"] is None and none["degenerate"] is False


def test_bootstrap_interval_stays_inside_the_scores_where_t_crosses_zero():
    scores = [0.0] * 17 + [1.0] * 3
    t = mean_ci(scores, 0.95)
    assert t["ci_low"] < 0.0  # the old interval said something impossible
    b = bootstrap_ci(scores, 0.95)
    assert 0.0 <= b["ci_low"] <= b["mean"] <= b["ci_high"] <= 1.0
    assert b["ci_low"] < b["mean"] < b["ci_high"]
    assert bootstrap_ci(scores, 0.95) == b  # seeded: same scores, same interval
    assert bootstrap_ci([0.4, 0.4, 0.4], 0.95)["ci_low"] == pytest.approx(0.4)
    assert bootstrap_ci([0.4], 0.95)["ci_low"] is None


def test_no_wins_against_a_degenerate_baseline():
    board = build_leaderboard({"ds": {"unet": EMPTY, "a": LEARNT, "b": BETTER}}, {})
    rows = board["datasets"]["ds"]["models"]
    assert rows["unet"]["degenerate"] is True and rows["a"]["degenerate"] is False
    assert rows["a"]["delta_iou"] > 0.5  # huge "improvement" over a model that learnt nothing …
    assert board["overall"]["a"]["wins"] == 0  # … never counted as a win
    assert board["overall"]["unet"]["degenerate_on"] == ["ds"]
    assert any("degenerate baseline" in w for w in board["warnings"])
    md = render_markdown(board)
    assert "degenerate (empty) · baseline" in md and "vs degenerate baseline" in md
    assert "better *" not in md


def test_degenerate_variant_is_flagged_not_a_loss():
    board = build_leaderboard({"ds": {"unet": LEARNT, "a": FULL, "b": BETTER}}, {})
    assert board["datasets"]["ds"]["models"]["a"]["degenerate_kind"] == "all-foreground"
    assert board["overall"]["a"]["losses"] == 0 and board["overall"]["a"]["degenerate_on"] == ["ds"]
    assert board["overall"]["b"]["wins"] == 1  # two models that both learnt: counted
    assert [w for w in board["warnings"] if w.startswith("a on ds is degenerate")]
    assert "degenerate (all-foreground)" in render_markdown(board)


def test_plot_labels_name_degenerate_models():
    from ubench.analysis.plots import model_label

    board = build_leaderboard({"ds": {"unet": EMPTY, "a": LEARNT, "b": FULL}}, {})
    rows = board["datasets"]["ds"]["models"]
    assert model_label("unet", rows["unet"], "unet") == "unet (baseline, degenerate: empty)"
    assert model_label("a", rows["a"], "unet") == "a"
    assert model_label("b", rows["b"], "unet") == "b (degenerate: all-foreground)"
