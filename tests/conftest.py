"""Shared fixtures: a tiny, fast configuration and a prepared tiny synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ubench.config import config_from_dict
from ubench.runtime import limit_heap_fragmentation

# the process setting every stage makes (make_deterministic): tests that run Mamba models
# directly get the same bounded memory as the stages do
limit_heap_fragmentation()


def pytest_collection_modifyitems(config, items):
    """Run tests/test_models.py model by model (each model's tests in their file order), so that
    each model is built once for all its read-only checks (test_models._default)."""
    positions = [i for i, item in enumerate(items) if item.path.name == "test_models.py"]

    def model(item) -> str:
        spec = getattr(item, "callspec", None)
        return spec.params.get("name", "") if spec else ""

    for i, item in zip(positions, sorted((items[i] for i in positions), key=model)):
        items[i] = item


TINY = {
    "grid": {"models": ["unet", "attention_unet"], "datasets": ["synth"],
             "transfer": [{"source": "synth", "target": "synth_shift"}],
             "synthetic": ["synth", "synth_shift"]},
    "synthetic": {"n": 24, "size": 64, "seed": 41},
    "split": {"val_fraction": 0.25, "test_fraction": 0.25},
    "data": {"image_size": 32},
    "train": {"epochs": 1, "batch_size": 4, "threads": 2},
    "efficiency": {"input_size": 64, "speed": {"warmup": 1, "window": 2, "max_seconds": 0.5, "tolerance": 0.5}},
    "candidate": {"model": "unet", "datasets": ["synth"]},
}


def _merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, key by key, one level deep per section."""
    out = dict(base)
    for section, values in extra.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **values}
        else:
            out[section] = values
    return out


def project_params() -> dict:
    """The project's params.yaml: the one source of every value (the config has no defaults)."""
    from ubench.config import read_params

    return read_params(Path(__file__).resolve().parents[1] / "params.yaml")


def tiny_params(**overrides) -> dict:
    """params.yaml with TINY's values, then section-level overrides, merged in (a deep copy)."""
    import copy

    out = copy.deepcopy(_merge(project_params(), TINY))
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


# --- One tiny-grid `dvc repro` clone per test session --------------------------------------------
# Built once (about 3 minutes on 2 cores) and shared by the end-to-end, remote, verify and sweep
# tests. Tests must not modify it: a test that changes files works on `copy_repo(...)` of it.

REPO_ROOT = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "ubench-tests", "GIT_AUTHOR_EMAIL": "tests@ubench.invalid",
                "GIT_COMMITTER_NAME": "ubench-tests", "GIT_COMMITTER_EMAIL": "tests@ubench.invalid"}


def repo_env(**extra: str) -> dict:
    """venv_env() for commands run inside a clone: ``PYTHONPATH=.`` so that a stage imports the
    ubench package of the directory it runs in (the code whose hashes dvc.lock records; in a queued
    experiment, the experiment's own copy), not the editable install of the working tree."""
    env = venv_env()
    env["PYTHONPATH"] = "."
    env.update(GIT_IDENTITY)
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in(repo: Path, *cmd: str, check: bool = True, env: dict | None = None,
           timeout: float | None = 900):
    """Run ``cmd`` in ``repo``; on ``check``, fail the test with the command's output tail."""
    import subprocess

    r = subprocess.run(list(cmd), cwd=repo, env=env or repo_env(), capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {r.returncode} in {repo}:\n"
                    f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


# folders of `cache: false` stage outputs that git holds (the default grid's results)
OUTPUT_DIRS = ("metrics/", "results/", "reports/")


def clone_tiny(dst: Path) -> Path:
    """Copy the files git would ship (tracked + untracked-not-ignored) into a fresh git repo at
    ``dst``, with the tiny params (every key spelled out: dvc.yaml interpolates them) and no
    dvc.lock, and commit them."""
    import shutil
    import subprocess

    import yaml

    from ubench.config import as_dict

    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listing):
        if rel.startswith(OUTPUT_DIRS):  # the default grid's committed outputs: not the tiny grid's
            continue
        src = REPO_ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    (dst / "dvc.lock").unlink(missing_ok=True)
    params = as_dict(config_from_dict(tiny_params()))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_in(dst, "git", "init", "-q")
    run_in(dst, "git", "add", "-A")
    run_in(dst, "git", "commit", "-q", "-m", "tiny grid")
    return dst


def copy_repo(src: Path, dst: Path) -> Path:
    """A private copy of a clone (git history, workspace, DVC cache) that a test may modify.

    DVC cache files are read-only and never rewritten in place, so they are hard-linked (fast, no
    extra disk); everything else is copied."""
    import shutil

    cache = str(src / ".dvc" / "cache") + os.sep

    def _copy(s: str, d: str) -> None:
        if s.startswith(cache):
            try:
                os.link(s, d)
                return
            except OSError:
                pass
        shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=_copy)
    return dst


class TinyRepo:
    """The shared clone: ``path`` (do not modify), ``first_repro`` (stdout of the first
    `dvc repro`), ``lock`` (its dvc.lock, parsed)."""

    def __init__(self, path: Path, first_repro: str):
        import yaml

        self.path = path
        self.first_repro = first_repro
        self.lock = yaml.safe_load((path / "dvc.lock").read_text())

    def out_hashes(self) -> dict[str, str]:
        """{output path: md5} over every stage of the recorded dvc.lock."""
        return {o["path"]: o["md5"] for body in self.lock["stages"].values()
                for o in body.get("outs", [])}


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> TinyRepo:
    """A clone of this repository with the tiny grid, `dvc repro`-ed once, dvc.lock committed.

    Its default DVC remote (`local`, ../../ubench-dvc-store relative to .dvc/) is the folder
    ``<tmp>/ubench-dvc-store`` beside it."""
    repo = clone_tiny(tmp_path_factory.mktemp("tiny") / "repo")
    first = run_in(repo, "dvc", "repro", timeout=1800)
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-q", "-m", "dvc.lock of the tiny grid")
    return TinyRepo(repo, first.stdout)


@pytest.fixture
def tiny_copy(tiny_repo, tmp_path):
    """A private, modifiable copy of the shared clone at ``tmp_path/repo`` (about 0.5 GB: removed
    after the test, as is everything else the test put in ``tmp_path``)."""
    import shutil

    yield copy_repo(tiny_repo.path, tmp_path / "repo")
    shutil.rmtree(tmp_path, ignore_errors=True)


# prepare_dataset keeps no defaults (params.yaml is the one source); tests that call it directly
# state theirs here, once.
PREPARE_TEST_KWARGS = {"raw_root": "data/raw", "image_size": 64, "protocol": "holdout", "split_seed": 41,
                       "val_fraction": 0.2, "test_fraction": 0.2,
                       "synthetic": {"n": 24, "size": 64, "seed": 41}}


def prep(name, out_dir, **kwargs):
    """``prepare_dataset`` with the tests' own values for every knob not given."""
    from ubench.data.prepare import prepare_dataset

    return prepare_dataset(name, out_dir, **{**PREPARE_TEST_KWARGS, **kwargs})


UBENCH_KEYS = Path(__file__).parent / "data" / "ubench_keys"  # scripts/ubench_reference_keys.py writes them


def ubench_fixture(ubench_name: str) -> dict:
    """U-Bench's state_dict keys, shapes, dtypes and tied pairs for one model (no weights)."""
    import json

    return json.loads((UBENCH_KEYS / f"{ubench_name}.json").read_text())


def ubench_state(ubench_name: str) -> dict:
    """A state_dict as U-Bench's model of that name holds it, from its fixture: every tensor filled
    with its own index (so a wrong pairing shows), tied keys sharing their twin's storage as in
    U-Bench (a view, permuted where the shapes ask for it)."""
    import itertools

    import torch

    fx = ubench_fixture(ubench_name)
    state = {}
    for i, (key, shape, dtype) in enumerate(fx["keys"]):
        state[key] = torch.full(shape, i + 1, dtype=getattr(torch, dtype))
    shapes = {k: tuple(s) for k, s, _ in fx["keys"]}
    for first, dup in fx["tied"]:
        base, want = state[first], shapes[dup]
        views = [base.permute(*p) for p in itertools.permutations(range(base.dim()))] if base.dim() else [base]
        same = [v for v in views if tuple(v.shape) == want]
        if same:
            state[dup] = same[0]
        elif base.numel() == state[dup].numel():
            state[dup] = base.view(want)
        # else: U-Bench's two keys share a storage at different offsets (not one tensor): left apart
    return state


def in_ubench_names(model: str, state: dict) -> dict:
    """ubench's ``state`` of ``model`` under U-Bench's keys, in U-Bench's order (the inverse of the
    model's proven key map): what U-Bench's main.py would have saved for the same weights."""
    import torch

    from ubench.models import model_info
    from ubench.ubench_keymap import load_keymap, rename_key

    km = load_keymap(model)
    assert km is not None and km.proven, f"{model} has no proven key map"
    fx = ubench_fixture(model_info(model).ubench_name)
    tied = dict(km.tied)
    out = {}
    for key, shape, dtype in fx["keys"]:
        if key in km.unused:
            out[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
        else:
            out[key] = state[rename_key(tied.get(key, key), km.rules) or tied.get(key, key)]
    return out
