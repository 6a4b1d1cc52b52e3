"""Efficiency of a model, in two kinds kept apart.

complexity (computed, deterministic): parameter count and FLOPs at the protocol input size, via
ptflops. ptflops counts multiply-accumulates (GMac); U-Bench and most papers report that number as
"FLOPs", and so do we (``gflops``), with the unit named in the file.
speed (measured, varies between runs): frames per second at batch 1 after a warm-up, with the
device, torch version and thread count recorded beside it.
"""

from __future__ import annotations

import platform
import time

import torch

from ubench.models import create_model, model_info
from ubench.runtime import cpu_threads, device, final_output, make_deterministic, platform_fingerprint


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def complexity(model_name: str, input_size: int = 256, seed: int = 41) -> dict:
    from ptflops import get_model_complexity_info

    make_deterministic(seed)
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


def speed(model_name: str, input_size: int = 256, warmup: int = 3, repeats: int = 10,
          threads: int = 0, seed: int = 41) -> dict:
    n_threads = make_deterministic(seed, threads)
    dev = device()
    model = create_model(model_name, num_classes=1, in_channels=3).to(dev).eval()
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed)).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        for _ in range(warmup):
            final_output(model(x))
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            final_output(model(x))
            sync()
            times.append(time.perf_counter() - t0)
    total = sum(times)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "model": model_name,
        "input_size": input_size,
        "batch_size": 1,
        "warmup": warmup,
        "repeats": repeats,
        "fps": repeats / total,
        "latency_ms_median": sorted(times)[len(times) // 2] * 1000.0,
        "device": dev.type,
        "device_name": name,
        "torch_version": torch.__version__,
        "threads": n_threads,
        "cpu_count": cpu_threads(0),
        "measured": True,
    }
