"""One grid task, run by a worker: its stages with ``dvc repro`` in a workspace of its own.

Why DVC runs the stages here (and not the worker calling ``ubench train`` itself): DVC then checks
the run cache (a stage computed before is restored, never rerun), computes every hash and writes
the dvc.lock entries, exactly as a sequential ``dvc repro`` would; the driver only copies them.

The workspace is the repository's shipped files as the driver saw them when it sent the task
(``scratch.snapshot``: code, params, dvc.lock with the inputs' hashes), and one of two transports:

- ``cache``: the driver's DVC cache (local workers): inputs are checked out from it, outputs land
  in it; nothing is copied between machines.
- ``remote``: a cache of the workspace's own and the repository's DVC remote (Ray workers, any
  machine): inputs are pulled, outputs and run-cache entries pushed.

Outputs that DVC does not cache (``cache: false``: JSON summaries, training logs) travel back in
the result as bytes, as git would carry them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ubench.scratch import run_dvc, unpack, write_dvc_config

RESUME_DIR = ".ubench/resume"  # train.py's resume states: kept across attempts in one workspace


@dataclass(frozen=True)
class Transport:
    kind: str  # "cache" | "remote"
    cache: str | None = None  # cache: the driver's cache folder
    remote: str | None = None  # remote: the remote's name (None: the repository's default)
    remotes: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # remote: every remote's options


class TaskFailed(Exception):
    """A task's stages did not all complete; ``log`` is what dvc printed."""

    def __init__(self, task_id: str, step: str, log: str):
        tail = "\n".join(log.rstrip().splitlines()[-15:])
        super().__init__(f"task {task_id}: {step} failed\n{tail}")
        self.task_id, self.step, self.log = task_id, step, log

    def __reduce__(self):  # picklable across processes (Ray)
        return (TaskFailed, (self.task_id, self.step, self.log))


def fresh_workspace(work: Path, snapshot: bytes) -> None:
    """``work`` emptied and filled with the snapshot, keeping train.py's resume states of an
    earlier attempt (so that a retried training continues where it stopped)."""
    keep = work.parent / (work.name + ".resume")
    if (work / RESUME_DIR).is_dir():
        shutil.rmtree(keep, ignore_errors=True)
        (work / RESUME_DIR).rename(keep)
    shutil.rmtree(work, ignore_errors=True)
    unpack(snapshot, work)
    if keep.is_dir():
        (work / RESUME_DIR).parent.mkdir(parents=True, exist_ok=True)
        keep.rename(work / RESUME_DIR)


def _files_of(work: Path, out: str) -> dict[str, bytes]:
    path = work / out
    if path.is_file():
        return {out: path.read_bytes()}
    if path.is_dir():
        return {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return {}


def _plain(obj: Any) -> Any:
    """ruamel's maps and lists as dicts and lists (picklable, and dumped by DVC as its own)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def run_task(spec: dict, snapshot: bytes, work: Path, transport: Transport, log: IO[str] | None = None,
             new_session: bool = True) -> dict:
    """Run the task ``spec`` (``plan.Task`` as a dict) in ``work``; return its dvc.lock entries,
    its uncached outputs' files and dvc's output. Raises ``TaskFailed``."""
    lines: list[str] = []

    def dvc(step: str, *args: str) -> None:
        rc, out = run_dvc(list(args), work, echo=log, new_session=new_session)
        lines.append(out)
        if rc != 0:
            raise TaskFailed(spec["id"], step, "".join(lines))

    fresh_workspace(work, snapshot)
    if transport.kind == "cache":
        write_dvc_config(work, cache=Path(transport.cache), cache_type="hardlink,copy")
    else:
        write_dvc_config(work, remotes={n: dict(o) for n, o in transport.remotes}, default_remote=transport.remote)
    if spec["inputs"]:
        dvc("getting the inputs", "checkout" if transport.kind == "cache" else "pull", *spec["inputs"])
    repro = ["repro", "--single-item", *(["--pull"] if transport.kind == "remote" else []), *spec["stages"]]
    dvc("dvc repro", *repro)
    if transport.kind == "remote":
        dvc("dvc push", "push", "--run-cache", *spec["stages"])
    from dvc.utils.serialize import load_yaml

    recorded = (load_yaml(work / "dvc.lock") or {}).get("stages") or {}
    missing = [s for s in spec["stages"] if s not in recorded]
    if missing:
        raise TaskFailed(spec["id"], f"recording {', '.join(missing)}", "".join(lines))
    files: dict[str, bytes] = {}
    for out in spec["uncached_outs"]:
        files.update(_files_of(work, out))
    return {"id": spec["id"], "entries": {s: _plain(recorded[s]) for s in spec["stages"]},
            "files": files, "log": "".join(lines)}
