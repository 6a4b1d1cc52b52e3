"""Bidirectional WKV (Bi-WKV) of Vision-RWKV in pure PyTorch: no CUDA extension needed.

All three RWKV models U-Bench benchmarks (RWKV-UNet, U-RWKV, Zig-RiR) call the same Vision-RWKV
CUDA kernel (U-Bench ``models/RWKV/*/cuda/wkv_cuda.cu``), always as ``RUN_CUDA(B, T, C,
decay / T, first / T, k, v)``. The operator it stands for (Duan et al., "Vision-RWKV", 2024, eq. 6)
is, per batch element and channel, with ``w`` the spatial decay and ``u`` the bonus of the token
itself::

    y_t = (sum_{i != t} exp(-(|t-i| - 1) w + k_i) v_i + exp(u + k_t) v_t)
          / (sum_{i != t} exp(-(|t-i| - 1) w + k_i)     + exp(u + k_t)     + eps)

``bi_wkv`` evaluates it without a loop over tokens and without overflow: tokens are cut into
chunks of ``chunk`` tokens; inside a chunk the weights form an (L x L) matrix; what a chunk hands
to the chunks before and after it is summarised once (two sums per channel) and carried across
chunks by a small (n_chunks x n_chunks) matrix. Every sum is taken relative to its own largest
exponent (log-space maxima), so nothing overflows whatever the sign of ``w`` (U-RWKV and Zig-RiR
start with negative decays, i.e. weights that grow with distance). Memory is O(B C T L), not
O(B C T^2). The maxima are detached: the ratio does not depend on them, so gradients stay exact.

``bi_wkv_naive`` is the literal double sum, for tests. Known difference from the CUDA kernel,
found by emulating its forward pass in scalar Python (a scratch check, not part of ubench): for
T <= 32 it computes ``exp(-|t-i| w)`` for i != t (distance, not distance - 1: the formula above
with the bonus shifted by ``w``), and for longer T its per-slice running sums drift further from
both. With ``w = decay / T`` every such difference is O(|decay| / T) (about 1e-3 on the outputs
at T = 256 in that check). We implement the paper's formula.
"""

from __future__ import annotations

import torch

EPS = 1e-6  # the CUDA kernel's EPS, added to the max-scaled denominator as there
_NEG = -1e30  # "minus infinity" that keeps max() and exp() finite for padding tokens


def _check(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if k.dim() != 3 or k.shape != v.shape:
        raise ValueError(
            f"bi_wkv needs k and v of the same shape (B, T, C), got {tuple(k.shape)} and {tuple(v.shape)}; "
            "flatten the feature map to tokens first: x.flatten(2).transpose(1, 2)"
        )
    c = k.shape[-1]
    if w.shape != (c,) or u.shape != (c,):
        raise ValueError(
            f"bi_wkv needs w and u of shape ({c},), got {tuple(w.shape)} and {tuple(u.shape)}; "
            "pass one decay and one bonus per channel (e.g. spatial_decay / T, spatial_first / T)"
        )


def bi_wkv_naive(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = EPS):
    """Reference: the double sum over (t, i) in float64, scaled by each token's largest exponent.

    The maximum is detached as in ``bi_wkv``; with ``eps`` > 0 the two then agree exactly.
    """
    _check(w, u, k, v)
    dtype = k.dtype
    w, u, k, v = (t.double() for t in (w, u, k, v))
    T = k.shape[1]
    out = torch.empty_like(k)
    for t in range(T):
        exps = []
        for i in range(T):
            if i == t:
                exps.append(u + k[:, t])
            else:
                exps.append(-(abs(t - i) - 1) * w + k[:, i])
        e = torch.stack(exps, dim=1)  # (B, T, C)
        e = torch.exp(e - e.detach().amax(dim=1, keepdim=True))
        out[:, t] = (e * v).sum(1) / (e.sum(1) + eps)
    return out.to(dtype)


def _scaled_sum(expo: torch.Tensor, vals: torch.Tensor, dim: int):
    """(max, sum exp(expo - max) * vals, sum exp(expo - max)) along ``dim``, max detached."""
    m = expo.detach().amax(dim=dim, keepdim=True)
    p = torch.exp(expo - m)
    return m.squeeze(dim), (p * vals).sum(dim), p.sum(dim)


def bi_wkv(
    w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int = 32, eps: float = EPS
) -> torch.Tensor:
    """Bi-WKV of (B, T, C) keys and values with per-channel decay ``w`` and bonus ``u`` (C,).

    Callers pass ``w = spatial_decay / T`` and ``u = spatial_first / T`` as Vision-RWKV does.
    Computed in float32 at least (as the kernel does) and returned in the input dtype.
    """
    _check(w, u, k, v)
    dtype = k.dtype
    work = torch.promote_types(dtype, torch.float32)
    B, T, C = k.shape
    L = max(1, min(chunk, T))
    n = -(-T // L)
    pad = n * L - T
    # (B, C, n, L) layout: channels are independent, the token axis is split into chunks
    kk = k.to(work).transpose(1, 2)
    vv = v.to(work).transpose(1, 2)
    if pad:
        kk = torch.cat([kk, kk.new_full((B, C, pad), _NEG)], dim=2)
        vv = torch.cat([vv, vv.new_zeros((B, C, pad))], dim=2)
    kk = kk.reshape(B, C, n, L)
    vv = vv.reshape(B, C, n, L)
    wc = w.to(work).view(1, C, 1, 1)
    pos = torch.arange(L, device=k.device, dtype=work)

    # inside a chunk: exponent[p, q] = -(|p - q| - 1) w + k_q, and u + k_p on the diagonal;
    # the (C, L, L) position part is built once, then one broadcast add per token
    dist = (pos[:, None] - pos[None, :]).abs() - 1  # (L, L)
    eye = torch.eye(L, dtype=torch.bool, device=k.device)
    decay = torch.where(eye, u.to(work).view(C, 1, 1), -dist * w.to(work).view(C, 1, 1))  # (C, L, L)
    intra = decay[None, :, None] + kk[:, :, :, None, :]  # (B, C, n, L, L)

    # what chunk j hands forward (decay counted to its last token) and backward (to its first)
    fm, fnum, fden = _scaled_sum(-(L - 1 - pos) * wc + kk, vv, dim=-1)  # (B, C, n)
    bm, bnum, bden = _scaled_sum(-pos * wc + kk, vv, dim=-1)

    # carry the summaries across chunks: chunk c gets sum_{j<c} exp(-(c-j-1) L w) * forward_j
    cidx = torch.arange(n, device=k.device)
    gap = (cidx[:, None] - cidx[None, :]).to(work)  # c - j
    before = (gap > 0).view(1, 1, n, n)
    after = (gap < 0).view(1, 1, n, n)
    xf = torch.where(before, -(gap - 1) * L * wc + fm[:, :, None, :], torch.full_like(gap, _NEG))
    xb = torch.where(after, (gap + 1) * L * wc + bm[:, :, None, :], torch.full_like(gap, _NEG))
    gm, gnum, gden = _carry(xf, before, fnum, fden)
    hm, hnum, hden = _carry(xb, after, bnum, bden)

    # per token: the chunk's own L terms plus the two carried sums, under one common maximum
    alpha = -pos * wc + gm[..., None]  # (B, C, n, L)
    beta = -(L - 1 - pos) * wc + hm[..., None]
    top = torch.maximum(intra.detach().amax(-1), torch.maximum(alpha, beta).detach())
    p = torch.exp(intra - top[..., None])
    ea, eb = torch.exp(alpha - top), torch.exp(beta - top)
    num = torch.einsum("bcnpq,bcnq->bcnp", p, vv) + ea * gnum[..., None] + eb * hnum[..., None]
    den = p.sum(-1) + ea * gden[..., None] + eb * hden[..., None]
    y = (num / (den + eps)).reshape(B, C, n * L)[:, :, :T]
    return y.transpose(1, 2).to(dtype)


def _carry(expo: torch.Tensor, mask: torch.Tensor, num: torch.Tensor, den: torch.Tensor):
    """Sum chunk summaries (num, den scaled by exp(chunk max)) into each chunk, max-scaled again.

    ``expo[b, c, i, j]`` is the log-weight of chunk j's summary as seen from chunk i, used where
    ``mask[i, j]``; a chunk that receives nothing gets zero sums (and a maximum of ``_NEG``).
    """
    m = expo.detach().amax(-1, keepdim=True)
    p = torch.exp(expo - m) * mask
    return m.squeeze(-1), (p * num[:, :, None, :]).sum(-1), (p * den[:, :, None, :]).sum(-1)
