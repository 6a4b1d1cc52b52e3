"""SS2D's four-direction scan against a direction-by-direction reference, and the patch layers."""

import torch

from ubench.models.ops.selective_scan import selective_scan_naive
from ubench.models.ops.vss import (
    SS2D,
    FinalPatchExpand2D,
    PatchEmbed2D,
    PatchExpand2D,
    PatchMerging2D,
    VSSBlock,
    pixel_shuffle_last,
)


def _reference_scan(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    """Each direction scanned on its own token order, mapped back to (B, d, H, W) and summed."""
    b, d, h, w = x.shape
    orders = [
        torch.arange(h * w),  # row-major
        torch.arange(h * w).reshape(h, w).t().reshape(-1),  # column-major
    ]
    orders += [o.flip(0) for o in orders]
    total = torch.zeros_like(x).reshape(b, d, h * w)
    for k, order in enumerate(orders):
        seq = x.reshape(b, d, h * w)[:, :, order]
        proj = torch.einsum("bdl,cd->bcl", seq, m.x_proj_weight[k])
        dt, bb, cc = torch.split(proj, [m.dt_rank, m.d_state, m.d_state], dim=1)
        dt = torch.einsum("brl,dr->bdl", dt, m.dt_projs_weight[k])
        sl = slice(k * d, (k + 1) * d)
        y = selective_scan_naive(seq, dt, -torch.exp(m.A_logs[sl]), bb, cc, m.Ds[sl],
                                 delta_bias=m.dt_projs_bias[k], delta_softplus=True)
        back = torch.empty_like(y)
        back[:, :, order] = y
        total = total + back
    return total.reshape(b, d, h, w)


def test_ss2d_scan_matches_per_direction_reference():
    torch.manual_seed(0)
    m = SS2D(d_model=8, d_state=4).double()
    x = torch.randn(2, m.d_inner, 5, 7, dtype=torch.float64)  # non-square: catches H/W swaps
    torch.testing.assert_close(m._scan(x), _reference_scan(m, x), rtol=1e-5, atol=1e-6)


def test_ss2d_and_block_shapes_and_params():
    torch.manual_seed(0)
    c = 32
    block = VSSBlock(c, drop_path=0.1)
    x = torch.randn(2, 6, 4, c, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in block.parameters())
    # VMamba's SS2D: d_inner = 2C, dt_rank = ceil(C/16), 4 directions, N = 16, no biases
    d, r, n = 2 * c, 2, 16
    expected = (c * 2 * d + d * 9 + d + 4 * (r + 2 * n) * d + 4 * d * r + 4 * d
                + 4 * d * n + 4 * d + 2 * d + d * c)
    assert sum(p.numel() for p in block.self_attention.parameters()) == expected
    block.eval()
    assert torch.equal(block(x), block(x))


def test_dt_bias_softplus_in_range():
    torch.manual_seed(0)
    m = SS2D(d_model=16)
    dt = torch.nn.functional.softplus(m.dt_projs_bias)
    assert dt.min() >= 1e-4 * 0.999 and dt.max() <= 0.1 * 1.001


def test_patch_layers_shapes():
    x = torch.randn(2, 3, 32, 32)
    t = PatchEmbed2D(4, 3, 16, torch.nn.LayerNorm)(x)
    assert t.shape == (2, 8, 8, 16)
    m = PatchMerging2D(16)(t)
    assert m.shape == (2, 4, 4, 32)
    assert PatchExpand2D(16)(m).shape == (2, 8, 8, 16)
    assert FinalPatchExpand2D(16)(t).shape == (2, 32, 32, 4)


def test_pixel_shuffle_last_order():
    # channel index = (p1 * p + p2) * c + ch lands at pixel (h * p + p1, w * p + p2)
    p, c = 2, 3
    x = torch.arange(p * p * c, dtype=torch.float32).reshape(1, 1, 1, p * p * c)
    y = pixel_shuffle_last(x, p)
    for p1 in range(p):
        for p2 in range(p):
            for ch in range(c):
                assert y[0, p1, p2, ch] == (p1 * p + p2) * c + ch


def test_mamba_block_is_causal_and_matches_reference():
    from ubench.models.ops.mamba import Mamba

    torch.manual_seed(0)
    m = Mamba(8).double()
    x = torch.randn(2, 30, 8, dtype=torch.float64)
    out = m(x)
    # causal: changing the future leaves the past unchanged
    x2 = x.clone()
    x2[:, 20:] += 1.0
    out2 = m(x2)
    torch.testing.assert_close(out2[:, :20], out[:, :20])
    assert not torch.allclose(out2[:, 20:], out[:, 20:])
    # reference: left-padded conv and the token loop
    xz = m.in_proj(x).transpose(1, 2)
    xi, z = xz.chunk(2, dim=1)
    k = m.conv1d.kernel_size[0]
    xi = torch.nn.functional.silu(torch.nn.functional.conv1d(
        torch.nn.functional.pad(xi, (k - 1, 0)), m.conv1d.weight, m.conv1d.bias,
        groups=m.d_inner))
    dbl = torch.einsum("bdl,cd->bcl", xi, m.x_proj.weight)
    dt, bb, cc = torch.split(dbl, [m.dt_rank, m.d_state, m.d_state], dim=1)
    dt = torch.einsum("brl,dr->bdl", dt, m.dt_proj.weight)
    y = selective_scan_naive(xi, dt, -torch.exp(m.A_log), bb, cc, m.D, z=z,
                             delta_bias=m.dt_proj.bias, delta_softplus=True)
    torch.testing.assert_close(out, m.out_proj(y.transpose(1, 2)))
