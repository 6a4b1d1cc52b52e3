"""The chunked Bi-WKV against the literal double sum: values, gradients, stability, symmetry."""

from __future__ import annotations

import pytest
import torch

from ubench.models.ops.wkv import bi_wkv, bi_wkv_naive


def _inputs(B, T, C, scale_k=3.0, scale_w=2.0, seed=0, dtype=torch.float64, grad=False):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(C, generator=g, dtype=dtype) * scale_w
    u = torch.randn(C, generator=g, dtype=dtype)
    k = torch.randn(B, T, C, generator=g, dtype=dtype) * scale_k
    v = torch.randn(B, T, C, generator=g, dtype=dtype)
    return [t.requires_grad_(grad) for t in (w, u, k, v)]


# T below, equal to and above the chunk, a multiple of it and not (padding), a single token
@pytest.mark.parametrize("T,chunk", [(1, 4), (3, 4), (4, 4), (13, 4), (37, 8), (64, 16), (20, 32)])
def test_matches_naive(T, chunk):
    w, u, k, v = _inputs(2, T, 3)
    torch.testing.assert_close(bi_wkv(w, u, k, v, chunk=chunk), bi_wkv_naive(w, u, k, v), rtol=1e-10, atol=1e-12)


def test_result_does_not_depend_on_chunk_size():
    w, u, k, v = _inputs(1, 50, 4, seed=3)
    ref = bi_wkv(w, u, k, v, chunk=50)
    for chunk in (1, 2, 7, 16, 64):
        torch.testing.assert_close(bi_wkv(w, u, k, v, chunk=chunk), ref, rtol=1e-10, atol=1e-12)


def test_gradients_match_naive():
    a = _inputs(2, 11, 3, seed=1, grad=True)
    b = [t.detach().clone().requires_grad_(True) for t in a]
    g = torch.randn(2, 11, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (bi_wkv(*a, chunk=4) * g).sum().backward()
    (bi_wkv_naive(*b) * g).sum().backward()
    for name, x, y in zip("wukv", a, b):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-8, atol=1e-10, msg=f"gradient of {name}")


def test_gradcheck():
    w, u, k, v = _inputs(1, 9, 2, scale_k=1.0, scale_w=0.5, seed=2, grad=True)
    assert torch.autograd.gradcheck(lambda *x: bi_wkv(*x, chunk=4), (w, u, k, v), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("decay", [60.0, -60.0, 0.0])
def test_large_exponents_stay_finite_and_exact(decay):
    """exp() of these exponents overflows float32; the max-scaled sums must not."""
    g = torch.Generator().manual_seed(4)
    T, C = 96, 2
    w = torch.full((C,), decay)
    u = torch.tensor([0.0, 40.0])
    k = torch.randn(1, T, C, generator=g) * 40
    v = torch.randn(1, T, C, generator=g)
    y = bi_wkv(w, u, k, v, chunk=16)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    ref = bi_wkv_naive(w.double(), u.double(), k.double(), v.double())
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-5)


def test_output_is_a_convex_combination_of_values():
    w, u, k, v = _inputs(2, 30, 5, seed=6)
    y = bi_wkv(w, u, k, v, chunk=8)
    assert (y <= v.amax(1, keepdim=True) + 1e-9).all() and (y >= v.amin(1, keepdim=True) - 1e-9).all()


def test_bidirectional_reversal_symmetry():
    """Reversing the token order reverses the output: the weights depend on |t - i| only."""
    w, u, k, v = _inputs(2, 23, 3, seed=7)
    y = bi_wkv(w, u, k, v, chunk=5)
    y_rev = bi_wkv(w, u, k.flip(1), v.flip(1), chunk=5)
    torch.testing.assert_close(y_rev.flip(1), y, rtol=1e-10, atol=1e-12)


def test_zero_decay_zero_bonus_is_softmax_over_keys():
    """With w = u = 0 every token sees exp(k_i) over all i: a softmax-weighted mean of v."""
    _, _, k, v = _inputs(1, 12, 2, seed=8)
    zero = torch.zeros(2, dtype=torch.float64)
    expected = (torch.softmax(k, dim=1) * v).sum(1, keepdim=True).expand_as(v)
    torch.testing.assert_close(bi_wkv(zero, zero, k, v, chunk=5), expected, rtol=1e-5, atol=1e-6)


def test_bad_shapes_raise_ubench_error():
    w, u, k, v = _inputs(1, 4, 3)
    with pytest.raises(ValueError, match="same shape"):
        bi_wkv(w, u, k, v[:, :3])
    with pytest.raises(ValueError, match="one decay"):
        bi_wkv(w[:2], u, k, v)
