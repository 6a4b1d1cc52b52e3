"""A `dvc repro` killed mid-stage leaves nothing that looks complete, and the next run recovers.

On a copy of the shared tiny clone: `dvc repro -f -s train@unet-synth` runs in its own process
group, which is killed (SIGKILL, the whole group: the stage process too) once training is under
way, then reaped (DVC takes a zombie's PID for a live lock holder). The checkpoint is absent (DVC
removed it before the run; ubench's writers are atomic, so no partial one appears), the next run
recomputes the same bytes as the uninterrupted one, and afterwards nothing is left to reproduce:
the atomic writers' leftover temporaries are ignored by DVC (.dvcignore), so they do not change the
hash of a folder dep such as results/train/synth.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from tests.conftest import repo_env, run_in

STAGE = "train@unet-synth"


def _outs(repo, stage):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for o in lock["stages"][stage]["outs"]}


def _live_members(pgid: int, wait: float = 10.0) -> list[int]:
    """PIDs of the process group that are still running (zombies, dead but unreaped, excluded)."""
    deadline = time.monotonic() + wait
    while True:
        live = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                live.append(int(stat.parent.name))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.2)


def test_killed_repro_recovers(tiny_copy):
    repo = tiny_copy
    recorded = _outs(repo, STAGE)
    live_parent = repo / "results/train/synth"
    log = open(repo.parent / "repro.log", "w")
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", STAGE], cwd=repo, env=repo_env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        started = None
        while time.monotonic() < deadline and proc.poll() is None:
            if started is None and any(live_parent.glob(".unet.*.tmp")):  # dvclive under way
                started = time.monotonic()
            if started is not None and time.monotonic() - started > 1.0:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the stage finished before it could be interrupted"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert _live_members(proc.pid) == [], "an orphan of the killed group is still running"

    # nothing that looks complete: no checkpoint (or the recorded one, intact), no metrics
    ckpt = repo / "models/synth/unet.pt"
    if ckpt.exists():
        assert hashlib.md5(ckpt.read_bytes()).hexdigest() == recorded["models/synth/unet.pt"]
    visible = [p.name for p in (repo / "models/synth").iterdir() if p.name.startswith("unet")]
    assert visible in ([], ["unet.pt"])
    metrics = repo / "results/train/synth/unet/metrics.json"
    assert not metrics.exists() or hashlib.md5(metrics.read_bytes()).hexdigest() == recorded[str(
        metrics.relative_to(repo))]

    rerun = run_in(repo, "dvc", "repro", "-f", "-s", STAGE)
    assert f"Running stage '{STAGE}'" in rerun.stdout
    assert _outs(repo, STAGE) == recorded, "the recovered run computed other bytes"
    status = json.loads(run_in(repo, "dvc", "status", "--json").stdout)
    assert set(status) <= {"data.dvc"}, f"left something to reproduce: {status}"
    assert "Running stage" not in run_in(repo, "dvc", "repro").stdout
