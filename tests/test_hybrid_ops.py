"""The shared hybrid blocks (ubench/models/ops/vit_hybrid.py, ops/monai_wrap.py) on small inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ubench.models.ops.monai_wrap import MonaiNet, require_packages
from ubench.models.ops.vit_hybrid import (
    CupDecoder,
    ResNetV2Encoder,
    StdConv2d,
    ViTEncoder,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_stdconv_is_invariant_to_kernel_scale_and_shift():
    torch.manual_seed(0)
    conv = StdConv2d(4, 8, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.normal_()  # unit variance, so the 1e-5 eps is negligible
    x = torch.randn(1, 4, 8, 8)
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(3.0).add_(0.5)
    assert torch.allclose(conv(x), y, atol=1e-4)


@pytest.mark.parametrize("size", [64, 96])
def test_resnetv2_skips_are_padded_to_exact_strides(size):
    torch.manual_seed(0)
    enc = ResNetV2Encoder(in_channels=2, units=(1, 1, 1), width=32)
    out, skips = enc(torch.randn(1, 2, size, size))
    assert out.shape == (1, 512, size // 16, size // 16)
    assert [tuple(s.shape[1:]) for s in skips] == [
        (256, size // 8, size // 8),
        (128, size // 4, size // 4),
        (32, size // 2, size // 2),
    ]
    # the unpadded max-pool leaves the H/4 map one short: its last row/column are zero padding
    assert torch.count_nonzero(skips[1][..., -1, :]) == 0
    assert torch.count_nonzero(skips[1][..., :-1, :-1]) > 0


def test_vit_encoder_keeps_token_shape_and_inits_differ():
    torch.manual_seed(0)
    a = ViTEncoder(32, depth=2, heads=4, mlp_dim=64, init="transunet")
    b = ViTEncoder(32, depth=2, heads=4, mlp_dim=64, init="deit")
    x = torch.randn(2, 5, 32)
    assert a(x).shape == x.shape
    assert torch.all(b.blocks[0].fc1.bias == 0)
    assert b.blocks[0].attn.qkv.weight.std() < 0.05
    with pytest.raises(ValueError):
        ViTEncoder(32, depth=1, heads=4, mlp_dim=64, init="nope")


def test_cup_decoder_applies_skip_attention_before_concat():
    torch.manual_seed(0)

    class Zero(nn.Module):
        def forward(self, x):
            return torch.zeros_like(x)

    plain = CupDecoder(8, [16, 8, 4], widths=(16, 8, 4, 4), head_ch=16).eval()
    gated = CupDecoder(8, [16, 8, 4], widths=(16, 8, 4, 4), head_ch=16, skip_attn=[Zero()]).eval()
    gated.load_state_dict(plain.state_dict())
    x = torch.randn(1, 8, 2, 2)
    skips = [torch.randn(1, 16, 4, 4), torch.randn(1, 8, 8, 8), torch.randn(1, 4, 16, 16)]
    with torch.no_grad():
        y_plain, y_gated = plain(x, skips), gated(x, skips)
        y_zero = plain(x, [torch.zeros_like(skips[0])] + skips[1:])
    assert y_plain.shape == (1, 4, 32, 32)
    assert torch.allclose(y_gated, y_zero) and not torch.allclose(y_gated, y_plain)


def test_monai_net_keeps_the_net_prefix_and_require_packages_names_what_is_missing():
    net = MonaiNet(nn.Linear(2, 3))
    assert list(net.state_dict()) == ["net.weight", "net.bias"]
    assert net(torch.zeros(1, 2)).shape == (1, 3)
    require_packages("m", "torch")
    with pytest.raises(ImportError, match="no_such_pkg_ubench"):
        require_packages("m", "torch", "no_such_pkg_ubench")


def test_transfuse_outputs_three_maps_and_scales_with_input():
    from ubench.models import create_model

    torch.manual_seed(0)
    model = create_model("transfuse", num_classes=2).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 48))
    assert isinstance(outs, list) and len(outs) == 3
    assert all(o.shape == (1, 2, 32, 48) for o in outs)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 3, 40, 40))
