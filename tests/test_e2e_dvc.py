"""End to end: `dvc repro` of a tiny grid in a temporary clone of this repository.

- the first repro (the session's shared `tiny_repo`, see conftest.py) builds everything; a second
  runs nothing;
- `dvc repro -f` gives byte-identical outputs (dvc.lock hashes) for every stage but speed@* and
  uscore, the two measured ones;
- appending a comment to ubench/models/attention_unet.py marks only that model's stages (and, once
  outputs change, the aggregates) in `dvc status`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import run_in

MEASURED = ("speed@", "uscore")
AGGREGATES = {"leaderboard", "uscore", "candidate_report"}


def _out_hashes(repo: Path) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {stage: {o["path"]: o.get("md5") for o in body.get("outs", [])}
            for stage, body in lock["stages"].items()}


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_dvc_repro_tiny_grid(tiny_repo, tiny_copy):
    stages = _ran(tiny_repo.first_repro)
    assert "train@attention_unet-synth" in stages and "leaderboard" in stages and "uscore" in stages
    before = _out_hashes(tiny_repo.path)
    assert all(h for outs in before.values() for h in outs.values())
    board = json.loads((tiny_repo.path / "metrics/leaderboard.json").read_text())
    assert set(board["datasets"]["synth"]["models"]) == {"unet", "attention_unet"}
    assert json.loads((tiny_repo.path / "metrics/candidate.json").read_text())["model"] == "unet"

    second = run_in(tiny_repo.path, "dvc", "repro")
    assert _ran(second.stdout) == []

    repo = tiny_copy  # a private copy: the shared clone stays as recorded
    run_in(repo, "dvc", "repro", "-f", timeout=1800)
    after = _out_hashes(repo)
    assert set(after) == set(before)
    for stage, outs in before.items():
        if stage.startswith(MEASURED):
            continue
        assert after[stage] == outs, f"{stage} is not byte-identical after `dvc repro -f`"

    model_file = repo / "ubench/models/attention_unet.py"
    model_file.write_text(model_file.read_text() + "\n# a comment\n")
    status = json.loads(run_in(repo, "dvc", "status", "--json").stdout)
    # data.dvc pins data/raw (empty here, never in a clone's cache): it is not a pipeline stage
    changed = set(status) - {"data.dvc"}
    own = {"train@attention_unet-synth", "evaluate@attention_unet-synth",
           "zeroshot@attention_unet-pair0", "complexity@attention_unet", "speed@attention_unet"}
    assert own <= changed
    assert changed <= own | AGGREGATES, f"unexpected stages marked: {sorted(changed - own - AGGREGATES)}"
