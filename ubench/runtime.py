"""Process-wide determinism and threading, set once at the start of every stage, and the platform
fingerprint recorded beside every computed output (where that determinism was obtained)."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
from pathlib import Path

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


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MALLOC_TAMED = False


def limit_heap_fragmentation() -> None:
    """Serve allocations of 1 MiB and more by mmap (glibc only; once per process).

    Why: the torch selective scan (``ubench/models/ops/selective_scan.py``) allocates many
    mid-sized per-step tensors with mixed lifetimes. glibc's dynamic mmap threshold moves them onto
    the brk heap, which then fragments and never shrinks: VM-UNet at 256x256 (batch 2, forward +
    backward) grows past 20 GB of RSS while only ~4 GB is live. A fixed threshold (what
    MALLOC_MMAP_THRESHOLD_=1048576 would set) returns freed blocks to the OS. A process setting,
    so it lives here and the stages of such models set it (``make_deterministic``), never a model op. No
    effect on other C libraries or when the symbol is missing.
    """
    global _MALLOC_TAMED
    if _MALLOC_TAMED:
        return
    _MALLOC_TAMED = True
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


def make_deterministic(seed: int, threads: int = 0, tame_heap: bool = False) -> int:
    """Seed every RNG, force deterministic kernels, use every core; returns the thread count.

    ``tame_heap``: for models that run the torch selective scan (``registry.uses_selective_scan``),
    see ``limit_heap_fragmentation``. Only for them: the fixed threshold makes every large
    activation a fresh mmap, zeroed by the kernel at each step; U-Net's training step at 64 px was
    17 % slower with it (1020 against 843 ms, a third of the time in the kernel).

    U-Bench pins torch to one thread; we use all cores. Results are bit-identical for a given
    machine and thread count (CPU reductions may differ across thread counts).
    """
    n = cpu_threads(threads)
    torch.set_num_threads(n)
    if tame_heap:
        limit_heap_fragmentation()
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


# train.amp: the autocast dtype of forward and loss (off = float32 throughout)
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(dev: torch.device, amp: str):
    """Mixed precision for the forward pass and loss where ``amp`` asks for it, else nothing."""
    if AMP_DTYPES[amp] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=AMP_DTYPES[amp])


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# /proc/cpuinfo flags that change which CPU kernels torch, oneDNN, MKL and numpy dispatch to (and
# so, possibly, the bits of a float result): SIMD width, fused multiply-add, and the bf16/int8/AMX
# extensions oneDNN selects on. x86 names from `flags`, Arm names from `Features`. Other flags
# (virtualisation, power management, bug workarounds) change nothing numeric and are left out, so
# that two machines that compute alike get the same fingerprint.
KERNEL_FLAGS = frozenset({
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimdhp", "fphp", "sve", "sve2", "bf16", "i8mm",
})


def parse_cpuinfo(text: str) -> tuple[str, str]:
    """(CPU model, space-separated kernel-selecting flags, sorted) from /proc/cpuinfo text.

    Only the first processor block is read: every core of a machine reports the same model.
    """
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Hardware") or ""
    if not model and "CPU implementer" in fields:  # Arm: no model name, an implementer/part pair
        model = f"implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    flags = set((fields.get("flags") or fields.get("Features") or "").split()) & KERNEL_FLAGS
    return model, " ".join(sorted(flags))


@functools.lru_cache(maxsize=1)
def _cpu_model_and_flags() -> tuple[str, str]:
    """This machine's CPU model and kernel flags (read once: they cannot change while we run)."""
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:  # pragma: no cover - not Linux
        model, flags = "", ""
    return model or platform.processor() or platform.machine() or "unknown", flags


def platform_fingerprint(dev: torch.device | str | None = None, threads: int | None = None) -> dict:
    """Where an output was computed: every fact that can change its bits, nothing that cannot.

    Bit-identical results are a promise of one machine and thread count, not of CPU kernels across
    machines: another CPU (other SIMD flags, so other oneDNN/MKL code paths), another torch or
    numpy, another thread count (another reduction order) or a GPU may give other last bits. With
    this dict beside every computed output, `ubench verify` can tell "another platform, metrics
    within tolerance" (equivalent) from "the same platform, other bytes" (a real failure).

    Deterministic on one machine, so that the files that carry it stay byte-identical across
    reruns: no timestamps, hostnames, PIDs or kernel release. ``threads`` defaults to torch's
    current thread count (set by make_deterministic); ``dev`` to the device stages run on.
    """
    dev = torch.device(dev) if dev is not None else device()
    model, flags = _cpu_model_and_flags()
    libc, libc_version = platform.libc_ver()
    gpu = cuda = "none"
    if dev.type == "cuda":
        gpu = str(torch.cuda.get_device_name(dev))
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        cuda = f"{torch.version.cuda}" + (f", cudnn {cudnn}" if cudnn else "")
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return {
        "os": platform.system() + (f" ({libc} {libc_version})" if libc else ""),
        "arch": platform.machine(),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_capability": str(capability),
        "torch": str(torch.__version__),  # a TorchVersion: checkpoints load with weights_only
        "numpy": np.__version__,
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "device": dev.type,
        "gpu": gpu,
        "cuda": cuda,
    }
