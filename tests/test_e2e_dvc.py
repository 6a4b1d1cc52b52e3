"""End to end: `dvc repro` of a tiny grid in a temporary clone of this repository.

- the first repro builds everything; a second runs nothing;
- `dvc repro -f` gives byte-identical outputs (dvc.lock hashes) for every stage but speed@* and
  uscore, the two measured ones;
- appending a comment to ubench/models/attention_unet.py marks only that model's stages (and, once
  outputs change, the aggregates) in `dvc status`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_params, venv_env
from ubench.config import as_dict, config_from_dict

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ("speed@", "uscore")
AGGREGATES = {"leaderboard", "uscore", "candidate_report"}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=venv_env(), capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def _clone(dst: Path) -> Path:
    """Copy the files git would ship (tracked + untracked-not-ignored) into a fresh git repo."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listing):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    (dst / "dvc.lock").unlink(missing_ok=True)
    # every key spelled out (dvc.yaml interpolates them), tiny values
    params = as_dict(config_from_dict(tiny_params()))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", "commit", "-q", "-m", "tiny grid"], dst)
    return dst


def _out_hashes(repo: Path) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {stage: {o["path"]: o.get("md5") for o in body.get("outs", [])}
            for stage, body in lock["stages"].items()}


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_dvc_repro_tiny_grid(tmp_path):
    repo = _clone(tmp_path / "clone")
    first = _run(["dvc", "repro"], repo)
    stages = _ran(first.stdout)
    assert "train@attention_unet-synth" in stages and "leaderboard" in stages and "uscore" in stages
    before = _out_hashes(repo)
    assert all(h for outs in before.values() for h in outs.values())
    board = json.loads((repo / "metrics/leaderboard.json").read_text())
    assert set(board["datasets"]["synth"]["models"]) == {"unet", "attention_unet"}
    assert json.loads((repo / "metrics/candidate.json").read_text())["model"] == "unet"

    second = _run(["dvc", "repro"], repo)
    assert _ran(second.stdout) == []

    _run(["dvc", "repro", "-f"], repo)
    after = _out_hashes(repo)
    assert set(after) == set(before)
    for stage, outs in before.items():
        if stage.startswith(MEASURED):
            continue
        assert after[stage] == outs, f"{stage} is not byte-identical after `dvc repro -f`"

    model_file = repo / "ubench/models/attention_unet.py"
    model_file.write_text(model_file.read_text() + "\n# a comment\n")
    status = json.loads(_run(["dvc", "status", "--json"], repo).stdout)
    # data.dvc pins data/raw (empty here, never in a clone's cache): it is not a pipeline stage
    changed = set(status) - {"data.dvc"}
    own = {"train@attention_unet-synth", "evaluate@attention_unet-synth",
           "zeroshot@attention_unet-pair0", "complexity@attention_unet", "speed@attention_unet"}
    assert own <= changed
    assert changed <= own | AGGREGATES, f"unexpected stages marked: {sorted(changed - own - AGGREGATES)}"
