"""Checks of the pieces behind the light CNN models (cmunext, unext, malunet, egeunet, ukan, ulite)
that the generic tests/test_models.py cannot see: the KAN layer's B-spline basis and init,
UNeXt's token shift, EGE-UNet's deep-supervision outputs, MALUNet's memory init.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from ubench.models import create_model
from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.kan import KANLinear, bspline_basis
from ubench.models.unext import shift_groups


def _knots(grid_size=5, order=3, lo=-1.0, hi=1.0):
    step = (hi - lo) / grid_size
    return lo + step * torch.arange(-order, grid_size + order + 1, dtype=torch.float64)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_bspline_basis_matches_scipy(order):
    knots = _knots(order=order)
    x = torch.linspace(-1, 0.999, 37, dtype=torch.float64)
    ours = bspline_basis(x[:, None], knots[None], order)[:, 0, :]
    n_basis = len(knots) - 1 - order
    assert ours.shape == (37, n_basis)
    for j in range(n_basis):
        ref = BSpline.basis_element(knots[j : j + order + 2].numpy(), extrapolate=False)(x.numpy())
        np.testing.assert_allclose(ours[:, j].numpy(), np.nan_to_num(ref), atol=1e-12)


def test_bspline_basis_is_a_partition_of_unity_inside_the_grid():
    knots = _knots()
    x = torch.rand(200, 4, dtype=torch.float64) * 2 - 1  # inside [-1, 1)
    basis = bspline_basis(x, knots.expand(4, -1), 3)
    torch.testing.assert_close(basis.sum(-1), torch.ones(200, 4, dtype=torch.float64))
    assert (basis >= 0).all()


def test_kan_linear_shapes_params_and_gradients():
    torch.manual_seed(0)
    layer = KANLinear(6, 4)
    assert sum(p.numel() for p in layer.parameters()) == 6 * 4 * (2 + 5 + 3)
    x = torch.randn(2, 7, 6, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 7, 4)
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_kan_linear_init_fits_small_noise_at_the_grid_points():
    """Unscaled splines start as a least-squares fit of noise in +-scale_noise / (2 grid_size)."""
    torch.manual_seed(0)
    layer = KANLinear(8, 5, scale_noise=0.1)
    points = layer.grid[0, 3:-3].expand(8, -1).T  # (grid_size + 1, in)
    values = torch.einsum("nib,oib->nio", layer.basis(points), layer.spline_weight)
    bound = 0.1 / 5 / 2
    assert values.abs().max() <= bound + 1e-6
    assert values.abs().max() > bound / 4  # really noise, not zeros
    torch.manual_seed(0)
    again = KANLinear(8, 5, scale_noise=0.1)
    assert torch.equal(layer.spline_weight, again.spline_weight)


def test_shift_groups_moves_each_channel_group_and_zero_fills():
    x = torch.arange(5 * 6 * 6, dtype=torch.float32).reshape(1, 5, 6, 6)
    y = shift_groups(x, dim=2)  # one channel per group, shifts -2..2 along H
    for c, s in enumerate(range(-2, 3)):
        expected = torch.zeros(6, 6)
        if s >= 0:
            expected[s:] = x[0, c, : 6 - s]
        else:
            expected[:s] = x[0, c, -s:]
        assert torch.equal(y[0, c], expected), f"group {c} (shift {s})"
    assert torch.equal(shift_groups(x, dim=3).transpose(2, 3), shift_groups(x.transpose(2, 3), dim=2))


def test_tokens_round_trip():
    x = torch.randn(2, 3, 4, 5)
    t = map_to_tokens(x)
    assert t.shape == (2, 20, 3)
    assert torch.equal(tokens_to_map(t, 4, 5), x)


def test_egeunet_returns_five_side_outputs_then_the_final_one():
    torch.manual_seed(0)
    model = create_model("egeunet").eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert isinstance(outs, list) and len(outs) == 6
    assert all(o.shape == (1, 1, 64, 64) for o in outs)
    # the final map is the main head's, upsampled x2 from H/2 (not a side mask from H/2)
    with torch.no_grad():
        side = model.mask_heads[-1].weight.clone()
        model.mask_heads[-1].weight.zero_()
        model.mask_heads[-1].bias.zero_()
        outs2 = model(torch.randn(1, 3, 64, 64))
        model.mask_heads[-1].weight.copy_(side)
    assert outs2[-2].abs().max() == 0 and outs2[-1].abs().max() > 0


def test_malunet_external_attention_memories_start_transposed():
    torch.manual_seed(0)
    model = create_model("malunet")
    blocks = [m for m in model.modules() if type(m).__name__ == "ExternalAttention"]
    assert len(blocks) == 6
    for ea in blocks:
        assert torch.equal(ea.memory_key.weight, ea.memory_value.weight.permute(1, 0, 2))
        assert ea.memory_key.weight.data_ptr() != ea.memory_value.weight.data_ptr()  # not tied
