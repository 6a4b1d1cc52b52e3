"""Process-wide determinism and threading, set once at the start of every stage."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def cpu_threads(requested: int = 0) -> int:
    """Threads to use: ``requested``, or every core this process may run on when 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def make_deterministic(seed: int, threads: int = 0) -> int:
    """Seed every RNG, force deterministic kernels, use every core; returns the thread count.

    U-Bench pins torch to one thread; we use all cores. Results are bit-identical for a given
    machine and thread count (CPU reductions may differ across thread counts).
    """
    n = cpu_threads(threads)
    torch.set_num_threads(n)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    _deterministic_kernels()
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return n


def _deterministic_kernels() -> None:
    """``torch.use_deterministic_algorithms(True)`` for eager code, without its 1.4 s import.

    The public call also imports ``torch._inductor.config`` to set a flag for compiled graphs;
    ubench never compiles, and that import costs 1.4 s in each of the pipeline's ~70 stage
    processes. The eager flag is the one the public call sets; if a future torch lacks the
    private setter, the public call is used.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # pragma: no cover - depends on the torch version
        torch.use_deterministic_algorithms(True)
    else:
        setter(True, warn_only=False)


def final_output(out):
    """The final prediction of a model (deep-supervision models return a list, final last)."""
    return out[-1] if isinstance(out, (list, tuple)) else out


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
