"""`ubench verify`: rerun recorded stages in a scratch workspace and compare with dvc.lock.

Unit tests for stage selection, errors and the measured-value comparison; then, on the shared tiny
clone (tests/conftest.py `tiny_repo`): recorded stages verify (exit 0) without touching the
workspace or the cache, and a tampered dvc.lock or a changed param is reported (exit 1).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_in
from ubench.errors import UbenchError
from ubench.verify import compare_measured, select_stages, verify

LOCK = {"prepare@synth": {}, "train@unet-synth": {}, "train@attention_unet-synth": {}, "leaderboard": {}}
SPEED = {"batch_size": 1, "device": "cpu", "device_name": "x86_64", "fps": 10.0, "input_size": 64,
         "latency_ms_median": 100.0, "model": "unet", "repeats": 2, "threads": 2,
         "torch_version": "2.13.0+cpu", "warmup": 1, "measured": True}


def test_select_stages_by_name_and_group():
    assert select_stages(LOCK, []) == list(LOCK)
    assert select_stages(LOCK, ["train", "leaderboard"]) == [
        "train@unet-synth", "train@attention_unet-synth", "leaderboard"]
    assert select_stages(LOCK, ["train@unet-synth", "train"]) == [
        "train@unet-synth", "train@attention_unet-synth"]


def test_unknown_stage_names_the_closest(tmp_path):
    with pytest.raises(UbenchError, match="unknown stage 'trian'") as exc:
        select_stages(LOCK, ["trian"])
    assert "train" in exc.value.fix
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": LOCK}))
    with pytest.raises(UbenchError, match="unknown stage 'leaderbord'"):
        verify(tmp_path, ["leaderbord"], quiet=True)


def test_missing_lock_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(UbenchError, match="no dvc.lock"):
        verify(tmp_path, quiet=True)
    from ubench.cli import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["verify"]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "error: no dvc.lock" in err and "fix: run `dvc repro` first" in err


def test_compare_measured_tolerance_and_devices():
    verdict, ok, rec, new = compare_measured(SPEED, {**SPEED, "fps": 7.0, "latency_ms_median": 140.0}, 0.5)
    assert ok and verdict.startswith("measured: within ±50%")
    assert "10 FPS, cpu x86_64" in rec and "7 FPS, cpu x86_64" in new
    verdict, ok, *_ = compare_measured(SPEED, {**SPEED, "fps": 4.0, "latency_ms_median": 250.0}, 0.5)
    assert not ok and "MISMATCH" in verdict and "fps" in verdict
    # another device: shown, not compared
    verdict, ok, rec, new = compare_measured(SPEED, {**SPEED, "device": "cuda", "device_name": "NVIDIA H100",
                                                     "fps": 900.0}, 0.5)
    assert ok and "another device" in verdict and "NVIDIA H100" in new and "x86_64" in rec
    # the computed part of a measured file must match exactly
    verdict, ok, *_ = compare_measured(SPEED, {**SPEED, "input_size": 256}, 0.5)
    assert not ok and "input_size" in verdict
    uscore = {"models": {"unet": {"fps": 1.0, "uscore": 0.5, "iou": 0.8, "norm_iou": 1.0}},
              "percentiles": {"fps": {"p10": 1.0}, "iou": {"p10": 0.1}}, "speed_devices": ["x86_64"]}
    near = {"models": {"unet": {"fps": 1.2, "uscore": 0.55, "iou": 0.8, "norm_iou": 1.0}},
            "percentiles": {"fps": {"p10": 1.2}, "iou": {"p10": 0.1}}, "speed_devices": ["x86_64"]}
    assert compare_measured(uscore, near, 0.5)[1]
    off_iou = {**near, "percentiles": {"fps": {"p10": 1.2}, "iou": {"p10": 0.2}}}
    verdict, ok, *_ = compare_measured(uscore, off_iou, 0.5)
    assert not ok and "percentiles.iou.p10" in verdict


def _rows(stdout: str) -> dict[tuple[str, str], str]:
    """(stage, output) -> the rest of the line (recorded, recomputed, verdict)."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and ("@" in parts[0] or parts[0] in {"leaderboard", "uscore"}) and "/" in parts[1]:
            rows[(parts[0], parts[1])] = " ".join(parts[2:])
    return rows


def _snapshot(repo: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of every file but DVC's and git's scratch state."""
    snap = {}
    for p in repo.rglob("*"):
        rel = p.relative_to(repo).as_posix()
        if p.is_file() and not rel.startswith((".dvc/tmp/", ".git/")):
            st = p.stat()
            snap[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return snap


def test_verify_recorded_stages_match(tiny_repo):
    repo = tiny_repo.path
    before = _snapshot(repo)
    # a generous tolerance: this is a shared 2-core machine, FPS is noisy; the rule itself is
    # tested above
    r = run_in(repo, "ubench", "verify", "--tolerance", "0.9",
               "prepare@synth", "complexity@unet", "evaluate@unet-synth", "speed@unet", "uscore")
    rows = _rows(r.stdout)
    assert rows[("prepare@synth", "data/prepared/synth")].endswith("match")
    assert ".dir" in rows[("prepare@synth", "data/prepared/synth")]
    for out in ("metrics/complexity/unet.json",):
        assert rows[("complexity@unet", out)].endswith("match")
    for out in ("metrics/eval/synth/unet.json", "results/per_image/synth/unet.csv"):
        assert rows[("evaluate@unet-synth", out)].endswith("match")
    speed = rows[("speed@unet", "metrics/speed/unet.json")]
    # labelled as a measurement, with the recorded device and this one
    assert "measured: within ±90%" in speed and speed.count("cpu x86_64") + speed.count("cuda") == 2
    assert speed.count("FPS") == 2
    assert "measured" in rows[("uscore", "metrics/uscore.json")]
    assert "not compared" in rows[("uscore", "reports/uscore.md")]
    assert "all verified" in r.stdout
    assert _snapshot(repo) == before, "verify changed the workspace or the DVC cache"


def test_verify_reports_tampered_lock_and_changed_param(tiny_copy):
    lock_file = tiny_copy / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text())
    out = lock["stages"]["prepare@synth_shift"]["outs"][0]
    out["md5"] = ("0" if out["md5"][0] != "0" else "1") + out["md5"][1:]  # one changed character
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))
    params = yaml.safe_load((tiny_copy / "params.yaml").read_text())
    params["efficiency"]["input_size"] = 32  # complexity@unet now computes other FLOPs
    (tiny_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    r = run_in(tiny_copy, "ubench", "verify", "--quiet", "prepare@synth", "prepare@synth_shift",
               "complexity@unet", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    assert rows[("prepare@synth", "data/prepared/synth")].endswith("match")
    assert rows[("prepare@synth_shift", "data/prepared/synth_shift")].endswith("MISMATCH")
    complexity = rows[("complexity@unet", "metrics/complexity/unet.json")]
    assert complexity.endswith("MISMATCH: inputs differ from dvc.lock")
    assert "complexity@unet: inputs differ from dvc.lock: param efficiency.input_size" in r.stdout
    assert "2 FAILED verification" in r.stdout
