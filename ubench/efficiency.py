"""Efficiency of a model, in two kinds kept apart.

complexity (computed, deterministic): parameter count and FLOPs at the protocol input size, via
ptflops. ptflops counts multiply-accumulates (GMac); U-Bench and most papers report that number as
"FLOPs", and so do we (``gflops``), with the unit named in the file.
speed (measured, varies between runs): frames per second at batch 1 after a warm-up, with the
device, torch version and thread count recorded beside it.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch

from ubench.models import create_model, model_info, uses_selective_scan
from ubench.runtime import cpu_threads, device, final_output, make_deterministic, platform_fingerprint


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def complexity(model_name: str, input_size: int, seed: int, threads: int) -> dict:
    from ptflops import get_model_complexity_info

    # train.threads as every stage: the thread count is in the platform fingerprint, so a stage
    # that took "every core" would record another file under a grid worker pinned to fewer cores
    make_deterministic(seed, threads, tame_heap=uses_selective_scan(model_name))
    model = create_model(model_name, num_classes=1, in_channels=3).eval()

    with torch.no_grad():
        macs, _ = get_model_complexity_info(
            model, (3, input_size, input_size), as_strings=False, print_per_layer_stat=False,
            verbose=False, backend="pytorch",
        )
    params = count_params(model)
    info = model_info(model_name)
    return {
        "model": model_name,
        "family": info.family,
        "deep_supervision": bool(info.deep_supervision),  # read by the advisor (its one source of model facts)
        "input_size": input_size,
        "params": params,
        "params_m": params / 1e6,
        "gflops": float(macs) / 1e9,
        "flops_unit": "GMac counted by ptflops (reported as FLOPs, as U-Bench does)",
        "ref_params_m": info.ref_params_m,
        "platform": platform_fingerprint("cpu"),  # where it was computed (ubench verify)
    }


def cuda_event_seconds(run) -> float:
    """Seconds of one ``run()`` on the current CUDA stream, between two recorded events (the GPU's
    own clock: no host-side launch latency, no sync of the whole device)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


def gpu_driver_version() -> str | None:
    """The NVIDIA driver version (nvidia-smi), or None where it cannot be read."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def time_until_stable(run, warmup: int, window: int, max_seconds: float, tolerance: float,
                      clock=time.perf_counter, timed=None) -> tuple[list[float], bool]:
    """Time ``run()`` after ``warmup`` calls, a ``window`` of calls at a time, until the median of
    all times so far moves by at most ``tolerance`` (relative) from one window to the next, or
    ``max_seconds`` of timing have passed (then at least two windows). Returns (seconds per call,
    whether the median settled).

    Why: a fixed 3 repeats after 1 warm-up moved FPS by up to 95 % between runs on a busy 2-core
    machine, which moved the U-Score. A median that has stopped moving is a measurement.

    ``timed(run)``, when given, runs ``run`` once and returns its seconds (CUDA events on a GPU);
    ``clock`` then only bounds the total time.
    """
    for _ in range(warmup):
        run()
    times: list[float] = []
    previous = None
    started = clock()
    while True:
        for _ in range(window):
            if timed is not None:
                times.append(timed(run))
                continue
            t0 = clock()
            run()
            times.append(clock() - t0)
        median = statistics.median(times)
        if previous is not None and abs(median - previous) <= tolerance * previous:
            return times, True
        if previous is not None and clock() - started >= max_seconds:
            return times, False
        previous = median


def speed(model_name: str, input_size: int = 256, warmup: int = 3, window: int = 5,
          max_seconds: float = 15.0, tolerance: float = 0.05, threads: int = 0, seed: int = 41) -> dict:
    """Frames per second at batch 1 = 1 / the median latency, measured until it is stable."""
    n_threads = make_deterministic(seed, threads, tame_heap=uses_selective_scan(model_name))
    dev = device()
    model = create_model(model_name, num_classes=1, in_channels=3).to(dev).eval()
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed)).to(dev)

    def run():
        final_output(model(x))
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        times, stable = time_until_stable(run, warmup, window, max_seconds, tolerance,
                                          timed=cuda_event_seconds if dev.type == "cuda" else None)
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    gpu = {"timer": "cuda events", "cuda": torch.version.cuda, "driver": gpu_driver_version()} \
        if dev.type == "cuda" else {"timer": "perf_counter"}
    return {
        "model": model_name,
        "input_size": input_size,
        "batch_size": 1,
        "warmup": warmup,
        "repeats": len(times),
        "stable": stable,  # False: the time cap ended it before the median settled
        "fps": 1.0 / median,
        "latency_ms_median": median * 1000.0,
        "latency_ms_q1": q1 * 1000.0,
        "latency_ms_q3": q3 * 1000.0,
        "spread": (q3 - q1) / median,  # interquartile range over the median
        "device": dev.type,
        "device_name": name,
        **gpu,
        "torch_version": torch.__version__,
        "threads": n_threads,
        "cpu_count": cpu_threads(0),
        "measured": True,
    }
