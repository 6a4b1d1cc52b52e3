"""Stage start-up: what each stage command spends importing before it works, against
``python -c pass`` (the interpreter's own start) and ``python -c "import torch"`` (the floor of
every stage that runs a model).

One instance of every stage of the tiny grid's dvc.yaml (the shared ``tiny_repo`` clone of
tests/conftest.py, a copy of it) is run as its dvc.yaml command, with ``python -X importtime``;
the sum of the top-level imports' cumulative times is its start-up. Reported: start-up / pass,
start-up / torch import, and the start-up's share of the stage's wall time.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time

from benchmarks.conftest import record
from tests.conftest import copy_repo, repo_env, tiny_repo  # noqa: F401  (fixture)

_IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)")


def _import_seconds(stderr: str) -> float:
    """Sum of the cumulative times of top-level imports (``-X importtime`` lines without indent)."""
    total = 0
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m and len(m.group(3)) == 1:
            total += int(m.group(2))
    return total / 1e6


def _wall(cmd: list[str], cwd, env) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - t0, r


def test_stage_startup(tiny_repo, tmp_path):  # noqa: F811
    import yaml

    repo = copy_repo(tiny_repo.path, tmp_path / "repo")
    env = repo_env()
    floor = {name: min(_wall([sys.executable, "-c", code], repo, env)[0] for _ in range(3))
             for name, code in (("pass", "pass"), ("torch", "import torch"))}
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    seen = set()
    for name, body in sorted(stages.items()):
        kind = name.split("@")[0]
        if kind in seen:
            continue
        seen.add(kind)
        argv = shlex.split(body["cmd"])
        assert argv[0] == "ubench", body["cmd"]
        wall, r = _wall([sys.executable, "-X", "importtime", "-m", "ubench", *argv[1:]], repo, env)
        assert r.returncode == 0, r.stderr[-2000:]
        imports = _import_seconds(r.stderr)
        record(None, bench="startup", stage=kind, import_over_pass=imports / floor["pass"],
               import_over_torch=imports / floor["torch"], import_share_of_stage=imports / wall)
    assert {"train", "evaluate", "leaderboard"} <= seen
