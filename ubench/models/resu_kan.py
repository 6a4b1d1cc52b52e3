"""ResU-KAN: U-KAN with residual EMA-attention conv blocks and an ASPP bottleneck.

Paper: "ResU-KAN: a medical image segmentation model integrating residual convolutional attention
and atrous spatial pyramid pooling", Applied Intelligence 2025 (doi 10.1007/s10489-025-06467-5;
code github.com/Alfreda12/ResU-KAN).

Configuration: U-Bench's ``resu_kan(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/CNN/ResU_KAN/ResU_KAN.py with KAN.py, EMA.py, ASPP.py), i.e. ``ResUKAN`` with its defaults:
U-KAN's skeleton (ops/light_blocks.py ``TokenizedUNet``) at embed_dims 256, 320, 512: conv widths
32, 64, 256, token widths 320, 512, one KAN block per tokenized stage (pre-LayerNorm residual;
three times KANLinear (ops/kan.py, grid 5, cubic, SiLU base) then 3x3 depthwise conv + BN + ReLU),
no dropout or drop-path. Every conv block is a residual "RCA" block: 3x3 conv + BN + ReLU, 3x3
conv + BN, EMA attention (efficient multi-scale attention, Ouyang et al., ICASSP 2023; 32 channel
groups, or width/2 groups at width <= 32), plus the input (a 1x1 conv with bias when the width
changes), no activation after the sum. Encoder blocks keep the new width in their middle conv,
decoder blocks the old one (512->320->256->64->32->32). Between the bottleneck token stage and the
decoder, ASPP(512): 1x1 and 3x3 dilated 6, 12, 18 branches plus a global-average branch, each conv
(bias) + BN + ReLU, concatenated, 1x1 conv + BN + ReLU. Then U-KAN's decoder (conv block,
bilinear x2, ReLU, add the skip; token block + LayerNorm after the two deepest steps) and a 1x1
head. Parameters at 3 in / 1 class: 34,567,745 (counted by instantiating U-Bench's module).
Needs H, W divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.kan import KANBlock
from ubench.models.ops.light_blocks import TokenizedUNet
from ubench.models.registry import ModelInfo, register_model

EMBED_DIMS = (256, 320, 512)
CONV_DIMS = (EMBED_DIMS[0] // 8, EMBED_DIMS[0] // 4, EMBED_DIMS[0])
TOKEN_DIMS = (EMBED_DIMS[1], EMBED_DIMS[2])
EMA_GROUPS = 32
ASPP_RATES = (6, 12, 18)


class EMA(nn.Module):
    """Efficient multi-scale attention: channels split into ``groups``; per group, a 1x1 conv on
    the row and column averages gives two sigmoid gates (then GroupNorm), a 3x3 conv gives a
    second view, and each view's softmaxed channel means weight the other view into one spatial
    map whose sigmoid rescales the group."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        if channels % groups:
            raise ValueError(f"EMA: {channels} channels do not split into {groups} groups")
        self.groups = groups
        cg = channels // groups
        self.gn = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b * self.groups, c // self.groups, h, w)
        rows, cols = g.mean(3, keepdim=True), g.mean(2, keepdim=True).transpose(2, 3)
        gate_h, gate_w = self.conv1x1(torch.cat([rows, cols], dim=2)).split([h, w], dim=2)
        x1 = self.gn(g * gate_h.sigmoid() * gate_w.transpose(2, 3).sigmoid())
        x2 = self.conv3x3(g)
        w1 = x1.mean((2, 3)).softmax(-1).unsqueeze(1)  # (bG, 1, cg)
        w2 = x2.mean((2, 3)).softmax(-1).unsqueeze(1)
        weights = w1 @ x2.flatten(2) + w2 @ x1.flatten(2)  # (bG, 1, h*w)
        return (g * weights.reshape(-1, 1, h, w).sigmoid()).reshape(b, c, h, w)


class ResidualEMAConv(nn.Module):
    """ResU-KAN's RCA block: 3x3 conv + BN + ReLU, 3x3 conv + BN, EMA, plus the input (1x1 conv
    when the width changes); ``mid`` is the width between the two convs."""

    def __init__(self, in_ch: int, out_ch: int, mid: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, mid, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.ema = EMA(out_ch, EMA_GROUPS if out_ch > 32 else out_ch // 2)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.ema(y) + self.shortcut(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3): 1x1 and dilated 3x3 branches and a global
    average branch (broadcast back to the map), each conv + BN + ReLU; concatenated, 1x1 conv +
    BN + ReLU. The global branch's BatchNorm sees one value per channel and sample, so training
    needs a batch of at least 2 (as in U-Bench)."""

    def __init__(self, in_ch: int, out_ch: int, rates=ASPP_RATES):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(*conv_bn_relu(in_ch, out_ch, 1))]
            + [nn.Sequential(*conv_bn_relu(in_ch, out_ch, 3, dilation=r)) for r in rates]
        )
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(in_ch, out_ch, 1))
        self.project = nn.Sequential(*conv_bn_relu(out_ch * (len(rates) + 2), out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])  # = bilinear resize of a 1x1 map
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


def _enc_conv(in_ch: int, out_ch: int) -> nn.Module:
    return ResidualEMAConv(in_ch, out_ch, mid=out_ch)


def _dec_conv(in_ch: int, out_ch: int, last: bool) -> nn.Module:
    return ResidualEMAConv(in_ch, out_ch, mid=in_ch)


class ResUKAN(TokenizedUNet):
    """U-KAN's tokenized U-Net with residual EMA conv blocks and ASPP after the bottleneck."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__(in_channels, num_classes, CONV_DIMS, TOKEN_DIMS, _enc_conv, _dec_conv, KANBlock)
        t2 = TOKEN_DIMS[1]
        self.token_stages[1] = nn.Sequential(self.token_stages[1], ASPP(t2, t2))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="ResU_KAN",
        ubench_id=102,
        year=2025,
        paper="ResU-KAN: a medical image segmentation model integrating residual convolutional "
        "attention and atrous spatial pyramid pooling",
        deep_supervision=False,
        ref_params_m=34.567745,
        ref_source="U-Bench models/CNN/ResU_KAN/ResU_KAN.py (resu_kan(input_channel=3, num_classes=1): "
        "ResUKAN embed_dims 256/320/512), counted by instantiating it",
        ref_input_size=256,
        size_multiple=32,
        notes="U-Bench's first conv block is hard-wired to 3 input channels (its input_channels "
        "argument is ignored); we take in_channels (same network at 3). The ASPP's global-average "
        "branch has a BatchNorm on 1x1 maps, so training with batch size 1 fails, as in U-Bench. "
        "KAN grids are never updated, as in U-Bench.",
    )
)
def resu_kan(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """ResU-KAN as U-Bench benchmarks it."""
    return ResUKAN(in_channels=in_channels, num_classes=num_classes)
