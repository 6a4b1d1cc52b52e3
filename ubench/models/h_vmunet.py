"""H-vmunet: UltraLight-style U-Net whose deep stages are high-order 2D-selective-scan blocks.

Paper: Wu, Li, Ruan, Zhang, "H-vmunet: High-order Vision Mamba UNet for Medical Image
Segmentation", arXiv 2403.13642, 2024 (Neurocomputing 2025).

Configuration: U-Bench's ``H_vmunet`` (repo FengheTan9/U-Bench, models/Mamba/H_vmunet/
H_vmunet.py with VMamba's SS2D from vmamba.py, built by ``h_vmunet(num_classes, input_channel=3)``):
widths 8, 16, 32, 64, 128, 256; stages 1-2 a 3x3 conv; stages 3-6 two H_VSS blocks then a 3x3
conv; GroupNorm(4) + 2x max-pool + GELU after stages 1-5; the SC attention bridge on the five
skips; the decoder mirrors it (two blocks + conv per deep level, bilinear align_corners=True
upsampling, additive skips); 1x1 conv and a final 2x upsampling. Drop-path 0, layer scale 1e-6.

H_VSS block (ConvNeXt-like): x + gamma1 * H_SS2D(LN(x)), then x + gamma2 * MLP(LN(x)) (4x,
GELU). H_SS2D of order n (n = 2, 3, 4, 5 at stages 3, 4, 5, 6; the decoder reuses the order of
the matching encoder level) splits a 1x1 projection into a gate of dim/2^(n-1) channels and
n groups (dim/2^(n-1) .. dim) filtered by a Local_SS2D "global filter" and scaled by 1/3; it
then climbs the orders: x = SS2D(x * g_0), x = SS2D(pw_i(x) * g_i), and a final 1x1 projection.
Local_SS2D: channels-first LayerNorm, half the channels through a 3x3 depthwise conv and half
through an SS2D, interleaved channel by channel, LayerNorm. SS2D: ``ubench.models.ops.vss``.

Quirk kept for parameter parity: each Local_SS2D holds a ``complex_weight`` (dim/2, h, w, 2)
that U-Bench counts but never uses; those get no gradient and are listed in
``extra["unused_params"]``. Initialisation as U-Bench's (see ``ops.common.init_conv_fan_out``;
it also re-initialises SS2D's Linear and conv layers). Parameters (3 in, 1 class):
8,972,623 (``REF_PARAMS``, counted from U-Bench's files layer by layer).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.sc_att_bridge import BridgedUNet
from ubench.models.ops.vss import SS2D
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (8, 16, 32, 64, 128, 256)
DEPTH = 2  # H_VSS blocks per deep stage
# order of H_SS2D and the (unused) global-filter size (h, w) per deep level 0..3
LEVELS = ((2, 14, 8), (3, 14, 8), (4, 24, 13), (5, 12, 7))
REF_PARAMS = 8_972_623


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (ConvNeXt's channels_first LN)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).square().mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def _ss2d_first(ss2d: SS2D, x: torch.Tensor) -> torch.Tensor:
    """SS2D on a channels-first map."""
    return ss2d(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LocalSS2D(nn.Module):
    """Half depthwise 3x3, half SS2D, interleaved; ``complex_weight`` is U-Bench's dead weight."""

    def __init__(self, dim: int, h: int = 14, w: int = 8):
        super().__init__()
        half = dim // 2
        self.dw = nn.Conv2d(half, half, 3, padding=1, bias=False, groups=half)
        self.complex_weight = nn.Parameter(torch.empty(half, h, w, 2))
        nn.init.trunc_normal_(self.complex_weight, std=0.02)
        self.pre_norm = LayerNorm2d(dim)
        self.post_norm = LayerNorm2d(dim)
        self.SS2D = SS2D(half, d_state=16)

    def forward(self, x):
        x1, x2 = self.pre_norm(x).chunk(2, dim=1)
        x1 = self.dw(x1)
        x2 = _ss2d_first(self.SS2D, x2)
        b, c, h, w = x1.shape
        x = torch.stack([x1, x2], dim=2).reshape(b, 2 * c, h, w)  # channels x1_0, x2_0, x1_1...
        return self.post_norm(x)


class HSS2D(nn.Module):
    """High-order SS2D: a gated recursion over n channel groups, one SS2D per order."""

    def __init__(self, dim: int, order: int, h: int, w: int, scale: float = 1 / 3):
        super().__init__()
        self.dims = [dim // 2 ** i for i in range(order)][::-1]
        self.scale = scale
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = LocalSS2D(sum(self.dims), h=h, w=w)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1)
                                 for i in range(order - 1))
        self.ss2d_in = SS2D(self.dims[0], d_state=16)
        self.ss2d = nn.ModuleList(SS2D(d, d_state=16) for d in self.dims[1:])

    def forward(self, x):
        gate, rest = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        filtered = torch.split(self.dwconv(rest) * self.scale, self.dims, dim=1)
        x = _ss2d_first(self.ss2d_in, gate * filtered[0])
        for pw, ss2d, g in zip(self.pws, self.ss2d, filtered[1:]):
            x = _ss2d_first(ss2d, pw(x) * g)
        return self.proj_out(x)


class HVSSBlock(nn.Module):
    """H_SS2D mixer and a 4x MLP, each pre-normed, layer-scaled and residual."""

    def __init__(self, dim: int, order: int, h: int, w: int, layer_scale: float = 1e-6):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.H_SS2D = HSS2D(dim, order, h, w)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x):
        x = x + self.gamma1[:, None, None] * self.H_SS2D(self.norm1(x))
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + (self.gamma2 * y).permute(0, 3, 1, 2)


def _deep_stage(cin: int, cout: int, level: int) -> nn.Sequential:
    order, h, w = LEVELS[level]
    blocks = [HVSSBlock(cin, order, h, w) for _ in range(DEPTH)]
    return nn.Sequential(*blocks, nn.Conv2d(cin, cout, 3, padding=1))


class HVMUNet(BridgedUNet):
    """Conv stages shallow (two), H_VSS stages deep, SC attention bridge, mirrored decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__(in_channels, num_classes, widths, n_conv=2, deep=_deep_stage)


def _unused_params() -> list[str]:
    """Every block's Local_SS2D.complex_weight (encoder stages 2-5, decoder stages 0-3)."""
    stages = [("encoder", i) for i in (2, 3, 4, 5)] + [("decoder", i) for i in (0, 1, 2, 3)]
    return [f"{part}.{idx}.{b}.H_SS2D.dwconv.complex_weight"
            for part, idx in stages for b in range(DEPTH)]


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="H_vmunet",
        ubench_id=89,
        year=2024,
        paper="H-vmunet: High-order Vision Mamba UNet for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=REF_PARAMS / 1e6,
        ref_source="U-Bench models/Mamba/H_vmunet/H_vmunet.py + vmamba.py "
        "(h_vmunet(1, input_channel=3)), counted layer by layer",
        ref_input_size=256,
        size_multiple=32,
        notes="Local_SS2D.complex_weight is counted (as in U-Bench) but unused",
        extra={"unused_params": _unused_params()},
    )
)
def h_vmunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """H-vmunet as U-Bench benchmarks it (widths 8..256, orders 2-5, drop-path 0)."""
    return HVMUNet(in_channels=in_channels, num_classes=num_classes)
