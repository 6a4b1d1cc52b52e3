"""U-Bench's U-Score: each term by hand, U-Bench's own calculator's numbers, the per-dataset report,
the reference rules (fixed constants, grid fallback), the CPU-FPS warning and `ubench uscore calc`."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from tests.conftest import tiny_params
from ubench.analysis import uscore as us
from ubench.analysis.stats import AnalysisInputError
from ubench.cli import main
from ubench.errors import UbenchError
from ubench.io import json_dumps

# U-Bench's published constants (the page's calculator, FengheTan9/ubench@20b9f89 index.html)
BUSI_Q10, BUSI_Q90 = 0.5837592, 0.7062627
LN_P10, LN_P90, LN_G10, LN_G90 = 0.39, 4.32, 0.88, 4.20
FPS10, FPS90 = 24.28, 121.63
UB = us.ubench_efficiency_reference()


# --- each term, by hand ----------------------------------------------------------------------

def test_linear_term_inside_below_above_and_degenerate():
    assert us.linear_term(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert us.linear_term(0.65, 0.6, 0.8) == pytest.approx(0.25)
    assert us.linear_term(0.5, 0.6, 0.8) == 0.0  # below Q10: clipped
    assert us.linear_term(0.9, 0.6, 0.8) == 1.0  # above Q90: clipped
    assert us.linear_term(0.6, 0.6, 0.8) == 0.0 and us.linear_term(0.8, 0.6, 0.8) == 1.0
    assert us.linear_term(0.3, 0.7, 0.7) == 1.0  # Q90 == Q10: neutral


def test_log_term_is_on_a_log_scale():
    # Q10 = 1, Q90 = 100: ln scale puts 10 half-way (a linear scale would put 50.5 there)
    lo, hi = math.log(1.0), math.log(100.0)
    assert us.log_term(10.0, lo, hi) == pytest.approx(0.5)
    assert us.log_term(1.0, lo, hi) == pytest.approx(1.0) and us.log_term(100.0, lo, hi) == pytest.approx(0.0)
    assert us.log_term(50.5, lo, hi) == pytest.approx((math.log(100) - math.log(50.5)) / math.log(100))
    assert us.log_term(0.5, lo, hi) == 1.0  # fewer params than Q10: clipped to 1
    assert us.log_term(1000.0, lo, hi) == 0.0  # more than Q90: clipped to 0
    # U-Bench's constants are ln Q: U-Net's 34.527041 M params -> (4.32 - ln 34.527041) / 3.93
    p = us.log_term(34.527041, LN_P10, LN_P90)
    assert p == pytest.approx((4.32 - math.log(34.527041)) / (4.32 - 0.39))
    assert p == pytest.approx(0.198030, abs=1e-6)


def test_every_term_half_way_gives_one_half():
    # a = p = g = s = 1/2 -> efficiency 1/2, U-Score 1/2 (printed 50.00)
    iou = (BUSI_Q10 + BUSI_Q90) / 2
    params, gflops, fps = math.exp((LN_P10 + LN_P90) / 2), math.exp((LN_G10 + LN_G90) / 2), (FPS10 + FPS90) / 2
    r = us.calculate(iou, params, gflops, fps, BUSI_Q10, BUSI_Q90, UB, 0.05)
    for k in ("norm_iou", "norm_params", "norm_gflops", "norm_fps", "efficiency", "uscore"):
        assert r[k] == pytest.approx(0.5), k
    assert r["uscore_x100"] == "50.00"


def test_the_floor():
    iou = (BUSI_Q10 + BUSI_Q90) / 2
    params, gflops = math.exp((LN_P10 + LN_P90) / 2), math.exp((LN_G10 + LN_G90) / 2)
    # FPS below Q10: s = 0, raised to the floor 0.05 -> efficiency 3 / (2 + 2 + 20) = 1/8,
    # U-Score 2 / (1/0.5 + 1/0.125) = 2 / 10 = 0.2
    r = us.calculate(iou, params, gflops, 10.0, BUSI_Q10, BUSI_Q90, UB, 0.05)
    assert r["norm_fps"] == 0.0 and r["used_fps"] == 0.05
    assert r["efficiency"] == pytest.approx(0.125) and r["uscore"] == pytest.approx(0.2)
    assert r["uscore_x100"] == "20.00"
    # floor 0: Eq. 1-3 as printed, a zero term makes the harmonic means 0
    r0 = us.calculate(iou, params, gflops, 10.0, BUSI_Q10, BUSI_Q90, UB, 0.0)
    assert r0["efficiency"] == 0.0 and r0["uscore"] == 0.0 and r0["uscore_x100"] == "0.00"
    # IoU below Q10: a = 0 -> floored 0.05; with efficiency 1/2: U = 2 / (20 + 2) = 1/11
    r = us.calculate(0.5, params, gflops, (FPS10 + FPS90) / 2, BUSI_Q10, BUSI_Q90, UB, 0.05)
    assert r["norm_iou"] == 0.0 and r["used_iou"] == 0.05 and r["uscore"] == pytest.approx(1 / 11)
    # terms above the floor are untouched
    assert us.calculate(0.9, 1.0, 1.0, 500.0, BUSI_Q10, BUSI_Q90, UB, 0.05)["uscore"] == 1.0
    with pytest.raises(UbenchError, match="floor"):
        us.calculate(0.9, 1.0, 1.0, 500.0, BUSI_Q10, BUSI_Q90, UB, 1.5)


def test_harmonic_mean():
    assert us.harmonic_mean([0.5, 0.5]) == 0.5
    assert us.harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert us.harmonic_mean([0.5, 0.0, 1.0]) == 0.0
    with pytest.raises(ValueError):
        us.harmonic_mean([])


def test_percent_text_rounds_like_javascripts_tofixed():
    assert us.percent_text(0.19258756) == "19.26"
    assert us.percent_text(0.5) == "50.00"
    # JavaScript's (x * 100).toFixed(2), checked under node 20: 0.12125 * 100 is exactly 12.125,
    # a tie, rounded up; 0.28745 * 100 is the double 28.744999999999997, rounded down
    assert us.percent_text(0.12125) == "12.13"
    assert us.percent_text(0.28745) == "28.74"
    assert us.percent_text(0.012345) == "1.23"
    assert us.percent_text(0.0) == "0.00" and us.percent_text(1.0) == "100.00"


# --- U-Bench's own calculator ----------------------------------------------------------------

# The page's input placeholders are U-Net on BUSI ("U-Net IoU in BUSI: 0.6557507", "Params:
# 34.527041", "GFLOPs: 65.522368512", "FPS: 137.05495085406875"). The expected strings were
# printed by the page's own `calculateUscore()` (index.html at commit 20b9f89), run under node 20
# with a stub `document`: they are what the web page shows for these inputs.
PAGE_CASES = [
    ((0.6557507, 34.527041, 65.522368512, 137.05495085406875, "busi"), "19.26"),
    ((0.81, 3.15, 7.41, 120, "busi"), "88.67"),
    ((0.83, 1.2, 0.5, 300, "isic"), "75.55"),
    ((0.70, 10, 20, 50, "kvasir"), "8.76"),
    ((0.95, 0.05, 0.1, 500, "montgomery"), "88.70"),
    ((0.30, 100, 200, 10, "drive"), "8.63"),
    ((0.85, 2.0, 3.0, 80, "cystoidfluid"), "86.94"),
    ((0.6, 5, 5, 60, "synapse"), "38.51"),
]


@pytest.mark.parametrize(("args", "printed"), PAGE_CASES)
def test_same_number_as_the_web_page(args, printed):
    iou, params, gflops, fps, ds = args
    r = us.calculator(iou, params, gflops, fps, ds, reference="ubench", floor=0.05)
    assert r["uscore_x100"] == printed


def test_unet_on_busi_terms_by_hand():
    r = us.calculator(0.6557507, 34.527041, 65.522368512, 137.05495085406875, "busi",
                      reference="ubench", floor=0.05)
    a = (0.6557507 - BUSI_Q10) / (BUSI_Q90 - BUSI_Q10)
    p = (4.32 - math.log(34.527041)) / (4.32 - 0.39)
    g = (4.20 - math.log(65.522368512)) / (4.20 - 0.88)  # 0.0053: U-Net sits at the FLOPs Q90
    assert (r["norm_iou"], r["norm_params"], r["norm_gflops"], r["norm_fps"]) == pytest.approx((a, p, g, 1.0))
    assert r["used_gflops"] == 0.05  # the floor lifts it
    eff = 3 / (1 / p + 1 / 0.05 + 1)
    assert r["efficiency"] == pytest.approx(eff) and r["uscore"] == pytest.approx(2 / (1 / a + 1 / eff))
    assert r["dataset"] == "busi" and r["percentiles"]["iou"] == {"q10": BUSI_Q10, "q90": BUSI_Q90,
                                                                  "source": "ubench"}


# --- the CLI calculator ----------------------------------------------------------------------

CALC = ["uscore", "calc", "--iou", "0.81", "--params", "3.15", "--gflops", "7.41", "--fps", "120"]


def test_calc_prints_like_the_page(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: U-Bench's calculator (ubench, floor 0.05)
    assert main([*CALC, "--dataset", "busi"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "U-Score: 88.67"
    for term in ("a IoU", "p params (M)", "g GFLOPs", "s FPS", "efficiency"):
        assert term in out
    assert "reference ubench (FengheTan9/ubench@20b9f89 index.html), floor 0.05" in out
    assert "GPU" in out  # the FPS caveat
    assert main([*CALC, "--dataset", "busi", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["uscore_x100"] == "88.67" and doc["floor"] == 0.05 and doc["reference"] == "ubench"
    assert doc["norm_params"] == pytest.approx((4.32 - math.log(3.15)) / 3.93)
    # the page's labels and keys name the same dataset
    for alias in ("BUSI", "Busi"):
        assert main([*CALC, "--dataset", alias, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["dataset"] == "busi"
    assert main([*CALC, "--dataset", "isic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "isic2018"
    # --floor 0: Eq. 1-3 as printed
    assert main(["uscore", "calc", "--iou", "0.5", "--params", "3", "--gflops", "3", "--fps", "100",
                 "--dataset", "busi", "--floor", "0"]) == 0
    assert capsys.readouterr().out.startswith("U-Score: 0.00")


def test_calc_refuses_a_percentage_and_lists_known_datasets(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["uscore", "calc", "--iou", "81", "--params", "3.15", "--gflops", "7.41", "--fps", "120",
                 "--dataset", "busi"]) == 2
    err = capsys.readouterr().err
    assert "IoU 81.0 is above 1" in err and "0.81" in err
    assert main([*CALC, "--dataset", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no IoU percentiles for dataset 'nosuch'" in err
    assert "busi" in err and "isic2018" in err and "oct_cystoid" in err and "--reference grid" in err
    assert main([*CALC, "--dataset", "busi", "--reference", "grid"]) == 2
    assert "params.yaml" in capsys.readouterr().err
    assert main([*CALC[:3], "-0.1", *CALC[4:], "--dataset", "busi"]) == 2
    assert main(["uscore", "calc", "--iou", "0.8", "--params", "0", "--gflops", "1", "--fps", "1",
                 "--dataset", "busi"]) == 2
    assert "params must be a finite number > 0" in capsys.readouterr().err


def test_calc_reads_defaults_from_params_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(uscore={"reference": "ubench",
                                                                             "floor": 0.0})))
    args = ["uscore", "calc", "--iou", "0.5", "--params", "3", "--gflops", "3", "--fps", "100",
            "--dataset", "busi", "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["floor"] == 0.0 and doc["uscore"] == 0.0  # a = 0 and no floor
    assert main([*args, "--floor", "0.05"]) == 0
    assert json.loads(capsys.readouterr().out)["floor"] == 0.05


def test_uscore_help_explains_both(capsys):
    with pytest.raises(SystemExit):
        main(["uscore", "--help"])
    out = capsys.readouterr().out
    assert "ubench uscore calc" in out and "the `uscore` stage" in out and "--params" in out
    with pytest.raises(SystemExit):
        main(["uscore", "calc", "--help"])
    out = capsys.readouterr().out
    for opt in ("--iou", "--params", "--gflops", "--fps", "--dataset", "--reference", "--floor", "--json"):
        assert opt in out


# --- the per-dataset report ------------------------------------------------------------------

def _board(datasets: dict[str, dict[str, float]], zeroshot: dict[str, dict[str, float]] | None = None) -> dict:
    zs = {}
    for key, ious in (zeroshot or {}).items():
        src, tgt = key.split("->")
        zs[key] = {"source": src, "target": tgt, "models": {m: {"iou_mean": v} for m, v in ious.items()}}
    return {"datasets": {d: {"models": {m: {"iou_mean": v} for m, v in ious.items()}}
                         for d, ious in datasets.items()}, "zeroshot": zs}


GPU = "cuda: NVIDIA H100"
EFF = {
    "unet": {"params_m": 34.527041, "gflops": 65.522368512, "fps": 137.05495085406875, "device": GPU},
    "small": {"params_m": 3.15, "gflops": 7.41, "fps": 120.0, "device": GPU},
}


def test_report_per_dataset_and_overall():
    board = _board({"busi": {"unet": 0.6557507, "small": 0.81}, "isic2018": {"unet": 0.82, "small": 0.83}},
                   {"busi->bus": {"unet": 0.5, "small": 0.6}})
    r = us.uscore_report(board, EFF, "ubench", 0.05)
    assert r["definition"] == "U-Bench" and r["floor"] == 0.05 and r["reference"] == "ubench"
    assert "20b9f89" in r["reference_source"]
    # the web page's number for each (model, dataset) on U-Bench's datasets
    assert us.percent_text(r["datasets"]["busi"]["uscore"]["unet"]) == "19.26"
    assert us.percent_text(r["datasets"]["busi"]["uscore"]["small"]) == "88.67"
    assert r["datasets"]["busi"]["iou_reference"] == "ubench"
    assert r["datasets"]["isic2018"]["iou_q10"] == pytest.approx(0.81180614)
    # overall = mean over the in-domain datasets; zero-shot separately
    for m in EFF:
        assert r["uscore"][m] == pytest.approx((r["datasets"]["busi"]["uscore"][m]
                                                + r["datasets"]["isic2018"]["uscore"][m]) / 2)
    pair = r["zeroshot"]["pairs"]["busi->bus"]
    assert pair["iou_reference"] == "grid" and pair["source"] == "busi" and pair["target"] == "bus"
    assert r["zeroshot"]["uscore"] == pair["uscore"]
    assert any(n.startswith("busi->bus: IoU percentiles from the grid's 2 model(s)") and "zero-shot" in n
               for n in r["notes"])
    # efficiency terms once per model (shared by all datasets)
    assert r["models"]["unet"]["norm_gflops"] == pytest.approx((4.20 - math.log(65.522368512)) / 3.32)
    assert r["device"]["comparable_with_reference"] is True and r["device"]["note"] is None
    json_dumps(r)  # finite, JSON-ready
    md = us.render_uscore_markdown(r)
    assert "Floor: 0.05" in md and "Reference: `ubench`" in md and "| 19.26 |" in md
    assert "### busi->bus" in md and "the grid's 2 model(s)" in md


def test_imported_weights_are_scored_apart_and_never_move_the_grid():
    board = _board({"busi": {"unet": 0.6557507, "small": 0.81}}, {"busi->bus": {"unet": 0.5, "small": 0.6}})
    plain = us.uscore_report(board, EFF, "grid", 0.05)
    assert "imported" not in plain  # a grid without imports keeps its report as it was
    board["imported"] = {
        "datasets": {"busi": {"models": {"unet (U-Bench weights)": {"model": "unet", "iou_mean": 0.70},
                                         "transunet (U-Bench weights)": {"model": "transunet", "iou_mean": 0.75}}}},
        "zeroshot": {"busi->bus": {"models": {"unet (U-Bench weights)": {"model": "unet", "iou_mean": 0.55}}}}}
    r = us.uscore_report(board, EFF, "grid", 0.05)
    for key in ("datasets", "uscore", "models", "percentiles"):
        assert r[key] == plain[key], key  # same percentiles, same grid scores, no import ranked
    busi = r["datasets"]["busi"]
    imp = r["imported"]["datasets"]["busi"]["unet (U-Bench weights)"]
    a = us.linear_term(0.70, busi["iou_q10"], busi["iou_q90"])  # the dataset's percentiles
    assert imp["norm_iou"] == pytest.approx(a)
    assert imp["uscore"] == pytest.approx(us.uscore_value(a, r["models"]["unet"]["efficiency"], 0.05))
    other = r["imported"]["datasets"]["busi"]["transunet (U-Bench weights)"]  # not measured in this grid
    assert other["uscore"] is None and "add it to grid.models" in other["why_none"]
    assert r["imported"]["uscore"] == {"unet (U-Bench weights)": imp["uscore"]}
    assert r["imported"]["zeroshot"]["busi->bus"]["unet (U-Bench weights)"]["uscore"] is not None
    from ubench.analysis.leaderboard import IMPORTED_LABEL

    assert us.IMPORTED_LABEL == IMPORTED_LABEL == r["imported"]["label"]
    md = us.render_uscore_markdown(r)
    assert "## U-Bench weights (trained by U-Bench" in md and "| busi | unet (U-Bench weights) | 0.7000 |" in md
    assert "add it to grid.models" in md
    json_dumps(r)


def test_unchanged_when_a_model_joins_under_reference_ubench():
    board = _board({"busi": {"unet": 0.6557507, "small": 0.81}})
    before = us.uscore_report(board, EFF, "ubench", 0.05)
    board2 = _board({"busi": {"unet": 0.6557507, "small": 0.81, "big": 0.70}})
    eff2 = {**EFF, "big": {"params_m": 300.0, "gflops": 900.0, "fps": 3.0, "device": GPU}}
    after = us.uscore_report(board2, eff2, "ubench", 0.05)
    for m in EFF:
        assert after["datasets"]["busi"]["uscore"][m] == before["datasets"]["busi"]["uscore"][m]
        assert after["models"][m] == before["models"][m]
        assert after["uscore"][m] == before["uscore"][m]
    # ... whereas percentiles over the grid move with it
    g1 = us.uscore_report(board, EFF, "grid", 0.05)
    g2 = us.uscore_report(board2, eff2, "grid", 0.05)
    assert g1["datasets"]["busi"]["uscore"]["small"] != g2["datasets"]["busi"]["uscore"]["small"]


def test_grid_reference_percentiles_by_hand():
    # five models, params 1..5 M: numpy's linear Q10 = 1.4, Q90 = 4.6; the log term uses ln of those
    names = "abcde"
    eff = {m: {"params_m": float(i + 1), "gflops": 10.0 * (i + 1), "fps": 10.0 * (i + 1), "device": "cpu: x"}
           for i, m in enumerate(names)}
    board = _board({"synth": {m: 0.5 + 0.1 * i for i, m in enumerate(names)}})
    r = us.uscore_report(board, eff, "grid", 0.05)
    pct = r["percentiles"]
    assert pct["source"] == "grid" and pct["n_models"] == 5
    assert pct["params"]["ln_q10"] == pytest.approx(math.log(1.4))
    assert pct["params"]["ln_q90"] == pytest.approx(math.log(4.6))
    assert pct["gflops"]["q10"] == pytest.approx(14.0) and pct["fps"]["q90"] == pytest.approx(46.0)
    d = r["datasets"]["synth"]
    assert d["iou_reference"] == "grid" and d["iou_q10"] == pytest.approx(0.54) and d["iou_q90"] == pytest.approx(0.86)
    # model c: params 3 -> p = (ln 4.6 - ln 3) / (ln 4.6 - ln 1.4); g the same; s = (30-14)/32 = 1/2;
    # IoU 0.7 -> a = (0.7 - 0.54) / 0.32 = 1/2
    p = (math.log(4.6) - math.log(3)) / (math.log(4.6) - math.log(1.4))
    assert r["models"]["c"]["norm_params"] == pytest.approx(p)
    assert r["models"]["c"]["norm_gflops"] == pytest.approx(p)
    assert r["models"]["c"]["norm_fps"] == pytest.approx(0.5)
    eff_c = 3 / (2 / p + 2)
    assert r["models"]["c"]["efficiency"] == pytest.approx(eff_c)
    assert d["uscore"]["c"] == pytest.approx(2 / (2 + 1 / eff_c))
    # CPU FPS is fine against grid percentiles: no comparison with U-Bench claimed
    assert r["device"]["comparable_with_reference"] is None and r["device"]["note"] is None
    assert any("reference: grid" in n for n in r["notes"])


def test_a_dataset_without_published_percentiles_uses_the_grid_and_says_so():
    board = _board({"synth": {"unet": 0.7, "small": 0.6}, "busi": {"unet": 0.6557507, "small": 0.81}})
    r = us.uscore_report(board, EFF, "ubench", 0.05)
    assert r["datasets"]["synth"]["iou_reference"] == "grid"
    assert r["datasets"]["synth"]["iou_reference_models"] == 2
    assert r["datasets"]["busi"]["iou_reference"] == "ubench"
    note = next(n for n in r["notes"] if n.startswith("synth:"))
    assert "U-Bench publishes no IoU percentiles for this dataset" in note and "fewer than 5" in note
    assert not any(n.startswith("busi:") for n in r["notes"])
    md = us.render_uscore_markdown(r)
    assert "### synth: IoU Q10" in md and "(the grid's 2 model(s))" in md and "(U-Bench's)" in md


def test_cpu_fps_is_never_silently_set_beside_gpu_constants():
    eff = {m: {**e, "device": "cpu: x86_64"} for m, e in EFF.items()}
    board = _board({"busi": {"unet": 0.6557507, "small": 0.81}})
    r = us.uscore_report(board, eff, "ubench", 0.05)
    assert r["device"]["comparable_with_reference"] is False
    note = r["device"]["note"]
    assert "NOT comparable" in note and "cpu: x86_64" in note and "small, unet" in note
    assert "uscore.reference: grid" in note and "GPU" in note
    assert f"> **FPS:** {note}" in us.render_uscore_markdown(r)
    # one model on CPU is enough to flag it, and mixing devices is flagged too
    mixed = {**EFF, "small": {**EFF["small"], "device": "cpu: x86_64"}}
    r = us.uscore_report(board, mixed, "ubench", 0.05)
    assert r["device"]["comparable_with_reference"] is False and "FPS of small " in r["device"]["note"]
    assert "several devices" in r["device"]["note"]
    assert us.uscore_report(board, mixed, "grid", 0.05)["device"]["note"].startswith("FPS was measured on several")


def test_report_input_errors():
    board = _board({"busi": {"unet": 65.5, "small": 0.81}})
    with pytest.raises(AnalysisInputError, match="fraction"):
        us.uscore_report(board, EFF, "ubench", 0.05)
    with pytest.raises(UbenchError, match="reference"):
        us.uscore_report(_board({"busi": {"unet": 0.6}}), EFF, "paper", 0.05)
    bad = {**EFF, "unet": {**EFF["unet"], "fps": 0.0}}
    with pytest.raises(AnalysisInputError, match="'unet'.*FPS"):
        us.uscore_report(_board({"busi": {"unet": 0.6, "small": 0.7}}), bad, "ubench", 0.05)


def test_plot_is_deterministic_and_valid(tmp_path):
    import io

    from PIL import Image

    from ubench.analysis.plots import plot_iou_vs_uscore

    eff = {m: {**e, "device": "cpu: x86_64"} for m, e in EFF.items()}
    r = us.uscore_report(_board({"busi": {"unet": 0.66, "small": 0.81}, "synth": {"unet": 0.7, "small": 0.5}}),
                         eff, "ubench", 0.05)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot_iou_vs_uscore(r, a)
    plot_iou_vs_uscore(r, b)
    assert a.read_bytes() == b.read_bytes()
    with Image.open(io.BytesIO(a.read_bytes())) as im:
        im.verify()


def test_point_labels_never_overlap():
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from ubench.analysis.plots import FigureCanvasAgg, separate_labels

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    points = [(0.70, 0.20), (0.71, 0.20), (0.70, 0.21), (0.2, 0.5)]  # three all but on one spot
    labels = [ax.annotate(f"model_{i}", p, textcoords="offset points", xytext=(4, 4)) for i, p in enumerate(points)]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    renderer = FigureCanvasAgg(fig).get_renderer()

    def boxes():
        for t in labels:
            t.update_positions(renderer)
        return [Text.get_window_extent(t, renderer) for t in labels]

    assert boxes()[0].overlaps(boxes()[1])  # as drawn first, they do
    separate_labels(fig, labels)
    boxes = boxes()
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert labels[3].xyann == (4, 4)  # a label with room stays where it was


# --- the stage ---------------------------------------------------------------------------------

def _workspace(root, device: str) -> None:
    """The files the uscore stage reads, for the tiny grid (unet, attention_unet; synth -> synth_shift)."""
    (root / "results" / "complexity").mkdir(parents=True)
    (root / "results" / "speed").mkdir(parents=True)
    kind, name = device.split(": ")
    for m, (params, gflops, fps) in {"unet": (34.5, 65.5, 2.0), "attention_unet": (34.9, 66.6, 1.5)}.items():
        (root / "results" / "complexity" / f"{m}.json").write_text(json.dumps({"params_m": params, "gflops": gflops}))
        (root / "results" / "speed" / f"{m}.json").write_text(
            json.dumps({"fps": fps, "device": kind, "device_name": name}))
    board = _board({"synth": {"unet": 0.7, "attention_unet": 0.6}},
                   {"synth->synth_shift": {"unet": 0.3, "attention_unet": 0.4}})
    (root / "results" / "leaderboard.json").write_text(json.dumps(board))


def test_stage_writes_report_with_definition_and_warns_about_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path, "cpu: x86_64")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    assert main(["uscore"]) == 0
    err = capsys.readouterr().err
    assert "NOT comparable" in err and "synth: IoU percentiles from the grid" in err
    doc = json.loads((tmp_path / "results/uscore.json").read_text())
    assert doc["definition"] == "U-Bench" and doc["floor"] == 0.05 and doc["reference"] == "ubench"
    assert set(doc["uscore"]) == {"unet", "attention_unet"}
    assert set(doc["datasets"]) == {"synth"} and set(doc["zeroshot"]["pairs"]) == {"synth->synth_shift"}
    assert doc["speed_devices"] == ["x86_64"] and doc["device"]["comparable_with_reference"] is False
    md = (tmp_path / "reports/uscore.md").read_text()
    assert "**FPS:**" in md and "Floor: 0.05" in md
    assert (tmp_path / "reports/iou_vs_uscore.png").stat().st_size > 0
    # calc --reference grid reads the same workspace, and agrees with the stage
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(uscore={"reference": "grid", "floor": 0.05})))
    assert main(["uscore"]) == 0
    capsys.readouterr()
    grid_doc = json.loads((tmp_path / "results/uscore.json").read_text())
    assert grid_doc["reference"] == "grid" and grid_doc["device"]["note"] is None
    assert main(["uscore", "calc", "--iou", "0.7", "--params", "34.5", "--gflops", "65.5", "--fps", "2",
                 "--dataset", "synth", "--json"]) == 0
    calc = json.loads(capsys.readouterr().out)
    assert calc["reference"] == "grid" and calc["uscore"] == pytest.approx(grid_doc["datasets"]["synth"]["uscore"]["unet"])
    assert main(["uscore", "calc", "--iou", "0.3", "--params", "34.5", "--gflops", "65.5", "--fps", "2",
                 "--dataset", "synth->synth_shift", "--json"]) == 0
    calc = json.loads(capsys.readouterr().out)
    assert calc["uscore"] == pytest.approx(grid_doc["zeroshot"]["pairs"]["synth->synth_shift"]["uscore"]["unet"])
    assert main(["uscore", "calc", *CALC[2:], "--dataset", "kvasir"]) == 2
    assert "not in this grid's leaderboard" in capsys.readouterr().err


def test_stage_on_gpu_has_no_fps_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path, "cuda: NVIDIA H100")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    assert main(["uscore"]) == 0
    assert "NOT comparable" not in capsys.readouterr().err
    doc = json.loads((tmp_path / "results/uscore.json").read_text())
    assert doc["device"]["comparable_with_reference"] is True and doc["device"]["note"] is None


def test_stage_names_a_missing_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path, "cpu: x86_64")
    (tmp_path / "results/speed/unet.json").unlink()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    assert main(["uscore"]) == 2
    err = capsys.readouterr().err
    assert "results/speed/unet.json missing" in err and "speed@" in err


def test_measured_fields_are_what_verify_compares_with_a_tolerance():
    """ubench verify compares the uscore stage's JSON by value: everything that depends on FPS must
    sit under a key it treats as measured (fps, norm_fps, efficiency, uscore), the rest exactly."""
    from ubench.verify import MEASURED_KEYS

    def leaves(obj, prefix=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from leaves(v, f"{prefix}.{k}" if prefix else k)
        else:
            yield prefix, obj

    board = _board({"busi": {"unet": 0.6557507, "small": 0.81}, "synth": {"unet": 0.7, "small": 0.6}},
                   {"busi->bus": {"unet": 0.5, "small": 0.6}})
    from ubench.verify import compare_measured

    faster = {m: {**e, "fps": e["fps"] * 1.3} for m, e in EFF.items()}
    on_cpu = {m: {**e, "device": "cpu: x86_64"} for m, e in EFF.items()}
    for reference in ("ubench", "grid"):
        first = json.loads(json_dumps({**us.uscore_report(board, EFF, reference, 0.05), "speed_devices": ["H100"]}))
        again = json.loads(json_dumps({**us.uscore_report(board, faster, reference, 0.05), "speed_devices": ["H100"]}))
        a, b = dict(leaves(first)), dict(leaves(again))
        changed = {k for k in a if a[k] != b[k]}
        assert changed and all(MEASURED_KEYS & set(k.split(".")) for k in changed), changed
        verdict = str(compare_measured(first, again, 0.5)[0])
        assert "equivalent" in verdict and "computed fields differ" not in verdict
        # FPS from another device: "not compared", never a difference of computed fields
        cpu = json.loads(json_dumps({**us.uscore_report(board, on_cpu, reference, 0.05), "speed_devices": ["x86_64"]}))
        verdict = str(compare_measured(first, cpu, 0.5)[0])
        assert "another device" in verdict and "computed fields differ" not in verdict
