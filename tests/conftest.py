"""Shared fixtures: a tiny, fast configuration and a prepared tiny synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ubench.config import config_from_dict

TINY = {
    "grid": {"models": ["unet", "attention_unet"], "datasets": ["synth"],
             "transfer": [{"source": "synth", "target": "synth_shift"}],
             "synthetic": ["synth", "synth_shift"]},
    "synthetic": {"n": 24, "size": 64, "seed": 41},
    "split": {"val_fraction": 0.25, "test_fraction": 0.25},
    "data": {"image_size": 32},
    "train": {"epochs": 1, "batch_size": 4, "threads": 2},
    "efficiency": {"input_size": 64, "speed": {"warmup": 1, "repeats": 2}},
    "candidate": {"model": "unet", "datasets": ["synth"]},
}


def tiny_params(**overrides) -> dict:
    """A deep copy of TINY with section-level overrides merged in."""
    import copy

    out = copy.deepcopy(TINY)
    for section, values in overrides.items():
        if isinstance(values, dict):
            out.setdefault(section, {}).update(values)
        else:
            out[section] = values
    return out


@pytest.fixture
def tiny_cfg():
    return config_from_dict(tiny_params())


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run in an empty folder: every stage writes relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def prepared_tiny(workdir, tiny_cfg):
    """data/prepared/synth and synth_shift of the tiny config, in the working folder."""
    from ubench.pipeline import run_prepare

    for name in ("synth", "synth_shift"):
        run_prepare(tiny_cfg, name)
    return workdir


def venv_env() -> dict:
    """Environment for subprocesses: the running interpreter's bin first on PATH (ubench, dvc)."""
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for k, v in {"GIT_AUTHOR_NAME": "ubench-tests", "GIT_AUTHOR_EMAIL": "tests@ubench.invalid",
                 "GIT_COMMITTER_NAME": "ubench-tests", "GIT_COMMITTER_EMAIL": "tests@ubench.invalid",
                 "DVC_NO_ANALYTICS": "1"}.items():
        env[k] = v
    return env
