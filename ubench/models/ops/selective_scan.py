"""Mamba's selective scan (S6) in plain torch, with mamba-ssm's CUDA kernel when it is there.

Why: every Mamba-family model here (VM-UNet and its descendants) calls the selective scan. The
official kernel (``mamba_ssm``) is CUDA-only and often not installed, so the benchmark needs a
torch path that gives the same numbers on CPU, fast enough to train small inputs and to test.

API (same arguments and meaning as mamba-ssm's ``selective_scan_fn`` / ``selective_scan_ref``)::

    selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                      delta_softplus=False, return_last_state=False)
        u, delta: (batch, dim, L)     A: (dim, N), real
        B, C: (dim, N) constant, (batch, N, L), or grouped (batch, G, N, L) with dim % G == 0
              (channel d uses group d // (dim // G))
        D: (dim,)   z: (batch, dim, L)   delta_bias: (dim,)
        -> out (batch, dim, L) in u's dtype, and last_state (batch, dim, N) if asked

    The recurrence, per batch b, channel d and state n:
        dt_t = softplus(delta_t + delta_bias) (or without softplus/bias as flagged)
        h_t  = exp(dt_t * A[d, n]) * h_{t-1} + dt_t * B[n, t] * u_t        (h_0 = 0)
        y_t  = sum_n C[n, t] * h_t[n] + D[d] * u_t,   out = y * silu(z)

    selective_scan_naive(...) is the same thing as a plain loop over tokens (the test reference).

The torch path is a two-level chunked scan: tokens are cut into chunks of t <= ``CHUNK`` tokens
(about sqrt(L)), laid out so that slice i holds token i of every chunk. Pass 1 runs the
recurrence inside all chunks at once (t steps on whole slices) to get each chunk's end state;
a short loop over chunks carries the state from one chunk to the next (the chunk's total decay
is exp(A * sum dt)); pass 2 reruns every chunk from its true start state and reads out y. That
is about 3 sqrt(L) Python steps instead of L, with no (batch, dim, N, L) tensor ever built.
Only decays exp(dt * A) and their products appear (never exp(-cumsum)), so nothing overflows
when A < 0 however strong the decay.
Computation runs in float32 (float64 when any input is float64), as mamba-ssm's reference does.
When gradients are needed, ``selective_scan_fn`` recomputes the torch scan in backward
(activation checkpointing); with glibc's mmap threshold fixed at 1 MiB, which every stage sets
(``ubench.runtime.limit_heap_fragmentation``), VM-UNet at 256x256 stays under 4 GB instead of > 20 GB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CHUNK = 64  # most tokens per chunk of the torch path

_MAMBA_KERNEL = None  # cached mamba_ssm selective_scan_fn, False once known to be missing


def _mamba_kernel():
    """mamba_ssm's CUDA selective_scan_fn, or None when mamba_ssm is not importable."""
    global _MAMBA_KERNEL
    if _MAMBA_KERNEL is None:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as kernel
        except Exception:  # ImportError, or a broken CUDA extension
            kernel = False
        _MAMBA_KERNEL = kernel
    return _MAMBA_KERNEL or None


def _check(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Shape checks, so a wrong layout fails here with a readable message."""

    def bad(what):
        raise ValueError(
            f"selective_scan: {what}; pass u, delta, z as (batch, dim, L), A as (dim, N), B/C as "
            "(batch, N, L) or (batch, G, N, L), D and delta_bias as (dim,)"
        )

    if u.dim() != 3 or delta.shape != u.shape:
        bad(f"u {tuple(u.shape)} and delta {tuple(delta.shape)} must be equal (batch, dim, L)")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        bad(f"A has shape {tuple(A.shape)}, expected ({dim}, N)")
    if A.is_complex():
        bad("complex A is not supported by the torch path")
    n = A.shape[1]
    for name, m in (("B", B), ("C", C)):
        if m.dim() == 2:
            ok = m.shape == (dim, n)
        elif m.dim() == 3:
            ok = m.shape == (batch, n, length)
        elif m.dim() == 4:
            ok = m.shape[0] == batch and m.shape[2:] == (n, length) and dim % m.shape[1] == 0
        else:
            ok = False
        if not ok:
            bad(f"{name} has shape {tuple(m.shape)} for u {tuple(u.shape)} and N={n}")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and v.shape != (dim,):
            bad(f"{name} has shape {tuple(v.shape)}, expected ({dim},)")
    if z is not None and z.shape != u.shape:
        bad(f"z has shape {tuple(z.shape)}, expected {tuple(u.shape)}")


def _compute_dtype(*tensors) -> torch.dtype:
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _per_channel(m: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """B or C as a tensor that broadcasts against (batch, dim, N, L)."""
    m = m.to(dtype)
    if m.dim() == 2:  # (dim, N): the same for every token
        return m[None, :, :, None]
    if m.dim() == 3:  # (batch, N, L): shared by all channels
        return m[:, None]
    groups = m.shape[1]  # (batch, G, N, L): consecutive channel blocks share a group
    return m if groups == 1 else m.repeat_interleave(dim // groups, dim=1)


def _time_steps(u, delta, delta_bias, delta_softplus: bool, dtype):
    """``u`` and the step sizes dt = softplus?(delta + delta_bias), both in ``dtype``."""
    u = u.to(dtype)
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    return u, dt


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    """Per-token decays exp(dt*A) and inputs dt*B*u, both (batch, dim, N, L)."""
    dtype = _compute_dtype(u, delta, A, B, C, delta_bias)
    u, dt = _time_steps(u, delta, delta_bias, delta_softplus, dtype)
    dim = u.shape[1]
    decay = torch.exp(dt[:, :, None, :] * A.to(dtype)[None, :, :, None])
    drive = (dt * u)[:, :, None, :] * _per_channel(B, dim, dtype)
    return u, decay, drive, _per_channel(C, dim, dtype)


def _finish(y, u, D, z, out_dtype):
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def selective_scan_naive(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                         delta_softplus=False, return_last_state=False):
    """The recurrence as written, one token at a time (slow; the reference for tests)."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    out_dtype = u.dtype
    u, decay, drive, Cc = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    h = decay.new_zeros(decay.shape[:3])
    ys = []
    for t in range(u.shape[-1]):
        h = decay[..., t] * h + drive[..., t]
        c_t = Cc[..., t] if Cc.shape[-1] > 1 else Cc[..., 0]
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    out = _finish(y, u, D, z, out_dtype)
    return (out, h) if return_last_state else out


def _chunk_major(x: torch.Tensor, n_chunks: int, t: int) -> torch.Tensor:
    """(..., n_chunks * t) -> (t, ..., n_chunks): one within-chunk position per leading slice."""
    x = x.reshape(*x.shape[:-1], n_chunks, t)
    return x.permute(x.dim() - 1, *range(x.dim() - 1))


def _grouped_bc(m: torch.Tensor, batch: int, groups: int, n_chunks: int, t: int, dtype):
    """B or C as (t, batch, groups, 1, n_chunks, N), broadcasting over channels of a group."""
    m = m.to(dtype)
    if m.dim() == 2:  # (dim, N), constant over tokens: channel axis carries it
        return m.reshape(1, 1, groups, -1, 1, m.shape[-1])
    if m.dim() == 3:
        m = m[:, None]
    m = m.reshape(*m.shape[:3], n_chunks, t)  # (batch, G, N, chunks, t)
    return m.permute(4, 0, 1, 3, 2)[:, :, :, None]


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                           delta_softplus=False, return_last_state=False, chunk: int = CHUNK):
    """The torch path: a two-level chunked scan (see module doc).

    Layout (t, batch, groups, channels-per-group, chunks, N): slice ``i`` holds token ``i`` of
    every chunk, so the within-chunk recurrence runs over all chunks at once in t steps of
    contiguous tensors. ``chunk`` caps t (tests use small values to get many chunks).
    """
    _check(u, delta, A, B, C, D, z, delta_bias)
    if chunk < 1:
        raise ValueError(f"selective_scan: chunk={chunk} must be positive (e.g. 64)")
    out_dtype = u.dtype
    dtype = _compute_dtype(u, delta, A, B, C, delta_bias)
    u, dt = _time_steps(u, delta, delta_bias, delta_softplus, dtype)
    batch, dim, length = u.shape
    n = A.shape[1]
    groups = math.lcm(*(m.shape[1] if m.dim() == 4 else 1 for m in (B, C)))
    if B.dim() == 2 or C.dim() == 2:
        groups = dim  # constant B/C differ per channel: one "group" per channel
    t = min(chunk, math.isqrt(length - 1) + 1)  # ~sqrt(L): balances the two loops
    pad = (-length) % t
    n_chunks = (length + pad) // t
    if pad:  # identity steps at the end: dt 0 (decay 1) and u 0 (no input)
        dt_p, u_p = F.pad(dt, (0, pad)), F.pad(u, (0, pad))
        B_p = B if B.dim() == 2 else F.pad(B.to(dtype), (0, pad))
        C_p = C if C.dim() == 2 else F.pad(C.to(dtype), (0, pad))
    else:
        dt_p, u_p, B_p, C_p = dt, u, B, C

    def grouped(m):
        if m.dim() == 4 and m.shape[1] != groups:
            m = m.repeat_interleave(groups // m.shape[1], 1)
        return _grouped_bc(m, batch, groups, n_chunks, t, dtype)

    shape6 = (t, batch, groups, dim // groups, n_chunks, 1)
    dt_c = _chunk_major(dt_p, n_chunks, t).reshape(shape6).contiguous()
    dtu_c = (dt_c * _chunk_major(u_p, n_chunks, t).reshape(shape6)).contiguous()
    A5 = A.to(dtype).reshape(1, groups, dim // groups, 1, n)
    B_c, C_c = grouped(B_p).contiguous(), grouped(C_p).contiguous()

    def step_terms(i):  # decay and input of within-chunk position i, every chunk at once
        bi = B_c[i] if B_c.shape[0] > 1 else B_c[0]
        return torch.exp(dt_c[i] * A5), dtu_c[i] * bi

    # pass 1: each chunk's end state from a zero start
    terms = [step_terms(i) for i in range(t)]
    state = terms[0][1]
    for decay, drive in terms[1:]:
        state = decay * state + drive
    chunk_decay = torch.exp(dt_c.sum(0) * A5)  # product of the chunk's decays
    # carry across chunks: the state entering each chunk
    carry = state.new_zeros(state.shape[:3] + (n,))
    starts = []
    for c in range(n_chunks):
        starts.append(carry)
        carry = chunk_decay[:, :, :, c] * carry + state[:, :, :, c]
    # pass 2: rerun each chunk from its true start, reading out y
    state = torch.stack(starts, dim=3)
    ys = []
    last = None
    for i, (decay, drive) in enumerate(terms):
        state = decay * state + drive
        ci = C_c[i] if C_c.shape[0] > 1 else C_c[0]
        ys.append((state * ci).sum(-1))
        if i == (length - 1) % t:
            last = state[:, :, :, -1]
    y = torch.stack(ys, dim=-1)  # (batch, G, H, chunks, t)
    y = y.reshape(batch, dim, n_chunks * t)[..., :length]
    out = _finish(y, u, D, z, out_dtype)
    if not return_last_state:
        return out
    return out, last.reshape(batch, dim, n)


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                      delta_softplus=False, return_last_state=False):
    """mamba-ssm's CUDA kernel for CUDA tensors when installed, else the chunked torch scan.

    The torch path is recomputed in backward (activation checkpointing) when it needs grads.
    """
    if u.is_cuda:
        kernel = _mamba_kernel()
        if kernel is not None:
            return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if torch.is_grad_enabled() and any(
            isinstance(x, torch.Tensor) and x.requires_grad for x in args):
        # Keep only the inputs for backward and recompute the scan there: autograd would
        # otherwise hold ~4 (batch, dim, N, L) tensors per call (VM-UNet at 256x256, batch 2:
        # > 20 GB), where mamba-ssm's kernel keeps only chunk-boundary states.
        return checkpoint(selective_scan_chunked, *args, use_reentrant=False)
    return selective_scan_chunked(*args)
