"""End to end: `dvc repro` of a tiny grid in a temporary clone of this repository.

- the first repro (the session's shared `tiny_repo`, see conftest.py) builds everything; a second
  runs nothing;
- `dvc metrics show` and `dvc metrics diff` print narrow tables of the few declared metrics, which
  are in git (`cache: false`), so the diff against HEAD loads them;
- `dvc repro -f` gives byte-identical outputs (dvc.lock hashes) for every stage but speed@*, uscore
  and report (the measured ones, and the page that shows them);
- appending a comment to ubench/models/attention_unet.py marks the `code` stage (its source
  digests are stale), and once it has run, only that model's stages (and, once outputs change, the
  aggregates) in `dvc status`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import run_in

MEASURED = ("speed@", "uscore", "report")  # report: its page shows the U-Score (from FPS)
AGGREGATES = {"leaderboard", "uscore", "report", "candidate_report"}


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
    board = json.loads((tiny_repo.path / "results/leaderboard.json").read_text())
    assert set(board["datasets"]["synth"]["models"]) == {"unet", "attention_unet"}
    assert json.loads((tiny_repo.path / "metrics/candidate/synth.json").read_text())["model"] == "unet"

    second = run_in(tiny_repo.path, "dvc", "repro")
    assert _ran(second.stdout) == []
    show = run_in(tiny_repo.path, "dvc", "metrics", "show")
    lines = show.stdout.splitlines()
    assert "metrics/leaderboard/synth.json" in show.stdout and "metrics/uscore.json" in show.stdout
    assert len(lines[0].split()) < 25 and len(lines) < 20, show.stdout  # was 612 columns
    # the README's table of mean IoU and U-Score: datasets x models
    table = run_in(tiny_repo.path, "dvc", "metrics", "show", "metrics/leaderboard", "metrics/uscore.json")
    assert max(map(len, table.stdout.splitlines())) < 160, table.stdout
    assert table.stdout.splitlines()[0].split() == ["Path", "attention_unet", "degenerate", "unet"]
    diff = run_in(tiny_repo.path, "dvc", "metrics", "diff", "HEAD", "--all")  # committed: loaded from git
    assert "failed to load" not in diff.stdout + diff.stderr
    assert "metrics/leaderboard/synth.json" in diff.stdout and "unet" in diff.stdout

    repo = tiny_copy  # a private copy: the shared clone stays as recorded
    run_in(repo, "dvc", "repro", "-f", timeout=1800)
    diff = run_in(repo, "dvc", "metrics", "diff", "HEAD")  # committed metrics load from git
    assert "failed to load" not in diff.stdout + diff.stderr
    after = _out_hashes(repo)
    assert set(after) == set(before)
    for stage, outs in before.items():
        if stage.startswith(MEASURED):
            continue
        assert after[stage] == outs, f"{stage} is not byte-identical after `dvc repro -f`"

    model_file = repo / "ubench/models/attention_unet.py"
    model_file.write_text(model_file.read_text() + "\n# a comment\n")
    # data.dvc pins data/raw (empty here, never in a clone's cache): it is not a pipeline stage
    first = set(json.loads(run_in(repo, "dvc", "status", "--json").stdout)) - {"data.dvc"}
    assert first == {"code"}, first  # the source digests are the code stage's outputs: stale until it runs
    run_in(repo, "dvc", "repro", "--single-item", "code")
    status = json.loads(run_in(repo, "dvc", "status", "--json").stdout)
    changed = set(status) - {"data.dvc"}
    own = {"train@attention_unet-synth", "evaluate@attention_unet-synth",
           "zeroshot@attention_unet-pair0", "complexity@attention_unet", "speed@attention_unet"}
    assert own <= changed
    assert changed <= own | AGGREGATES, f"unexpected stages marked: {sorted(changed - own - AGGREGATES)}"
