"""ResUNet++: residual U-Net with squeeze-excitation, ASPP and attention on the decoder.

Paper: Jha, Smedsrud, Riegler, Johansen, de Lange, Halvorsen, Johansen, "ResUNet++: An Advanced
Architecture for Medical Image Segmentation", IEEE ISM 2019.

Configuration: U-Bench's ``ResUnetPlusPlus`` (repo FengheTan9/U-Bench, models/CNN/
ResUnetPlusPlus/ResUnetPlusPlus.py and modules.py, ``resunetplusplus(3, 1)``), widths
32, 64, 128, 256, 512. Stem: conv3x3 + BN + ReLU + conv3x3, plus a conv3x3 shortcut. Three
encoder steps: squeeze-excitation (reduction 16, bias-free linears) then a pre-activation
residual unit (BN, ReLU, conv3x3 stride 2, BN, ReLU, conv3x3; shortcut conv3x3 stride 2 + BN).
Bridge: ASPP (three 3x3 convs dilated 6, 12, 18, each followed by ReLU THEN BatchNorm, concat,
1x1 conv; Kaiming-normal init, fan_in). Each of three decoder steps: an attention unit (encoder
skip: BN, ReLU, conv3x3, 2x2 max-pool; decoder: BN, ReLU, conv3x3; summed, then BN, ReLU, 1x1 conv
to one channel, multiplying the decoder map with no sigmoid, as in U-Bench), bilinear upsampling
x2 (align_corners=False), concatenation [decoder, skip], a stride-1 residual unit. Output: ASPP
(64 -> 32) and a 1x1 conv. All convs have bias. No deep supervision. Parameters at 3 in /
1 class: 14,482,564, counted by building U-Bench's module. Its total stride is 8; we declare 16
so that sizes are validated on the same grid as the other U-Nets (72 = 8 x 9 would also run).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import SqueezeExcite
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 128, 256, 512)
ASPP_RATES = (6, 12, 18)


def bn_relu_conv(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> list[nn.Module]:
    """Pre-activation unit (BN, ReLU, conv with bias) as a list to chain."""
    return [
        nn.BatchNorm2d(in_ch),
        nn.ReLU(),
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2),
    ]


class ResidualUnit(nn.Module):
    """Two pre-activation 3x3 convs (the first may stride 2) plus a conv3x3 + BN shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(*bn_relu_conv(in_ch, out_ch, stride=stride), *bn_relu_conv(out_ch, out_ch))
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.BatchNorm2d(out_ch)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ASPP(nn.Module):
    """Parallel dilated 3x3 convs (conv, ReLU, BN each), concatenated and mixed by a 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, rates=ASPP_RATES):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 3, padding=r, dilation=r), nn.ReLU(inplace=True), nn.BatchNorm2d(out_ch)
            )
            for r in rates
        )
        self.mix = nn.Conv2d(len(rates) * out_ch, out_ch, 1)
        for m in self.modules():  # the reference initialises its ASPP (only) this way
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([b(x) for b in self.branches], dim=1))


class SkipAttention(nn.Module):
    """Weights the coarser decoder map by a one-channel map computed with the finer skip."""

    def __init__(self, skip_ch: int, dec_ch: int, mid_ch: int):
        super().__init__()
        self.skip = nn.Sequential(*bn_relu_conv(skip_ch, mid_ch), nn.MaxPool2d(2, 2))
        self.dec = nn.Sequential(*bn_relu_conv(dec_ch, mid_ch))
        self.score = nn.Sequential(*bn_relu_conv(mid_ch, 1, kernel_size=1))

    def forward(self, skip: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        return dec * self.score(self.skip(skip) + self.dec(dec))


class ResUNetPlusPlus(nn.Module):
    """Stem, three SE + strided residual steps, ASPP bridge, three attention-gated up steps, ASPP."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        w = widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w[0], 3, padding=1),
            nn.BatchNorm2d(w[0]),
            nn.ReLU(),
            nn.Conv2d(w[0], w[0], 3, padding=1),
        )
        self.stem_skip = nn.Conv2d(in_channels, w[0], 3, padding=1)
        self.se = nn.ModuleList(SqueezeExcite(w[i]) for i in range(3))
        self.down = nn.ModuleList(ResidualUnit(w[i], w[i + 1], stride=2) for i in range(3))
        self.bridge = ASPP(w[3], w[4])
        # decoder step k: skip row 2 - k (width w[2-k]), decoder width in w[4-k], out w[3-k]
        self.attn = nn.ModuleList(SkipAttention(w[2 - k], w[4 - k], w[4 - k]) for k in range(3))
        self.fuse = nn.ModuleList(ResidualUnit(w[4 - k] + w[2 - k], w[3 - k]) for k in range(3))
        self.out_aspp = ASPP(w[1], w[0])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x) + self.stem_skip(x)
        skips = [x]
        for se, down in zip(self.se, self.down):
            x = down(se(x))
            skips.append(x)
        x = self.bridge(skips.pop())
        for attn, fuse in zip(self.attn, self.fuse):
            skip = skips.pop()
            x = F.interpolate(attn(skip, x), scale_factor=2, mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, skip], dim=1))
        return self.head(self.out_aspp(x))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="ResUNetPlusPlus",
        ubench_id=19,
        year=2019,
        paper="ResUNet++: An Advanced Architecture for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=14.482564,
        ref_source="U-Bench models/CNN/ResUnetPlusPlus/ResUnetPlusPlus.py + modules.py "
        "(resunetplusplus(3, 1)), counted by building the module",
        ref_input_size=256,
        size_multiple=16,
        notes="real total stride 8; sizes validated on multiples of 16; attention without sigmoid "
        "as in U-Bench",
    )
)
def resunetpp(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """ResUNet++ as U-Bench benchmarks it (widths 32..512)."""
    return ResUNetPlusPlus(in_channels=in_channels, num_classes=num_classes)
