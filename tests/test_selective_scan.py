"""The chunked selective scan must equal the per-token loop (values, last state, gradients)."""

import pytest
import torch

from ubench.models.ops.selective_scan import (
    selective_scan_chunked,
    selective_scan_fn,
    selective_scan_naive,
)


def _inputs(dtype, batch=2, dim=6, n=4, length=37, groups=None, const_bc=False, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    u = r(batch, dim, length)
    delta = r(batch, dim, length, scale=0.5)
    A = -torch.exp(r(dim, n, scale=0.5))
    if const_bc:
        B, C = r(dim, n), r(dim, n)
    elif groups is None:
        B, C = r(batch, n, length), r(batch, n, length)
    else:
        B, C = r(batch, groups, n, length), r(batch, groups, n, length)
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=r(dim), z=r(batch, dim, length),
                delta_bias=r(dim, scale=0.5))


CASES = [
    dict(),
    dict(groups=2),
    dict(groups=3, length=130),
    dict(groups=2, length=64),
    dict(const_bc=True, length=9),
    dict(length=1),
    dict(length=200),
]
OPTIONS = [
    dict(use_D=True, use_z=True, bias=True, softplus=True),
    dict(use_D=False, use_z=False, bias=False, softplus=False),
    dict(use_D=True, use_z=False, bias=True, softplus=False),
]


def _call(fn, x, use_D, use_z, bias, softplus, last=False, **kw):
    return fn(x["u"], x["delta"].abs() if not softplus else x["delta"], x["A"], x["B"], x["C"],
              D=x["D"] if use_D else None, z=x["z"] if use_z else None,
              delta_bias=x["delta_bias"].abs() if bias else None, delta_softplus=softplus,
              return_last_state=last, **kw)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("opts", OPTIONS)
def test_chunked_matches_naive(dtype, tol, case, opts):
    x = _inputs(dtype, **case)
    out, last = _call(selective_scan_chunked, x, last=True, chunk=16, **opts)
    ref, ref_last = _call(selective_scan_naive, x, last=True, **opts)
    assert out.dtype == dtype and out.shape == x["u"].shape
    assert last.shape == (x["u"].shape[0], x["u"].shape[1], x["A"].shape[1])
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    torch.testing.assert_close(last, ref_last, rtol=tol, atol=tol)


def test_default_entry_point_is_chunked_on_cpu():
    x = _inputs(torch.float64, length=150)
    opts = OPTIONS[0]
    torch.testing.assert_close(_call(selective_scan_fn, x, **opts),
                               _call(selective_scan_naive, x, **opts), rtol=1e-8, atol=1e-8)


def test_strong_decay_stays_finite():
    """Large dt*|A| (decays near 0) must not overflow anywhere, unlike exp(-cumsum) tricks."""
    x = _inputs(torch.float32, length=300)
    x["A"] = x["A"] * 200.0
    out = _call(selective_scan_chunked, x, **OPTIONS[0])
    ref = _call(selective_scan_naive, x, **OPTIONS[0])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_half_input_returns_half():
    x = _inputs(torch.float32, length=20)
    x = {k: (v.half() if k in ("u", "delta", "z") else v) for k, v in x.items()}
    out = _call(selective_scan_chunked, x, **OPTIONS[0])
    assert out.dtype == torch.float16


@pytest.mark.parametrize("case", [dict(groups=2, length=45), dict(length=70)])
def test_gradients_match_naive(case):
    x = _inputs(torch.float64, batch=1, dim=4, n=3, **case)
    leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(x["u"].shape, generator=gen, dtype=torch.float64)

    def grads(fn, **kw):
        for v in leaves.values():
            v.grad = None
        out, last = _call(fn, leaves, last=True, **OPTIONS[0], **kw)
        ((out * weight).sum() + last.sum()).backward()
        return {k: v.grad.clone() for k, v in leaves.items()}

    got = grads(selective_scan_chunked, chunk=8)
    ref = grads(selective_scan_naive)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-7, atol=1e-9, msg=f"grad of {k}")


def test_gradcheck_small():
    x = _inputs(torch.float64, batch=1, dim=2, n=2, length=11, groups=2)
    u = x["u"].requires_grad_(True)
    A = x["A"].requires_grad_(True)
    B = x["B"].requires_grad_(True)

    def f(u, A, B):
        return selective_scan_chunked(u, x["delta"], A, B, x["C"], x["D"], x["z"],
                                      x["delta_bias"], True, chunk=4)

    assert torch.autograd.gradcheck(f, (u, A, B))


@pytest.mark.parametrize("bad", ["A", "B", "D", "z"])
def test_bad_shapes_raise(bad):
    x = _inputs(torch.float32)
    x[bad] = x[bad][..., :-1] if bad != "D" else x[bad][:-1]
    with pytest.raises(ValueError):
        _call(selective_scan_fn, x, **OPTIONS[0])


@pytest.mark.gpu
@pytest.mark.parametrize("groups", [None, 4])
def test_matches_mamba_ssm_kernel_on_cuda(groups):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    kernel_mod = pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    x = _inputs(torch.float32, batch=2, dim=8, n=16, length=300, groups=groups)
    x = {k: v.cuda() for k, v in x.items()}
    opts = OPTIONS[0]
    out, last = _call(kernel_mod.selective_scan_fn, x, last=True, **opts)
    ours, ours_last = _call(selective_scan_chunked, x, last=True, **opts)
    torch.testing.assert_close(ours, out, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(ours_last, last.float(), rtol=1e-3, atol=1e-3)


def test_entry_point_gradients_with_recompute_match_naive():
    """selective_scan_fn checkpoints the torch scan when grads are needed: same gradients."""
    x = _inputs(torch.float64, batch=1, dim=4, n=3, length=50, groups=2)
    grads = []
    for fn in (selective_scan_fn, selective_scan_naive):
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        out, last = _call(fn, leaves, last=True, **OPTIONS[0])
        (out.square().sum() + last.sum()).backward()
        grads.append({k: v.grad for k, v in leaves.items()})
    for k in grads[1]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-7, atol=1e-9, msg=k)
