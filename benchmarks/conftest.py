"""Shared set-up of the speed benchmarks: prepared data, the thread count, and the ratio table.

Run them with ``.venv/bin/python -m pytest benchmarks --benchmark-enable -s`` (not part of the test
run: ``testpaths`` is ``tests``). Every benchmark reports a *ratio* of two things measured in the
same process, interleaved (``interleaved``), never an absolute time in an assertion; the table of
ratios is printed at the end of the run and written to ``.benchmarks/ratios.json``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
import torch

from ubench.runtime import make_deterministic

THREADS = 2  # the CI machine's cores; the targets of issue 17 are stated at 2 threads
RATIOS: list[dict] = []


def interleaved(fns: dict, rounds: int, sync=None) -> dict[str, float]:
    """Median seconds per call of each function, called in turn ``rounds`` times (so that a change
    of machine load hits every function alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def record(benchmark, **row) -> None:
    """Keep a ratio row for the summary (and in pytest-benchmark's JSON via extra_info)."""
    RATIOS.append(row)
    if benchmark is not None:
        benchmark.extra_info.update({k: v for k, v in row.items() if isinstance(v, (int, float, str))})


@pytest.fixture(scope="session", autouse=True)
def _threads():
    make_deterministic(41, THREADS)


@pytest.fixture(scope="session")
def prepared_at(tmp_path_factory):
    """prepared synthetic data (80 images, ubench's generator) at a given size, built once per size."""
    from ubench.data.prepare import prepare_dataset

    made: dict[int, Path] = {}

    def make(size: int) -> Path:
        if size not in made:
            made[size] = prepare_dataset(
                "synth", tmp_path_factory.mktemp(f"synth{size}") / "synth", raw_root="data/raw", image_size=size,
                protocol="holdout", split_seed=41, val_fraction=0.2, test_fraction=0.25,
                synthetic={"n": 80, "size": max(size, 128), "seed": 41})
        return made[size]

    return make


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cuda_sync():
    return torch.cuda.synchronize if torch.cuda.is_available() else None


def pytest_terminal_summary(terminalreporter):
    if not RATIOS:
        return
    terminalreporter.section("ubench speed ratios (measured in the same run)")
    for row in RATIOS:
        terminalreporter.write_line("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                     for k, v in row.items()))
    out = Path(".benchmarks")
    out.mkdir(exist_ok=True)
    (out / "ratios.json").write_text(json.dumps(RATIOS, indent=1, sort_keys=True) + "\n")
