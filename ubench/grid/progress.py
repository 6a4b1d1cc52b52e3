"""The grid run's live table: stages done, running, failed and the time left.

On a terminal it is a table redrawn in place (rich, which DVC already installs); otherwise (CI
logs, ``| tee``) one line per event and a summary line at most every ``every`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from ubench.grid.executors import Running


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, n_tasks: int, n_stages: int, stream: IO[str] | None = None, every: float = 30.0):
        self.stream = stream or sys.stderr
        self.n_tasks, self.n_stages = n_tasks, n_stages
        self.start = time.monotonic()
        self.durations: list[float] = []
        self.done = self.failed = self.skipped = self.stages_done = 0
        self.running: list[Running] = []
        self.every, self.last_line = every, 0.0
        self.live = None
        if getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.live import Live

            self.console = Console(file=self.stream)
            self.live = Live(self._table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.start()

    def eta(self) -> str:
        left = self.n_tasks - self.done - self.failed - self.skipped
        if not self.durations or left <= 0:
            return "-"
        parallel = max(1, len(self.running))
        return _clock(sum(self.durations) / len(self.durations) * left / parallel)

    def summary(self) -> str:
        return (f"stages {self.stages_done}/{self.n_stages} done · tasks {self.done}/{self.n_tasks} done, "
                f"{len(self.running)} running, {self.failed} failed, {self.skipped} skipped · "
                f"elapsed {_clock(time.monotonic() - self.start)} · ETA {self.eta()}")

    def _table(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table()
        for col in ("running task", "attempt", "on", "for"):
            table.add_column(col)
        now = time.monotonic()
        for r in sorted(self.running, key=lambda r: r.started):
            table.add_row(r.task_id, str(r.attempt), r.where, _clock(now - r.started))
        return Group(Text(self.summary()), table)

    def event(self, text: str) -> None:
        if self.live is not None:
            self.console.print(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def update(self, running: list[Running]) -> None:
        self.running = running
        if self.live is not None:
            self.live.update(self._table())
        elif time.monotonic() - self.last_line >= self.every:
            self.last_line = time.monotonic()
            self.event(self.summary())

    def finished(self, stages: int, seconds: float) -> None:
        self.done += 1
        self.stages_done += stages
        self.durations.append(seconds)

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
