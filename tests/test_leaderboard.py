"""Leaderboard (paired by image id, Holm per table, ranks, JSON safety), its report and plots."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
from PIL import Image

from ubench.analysis.leaderboard import build_leaderboard, render_markdown
from ubench.analysis.plots import leaderboard_plot_rows, plot_iou_ci, plot_iou_vs_uscore
from ubench.analysis.stats import holm, paired_test
from ubench.analysis.uscore import uscore_report

IDS = ["img0", "img1", "img2", "img3", "img4"]
UNET = [0.70, 0.60, 0.80, 0.75, 0.65]  # mean 0.70
# a = unet + (0.02, 0.05, 0.04, -0.01, 0.05): mean 0.73, delta +0.03
A = [0.72, 0.65, 0.84, 0.74, 0.70]
# b = unet - (0.10, 0.20, 0.15, 0.05, 0.10): mean 0.58, delta -0.12
B = [0.60, 0.40, 0.65, 0.70, 0.55]


def frame(ids, iou, hd95=None):
    """A per-image table; the other metrics are simple functions of IoU."""
    n = len(ids)
    return pd.DataFrame({
        "id": ids, "iou": iou, "dice": [2 * x / (1 + x) for x in iou], "se": iou, "pc": iou,
        "f1": [2 * x / (1 + x) for x in iou], "acc": [0.9] * n,
        "hd95": hd95 if hd95 is not None else [1.0] * n,
    })


def shuffled(df):
    """Same rows, another order: results must not change (pairing is by id, not row order)."""
    return df.iloc[[3, 0, 4, 2, 1]].reset_index(drop=True)


# zero-shot target: 4 images, other ids
ZS_IDS = ["t0", "t1", "t2", "t3"]
ZS_UNET = [0.50, 0.40, 0.60, 0.30]  # mean 0.45
ZS_A = [0.55, 0.42, 0.61, 0.38]  # mean 0.49
ZS_B = [0.20, 0.10, 0.30, 0.20]  # mean 0.20


def inputs():
    in_domain = {"ds1": {
        "unet": frame(IDS, UNET, hd95=[1.0, None, 3.0, float("nan"), 5.0]),
        "a": shuffled(frame(IDS, A, hd95=[None] * 5)),
        "b": frame(IDS, B),
    }}
    zeroshot = {("ds1", "ds2"): {
        "unet": frame(ZS_IDS, ZS_UNET), "a": frame(ZS_IDS, ZS_A), "b": frame(ZS_IDS, ZS_B)}}
    return in_domain, zeroshot


def test_deltas_tests_and_ranks():
    board = build_leaderboard(*inputs())
    assert board["baseline"] == "unet" and board["protocol"] == "holdout"
    ds = board["datasets"]["ds1"]
    assert ds["n_images"] == 5
    m = ds["models"]
    assert m["unet"]["iou_mean"] == pytest.approx(0.70)
    assert m["a"]["iou_mean"] == pytest.approx(0.73)
    assert m["b"]["iou_mean"] == pytest.approx(0.58)
    assert m["a"]["delta_iou"] == pytest.approx(0.03)
    assert m["b"]["delta_iou"] == pytest.approx(-0.12)
    # baseline row: no test against itself
    assert m["unet"]["delta_iou"] == 0.0
    for key in ("p_ttest", "p_wilcoxon", "effect_size", "p_holm"):
        assert m["unet"][key] is None
    assert m["unet"]["significant"] is False
    # ranks by mean IoU, 1-based, highest first
    assert (m["a"]["rank"], m["unet"]["rank"], m["b"]["rank"]) == (1, 2, 3)
    # a's row was shuffled: its test must equal the test on id-aligned lists
    ref = paired_test(A, UNET)
    assert m["a"]["p_ttest"] == pytest.approx(ref["p_ttest"], rel=1e-12)
    assert m["a"]["p_wilcoxon"] == pytest.approx(ref["p_wilcoxon"], rel=1e-12)
    assert m["a"]["effect_size"] == pytest.approx(ref["effect_size"], rel=1e-12)
    # same numbers as the hand example in test_stats: diffs mean 0.03, sd sqrt(6.5e-4)
    assert m["a"]["effect_size"] == pytest.approx(0.03 / math.sqrt(6.5e-4), rel=1e-9)
    # Holm across the two variants = holm() of their raw t-test p-values
    p_holm = holm([m["a"]["p_ttest"], m["b"]["p_ttest"]])
    assert [m["a"]["p_holm"], m["b"]["p_holm"]] == pytest.approx(p_holm, rel=1e-12)
    # b: t = -0.12 / (sqrt(32.5e-4)/sqrt(5)) = -4.707, p ~ 0.009; Holm x2 ~ 0.019 < 0.05.
    # a: p ~ 0.058 -> Holm max(0.019, 0.058) -> not significant
    assert m["b"]["significant"] is True and m["a"]["significant"] is False
    assert m["b"]["p_holm"] == pytest.approx(2 * m["b"]["p_ttest"])
    assert m["a"]["p_holm"] == pytest.approx(m["a"]["p_ttest"])
    # hd95 averages the defined values only (1, 3, 5 -> 3); none defined -> None
    assert m["unet"]["hd95_mean"] == pytest.approx(3.0)
    assert m["a"]["hd95_mean"] is None
    assert m["a"]["dice_mean"] == pytest.approx(sum(2 * x / (1 + x) for x in A) / 5)


def test_zeroshot_and_overall():
    board = build_leaderboard(*inputs())
    z = board["zeroshot"]["ds1->ds2"]
    assert (z["source"], z["target"], z["n_images"]) == ("ds1", "ds2", 4)
    zm = z["models"]
    assert zm["a"]["iou_mean"] == pytest.approx(0.49)
    assert zm["a"]["delta_iou"] == pytest.approx(0.04)
    assert zm["b"]["delta_iou"] == pytest.approx(-0.25)
    # drop = in-domain IoU on the source - zero-shot IoU: unet 0.70 - 0.45, a 0.73 - 0.49
    assert zm["unet"]["drop_vs_in_domain"] == pytest.approx(0.25)
    assert zm["a"]["drop_vs_in_domain"] == pytest.approx(0.24)
    assert zm["unet"]["p_ttest"] is None and zm["unet"]["significant"] is False
    assert [zm["a"]["p_holm"], zm["b"]["p_holm"]] == pytest.approx(
        holm([zm["a"]["p_ttest"], zm["b"]["p_ttest"]]))
    assert set(zm["a"]) == {"iou_mean", "iou_ci_low", "iou_ci_high", "delta_iou", "p_ttest",
                            "p_wilcoxon", "p_holm", "significant", "drop_vs_in_domain",
                            "degenerate", "degenerate_kind", "trivial_share", "pred_empty_share",
                            "pred_full_share"}
    # tables without the foreground columns: degeneracy unknown (None), never claimed fine
    assert zm["a"]["degenerate"] is None and zm["a"]["pred_empty_share"] is None
    ov = board["overall"]
    assert ov["b"] == {"mean_iou": pytest.approx(0.58), "mean_rank": 3.0, "n_datasets": 1,
                       "wins": 0, "losses": 1, "degenerate_on": []}
    assert ov["a"]["wins"] == 0 and ov["a"]["losses"] == 0
    assert ov["unet"]["wins"] == 0 and ov["unet"]["losses"] == 0


def test_overall_over_two_datasets_and_tied_ranks():
    in_domain, _ = inputs()
    # ds2: a ties unet exactly (same scores) -> both rank 1 (method='min'), b rank 3
    in_domain["ds2"] = {"unet": frame(IDS, UNET), "a": frame(IDS, UNET), "b": frame(IDS, B)}
    board = build_leaderboard(in_domain, {})
    m2 = board["datasets"]["ds2"]["models"]
    assert (m2["unet"]["rank"], m2["a"]["rank"], m2["b"]["rank"]) == (1, 1, 3)
    # all differences zero: defined, not NaN
    assert m2["a"]["p_ttest"] == 1.0 and m2["a"]["p_wilcoxon"] == 1.0
    ov = board["overall"]
    assert ov["a"]["mean_iou"] == pytest.approx((0.73 + 0.70) / 2)
    assert ov["a"]["mean_rank"] == pytest.approx((1 + 1) / 2)
    assert ov["unet"]["mean_rank"] == pytest.approx((2 + 1) / 2)
    assert ov["b"]["n_datasets"] == 2 and ov["b"]["losses"] == 2
    assert board["zeroshot"] == {}


def test_mismatched_ids_error():
    in_domain, _ = inputs()
    in_domain["ds1"]["b"] = frame(["img0", "img1", "img2", "img3", "imgX"], B)
    with pytest.raises(ValueError, match=r"ids differ.*'unet'.*imgX.*img4"):
        build_leaderboard(in_domain, {})


def test_missing_baseline_error():
    in_domain, zeroshot = inputs()
    del zeroshot[("ds1", "ds2")]["unet"]
    with pytest.raises(ValueError, match="baseline") as info:
        build_leaderboard(in_domain, zeroshot)
    assert "grid.models" in str(info.value)
    in_domain, _ = inputs()
    with pytest.raises(ValueError, match="grid.models"):
        build_leaderboard(in_domain, {}, baseline="attention_unet")


def test_bad_frames():
    in_domain, _ = inputs()
    in_domain["ds1"]["b"] = frame(IDS, B).drop(columns=["hd95"])
    with pytest.raises(ValueError, match="hd95"):
        build_leaderboard(in_domain, {})
    in_domain["ds1"]["b"] = frame(IDS, [0.6, float("nan"), 0.6, 0.7, 0.5])
    with pytest.raises(ValueError, match="iou"):
        build_leaderboard(in_domain, {})
    in_domain["ds1"]["b"] = frame(["img0", "img0", "img2", "img3", "img4"], B)
    with pytest.raises(ValueError, match="more than once"):
        build_leaderboard(in_domain, {})


def test_json_round_trip():
    board = build_leaderboard(*inputs(), protocol="ubench", alpha=0.01, confidence=0.9)
    text = json.dumps(board, allow_nan=False, sort_keys=True)
    assert json.loads(text) == board
    assert board["alpha"] == 0.01 and board["confidence"] == 0.9
    # alpha 0.01: b's Holm p (~0.019) is no longer significant
    assert board["datasets"]["ds1"]["models"]["b"]["significant"] is False
    # a board built from the same inputs is identical
    assert build_leaderboard(*inputs(), protocol="ubench", alpha=0.01, confidence=0.9) == board


def test_markdown_report():
    board = build_leaderboard(*inputs())
    md = render_markdown(board)
    for name in ("unet", "a", "b"):
        assert f"| {name} |" in md
    assert "`holdout`" in md
    assert "optimistic" not in md
    assert "0.7300 [" in md and "+0.0300" in md and "-0.1200" in md
    assert "ds1 → ds2" in md
    assert "## Overall" in md
    assert render_markdown(board) == md
    ub = render_markdown(build_leaderboard(*inputs(), protocol="ubench"))
    assert "`ubench`" in ub
    assert "**Protocol `ubench`: the best epoch was chosen on the reported split" in ub
    assert "optimistic" in ub


def test_plot_rows_one_table_per_dataset():
    """One bar chart per dataset: a table never mixes datasets (a bar chart would add them up)."""
    board = build_leaderboard(*inputs())
    tables = leaderboard_plot_rows(board)
    assert sorted(tables) == sorted(board["datasets"])
    for ds, rows in tables.items():
        assert [r["model"] for r in rows] == ["a", "b", "unet"]
        assert set(rows[0]) == {"model", "iou_mean", "ci_low", "ci_high"}
        assert rows[0]["ci_low"] < rows[0]["iou_mean"] < rows[0]["ci_high"]
        assert [r["iou_mean"] for r in rows] == [board["datasets"][ds]["models"][m]["iou_mean"] for m in ("a", "b", "unet")]


def test_plots_are_valid_and_deterministic(tmp_path):
    board = build_leaderboard(*inputs())
    table = uscore_report(board, {
        "unet": {"params_m": 34.5, "gflops": 65.5, "fps": 100.0, "device": "cuda: GPU"},
        "a": {"params_m": 1.5, "gflops": 0.6, "fps": 300.0, "device": "cuda: GPU"},
        "b": {"params_m": 10.0, "gflops": 8.0, "fps": 150.0, "device": "cuda: GPU"},
    }, reference="ubench", floor=0.05)
    for name, draw, data in (("ci", plot_iou_ci, board), ("us", plot_iou_vs_uscore, table)):
        first, second = tmp_path / f"{name}1.png", tmp_path / f"{name}2.png"
        draw(data, first)
        draw(data, second)
        blob = first.read_bytes()
        assert blob == second.read_bytes()
        with Image.open(io.BytesIO(blob)) as im:
            im.verify()
            assert im.format == "PNG"
        assert b"Software" not in blob


def test_imported_weights_are_tested_against_the_trained_baseline_apart_from_the_grid():
    """U-Bench weights of `a` and of the baseline's own architecture: paired with the baseline
    trained here, Holm across the imports, labelled, never ranked or counted in `overall`."""
    from ubench.analysis.html_report import render_html
    from ubench.analysis.leaderboard import imported_label

    in_domain, zeroshot = inputs()
    better = [x + 0.1 for x in UNET]  # U-Bench's unet: +0.1 on every image
    imported = {"ds1": {"a": frame(IDS, A), "unet": shuffled(frame(IDS, better))}}
    imported_zs = {("ds1", "ds2"): {"unet": frame(ZS_IDS, ZS_B)}}
    board = build_leaderboard(in_domain, zeroshot, imported=imported, imported_zeroshot=imported_zs)
    plain = build_leaderboard(*inputs())
    assert {k: v for k, v in board.items() if k != "imported"} == plain  # the grid's tables are untouched
    rows = board["imported"]["datasets"]["ds1"]["models"]
    assert set(rows) == {imported_label("a"), imported_label("unet")} == {"a (U-Bench weights)",
                                                                          "unet (U-Bench weights)"}
    u = rows["unet (U-Bench weights)"]
    assert u["model"] == "unet" and u["delta_iou"] == pytest.approx(0.1) and u["trained_here_iou_mean"] == pytest.approx(0.70)
    a = rows["a (U-Bench weights)"]
    assert a["delta_iou"] == pytest.approx(board["datasets"]["ds1"]["models"]["a"]["delta_iou"])
    # Holm over the two imports of this table
    assert [a["p_holm"], u["p_holm"]] == pytest.approx(holm([a["p_ttest"], u["p_ttest"]]))
    assert "rank" not in u and "unet (U-Bench weights)" not in board["overall"]
    z = board["imported"]["zeroshot"]["ds1->ds2"]["models"]["unet (U-Bench weights)"]
    assert z["delta_iou"] == pytest.approx(0.20 - 0.45) and z["drop_vs_in_domain"] == pytest.approx(0.80 - 0.20)
    md = render_markdown(board)
    assert "## U-Bench weights" in md and "| unet (U-Bench weights) | 0.8000" in md
    assert "### ds1 → ds2 (zero-shot)" in md.split("## U-Bench weights")[1]
    page = render_html(board, {"models": {}, "uscore": {}}, {"leaderboard": b"", "uscore": b"", "training": b""})
    assert "<h2>U-Bench weights</h2>" in page and "unet (U-Bench weights)" in page
    with pytest.raises(ValueError, match="which has no trained results here"):
        build_leaderboard(in_domain, zeroshot, imported={"ds9": {"a": frame(IDS, A)}})
    json.dumps(board, allow_nan=False)
