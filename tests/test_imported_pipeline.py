"""Imported U-Bench weights through `dvc repro` (issue 19): the README's commands on the tiny grid.
`ubench weights import`, `dvc add models/imported`, `dvc exp run -S 'grid.imported=[...]'` runs
evaluate_imported@0 (in-domain and zero-shot) and the aggregates, never a training; the leaderboard,
its metrics, the U-Score and the HTML report show the import apart, labelled; `dvc status` is clean
after."""

from __future__ import annotations

import argparse
import json

import torch

from tests.conftest import in_ubench_names, run_in
from ubench.models import create_model, model_info


def test_dvc_exp_run_evaluates_imported_weights_and_shows_them_apart(tiny_copy):
    repo = tiny_copy
    torch.manual_seed(3)
    src = repo.parent / "checkpoint_best.pth"
    # U-Bench's keys, as its main.py saves them (the inverse of attention_unet's proven key map)
    state = in_ubench_names("attention_unet", create_model("attention_unet").state_dict())
    assert "Conv1.conv.0.weight" in state
    torch.save({"state_dict": state, "epoch": 250,
                "config": argparse.Namespace(model=model_info("attention_unet").ubench_name, dataset_name="synth",
                                             num_classes=1, input_channel=3, img_size=256)}, src)
    run_in(repo, "ubench", "weights", "import", str(src))
    run_in(repo, "dvc", "add", "models/imported")
    run_in(repo, "git", "add", "models/imported.dvc")  # the README: commit models/imported.dvc
    run_in(repo, "git", "commit", "-q", "-m", "U-Bench weights")
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:  # DVC reads the .dvc file (a `/models/*` ignore rule once hid it)
        assert "models/imported.dvc" in {s.path_in_repo for s in dvc_repo.index.stages}
    r = run_in(repo, "dvc", "exp", "run", "-S", "grid.imported=[{model: attention_unet, dataset: synth}]",
               timeout=1800)
    assert "Running stage 'evaluate_imported@0'" in r.stdout
    assert "Running stage 'train@" not in r.stdout and "Running stage 'evaluate@" not in r.stdout

    label = "attention_unet (U-Bench weights)"
    board = json.loads((repo / "results/leaderboard.json").read_text())
    rows = board["imported"]["datasets"]["synth"]["models"]
    assert set(rows) == {label} and rows[label]["trained_here_iou_mean"] == \
        board["datasets"]["synth"]["models"]["attention_unet"]["iou_mean"]
    assert set(board["imported"]["zeroshot"]) == {"synth->synth_shift"}
    assert label not in board["overall"] and label not in board["datasets"]["synth"]["models"]
    summary = json.loads((repo / "results/eval/imported/synth/attention_unet/test.json").read_text())
    assert summary["imported"]["epoch"] == 250 and summary["imported"]["ubench_model"] == "AttU_Net"
    imported = torch.load(repo / "models/imported/synth/attention_unet.pt", weights_only=True)["imported"]
    assert imported["key_map"]["paired_by"] == "first use in forward"  # the proof it came through
    assert (repo / "results/eval/imported/synth/attention_unet/zeroshot_synth_shift.json").is_file()
    assert label in (repo / "reports/leaderboard.md").read_text().split("## U-Bench weights")[1]
    assert label in json.loads((repo / "metrics/leaderboard/synth.json").read_text())
    assert label in (repo / "reports/index.html").read_text()
    # the U-Score scores it apart: same percentiles, the architecture's efficiency measured here
    uscore = json.loads((repo / "results/uscore.json").read_text())
    scored = uscore["imported"]["datasets"]["synth"][label]
    assert scored["uscore"] is not None and label not in uscore["uscore"] and label not in uscore["models"]
    assert json.loads((repo / "metrics/uscore.json").read_text())[label] == uscore["imported"]["uscore"][label]
    assert label in (repo / "reports/uscore.md").read_text().split("## U-Bench weights")[1]
    assert "U-Bench weights: trained by U-Bench, evaluated here (not ranked)" in (repo / "reports/index.html").read_text()
    # data.dvc pins data/raw (empty here, never in a clone's cache): it is not a pipeline stage
    assert set(json.loads(run_in(repo, "dvc", "status", "--json").stdout)) <= {"data.dvc"}
    from ubench.publish import publish_targets

    assert "models/imported.dvc" in publish_targets(repo) and "evaluate_imported@0" in publish_targets(repo)
