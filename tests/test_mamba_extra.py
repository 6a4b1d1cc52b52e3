"""Checks of ops/mamba_extra.py: the pieces the VMamba U-Nets and MUCM-Net build on."""

from __future__ import annotations

import math

import pytest
import torch

from ubench.models.ops.mamba_extra import MambaMixer, PatchExpandX4, init_vmamba_linear


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _n(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_mamba_mixer_has_mamba_ssm_v1_parameter_count():
    # mamba_ssm.Mamba(d_model=d, d_state=N, d_conv=4, expand=2), R = ceil(d/16):
    # in_proj 4d^2, conv1d 2d*4+2d, x_proj 2d(R+2N), dt_proj 2dR+2d, A_log 2dN, D 2d, out_proj 2d^2
    for d, n in [(16, 4), (48, 4), (40, 16)]:
        r = math.ceil(d / 16)
        expected = (4 * d * d + 10 * d + 2 * d * (r + 2 * n) + 2 * d * r + 2 * d
                    + 2 * d * n + 2 * d + 2 * d * d)
        assert _n(MambaMixer(d, d_state=n)) == expected


def test_mamba_mixer_is_causal_and_differentiable():
    torch.manual_seed(0)
    mixer = MambaMixer(8, d_state=4)
    x = torch.randn(2, 37, 8, requires_grad=True)
    y = mixer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y[:, 20].sum().backward()
    assert x.grad[:, :21].abs().sum() > 0
    assert torch.all(x.grad[:, 21:] == 0), "token 20 must not see later tokens"
    assert all(p.grad is not None for p in mixer.parameters())


def test_mamba_mixer_prefix_output_does_not_change_with_suffix():
    torch.manual_seed(0)
    mixer = MambaMixer(8, d_state=4).eval()
    x = torch.randn(1, 70, 8)
    with torch.no_grad():
        full, prefix = mixer(x), mixer(x[:, :30])
    torch.testing.assert_close(full[:, :30], prefix, rtol=1e-4, atol=1e-5)


def test_patch_expand_x4_keeps_width_and_puts_channel_groups_row_major():
    m = PatchExpandX4(3)
    assert _n(m) == 3 * 48 + 2 * 3  # Linear 3 -> 48 without bias, LayerNorm(3)
    with torch.no_grad():
        m.expand.weight.zero_()
        m.expand.weight[:, 0] = torch.arange(48.0)  # output channel k = k * x[..., 0]
        x = torch.zeros(1, 1, 2, 3)
        x[0, 0, 1, 0] = 1.0
        pre = m.expand(x)
        y = m(x)
    assert y.shape == (1, 4, 8, 3)
    # pixel (0, 1), group for sub-position (r, c) holds channels 12r + 3c .. 12r + 3c + 2
    for r in range(4):
        for c in range(4):
            group = pre[0, 0, 1, 12 * r + 3 * c : 12 * r + 3 * c + 3]
            torch.testing.assert_close(y[0, r, 4 + c], torch.nn.functional.layer_norm(group, (3,)))
    assert torch.all(y[0, :, :4] == 0)  # pixel (0, 0) is all zeros before and after the norm


def test_init_vmamba_linear():
    torch.manual_seed(0)
    lin, norm = torch.nn.Linear(200, 300), torch.nn.LayerNorm(5)
    with torch.no_grad():
        norm.weight.fill_(3.0)
    lin.apply(init_vmamba_linear)
    norm.apply(init_vmamba_linear)
    # timm's trunc_normal_(std=0.02) cuts at +-2 (absolute), so in effect a plain normal
    assert abs(lin.weight.std().item() - 0.02) < 0.003
    assert torch.all(lin.bias == 0) and torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
