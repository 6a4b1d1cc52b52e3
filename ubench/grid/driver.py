"""`ubench grid run`: schedule the grid's tasks and record what they computed here.

The run, in order:

1. One ``dvc status`` (DVC's run cache and dvc.lock decide what is done; nothing finished is
   rerun) and ``plan``: the out-of-date stages, as tasks in dependency order. The ``code`` stage
   (source digests, a second; every stage depends on it) is run here first when it is out of
   date, and the status read again: until it has run, DVC cannot tell which digests changed.
2. Tasks whose upstream tasks are recorded go to the executor, each with a snapshot of the shipped
   files as they are now (so its dvc.lock has the hashes of the inputs just recorded).
3. When a task succeeds, its uncached outputs are written here (atomically, as a set) and then its
   stages' dvc.lock entries are copied into this dvc.lock, exactly as the task's ``dvc repro``
   wrote them. A failed task is reported with its log and the tasks below it are skipped; the rest
   of the grid goes on.
4. At the end, even after Ctrl-C, the cached outputs of every recorded stage are checked out from
   the shared cache (local) or pulled from the remote (Ray), and a second ``dvc status`` says
   whether the workspace is clean. A rerun starts from 1: what was recorded is up to date, what
   was interrupted is out of date (and a training resumes from its last resume state, locally).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ubench.errors import UbenchError
from ubench.grid import plan
from ubench.grid.executors import LocalExecutor, Outcome, RayExecutor, safe_name
from ubench.grid.progress import Progress
from ubench.grid.task import Transport
from ubench.io import atomic_outputs, write_text_atomic
from ubench.scratch import absolute_remotes, run_dvc, snapshot

EXECUTORS = ("local", "ray")


@dataclass
class GridResult:
    tasks: int = 0
    done: list[str] = field(default_factory=list)
    failed: dict[str, tuple[str, Path]] = field(default_factory=dict)  # task -> (error, log file)
    skipped: dict[str, str] = field(default_factory=dict)  # task -> the failed task it needs
    interrupted: bool = False
    status: dict = field(default_factory=dict)  # the final `dvc status`
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.skipped or self.interrupted or self.status)

    def report(self) -> str:
        lines = [f"grid: {len(self.done)} of {self.tasks} tasks done, {len(self.failed)} failed, "
                 f"{len(self.skipped)} skipped" + (" (interrupted)" if self.interrupted else "")]
        for tid, (error, log) in self.failed.items():
            lines.append(f"  FAILED {tid}: {error}\n    log: {log}")
        for tid, need in self.skipped.items():
            lines.append(f"  skipped {tid}: needs {need}")
        lines += [f"note: {n}" for n in self.notes]
        if self.status:
            lines.append(f"dvc status: {len(self.status)} stage(s) not up to date: "
                         + ", ".join(sorted(self.status)[:8]) + (" ..." if len(self.status) > 8 else ""))
            lines.append("  rerun `ubench grid run` (after fixing what failed): it runs only what is missing")
        else:
            lines.append("dvc status: clean (dvc.lock records every stage)")
        return "\n".join(lines)


# --- resources ------------------------------------------------------------------------------------

def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() not in ("", "-1")]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def _train_threads(root: Path) -> int:
    from ubench.config import load_config

    return load_config(root / "params.yaml").train.threads


def local_executor(root: Path, transport: Transport, jobs: int | None, gpus_per_job: int | None,
                   cpus_per_job: int | None, retries: int, notes: list[str]) -> LocalExecutor:
    """Slots for ``jobs`` workers: a GPU share each (when there are GPUs) and a CPU share each.

    CPU pinning never changes a result: a stage uses ``train.threads`` threads, and only with
    ``train.threads: 0`` ("every core this process may run on") would pinning change the count, so
    then the workers are not pinned unless ``--cpus-per-job`` says so (with a note)."""
    gpus = visible_gpus()
    g = (1 if gpus else 0) if gpus_per_job is None else gpus_per_job
    if g < 0 or (jobs is not None and jobs < 1):
        raise UbenchError(f"--jobs {jobs} / --gpus-per-job {g}: out of range", "give --jobs >= 1, --gpus-per-job >= 0")
    if g > len(gpus):
        raise UbenchError(f"--gpus-per-job {g} but this machine shows {len(gpus)} GPU(s)",
                          "lower --gpus-per-job (0 runs on CPU), or check CUDA_VISIBLE_DEVICES / nvidia-smi")
    n = jobs or (len(gpus) // g if g else 1)
    if g and n * g > len(gpus):
        raise UbenchError(f"--jobs {n} x --gpus-per-job {g} needs {n * g} GPUs; this machine shows {len(gpus)}",
                          f"use --jobs {len(gpus) // g} or fewer")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    threads = _train_threads(root)
    c = cpus_per_job
    if c is None:
        c = max(1, len(cpus) // n) if threads > 0 and cpus else 0
        if threads == 0 and n > 1:
            notes.append("train.threads is 0 (every core), so the workers are not pinned and share the cores; "
                         "results equal `dvc repro`'s. For CPU parallelism set train.threads to the cores "
                         "per job (a change of protocol that DVC tracks).")
    elif threads == 0:
        notes.append(f"--cpus-per-job {c} with train.threads: 0: each stage uses its {c} pinned cores, as "
                     f"`dvc repro` on a {c}-core machine would (the thread count is in every output's "
                     "platform fingerprint), so outputs may differ from `dvc repro` here.")
    if c < 0:
        raise UbenchError(f"--cpus-per-job {c} is negative", "give 0 (no pinning) or more")
    return LocalExecutor(root, transport, n, retries, gpus, g, cpus, c)


def _transport(root: Path, executor: str, remote: str | None) -> Transport:
    if executor == "local":
        from ubench.dvc_files import cache_dir

        return Transport("cache", cache=str(cache_dir(root)))
    remotes = absolute_remotes(root)
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        default = repo.config["core"].get("remote")
    name = remote or default
    if not name or name not in remotes:
        raise UbenchError(
            f"the ray executor moves data through a DVC remote, and {'remote ' + repr(name) if name else 'no default remote'} "
            "is configured",
            "add one every node can reach: `dvc remote add -d store /shared/dvc-store` (or s3://...), "
            "or pass --remote NAME")
    return Transport("remote", remote=name,
                     remotes=tuple((n, tuple(sorted(o.items()))) for n, o in sorted(remotes.items())))


# --- recording ------------------------------------------------------------------------------------

def record(root: Path, task: plan.Task, result: dict) -> None:
    """The task's uncached outputs (as one set), then its dvc.lock entries."""
    files: dict[str, bytes] = result["files"]
    with atomic_outputs() as out:
        for o in task.uncached_outs:
            inside = {k: v for k, v in files.items() if k.startswith(o.rstrip("/") + "/")}
            if o in files:
                out.file(root / o, files[o])
            elif inside:
                tmp = out.dir(root / o)
                for rel, data in inside.items():
                    dest = tmp / rel[len(o.rstrip("/")) + 1:]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(data)
    merge_lock(root, result["entries"])


def merge_lock(root: Path, entries: dict[str, dict]) -> None:
    """Put ``entries`` into dvc.lock as DVC does (existing stages keep their place, new ones are
    appended; DVC's own YAML writer), atomically."""
    from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update

    lock = root / "dvc.lock"
    data = parse_yaml_for_update(lock.read_text(), str(lock)) if lock.exists() else None
    if not data:
        data = {"schema": "2.0"}
    data["stages"] = data.get("stages") or {}
    data["stages"].update(entries)
    write_text_atomic(lock, dumps_yaml(data))


def materialise(root: Path, transport: Transport, stages: list[str]) -> str:
    """Check out (local) or pull (Ray) the cached outputs of ``stages`` (by name: DVC then reads
    only their entries, not every stage); '' or the error."""
    if not stages:
        return ""
    args = (["checkout", *stages] if transport.kind == "cache"
            else ["pull", *(["-r", transport.remote] if transport.remote else []), *stages])
    rc, out = run_dvc(args, root)
    return "" if rc == 0 else out.strip()[-2000:]


# --- the run --------------------------------------------------------------------------------------

class _Stop(BaseException):
    pass


def run_grid(root: str | Path = ".", executor: str = "local", jobs: int | None = None, address: str | None = None,
             gpus_per_job: int | None = None, cpus_per_job: int | None = None, retries: int = 2,
             remote: str | None = None, targets: list[str] | None = None, dry: bool = False,
             stream=None) -> GridResult:
    root = Path(root).resolve()
    if executor not in EXECUTORS:
        raise UbenchError(f"unknown executor {executor!r}", f"use one of: {', '.join(EXECUTORS)}")
    if retries < 0:
        raise UbenchError(f"--retries {retries} is negative", "give 0 or more")
    if not (root / "dvc.yaml").exists():
        raise UbenchError(f"no dvc.yaml in {root}", "run `ubench grid run` in the ubench repository")
    stages, status = plan.read_repo(root)
    if targets:
        plan.select(stages, targets)  # a wrong name fails before anything runs
    prelude = [s for s in plan.PRELUDE if s in status and s in stages]
    notes = []
    if prelude and dry:
        notes.append(f"{', '.join(prelude)} is out of date: a real run runs it first, and then plans only the "
                     "stages whose source digest changed; this plan counts every stage below it")
    elif prelude:
        rc, out = run_dvc(["repro", "--single-item", *prelude], root)
        if rc != 0:
            raise UbenchError(f"`dvc repro --single-item {' '.join(prelude)}` failed:\n{out.strip()[-2000:]}",
                              "fix what it names (ubench/stage_sources.py lists each stage's sources), then rerun")
        stages, status = plan.read_repo(root)
    transport = None
    missing = plan.missing_outputs(stages, status)
    if missing and not dry:  # recorded by an earlier run that ended before checking them out
        transport = _transport(root, executor, remote)
        if not materialise(root, transport, missing):
            status = plan.dvc_status(root)
    todo = plan.out_of_date(stages, status, targets)
    tasks = {t.id: t for t in plan.group(stages, todo)}
    result = GridResult(tasks=len(tasks), notes=notes)
    progress_stream = stream
    if dry or not tasks:
        out = progress_stream or sys.stderr
        for note in notes:
            out.write(f"note: {note}\n")
        if tasks:
            out.write(f"grid plan: {len(tasks)} task(s) for {len(todo)} out-of-date stage(s), upstream first"
                      + (" (--dry: nothing is run)" if dry else "") + "\n")
        for t in tasks.values():
            after = sorted(t.after)
            wait = ", ".join(after[:4]) + (f" and {len(after) - 4} more" if len(after) > 4 else "")
            out.write(f"{t.id}: {' -> '.join(t.stages)}" + (f"  (after {wait})" if after else "") + "\n")
        if not tasks:
            out.write("grid plan: nothing to run, every stage is up to date\n")
        return result
    transport = transport or _transport(root, executor, remote)
    if executor == "local":
        ex = local_executor(root, transport, jobs, gpus_per_job, cpus_per_job, retries, result.notes)
        ex.prune(set(tasks))
    else:
        ex = RayExecutor(transport, address, retries, gpus_per_job or 0, cpus_per_job or 1,
                         local_cpus=jobs)
    all_outs = [o for s in stages.values() for o, _ in s.outs]
    progress = Progress(len(tasks), sum(len(t.stages) for t in tasks.values()), progress_stream)
    for note in result.notes:
        progress.event(f"note: {note}")
    pending = dict(tasks)
    started: dict[str, float] = {}
    recorded: list[str] = []  # stages with cached outputs to check out at the end
    failed_or_skipped: set[str] = set()
    done = set()  # = result.done, for the dispatch test

    def on_term(signum, _frame):
        raise _Stop()

    old_term = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    try:
        while pending or ex.running():
            for tid in list(pending):
                t = pending[tid]
                blocked = t.after & failed_or_skipped
                if blocked:
                    result.skipped[tid] = sorted(blocked)[0]
                    failed_or_skipped.add(tid)
                    progress.skipped += 1
                    progress.event(f"skipped {tid}: needs {sorted(blocked)[0]}, which failed")
                    del pending[tid]
                elif t.after <= done and ex.free() > 0:
                    spec = {"id": t.id, "stages": t.stages, "inputs": t.inputs,
                            "cached_outs": t.cached_outs, "uncached_outs": t.uncached_outs}
                    ex.submit(spec, snapshot(root, all_outs))
                    started[tid] = time.monotonic()
                    del pending[tid]
            for outcome in ex.poll(timeout=1.0):
                _finish(root, stages, tasks[outcome.task_id], outcome, ex, result, progress, started, recorded,
                        failed_or_skipped)
            done.update(result.done)
            while ex.events:
                progress.event(ex.events.pop(0))
            progress.update(ex.running())
    except (KeyboardInterrupt, _Stop):
        result.interrupted = True
        progress.event("interrupted: stopping the running tasks; what finished is recorded")
    finally:
        ex.shutdown()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        progress.close()
        error = materialise(root, transport, sorted(set(recorded)))
        if error:
            result.notes.append(f"getting the recorded outputs failed: {error}")
    status = plan.dvc_status(root)
    result.status = {s: v for s, v in status.items() if s not in stages or stages[s].runnable}
    for pin in sorted(set(status) - set(result.status)):
        result.notes.append(f"{pin} (a data pin, not a stage) does not match its data: `dvc pull {pin}` "
                            f"fetches the pinned data, `dvc commit {pin}` pins what is there")
    return result


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _finish(root: Path, stages: dict[str, plan.Stage], task: plan.Task, outcome: Outcome, ex, result: GridResult,
            progress: Progress, started: dict[str, float], recorded: list[str], failed_or_skipped: set[str]) -> None:
    seconds = time.monotonic() - started.get(task.id, time.monotonic())
    if outcome.result is not None:
        record(root, task, outcome.result)
        recorded.extend(s for s in task.stages if any(c for _, c in stages[s].outs))
        result.done.append(task.id)
        ex.forget(task.id)
        progress.finished(len(task.stages), seconds)
        retried = f", attempt {outcome.attempts}" if outcome.attempts > 1 else ""
        where = f", on {outcome.result['node']}" if outcome.result.get("node") else ""
        progress.event(f"done {task.id} ({len(task.stages)} stage(s), {seconds:.0f} s{retried}{where})")
        return
    log = root / ".ubench" / "grid" / "logs" / f"{safe_name(task.id)}.log"
    if not log.exists() or not log.read_text(errors="replace").strip():
        log.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(log, outcome.log)
    result.failed[task.id] = (outcome.error, log)
    failed_or_skipped.add(task.id)
    progress.failed += 1
    tail = "\n".join("    " + ln for ln in outcome.log.rstrip().splitlines()[-12:])
    progress.event(f"FAILED {task.id} after {outcome.attempts} attempt(s): {outcome.error}\n{tail}\n    log: {log}")
