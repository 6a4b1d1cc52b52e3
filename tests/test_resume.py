"""Training resumes: a run killed mid-way (SIGKILL) continues from its resume state and writes the
bytes an uninterrupted run writes (checkpoint and dvclive log); stale states are not used."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import tiny_params, venv_env
from ubench import paths
from ubench.train import KILL_ENV

MODEL, DATASET = "unext", "synth"


def _params(workdir, **train) -> str:
    params = tiny_params()
    params["train"].update({"epochs": 4, "resume_every": 1, **train})
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return "params.yaml"


def _train(kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = venv_env()
    env.pop(KILL_ENV, None)
    if kill_after is not None:
        env[KILL_ENV] = str(kill_after)
    return subprocess.run([sys.executable, "-m", "ubench", "train", "--model", MODEL, "--dataset", DATASET],
                          capture_output=True, text=True, env=env, timeout=600)


def _outputs() -> dict[str, bytes]:
    live = paths.train_live(DATASET, MODEL)
    files = {str(p.relative_to(live)): p.read_bytes() for p in sorted(live.rglob("*")) if p.is_file()}
    return {"checkpoint": paths.checkpoint(DATASET, MODEL).read_bytes(), **files}


def test_killed_run_resumes_to_identical_bytes(prepared_tiny):
    _params(prepared_tiny)
    ckpt = paths.checkpoint(DATASET, MODEL)
    state = paths.resume_state(ckpt)
    done = _train()
    assert done.returncode == 0, done.stderr
    reference = _outputs()
    assert not state.exists()

    ckpt.unlink()
    killed = _train(kill_after=2)
    assert killed.returncode == -9, killed.stderr  # killed, not exited
    assert state.is_file() and not ckpt.exists()
    assert torch.load(state, weights_only=True)["epoch"] == 2
    resumed = _train()
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr + resumed.stdout
    assert _outputs() == reference
    assert not state.exists()


def _interrupt_after(epoch: int, monkeypatch) -> None:
    """In-process stand-in for the kill: stop the run right after epoch ``epoch``'s resume state."""
    from ubench import train as train_mod

    class Interrupted(Exception):
        pass

    def stop(done: int) -> None:
        if done == epoch:
            raise Interrupted

    monkeypatch.setattr(train_mod, "_kill_point", stop)
    return Interrupted


def _train_here(workdir, **train):
    from ubench import pipeline
    from ubench.config import load_config

    _params(workdir, **train)
    return pipeline.run_train(load_config(workdir / "params.yaml"), MODEL, DATASET)


def test_resume_state_of_another_configuration_is_ignored(prepared_tiny, monkeypatch, capsys):
    ckpt = paths.checkpoint(DATASET, MODEL)
    state = paths.resume_state(ckpt)
    with monkeypatch.context() as patch:  # only the interruption is undone, not the fixture's chdir
        interrupted = _interrupt_after(1, patch)
        with pytest.raises(interrupted):
            _train_here(prepared_tiny)
    assert state.is_file() and not ckpt.exists()
    _train_here(prepared_tiny, lr=0.02)  # another run: the state must not seed it
    assert "belongs to another configuration" in capsys.readouterr().out
    assert torch.load(ckpt, weights_only=True)["train"]["lr"] == 0.02
    assert not state.exists()


def test_unreadable_resume_state_costs_only_time(prepared_tiny, capsys):
    state = paths.resume_state(paths.checkpoint(DATASET, MODEL))
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a torch file")
    _train_here(prepared_tiny)
    assert "ignoring the unreadable resume state" in capsys.readouterr().out
    assert paths.checkpoint(DATASET, MODEL).is_file() and not state.exists()


@pytest.mark.parametrize("bad", [-1])
def test_negative_resume_every_is_named(bad):
    from ubench.config import config_from_dict
    from ubench.errors import UbenchError

    with pytest.raises(UbenchError, match="resume_every"):
        config_from_dict(tiny_params(train={**tiny_params()["train"], "resume_every": bad}))
