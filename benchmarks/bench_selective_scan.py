"""Speed of the chunked torch selective scan against the per-token loop, at VM-UNet's size.

VM-UNet's first stage sees 64x64 tokens (a 256x256 image after the 4x4 patch embedding) with
d_inner = 192 channels and d_state = 16. Not part of the test run (testpaths is tests/); run with
    .venv/bin/pytest benchmarks/bench_selective_scan.py --benchmark-enable
The last test prints the naive/chunked time ratio.
"""

import time

import pytest
import torch

from ubench.models.ops.selective_scan import selective_scan_chunked, selective_scan_naive

BATCH, DIM, STATE, LENGTH = 1, 192, 16, 4096


def _inputs():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(BATCH, DIM, LENGTH, generator=g)
    delta = torch.randn(BATCH, DIM, LENGTH, generator=g) * 0.5
    A = -torch.arange(1, STATE + 1, dtype=torch.float32).repeat(DIM, 1)
    B = torch.randn(BATCH, 1, STATE, LENGTH, generator=g)
    C = torch.randn(BATCH, 1, STATE, LENGTH, generator=g)
    D = torch.ones(DIM)
    bias = torch.full((DIM,), -2.0)
    return (u, delta, A, B, C, D, None, bias, True)


@pytest.mark.parametrize("impl", [selective_scan_chunked, selective_scan_naive],
                         ids=["chunked", "naive"])
def test_bench_selective_scan(benchmark, impl):
    args = _inputs()
    with torch.no_grad():
        out = benchmark.pedantic(impl, args=args, rounds=3, iterations=1, warmup_rounds=1)
    assert torch.isfinite(out).all()


def test_bench_ratio():
    args = _inputs()

    def best(fn, rounds=3):
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(*args)
            times.append(time.perf_counter() - t0)
        return min(times)

    chunked, naive = best(selective_scan_chunked), best(selective_scan_naive)
    print(f"\nselective scan B={BATCH} D={DIM} N={STATE} L={LENGTH}: "
          f"chunked {chunked * 1e3:.0f} ms, naive {naive * 1e3:.0f} ms, "
          f"naive/chunked = {naive / chunked:.2f}x")
    assert chunked < naive
