"""What DVC shows as metrics, and what git holds: few narrow metric files a person compares, every
small output in git (`cache: false`) so DVC's views work from a clone, big ones in the DVC cache."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from tests.conftest import REPO_ROOT
from ubench.analysis.leaderboard import build_leaderboard
from ubench.pipeline import candidate_summary, leaderboard_summary

IDS = [f"i{k}" for k in range(5)]


def frame(iou, pred_fg):
    return pd.DataFrame({"id": IDS, "iou": iou, "dice": iou, "se": iou, "pc": iou, "f1": iou,
                         "acc": [0.9] * 5, "hd95": [1.0] * 5, "pred_fg": pred_fg, "true_fg": [0.3] * 5})


def test_leaderboard_summary_is_one_row_of_model_ious_per_dataset_and_pair():
    good = frame([0.7, 0.6, 0.8, 0.75, 0.65], [0.3] * 5)
    dead = frame([0.0] * 5, [0.0] * 5)
    board = build_leaderboard({"synth": {"unet": good, "unext": dead}},
                              {("synth", "synth_shift"): {"unet": good, "unext": good}}, baseline="unet")
    rows = leaderboard_summary(board)
    assert sorted(rows) == ["synth.json", "zeroshot/synth/synth_shift.json"]
    assert rows["synth.json"] == {"unet": board["datasets"]["synth"]["models"]["unet"]["iou_mean"],
                                  "unext": 0.0, "degenerate": "unext"}
    assert rows["zeroshot/synth/synth_shift.json"]["degenerate"] == "-"
    assert set(rows["zeroshot/synth/synth_shift.json"]) == {"unet", "unext", "degenerate"}


def test_candidate_summary_is_one_row_per_dataset_of_what_is_compared():
    report = {"model": "unext", "baseline": "unet", "mean_iou": 0.5, "mean_delta_iou": -0.1,
              "degenerate": False, "baseline_degenerate": False, "warnings": ["w"],
              "degenerate_criterion": "text", "datasets": {"synth": {
                  "iou": 0.5, "baseline_iou": 0.6, "delta_iou": -0.1, "p_wilcoxon": 0.03, "p_ttest": 0.02,
                  "degenerate": False, "baseline_degenerate": True, "hd95": 3.0, "dice": 0.6}}}
    assert candidate_summary(report) == {"synth": {
        "model": "unext", "baseline": "unet", "iou": 0.5, "baseline_iou": 0.6, "delta_iou": -0.1,
        "p_wilcoxon": 0.03, "degenerate": False, "baseline_degenerate": True}}


def _outs(stage: dict, key: str) -> dict[str, dict]:
    out = {}
    for entry in stage.get(key, []):
        if isinstance(entry, str):
            out[entry] = {}
        else:
            (path, opts), = entry.items()
            out[path] = opts or {}
    return out


def _stages() -> dict:
    doc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    return {name: body.get("do", body) for name, body in doc["stages"].items()}


def test_metrics_are_few_files_under_metrics_and_in_git():
    for name, stage in _stages().items():
        for path, opts in _outs(stage, "metrics").items():
            assert path.startswith("metrics/"), f"{name}: metric {path} outside metrics/"
            assert opts.get("cache") is False, f"{name}: metric {path} must be in git (cache: false)"
        assert "plots" not in stage, f"{name}: plots are defined once, at the top of dvc.yaml"


def test_small_outputs_are_in_git_and_big_ones_in_the_cache():
    for name, stage in _stages().items():
        for path, opts in _outs(stage, "outs").items():
            small = path.startswith(("metrics/", "reports/")) or path.endswith(".json") and path.startswith("results/") \
                or path.startswith(("results/train/", "results/candidate/train/", "results/eval/")) \
                or path == "results/code"  # the code stage's digests: a few hundred bytes per stage
            big = path.startswith(("models/", "data/", "results/per_image/")) or path.endswith(".csv")
            assert small != big, f"{name}: {path} is neither clearly small nor big"
            assert (opts.get("cache") is False) == small, f"{name}: {path} cache setting"


def test_gitignore_keeps_cached_outputs_out_of_git_and_small_ones_in():
    import subprocess

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT).returncode == 0

    for path in ("models/synth/unet.pt", "data/prepared/synth/images.npy", "results/per_image/synth/unet.csv",
                 "results/zeroshot/synth/synth_shift/unet.csv", "results/candidate/synth.csv"):
        assert ignored(path), path
    for path in ("metrics/leaderboard/synth.json", "metrics/uscore.json", "results/eval/synth/unet.json",
                 "results/zeroshot/synth/synth_shift/unet.json", "results/train/synth/unet/metrics.json",
                 "results/leaderboard.json", "reports/index.html", "reports/plots/training/synth.csv",
                 "models/imported.dvc"):
        assert not ignored(path), path
    assert ignored("models/imported/synth/unet.pt")
    # DVC prunes a folder that git reports ignored when asked with a trailing slash, and `/models/*`
    # matches `models/` itself that way: DVC would then never read models/imported.dvc
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        assert not repo.scm.is_ignored("models/")


def test_plot_definitions_draw_one_thing_per_chart():
    doc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    defs = {}
    for entry in doc["plots"]:
        if isinstance(entry, str):
            defs[entry] = {}
        else:
            (path, opts), = entry.items()
            defs[path] = opts
    # the bar chart reads one file per dataset (never rows of several datasets in one chart)
    assert defs["reports/plots/leaderboard"] == {"template": "bar_horizontal", "x": "iou_mean", "y": "model"}
    # training curves: one chart per dataset, every model a line (the template colours by model)
    assert defs["reports/plots/training"]["template"] == "lines_by_model"
    template = json.loads((REPO_ROOT / ".dvc/plots/lines_by_model.json").read_text())
    assert template["encoding"]["color"]["field"] == "model"
    assert template["data"]["values"] == "<DVC_METRIC_DATA>"
