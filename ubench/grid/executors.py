"""Where grid tasks run: local worker processes, or Ray tasks on a cluster.

Both take a task with its workspace snapshot and give back outcomes; the driver never knows which
it talks to. A failed attempt (the stages failed, or the worker was killed) is retried up to
``retries`` times; then the outcome carries the error and the log.

- ``LocalExecutor``: ``jobs`` worker processes on this machine (``python -m ubench.grid.worker``),
  each in a session of its own, pinned to its GPUs (``CUDA_VISIBLE_DEVICES``) and/or its CPU cores
  (affinity). Workspaces live in ``.ubench/grid/work/<task>`` and share this repository's DVC
  cache. A killed worker's leftover processes are ended with its session before the retry.
- ``RayExecutor``: each task is a Ray task asking for ``gpus``/``cpus``; Ray places it, sets
  ``CUDA_VISIBLE_DEVICES`` and retries it when the task fails or its worker dies. The workspace is a
  temporary folder on the node; data moves through the DVC remote.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ubench.errors import UbenchError
from ubench.grid.task import TaskFailed, Transport, run_task


@dataclass
class Outcome:
    task_id: str
    result: dict | None  # run_task's result when the task succeeded
    error: str = ""  # what failed, for the report
    log: str = ""  # everything dvc printed, every attempt
    attempts: int = 1


@dataclass
class Running:
    task_id: str
    attempt: int
    started: float
    where: str = ""  # GPU/cores or "ray"


def safe_name(task_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in task_id)


# --- local ----------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _worker_preexec(cpus: set[int]) -> None:
    """In the worker, before it runs: its CPU cores, and SIGTERM when the driver dies (Linux), which
    the worker turns into the end of its whole session (``worker.py``), so that a killed driver
    leaves no worker running on into the next run's workspace."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Slot:
    index: int
    gpus: list[str]
    cpus: list[int]
    proc: subprocess.Popen | None = None
    task: dict | None = None
    attempt: int = 0
    started: float = 0.0
    log_start: int = 0
    job: Path | None = None
    snapshot: Path | None = None
    errors: list[str] = field(default_factory=list)


class LocalExecutor:
    """``jobs`` worker processes; ``gpu_ids`` split ``gpus_per_job`` to a slot, ``cpu_ids``
    ``cpus_per_job`` to a slot (an empty list: that resource is not pinned)."""

    def __init__(self, root: Path, transport: Transport, jobs: int, retries: int,
                 gpu_ids: list[str], gpus_per_job: int, cpu_ids: list[int], cpus_per_job: int):
        self.root, self.transport, self.retries = root, transport, retries
        self.dir = root / ".ubench" / "grid"
        shutil.rmtree(self.dir / "jobs", ignore_errors=True)  # left by a driver that was killed
        for sub in ("work", "logs", "jobs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.events: list[str] = []  # retries, for the driver to show
        self.slots = []
        for i in range(jobs):
            gpus = gpu_ids[i * gpus_per_job:(i + 1) * gpus_per_job] if gpus_per_job else []
            cpus = [cpu_ids[(i * cpus_per_job + k) % len(cpu_ids)] for k in range(cpus_per_job)] if cpus_per_job else []
            self.slots.append(_Slot(i, gpus, cpus))

    def free(self) -> int:
        return sum(s.proc is None for s in self.slots)

    def log_path(self, task_id: str) -> Path:
        return self.dir / "logs" / f"{safe_name(task_id)}.log"

    def submit(self, spec: dict, snapshot: bytes) -> None:
        slot = next(s for s in self.slots if s.proc is None)
        slot.task, slot.attempt, slot.errors = spec, 0, []
        slot.snapshot = self.dir / "jobs" / f"{safe_name(spec['id'])}.tar"
        slot.snapshot.write_bytes(snapshot)
        self.log_path(spec["id"]).write_text("")
        self._start(slot)

    def _start(self, slot: _Slot) -> None:
        assert slot.task is not None and slot.snapshot is not None
        slot.attempt += 1
        tid = slot.task["id"]
        slot.job = self.dir / "jobs" / f"{safe_name(tid)}.pkl"
        Path(str(slot.job) + ".result").unlink(missing_ok=True)
        slot.job.write_bytes(pickle.dumps({"spec": slot.task, "snapshot": str(slot.snapshot),
                                           "work": str(self.dir / "work" / safe_name(tid)),
                                           "transport": self.transport}))
        env = dict(os.environ, UBENCH_GRID_DRIVER=str(os.getpid()))  # worker.DRIVER_ENV
        if slot.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        cpus = set(slot.cpus)
        log = self.log_path(tid).open("a")
        slot.log_start = log.tell()
        log.write(f"=== {tid}: attempt {slot.attempt} of {self.retries + 1} on {self._where(slot)}\n")
        log.flush()
        with log:
            slot.proc = subprocess.Popen(
                [sys.executable, "-m", "ubench.grid.worker", str(slot.job)], cwd=self.root, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: _worker_preexec(cpus))
        slot.started = time.monotonic()

    @staticmethod
    def _where(slot: _Slot) -> str:
        parts = []
        if slot.gpus:
            parts.append("GPU " + ",".join(slot.gpus))
        if slot.cpus:
            parts.append("cores " + ",".join(map(str, slot.cpus)))
        return " ".join(parts) or f"worker {slot.index}"

    def running(self) -> list[Running]:
        return [Running(s.task["id"], s.attempt, s.started, self._where(s)) for s in self.slots if s.proc and s.task]

    def poll(self, timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + timeout
        while True:
            outcomes = [o for s in self.slots if s.proc is not None and s.proc.poll() is not None
                        for o in [self._finish(s)] if o is not None]
            if outcomes or time.monotonic() >= deadline:
                return outcomes
            time.sleep(0.2)

    def _finish(self, slot: _Slot) -> Outcome | None:
        """The slot's worker ended: its outcome, or None when it was restarted for a retry."""
        assert slot.proc is not None and slot.task is not None and slot.job is not None
        rc = slot.proc.returncode
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(slot.proc.pid, signal.SIGKILL)  # what a killed worker left running
        result_file = Path(str(slot.job) + ".result")
        result = pickle.loads(result_file.read_bytes()) if result_file.exists() else None
        tid = slot.task["id"]
        if isinstance(result, dict):
            outcome = Outcome(tid, result, log=self.log_path(tid).read_text(errors="replace"), attempts=slot.attempt)
        else:
            why = (f"{result.step} failed" if isinstance(result, TaskFailed)
                   else f"the worker ended with {'signal ' + signal.Signals(-rc).name if rc < 0 else f'status {rc}'}")
            slot.errors.append(f"attempt {slot.attempt}: {why}")
            with self.log_path(tid).open("a") as log:
                log.write(f"=== {tid}: attempt {slot.attempt}: {why}\n")
            if slot.attempt <= self.retries:
                self.events.append(f"retrying {tid} (attempt {slot.attempt + 1} of {self.retries + 1}): {why}")
                self._start(slot)
                return None
            outcome = Outcome(tid, None, "; ".join(slot.errors), self.log_path(tid).read_text(errors="replace"),
                              slot.attempt)
        for f in (slot.job, result_file, slot.snapshot):
            if f is not None:
                f.unlink(missing_ok=True)
        slot.proc, slot.task = None, None
        return outcome

    def shutdown(self) -> None:
        """End every running worker and what it started (their workspaces stay, for resuming)."""
        for s in self.slots:
            if s.proc is not None and s.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(s.proc.pid, signal.SIGTERM)
        for s in self.slots:
            if s.proc is not None:
                try:
                    s.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(s.proc.pid, signal.SIGKILL)
                s.proc.wait()
                s.proc = None

    def forget(self, task_id: str) -> None:
        """The task finished: its workspace (and any resume state in it) is no longer needed."""
        shutil.rmtree(self.dir / "work" / safe_name(task_id), ignore_errors=True)

    def prune(self, planned: set[str]) -> None:
        """Remove the workspaces of tasks this run does not plan: left by a driver killed after it
        recorded them (a planned task keeps its workspace, and its resume state, for the rerun)."""
        keep = {safe_name(t) for t in planned}
        for ws in sorted((self.dir / "work").iterdir()):
            if ws.name not in keep:
                shutil.rmtree(ws, ignore_errors=True)


# --- Ray ------------------------------------------------------------------------------------------

def _ray_task(spec: dict, snapshot: bytes, transport: Transport) -> dict:
    """The body of a Ray task: run_task in a temporary workspace on whichever node Ray chose."""
    import io
    import socket

    import ray

    work = Path(tempfile.mkdtemp(prefix=f"ubench-grid-{safe_name(spec['id'])}-"))
    log = io.StringIO()
    try:
        result = run_task(spec, snapshot, work / "ws", transport, log=log)
        # where it ran, for the driver's report: a host name, and Ray's node (two on one host differ)
        result["node"] = f"{socket.gethostname()} (node {ray.get_runtime_context().get_node_id()[:8]})"
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


class RayExecutor:
    """Tasks on a Ray cluster (``address``; None starts a local one for this run)."""

    def __init__(self, transport: Transport, address: str | None, retries: int, gpus_per_job: int,
                 cpus_per_job: int, local_cpus: int | None = None):
        try:
            import ray
        except ImportError as exc:
            raise UbenchError("the ray executor needs Ray, which is not installed",
                              "pip install -e '.[ray]' (or use --executor local)") from exc
        self.ray = ray
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            # no address: a new cluster for this run, never one `ray start` left recorded on this
            # machine (ray.init() alone joins that, and refuses num_cpus, or finds it dead)
            kwargs = {"address": address} if address else {"address": "local",
                                                           "num_cpus": local_cpus or os.cpu_count()}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kwargs)
        self.transport, self.retries = transport, retries
        self.fn = ray.remote(_ray_task).options(num_cpus=cpus_per_job, num_gpus=gpus_per_job,
                                                max_retries=retries, retry_exceptions=True)
        self.refs: dict = {}  # ObjectRef -> (task id, started)
        self.events: list[str] = []  # Ray retries by itself and does not tell
        # tasks in flight: what the cluster can run at once, twice over (Ray queues the rest and
        # places it as resources free up; more would only hold snapshots in the object store)
        res = ray.cluster_resources()
        fits = [res.get("CPU", 0) / cpus_per_job if cpus_per_job else float("inf"),
                res.get("GPU", 0) / gpus_per_job if gpus_per_job else float("inf")]
        self.capacity = max(1, 2 * int(min(fits))) if min(fits) != float("inf") else 64
        self.snapshots: dict[bytes, object] = {}  # sha256 -> ObjectRef: one copy per distinct snapshot

    def free(self) -> int:
        return self.capacity - len(self.refs)

    def submit(self, spec: dict, snapshot: bytes) -> None:
        import hashlib

        key = hashlib.sha256(snapshot).digest()
        if key not in self.snapshots:
            self.snapshots = {key: self.ray.put(snapshot)}  # dvc.lock moved on: older ones are done with
        self.refs[self.fn.remote(spec, self.snapshots[key], self.transport)] = (spec["id"], time.monotonic())

    def running(self) -> list[Running]:
        return [Running(tid, 1, started, "ray") for tid, started in self.refs.values()]

    def poll(self, timeout: float) -> list[Outcome]:
        if not self.refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)
        outcomes = []
        for ref in ready:
            tid, _ = self.refs.pop(ref)
            try:
                result = self.ray.get(ref)
                outcomes.append(Outcome(tid, result, log=result.get("log", "")))
            except Exception as exc:  # noqa: BLE001 - RayTaskError wraps TaskFailed; worker deaths too
                cause = getattr(exc, "cause", None) or exc
                log = cause.log if isinstance(cause, TaskFailed) else str(exc)
                outcomes.append(Outcome(tid, None, str(cause).splitlines()[0], log, self.retries + 1))
        return outcomes

    def shutdown(self) -> None:
        for ref in list(self.refs):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.started_ray:
            self.ray.shutdown()

    def forget(self, task_id: str) -> None:
        return None
