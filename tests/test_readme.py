"""Every command the README shows is run here, or named as not runnable offline with the reason, so
the README cannot drift from the tool again (its `dvc exp show --md --keep -A` once failed).

Commands are the lines of ```bash blocks and the `$ ` lines of output blocks. Each one must match
exactly one entry below: RUN (run in a private copy of the tiny-grid repository, must exit 0) or
NOT_RUN (with why, and where its behaviour is tested instead). A command in neither fails the test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.conftest import REPO_ROOT, run_in
from ubench.cli import build_parser

README = REPO_ROOT / "README.md"

# prefix -> why it is not run by this test (and what tests it instead)
NOT_RUN = {
    "make run": "the whole default run (~10 min); the README's Measured section reports it from a fresh clone",
    "make test": "this test suite itself (CI runs it through .ci/run)",
    "dvc exp run -S data.image_size=256": "the paper's 300-epoch protocol: GPU-days",
    "dvc exp run --queue": "queued sweeps: tests/test_sweeps.py runs one (two experiments, dvc queue)",
    "dvc queue ": "queued sweeps: tests/test_sweeps.py",
    "ubench datasets check data/raw/busi": "needs BUSI's files (a download); tests/test_conv_*.py check "
                                           "made-up and shared sample data in every layout",
    "ubench advise": "needs an advisor trained on >= 2 datasets (the tiny grid has one); "
                     "tests/test_advisor_pipeline.py runs it on a two-dataset grid",
    "docker ": "needs Docker and an NVIDIA GPU (the GPU image)",
    "ubench publish": "needs a DVC remote; tests/test_remotes.py publishes to local and S3 (moto) remotes",
    "dvc pull": "needs a DVC remote; tests/test_remotes.py pulls from one",
    "dvc exp run -S train.pretrained=true": "needs the ImageNet backbone files (downloads); "
                                            "tests/test_pretrained.py trains from files the test writes",
    "ubench weights import": "needs U-Bench's released checkpoints (a download); tests/test_ubench_weights.py "
                             "imports checkpoints written in U-Bench's format, one by one and as a release",
    "dvc add models/imported": "pins imported U-Bench weights; tests/test_imported_pipeline.py runs it",
    "dvc exp run -S 'grid.imported": "needs an imported checkpoint; tests/test_imported_pipeline.py runs this "
                                     "command on the tiny grid after importing one",
    "ubench verify": "reruns stages in a scratch copy; tests/test_verify.py runs it on the tiny grid",
    "ubench grid run --jobs": "runs the grid in parallel: tests/test_grid.py runs --jobs 2 on the tiny grid "
                              "(a killed worker, a killed driver, a failing task)",
    "ubench grid run train evaluate": "tests/test_grid.py runs the grid with stage targets",
    "ubench grid run --executor ray": "needs a Ray cluster; tests/test_grid.py runs the ray executor on a "
                                      "local Ray cluster",
}
# prefix -> what to check in the output of a command this test runs
RUN = {
    "ubench models list": "unet",
    "ubench models show": "unet",
    "ubench models weights": "res2net101_v1b_26w_4s-0812c246.pth",
    "ubench uscore calc": "U-Score",
    "dvc exp run -S candidate.model=malunet": "",
    "dvc exp show --md": "| Experiment",
    "dvc metrics diff": "metrics/candidate/synth.json",
    "dvc metrics show": "metrics/leaderboard/synth.json",
    "dvc plots show": "file://",
    "ubench grid run --dry": "grid plan:",
}


def readme_commands(text: str) -> list[str]:
    """Commands in README order: the lines of ```bash blocks, the `$ ` lines of other blocks."""
    out = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        for line in body.splitlines():
            line = line.strip()
            if lang == "bash" and line and not line.startswith("#"):
                out.append(line)
            elif line.startswith("$ "):
                out.append(line[2:])
    return [re.sub(r"\s+#.*$", "", c).strip() for c in out]  # drop trailing comments


def _entry(cmd: str) -> tuple[str, str]:
    hits = [(kind, p) for kind, table in (("run", RUN), ("not_run", NOT_RUN)) for p in table if cmd.startswith(p)]
    assert len(hits) == 1, f"README command {cmd!r} matches {hits or 'no entry'}: add it to RUN or NOT_RUN"
    return hits[0]


def test_every_readme_command_is_run_or_says_why_not():
    cmds = readme_commands(README.read_text(encoding="utf-8"))
    assert len(cmds) > 15
    kinds = {cmd: _entry(cmd) for cmd in cmds}
    assert any(k == "run" for k, _ in kinds.values())
    # no test counts or other figures the suite would have to keep in step by hand
    assert not re.search(r"\d[\d,]* tests\b", README.read_text(encoding="utf-8"))
    assert "--keep -A" not in README.read_text(encoding="utf-8")  # `--keep` takes a pattern


def test_readme_ubench_commands_parse():
    """Every `ubench ...` command's options exist (argparse exits 2 on an unknown one)."""
    parser = build_parser()
    for cmd in readme_commands(README.read_text(encoding="utf-8")):
        for part in cmd.split("&&"):
            argv = shlex.split(part.strip())
            if argv and argv[0] == "ubench":
                parser.parse_args(argv[1:])


def test_readme_commands_run_in_the_tiny_repository(tiny_copy):
    """The RUN commands, in README order, in a private copy of the tiny grid after `dvc repro`."""
    repo: Path = tiny_copy
    ran = 0
    for cmd in readme_commands(README.read_text(encoding="utf-8")):
        kind, prefix = _entry(cmd)
        if kind != "run":
            continue
        r = run_in(repo, "bash", "-c", cmd, check=False, timeout=900)
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"README command failed: {cmd}\n{out[-3000:]}"
        assert RUN[prefix] in out, f"{cmd}: expected {RUN[prefix]!r} in its output:\n{out[-3000:]}"
        if cmd.startswith(("dvc exp show", "dvc metrics")) and cmd != "dvc metrics show":  # that one: every column
            widest = max(map(len, r.stdout.splitlines()))
            assert widest < 200, f"{cmd} prints lines of {widest} characters:\n{r.stdout[:3000]}"
        ran += 1
    assert ran >= 5
