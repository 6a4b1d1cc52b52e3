"""A local grid worker process: ``python -m ubench.grid.worker JOB.pkl``.

The driver (``executors.LocalExecutor``) writes the job (task, snapshot path, workspace,
transport), starts this process in a session of its own with its output going to the task's log,
and reads ``JOB.pkl.result``: the result of ``task.run_task``, or the ``TaskFailed``. A module of
its own (not ``task.py`` run as ``__main__``), so that what it pickles names ``ubench.grid.task``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any

from ubench.grid.task import TaskFailed, run_task
from ubench.io import write_bytes_atomic

DRIVER_ENV = "UBENCH_GRID_DRIVER"  # the driver's pid, set by executors.LocalExecutor


def _end_session(signum, _frame) -> None:
    """SIGTERM (the driver stops, or died: ``executors._worker_preexec``): end this worker and every
    process it started (dvc, the stage), which share its session."""
    os.killpg(os.getpgid(0), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _end_session)
    if os.getppid() != int(os.environ.get(DRIVER_ENV, os.getppid())):  # the driver died already
        _end_session(signal.SIGTERM, None)
    job_path = Path((argv or sys.argv[1:])[0])
    job = pickle.loads(job_path.read_bytes())
    try:
        result: Any = run_task(job["spec"], Path(job["snapshot"]).read_bytes(), Path(job["work"]),
                               job["transport"], log=sys.stdout, new_session=False)
    except TaskFailed as exc:
        result = exc
    write_bytes_atomic(Path(str(job_path) + ".result"), pickle.dumps(result))
    return 1 if isinstance(result, TaskFailed) else 0


if __name__ == "__main__":
    sys.exit(main())
