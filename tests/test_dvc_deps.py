"""dvc.yaml's deps and params cover what each stage really uses, so that `dvc repro` reruns a stage
whenever a change could alter its outputs (and `dvc status` is never clean while they would).

Every stage instance of dvc.yaml is run, from its own ``cmd``, on a tiny grid in a scratch folder,
each in a fresh process that records the ubench files it imported or opened and the params keys
it read (tests/stage_trace.py). A dep on a source digest (``results/code/...json``, written by the
``code`` stage, which runs first) stands for the files that digest lists. Then:

- each such file must be covered by one of the instance's deps (a directory dep covers every
  file under it; ``${item...}`` is expanded for the concrete instance);
- each such key must be covered by a declared params entry (``train`` covers ``train.*``);
- and, so that deps stay specific, each ubench dep and each params entry must be used.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, tiny_params, venv_env
from ubench.config import as_dict, config_from_dict

DVC_YAML = REPO_ROOT / "dvc.yaml"
TRACER = REPO_ROOT / "tests" / "stage_trace.py"
RAW = "mine"  # a U-Bench-layout folder under data/raw, so that prepare_raw runs too

# Two in-domain datasets (the advisor needs two), one zero-shot pair, one raw dataset, and two of
# the lightest models so that the whole grid runs in seconds.
PARAMS = tiny_params(
    grid={"models": ["unext", "ulite"], "datasets": ["synth", "synth_small"],
          "transfer": [{"source": "synth", "target": "synth_shift"}],
          "synthetic": ["synth", "synth_shift", "synth_small"], "raw": [RAW],
          "imported": [{"model": "unext", "dataset": "synth"}]},
    synthetic={"n": 12},
    efficiency={"input_size": 32, "speed": {"warmup": 0, "window": 1, "max_seconds": 0.1, "tolerance": 0.5}},
    leaderboard={"baseline": "unext"},
    candidate={"model": "unext", "datasets": ["synth"]},
    advisor={"by": "uscore", "k": 2, "n_estimators": 5},  # the branch that also reads FPS, U-Scores
)

# Reads the code makes without the value reaching the stage's outputs, each with the reason.
# An entry here is a known imprecision to fix in ubench/, not a rule: keep the list short.
UNUSED_READS = {
    # pipeline.run_prepare passes as_dict(cfg.synthetic) to every prepare; prepare_dataset uses
    # it for synthetic datasets only, so a raw dataset must not rerun when `synthetic` changes.
    ("prepare_raw", "synthetic"),
}

# Deps a stage may carry without using them, each with the reason (keep the list short).
UNUSED_DEPS: set[str] = set()


@dataclass(frozen=True)
class Instance:
    """One concrete stage of dvc.yaml (e.g. train@unext-synth) with its expanded deps and params."""

    stage: str
    name: str
    argv: tuple[str, ...]
    deps: tuple[str, ...]
    params: tuple[str, ...]


def _lookup(ctx: dict, dotted: str):
    value = ctx
    for key in dotted.split("."):
        value = value[key]
    return value


def interpolate(value, ctx: dict):
    """dvc.yaml's ``${a.b}`` templating: a whole-string template keeps the value's type."""
    whole = re.fullmatch(r"\$\{\s*([\w.]+)\s*\}", value)
    if whole:
        return _lookup(ctx, whole.group(1))
    return re.sub(r"\$\{\s*([\w.]+)\s*\}", lambda m: str(_lookup(ctx, m.group(1))), value)


def _items(body: dict, params: dict) -> list[tuple[str, object]]:
    """(name suffix, item) of each instance of a foreach / matrix stage; [("", None)] otherwise."""
    if "foreach" in body:
        items = interpolate(body["foreach"], params)
        assert isinstance(items, list), "this test expands foreach over lists only"
        return [(str(v), v) for v in items]
    if "matrix" in body:
        axes = {k: interpolate(v, params) if isinstance(v, str) else v for k, v in body["matrix"].items()}
        out = []
        for combo in itertools.product(*(list(enumerate(v)) for v in axes.values())):
            # DVC's names: train@unext-synth, zeroshot@unext-pair0 (non-scalars by axis and index)
            suffix = "-".join(v if isinstance(v, str) else f"{axis}{i}" for axis, (i, v) in zip(axes, combo))
            out.append((suffix, {k: v for k, (_, v) in zip(axes, combo)}))
        return out
    return [("", None)]


def _params_entries(entries: list) -> tuple[str, ...]:
    out = []
    for e in entries or []:
        if isinstance(e, str):
            out.append(e)
        else:  # {file: [keys]}: only params.yaml is the config stages load
            for file, keys in e.items():
                assert file == "params.yaml", f"params from {file}: this test knows params.yaml only"
                out.extend(keys)
    return tuple(out)


def expand_stages(dvc: dict, params: dict) -> list[Instance]:
    """Every stage instance of dvc.yaml, in file order (a valid run order for this pipeline)."""
    out = []
    for stage, body in dvc["stages"].items():
        for suffix, item in _items(body, params):
            do = body.get("do", body)
            ctx = {**params, "item": item}
            cmd = shlex.split(interpolate(do["cmd"], ctx))
            assert cmd[0] == "ubench", f"{stage}: cmd must be a `ubench` command, got {do['cmd']!r}"
            deps = tuple(interpolate(d, ctx) for d in do.get("deps", []))
            out.append(Instance(stage, f"{stage}@{suffix}" if suffix else stage, tuple(cmd[1:]), deps,
                                _params_entries(do.get("params"))))
    return out


def covers(entry: str, path: str) -> bool:
    """A dep (a params entry) covers itself and everything under it (``a`` covers ``a/b``, ``a.b``)."""
    entry = entry.rstrip("/")
    return path == entry or path.startswith(entry + "/") or path.startswith(entry + ".")


def make_raw_layout(root: Path, n: int = 8) -> None:
    """A tiny U-Bench-layout dataset: RGB PNG images, 0/255 PNG masks."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks" / "0").mkdir(parents=True)
    for i in range(n):
        mask = np.zeros((40, 40), np.uint8)
        mask[5 + i:25 + i, 10:30] = 255
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask).save(root / "masks" / "0" / f"c{i}.png")


def make_imported(root: Path, model: str, dataset: str) -> None:
    """models/imported/DATASET/MODEL.pt as `ubench weights import` writes it, from a checkpoint in
    U-Bench's format (so that evaluate_imported@ runs)."""
    import argparse

    import torch

    from ubench.models import create_model, model_info
    from ubench.ubench_weights import import_checkpoint

    src = root / "ubench_checkpoint.pth"
    torch.save({"state_dict": create_model(model).state_dict(), "epoch": 1,
                "config": argparse.Namespace(model=model_info(model).ubench_name, dataset_name=dataset)}, src)
    import_checkpoint(src, out=root / "models" / "imported" / dataset / f"{model}.pt")


@pytest.fixture(scope="module")
def dvc() -> dict:
    return yaml.safe_load(DVC_YAML.read_text())


@pytest.fixture(scope="module")
def traced(dvc, tmp_path_factory) -> list[tuple[Instance, dict]]:
    """Run every stage instance of dvc.yaml on the tiny grid: [(instance, what it used)]."""
    ws = tmp_path_factory.mktemp("dvc_deps")
    params = as_dict(config_from_dict(PARAMS))  # every key spelled out, as dvc.yaml interpolates
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_raw_layout(ws / "data" / "raw" / RAW)
    make_imported(ws, "unext", "synth")
    instances = expand_stages(dvc, params)
    plan = ws / "plan.json"
    plan.write_text(json.dumps([{"name": i.name, "argv": list(i.argv)} for i in instances]))
    out = ws / "trace"
    out.mkdir()
    env = venv_env()
    env["PYTHONPATH"] = str(REPO_ROOT)  # this checkout's ubench/, whatever is installed
    r = subprocess.run([sys.executable, str(TRACER), str(plan), str(out)], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.fail(f"a stage failed on the tiny grid:\n{r.stderr[-6000:]}")
    return [(with_digests_expanded(inst, ws), json.loads((out / f"{k}.json").read_text()))
            for k, inst in enumerate(instances)]


def with_digests_expanded(inst: Instance, ws: Path) -> Instance:
    """The instance with each source-digest dep replaced by the files the written digest lists."""
    deps: list[str] = []
    for d in inst.deps:
        if d.startswith("results/code/"):
            assert (ws / d).is_file(), f"{inst.name} depends on {d}, which the code stage did not write"
            deps.extend(json.loads((ws / d).read_text())["files"])
        else:
            deps.append(d)
    return Instance(inst.stage, inst.name, inst.argv, tuple(deps), inst.params)


def _stage_traces(traced, stage: str) -> list[tuple[Instance, dict]]:
    runs = [(i, t) for i, t in traced if i.stage == stage]
    assert runs, f"no instance of {stage} ran: extend PARAMS so that its foreach/matrix is not empty"
    return runs


STAGES = list(yaml.safe_load(DVC_YAML.read_text())["stages"])


def test_tracer_sees_lazy_imports_and_reads(traced):
    """The recording itself works: train imports its model's file inside a function and reads
    train.epochs through the wrapped config; prepare opens synthetic.py to hash it."""
    train = next(t for i, t in traced if i.name == "train@unext-synth")
    assert {"ubench/cli.py", "ubench/train.py", "ubench/models/unext.py"} <= set(train["files"])
    assert "ubench/models/ulite.py" not in train["files"]
    assert "train.epochs" in train["params"] and "advisor.k" not in train["params"]
    prepare = next(t for i, t in traced if i.name == "prepare@synth")
    assert "ubench/data/synthetic.py" in prepare["files"] and "synthetic.seed" in prepare["params"]


@pytest.mark.parametrize("stage", STAGES)
def test_deps_cover_the_code_a_stage_uses(traced, stage):
    missing = {}
    for inst, used in _stage_traces(traced, stage):
        lacking = [f for f in used["files"] if not any(covers(d, f) for d in inst.deps)]
        if lacking:
            missing[inst.name] = lacking
    assert not missing, f"dvc.yaml: {stage} uses ubench files its deps do not cover: {missing}"


@pytest.mark.parametrize("stage", STAGES)
def test_params_cover_the_keys_a_stage_reads(traced, stage):
    missing = {}
    for inst, used in _stage_traces(traced, stage):
        lacking = [k for k in used["params"] if not any(covers(p, k) for p in inst.params)
                   and not any(covers(section, k) for s, section in UNUSED_READS if s == stage)]
        if lacking:
            missing[inst.name] = lacking
    assert not missing, f"dvc.yaml: {stage} reads params it does not declare: {missing}"


@pytest.mark.parametrize("stage", STAGES)
def test_no_dep_on_code_the_stage_never_uses(traced, stage):
    """A dep on ubench code the stage does not run only reruns it for nothing."""
    stale = {}
    for inst, used in _stage_traces(traced, stage):
        unused = [d for d in inst.deps if covers("ubench", d) and d not in UNUSED_DEPS
                  and not any(covers(d, f) for f in used["files"])]
        if unused:
            stale[inst.name] = unused
    assert not stale, f"dvc.yaml: {stage} depends on ubench code it never uses: {stale}"


@pytest.mark.parametrize("stage", STAGES)
def test_no_params_the_stage_never_reads(traced, stage):
    stale = {}
    for inst, used in _stage_traces(traced, stage):
        unused = [p for p in inst.params if not any(covers(p, k) for k in used["params"])]
        if unused:
            stale[inst.name] = unused
    assert not stale, f"dvc.yaml: {stage} declares params it never reads: {stale}"
