"""Stage functions on the tiny synthetic grid: determinism, worker independence, failures that
leave nothing behind, and named errors for bad input."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from tests.conftest import tiny_params
from ubench import paths, pipeline
from ubench.config import config_from_dict
from ubench.errors import UbenchError


def _train_bytes(cfg, model="attention_unet"):
    pipeline.run_train(cfg, model, "synth")
    ckpt = paths.checkpoint("synth", model).read_bytes()
    live = (paths.train_live("synth", model) / "metrics.json").read_bytes()
    return ckpt, live


def test_training_is_byte_identical_and_independent_of_resume_states(prepared_tiny, tiny_cfg):
    first = _train_bytes(tiny_cfg)
    again = _train_bytes(tiny_cfg)
    assert first == again
    reference = torch.load(paths.checkpoint("synth", "attention_unet"), weights_only=True)
    every_epoch = config_from_dict(tiny_params(train={**tiny_params()["train"], "resume_every": 1}))
    _, live_two = _train_bytes(every_epoch)
    assert not paths.resume_state(paths.checkpoint("synth", "attention_unet")).exists()  # removed when done
    other = torch.load(paths.checkpoint("synth", "attention_unet"), weights_only=True)
    assert other["train"]["resume_every"] == 1  # recorded, but changes no weight and no metric
    assert other["state_dict"].keys() == reference["state_dict"].keys()
    for key, tensor in reference["state_dict"].items():
        assert torch.equal(other["state_dict"][key], tensor), key
    assert live_two == first[1]
    summary = json.loads(first[1])
    assert "timestamp" not in summary and summary["best/epoch"] == 1
    assert 0.0 <= summary["val"]["iou"] <= 1.0


def test_nan_loss_is_named_and_leaves_no_output(prepared_tiny, tiny_cfg, monkeypatch):
    from ubench import train as train_mod

    real_create = train_mod.create_model

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = real_create("unet")

        def forward(self, x):
            return self.inner(x) * float("nan")

    monkeypatch.setattr(train_mod, "create_model", lambda *a, **k: Broken())
    with pytest.raises(UbenchError, match="loss became nan") as exc:
        pipeline.run_train(tiny_cfg, "unet", "synth")
    assert "train.lr" in exc.value.fix
    assert not paths.checkpoint("synth", "unet").exists()
    assert not paths.train_live("synth", "unet").exists()
    leftovers = [p for p in paths.train_live("synth", "unet").parent.glob("*")] if \
        paths.train_live("synth", "unet").parent.exists() else []
    assert leftovers == []


def test_evaluate_writes_per_image_rows_and_summary(prepared_tiny, tiny_cfg):
    pipeline.run_train(tiny_cfg, "unet", "synth")
    s = pipeline.run_evaluate(tiny_cfg, "unet", "synth")
    rows = paths.per_image_csv("synth", "unet").read_text().splitlines()
    splits = json.loads((paths.prepared("synth") / "splits.json").read_text())
    assert len(rows) == 1 + len(splits["test"]) == 1 + s["n_images"]
    assert rows[0] == "id,index,iou,dice,se,pc,f1,acc,hd95,pred_fg,true_fg"
    # predicted/true foreground shares are recorded per image, summarised apart from the metrics
    assert "pred_fg" not in s["metrics"] and 0.0 <= s["prediction"]["empty_share"] <= 1.0
    on_disk = json.loads(paths.eval_json("synth", "unet").read_text())
    assert on_disk["protocol"] == "holdout" and on_disk["split"] == "test"
    z = pipeline.run_evaluate(tiny_cfg, "unet", "synth", "synth_shift")
    n_target = json.loads((paths.prepared("synth_shift") / "manifest.json").read_text())["count"]
    assert z["n_images"] == n_target and z["zero_shot"] is True and z["source"] == "synth"
    # zero-shot reads only what its stage declares: the checkpoint and the target's data
    shutil.rmtree(paths.prepared("synth"))
    again = pipeline.run_evaluate(tiny_cfg, "unet", "synth", "synth_shift")
    assert again["metrics"] == z["metrics"]


def test_ubench_protocol_is_labelled(workdir):
    cfg = config_from_dict(tiny_params(split={"protocol": "ubench", "val_fraction": 0.25,
                                              "test_fraction": 0.25}))
    pipeline.run_prepare(cfg, "synth")
    pipeline.run_train(cfg, "unet", "synth")
    s = pipeline.run_evaluate(cfg, "unet", "synth")
    assert s["protocol"] == "ubench" and "U-Bench protocol" in s["protocol_note"]


@pytest.mark.parametrize("model, needle", [("unett", "did you mean unet"), ("attn_unet", "attention_unet")])
def test_unknown_model_lists_close_names(prepared_tiny, tiny_cfg, model, needle):
    with pytest.raises(UbenchError) as exc:
        pipeline.run_train(tiny_cfg, model, "synth")
    assert f"unknown model {model!r}" in str(exc.value) and needle in exc.value.fix


def test_unknown_or_unprepared_dataset(workdir, tiny_cfg):
    with pytest.raises(UbenchError) as exc:
        pipeline.run_train(tiny_cfg, "unet", "synht")
    assert "unknown dataset" in str(exc.value) and "synth" in exc.value.fix
    with pytest.raises(UbenchError, match="not prepared") as exc:
        pipeline.run_train(tiny_cfg, "unet", "synth")
    assert "ubench prepare synth" in exc.value.fix


def test_leaderboard_needs_every_grid_result(prepared_tiny, tiny_cfg):
    with pytest.raises(UbenchError, match="per-image results missing"):
        pipeline.run_leaderboard(tiny_cfg)


def test_candidate_report_has_the_same_keys_for_any_model(prepared_tiny):
    """A candidate outside the grid is trained; one inside reuses the grid's checkpoint bytes."""
    base = tiny_params(grid={**tiny_params()["grid"], "models": ["unet"]})
    cfg_unet = config_from_dict({**base, "candidate": {"model": "unet", "datasets": ["synth"]}})
    pipeline.run_train(cfg_unet, "unet", "synth")
    pipeline.run_evaluate(cfg_unet, "unet", "synth")
    pipeline.run_candidate(cfg_unet, "synth")
    assert paths.candidate_checkpoint("synth").read_bytes() == paths.checkpoint("synth", "unet").read_bytes()
    same = pipeline.run_candidate_report(cfg_unet)
    assert same["datasets"]["synth"]["delta_iou"] == 0.0 and same["datasets"]["synth"]["p_ttest"] == 1.0

    cfg_attn = config_from_dict({**base, "candidate": {"model": "attention_unet", "datasets": ["synth"]}})
    pipeline.run_candidate(cfg_attn, "synth")
    other = pipeline.run_candidate_report(cfg_attn)
    on_disk = json.loads(paths.CANDIDATE_REPORT_JSON.read_text())
    assert on_disk == json.loads(json.dumps(other))
    row = json.loads((paths.CANDIDATE_METRICS / "synth.json").read_text())  # DVC's view
    assert row["model"] == "attention_unet" and row["delta_iou"] == other["datasets"]["synth"]["delta_iou"]
    assert sorted(p.name for p in paths.CANDIDATE_METRICS.iterdir()) == ["synth.json"]
    assert other["model"] == "attention_unet"
    assert set(other) == set(same)
    assert set(other["datasets"]["synth"]) == set(same["datasets"]["synth"])
    entry = other["datasets"]["synth"]
    assert entry["delta_iou"] == pytest.approx(entry["iou"] - entry["baseline_iou"])
    assert 0.0 <= entry["p_ttest"] <= 1.0
    # collapsed models are named: the flags follow the per-image foreground shares
    from ubench.analysis.degenerate import degeneracy

    cand = degeneracy(pd.read_csv(paths.candidate_csv("synth")))
    base_deg = degeneracy(pd.read_csv(paths.per_image_csv("synth", "unet")))
    assert entry["degenerate"] is cand["degenerate"] and entry["pred_empty_share"] == cand["empty_share"]
    assert entry["baseline_degenerate"] is base_deg["degenerate"]
    assert other["degenerate"] is entry["degenerate"] and other["baseline_degenerate"] is base_deg["degenerate"]
    assert any(w.startswith("candidate attention_unet on synth") for w in other["warnings"]) is cand["degenerate"]
    assert any(w.startswith("baseline unet on synth") for w in other["warnings"]) is base_deg["degenerate"]


def test_model_that_cannot_take_the_image_size_is_named(prepared_tiny, tiny_cfg, monkeypatch):
    import dataclasses

    import ubench.models as models

    real = models.model_info("unet")
    monkeypatch.setattr(models, "model_info", lambda name: dataclasses.replace(real, input_sizes=(224,)))
    with pytest.raises(UbenchError, match="does not accept 32x32") as exc:
        pipeline.run_train(tiny_cfg, "unet", "synth")
    assert "data.image_size to one of [224]" in exc.value.fix
    assert not paths.checkpoint("synth", "unet").exists()


def test_deep_supervision_model_trains_and_evaluates(prepared_tiny, tiny_cfg):
    """EGE-UNet returns six outputs: the loss averages them, evaluation uses the last."""
    from ubench.models import model_info

    assert model_info("egeunet").deep_supervision
    best = pipeline.run_train(tiny_cfg, "egeunet", "synth")
    assert 0.0 <= best["val_iou"] <= 1.0
    s = pipeline.run_evaluate(tiny_cfg, "egeunet", "synth")
    assert s["n_images"] > 0 and 0.0 <= s["metrics"]["iou"]["mean"] <= 1.0
