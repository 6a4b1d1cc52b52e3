"""DVC at the full grid's size: what `ubench grid run` asks DVC, on ubench's dvc.yaml with every
registered model x U-Bench's datasets, against DVC's floor (the same number of trivial stages).

    .venv/bin/python benchmarks/dvc_at_scale.py [--repeats 2] [--limit-models N] [--keep]

Why: `ubench grid run` asks DVC once per run what is out of date (one `dvc status` in the driver)
and once per task (`dvc repro --single-item` in the task's workspace), so DVC's own cost of reading
a dvc.yaml of ~5,000 stages is paid by the driver once and by every task. The question this
answers: does ubench's pipeline cost more to read than DVC's floor? (Target: <= 1.2x.)

Both pipelines are generated in a temporary folder (the repository is not touched), with nothing
run yet (no dvc.lock): the state of a grid run's first `dvc status`. The floor has one dependency
and one output per stage; ubench's stages have ~25 dependencies each (its source files, as
dvc.yaml lists them). Timings interleave the two pipelines, each command `--repeats` times; the
ratio is of the medians. (`dvc repro --dry` of the whole pipeline is not measured: on a grid with
nothing run it stops at the first stage whose input an upstream stage has not made yet.)
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
    models = list_models()[:limit_models] if limit_models else list_models()
    in_domain = [d.name for d in CATALOG if d.role == "in-domain"]
    pairs = [{"source": d.name, "target": t} for d in CATALOG for t in d.zero_shot_targets]
    params["grid"] = {"models": models, "datasets": in_domain, "transfer": pairs, "synthetic": [],
                      "raw": [d.name for d in CATALOG]}
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
    return stage_count(dest)


def trivial_pipeline(dest: Path, n: int) -> None:
    dest.mkdir(parents=True)
    (dest / "dep.txt").write_text("x\n")
    stages = {f"s{i:05d}": {"cmd": "true", "deps": ["dep.txt"], "outs": [f"out/s{i:05d}"]} for i in range(n)}
    (dest / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    write_dvc_config(dest)


def stage_count(repo: Path) -> int:
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return len([s for s in r.index.stages if getattr(s, "cmd", None)])


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
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ubench-dvc-scale-"))
    try:
        n = ubench_pipeline(tmp / "ubench", args.limit_models)
        (tmp / "ubench" / "data" / "prepared" / "busi").mkdir(parents=True)  # the one stage's input
        trivial_pipeline(tmp / "trivial", n)
        print(f"{n} stages each ({len(list_models())} registered models; --limit-models {args.limit_models})")
        rows = []
        for label, ucmd, fcmd, check in COMMANDS:
            times: dict[str, list[float]] = {"ubench": [], "trivial": []}
            for _ in range(args.repeats):  # interleaved: drift hits both
                times["trivial"].append(timed(tmp / "trivial", *fcmd, check=check))
                times["ubench"].append(timed(tmp / "ubench", *ucmd, check=check))
            u, f = statistics.median(times["ubench"]), statistics.median(times["trivial"])
            rows.append((label, u, f))
            print(f"{label}: ubench {u:.1f} s, trivial {f:.1f} s, ratio {u / f:.2f} "
                  f"(runs: ubench {', '.join(f'{t:.1f}' for t in times['ubench'])}; "
                  f"trivial {', '.join(f'{t:.1f}' for t in times['trivial'])})", flush=True)
        print(f"\n{n} stages | ubench's pipeline | trivial stages | ratio\n---|---|---|---")
        for label, u, f in rows:
            print(f"{label} | {u:.1f} s | {f:.1f} s | {u / f:.2f}")
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
