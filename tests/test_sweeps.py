"""A queued sweep over `candidate.model` on a copy of the shared tiny clone.

`dvc exp run --queue -S candidate.model=...` for two models of the tiny grid (the candidate
stage reuses their checkpoints), `dvc queue start -j 2`, then `dvc exp show --json` lists both
experiments with metrics/candidate/synth.json: U-Net's deltas against itself are 0, the other model's
are not. Queued experiments see committed files only: the shared clone has everything committed,
dvc.lock included. Git identity comes from the environment (repo_env).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import repo_env, run_in

MODELS = ("unet", "attention_unet")


def _experiments(show: list[dict]) -> dict[str, dict]:
    """{candidate.model: the experiment's data} from `dvc exp show --json` (DVC 3 layout)."""
    found = {}

    def visit(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and node.get("name") and data.get("params"):
                model = data["params"]["params.yaml"]["data"]["candidate"]["model"]
                found[model] = data
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    for row in show:
        visit(row.get("experiments") or [])
    return found


def _start_workers(repo, jobs: int) -> None:
    """`dvc queue start`, its output to a file, not a pipe: DVC forks each worker from a process
    that keeps the starter's stdout and stderr open until the worker exits, so a captured
    `dvc queue start` returns only when its workers have finished (60 s idle after the last task,
    or never if one hangs), and the status loop below would never get to say what is wrong."""
    import subprocess

    log = repo.parent / "queue-start.log"  # outside the repository: not part of any experiment
    with open(log, "w") as out:
        r = subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=repo, env=repo_env(),
                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=120)
    assert r.returncode == 0, log.read_text()[-4000:]
    assert "Started" in log.read_text(), log.read_text()[-4000:]


def test_queued_candidate_sweep(tiny_copy):
    repo = tiny_copy
    for model in MODELS:
        run_in(repo, "dvc", "exp", "run", "--queue", "-S", f"candidate.model={model}")
    _start_workers(repo, 2)
    try:
        deadline = time.monotonic() + 600
        while True:
            status = run_in(repo, "dvc", "queue", "status").stdout
            if not any(w in status for w in ("Queued", "Running")):
                break
            assert time.monotonic() < deadline, f"queue still busy after 600 s:\n{status}"
            time.sleep(3)
    finally:
        run_in(repo, "dvc", "queue", "stop", check=False)
    assert status.count("Success") == 2, status + "\n" + "\n".join(
        run_in(repo, "dvc", "queue", "logs", line.split()[1], check=False).stdout[-3000:]
        for line in status.splitlines() if "Failed" in line)

    exps = _experiments(json.loads(run_in(repo, "dvc", "exp", "show", "--json").stdout))
    assert set(exps) == set(MODELS), sorted(exps)
    cand = {m: exps[m]["metrics"]["metrics/candidate/synth.json"]["data"] for m in MODELS}
    assert cand["unet"]["model"] == "unet" and cand["attention_unet"]["model"] == "attention_unet"
    assert cand["unet"]["delta_iou"] == 0
    assert cand["attention_unet"]["delta_iou"] != 0
    assert cand["unet"]["iou"] != cand["attention_unet"]["iou"]
    delta = cand["attention_unet"]["iou"] - cand["unet"]["iou"]
    assert cand["attention_unet"]["delta_iou"] == pytest.approx(delta, abs=1e-6)
