"""DVC at the full grid's size: what `ubench grid run` asks DVC, on ubench's dvc.yaml with every
registered model x U-Bench's datasets, against DVC's floor (the same number of trivial stages).

    .venv/bin/python benchmarks/dvc_at_scale.py [--repeats 2] [--limit-models N] [--only LABEL] [--keep]

Why: `ubench grid run` asks DVC once per run what is out of date (one `dvc status` in the driver)
and once per task (`dvc repro --single-item` in the task's workspace), so DVC's own cost of reading
a dvc.yaml of ~5,000 stages is paid by the driver once and by every task. The question this
answers: does ubench's pipeline cost more to read than DVC's floor? (Target: <= 1.2x.)

The pipelines are generated in a temporary folder (the repository is not touched), with nothing
run yet but the `code` stage (no dvc.lock): the state of a grid run's first `dvc status` after its
prelude. The floor has one dependency and one output per stage. ubench's stages have 1-5
dependencies each (one source digest, written by the `code` stage, plus the data they read), so a
second floor, "same shape", has trivial stages with exactly ubench's numbers of deps, outs and
params entries: the part of the gap that is the number of files DVC must stat, not ubench.
Timings interleave the pipelines, each command `--repeats` times; ratios are of the medians.
(`dvc repro --dry` of the whole pipeline is not measured: on a grid with nothing run it
stops at the first stage whose input an upstream stage has not made yet.)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ubench.config import as_dict, load_config  # noqa: E402
from ubench.data.catalog import CATALOG  # noqa: E402
from ubench.models import list_models  # noqa: E402
from ubench.scratch import copy_shipped, dvc_env, dvc_executable, write_dvc_config  # noqa: E402


def full_grid_params(limit_models: int | None) -> dict:
    """params.yaml with every registered model on U-Bench's 20 in-domain datasets and its 9
    zero-shot pairs (all 28 datasets prepared from data/raw)."""
    params = as_dict(load_config(ROOT / "params.yaml"))
    models = list_models()
    if limit_models:  # the baseline (and the timed stage's model) first
        models = ["unet"] + [m for m in models if m != "unet"][:limit_models - 1]
    in_domain = [d.name for d in CATALOG if d.role == "in-domain"]
    pairs = [{"source": d.name, "target": t} for d in CATALOG for t in d.zero_shot_targets]
    params["grid"].update(models=models, datasets=in_domain, transfer=pairs, synthetic=[],
                          raw=[d.name for d in CATALOG], imported=[])
    params["candidate"]["datasets"] = [in_domain[0]]
    return params


def ubench_pipeline(dest: Path, limit_models: int | None) -> int:
    copy_shipped(ROOT, dest, [])
    (dest / "dvc.lock").unlink(missing_ok=True)
    (dest / "params.yaml").write_text(yaml.safe_dump(full_grid_params(limit_models), sort_keys=False))
    for d in CATALOG:  # a stand-in file per raw dataset: `repro --dry` wants its deps to exist
        (dest / "data" / "raw" / d.name).mkdir(parents=True, exist_ok=True)
        (dest / "data" / "raw" / d.name / "README").write_text("stand-in\n")
    write_dvc_config(dest)
    r = subprocess.run([sys.executable, "-m", "ubench", "code"], cwd=dest, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"`ubench code` failed in {dest}:\n{r.stderr[-2000:]}")
    return stage_shapes(dest)


def trivial_pipeline(dest: Path, shapes: list[tuple[int, int, int]]) -> None:
    """One stage per shape (deps, outs, params entries); [(1, 1, 0)] * n is DVC's floor."""
    dest.mkdir(parents=True)
    most = max(d for d, _, _ in shapes)
    for j in range(most):
        (dest / f"dep{j}.txt").write_text(f"{j}\n")
    (dest / "params.yaml").write_text(yaml.safe_dump({f"p{j}": j for j in range(max(p for *_, p in shapes) or 1)}))
    stages = {}
    for i, (n_deps, n_outs, n_params) in enumerate(shapes):
        stage = {"cmd": "true", "deps": [f"dep{j}.txt" for j in range(n_deps)],
                 "outs": [f"out/s{i:05d}/o{k}" for k in range(n_outs)]}
        if n_params:
            stage["params"] = [f"p{j}" for j in range(n_params)]
        stages[f"s{i:05d}"] = stage
    (dest / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    write_dvc_config(dest)


def stage_shapes(repo: Path) -> list[tuple[int, int, int]]:
    """(deps, outs, params entries) of each stage with a command."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return [(len(s.deps) - len(s.params), len(s.outs), sum(len(p.params or [1]) for p in s.params))
                for s in r.index.stages if getattr(s, "cmd", None)]


def timed(repo: Path, *args: str, check: bool = True) -> float:
    t = time.perf_counter()
    r = subprocess.run([dvc_executable(), *args], cwd=repo, env=dvc_env(repo), capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if check and r.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed in {repo}:\n{r.stderr[-2000:]}")
    return elapsed


# (label, ubench's command, the floor's command, must succeed). A grid task names its stages (and
# its inputs' stages) by name; the driver asks for the status of everything once.
COMMANDS = [
    ("dvc status (every stage; once per grid run)", ["status"], ["status"], True),
    ("dvc repro --single-item --dry ONE_STAGE (a task's repro)",
     ["repro", "--single-item", "--dry", "train@unet-busi"], ["repro", "--single-item", "--dry", "s00000"], True),
    ("dvc checkout STAGE_NAME (a task's inputs, by name)", ["checkout", "prepare_raw@busi"], ["checkout", "s00000"],
     False),
    ("dvc checkout PATH (the same, by output path)", ["checkout", "data/prepared/busi"], ["checkout", "out/s00000"],
     False),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--limit-models", type=int, default=None, help="fewer models (a quick check)")
    ap.add_argument("--keep", action="store_true", help="keep the generated pipelines (path printed)")
    ap.add_argument("--only", default=None, help="time only the commands whose label starts with this "
                    "(e.g. 'dvc status')")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ubench-dvc-scale-"))
    try:
        shapes = ubench_pipeline(tmp / "ubench", args.limit_models)
        (tmp / "ubench" / "data" / "prepared" / "busi").mkdir(parents=True)  # the one stage's input
        n = len(shapes)
        trivial_pipeline(tmp / "trivial", [(1, 1, 0)] * n)
        trivial_pipeline(tmp / "shaped", shapes)
        print(f"{n} stages each ({len(list_models())} registered models; --limit-models {args.limit_models}); "
              f"ubench's stages: {sum(d for d, _, _ in shapes) / n:.2f} deps, {sum(o for _, o, _ in shapes) / n:.2f} "
              f"outs, {sum(p for *_, p in shapes) / n:.2f} params entries on average")
        rows = []
        for label, ucmd, fcmd, check in COMMANDS:
            if args.only and not label.startswith(args.only):
                continue
            times: dict[str, list[float]] = {"ubench": [], "trivial": [], "shaped": []}
            for _ in range(args.repeats):  # interleaved: drift hits all three
                times["trivial"].append(timed(tmp / "trivial", *fcmd, check=check))
                times["shaped"].append(timed(tmp / "shaped", *fcmd, check=check))
                times["ubench"].append(timed(tmp / "ubench", *ucmd, check=check))
            u, f, sh = (statistics.median(times[k]) for k in ("ubench", "trivial", "shaped"))
            rows.append((label, u, f, sh))
            print(f"{label}: ubench {u:.1f} s, trivial {f:.1f} s (ratio {u / f:.2f}), same shape {sh:.1f} s "
                  f"(ratio {u / sh:.2f}) (runs: " + "; ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)}"
                                                           for k, v in times.items()) + ")", flush=True)
        print(f"\n{n} stages | ubench's pipeline | trivial (1 dep, 1 out) | ratio | same shape | ratio\n"
              "---|---|---|---|---|---")
        for label, u, f, sh in rows:
            print(f"{label} | {u:.1f} s | {f:.1f} s | {u / f:.2f} | {sh:.1f} s | {u / sh:.2f}")
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
