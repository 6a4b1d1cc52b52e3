"""AC-MambaSeg: a U-Net of residual VSS blocks, selective-kernel convolutions, CBAM skips and
attention-gated decoding.

Paper: Nguyen, Pham, Tran, "AC-MambaSeg: An adaptive convolution and Mamba-based architecture for
enhanced skin lesion segmentation", arXiv 2405.03011, 2024 (code: github.com/vietthanh2710/
AC-MambaSeg).

Configuration: U-Bench's ``AC_MambaSeg`` (repo FengheTan9/U-Bench, models/Mamba/AC_MambaSeg/
AC_MambaSeg.py; id 88; models/__init__.py maps it to ``ac_mambaseg(num_classes, input_channel)``,
which builds ``AC_MambaSeg(input_channel, num_classes)``: no other option, one output, no
pretrained weights):
- stem: 1x1 conv (bias) to 16 channels, then a selective-kernel conv (two depth-wise 7x7 branches
  of dilation 1 and 2, each + BN + ReLU; the branches' sum average-pooled, squeezed to 32 channels
  by a 1x1 conv + BN + ReLU, one 1x1 conv (bias) per branch giving its logits, softmax across the
  branches, weighted sum);
- encoder, five stages 16 -> 32 -> 64 -> 128 -> 256 -> 512: a residual Mamba block at the stage's
  input width, a 3x3 conv (bias) + BN + ReLU to the output width (the skip), 2x2 max-pooling;
- residual Mamba block: 3x3 depth-wise conv (bias), VMamba's VSS block (LayerNorm eps 1e-6, SS2D
  with d_state 16, expand 2, a 3x3 depth-wise conv; ``ops/vss.py``), InstanceNorm (affine) and
  LeakyReLU(0.01), plus the block's input times a learned scalar (initialised to 1);
- skips: CBAM on each (channel gate: a shared MLP C -> C/16 -> C with biases on the average- and
  the max-pooled vectors, summed; then spatial gate: 7x7 conv (no bias) + BN over [channel max,
  channel mean]);
- bottleneck at stride 32: SKNet's residual unit, 1x1 conv + BN + ReLU, a selective-kernel conv
  (two 3x3 convs in 16 groups, dilation 1 and 2, squeezed to 256 channels), 1x1 conv + BN, plus
  the input (equal widths: identity shortcut), ReLU;
- decoder, five steps 512 -> 256 -> 128 -> 64 -> 32 -> 16: nearest x2 upsampling, an additive
  attention gate on the skip (inner width half the skip's; ``ops/cascade.py`` AttentionGate)
  driven by the upsampled map, [upsampled, gated skip] concatenated, 3x3 conv (bias) + BN + ReLU,
  a residual Mamba block at the output width;
- head: 1x1 conv to the classes.
PyTorch's default initialisation everywhere (SS2D keeps Mamba's dt / A / D initialisation).
Inputs: H and W multiples of 32 (five poolings, concatenation at every level). Parameters at 3 in
/ 1 class: 7,994,364, all trainable (counted by instantiating U-Bench's module).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.cascade import AttentionGate
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.vss import VSSBlock
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (16, 32, 64, 128, 256, 512)  # stem, then the five encoder stages (the last at stride 16)
STRIDE = 2 ** (len(WIDTHS) - 1)
SK_BRANCHES = 2  # selective-kernel branches, dilations 1 .. SK_BRANCHES
SK_MIN_WIDTH = 32  # SKNet's L: the squeezed descriptor is never narrower
SK_GROUPS = 16
STEM_SK = dict(kernel_size=7, reduction=4)  # 16 groups on 16 channels: depth-wise
BOTTLENECK_SK = dict(kernel_size=3, reduction=2)
CBAM_REDUCTION = 16
SPATIAL_BN_MOMENTUM = 0.01  # CBAM's spatial-gate BatchNorm (torch's default is 0.1)


class SelectiveKernel(nn.Module):
    """Selective-kernel convolution (Li et al., "Selective Kernel Networks", CVPR 2019): parallel
    dilated grouped convs whose outputs are mixed per channel by softmax weights (across the
    branches) computed from a squeezed global descriptor of their sum."""

    def __init__(self, channels: int, kernel_size: int, reduction: int, groups: int = SK_GROUPS,
                 branches: int = SK_BRANCHES, min_width: int = SK_MIN_WIDTH):
        super().__init__()
        squeezed = max(channels // reduction, min_width)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size, padding=d * (kernel_size // 2), dilation=d,
                          groups=groups, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for d in range(1, branches + 1)
        )
        self.squeeze = nn.Sequential(
            nn.Conv2d(channels, squeezed, 1, bias=False), nn.BatchNorm2d(squeezed), nn.ReLU(inplace=True)
        )
        self.select = nn.ModuleList(nn.Conv2d(squeezed, channels, 1) for _ in range(branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([branch(x) for branch in self.branches], dim=1)  # (B, M, C, H, W)
        z = self.squeeze(feats.sum(dim=1).mean(dim=(2, 3), keepdim=True))
        weights = torch.softmax(torch.stack([sel(z) for sel in self.select], dim=1), dim=1)
        return (feats * weights).sum(dim=1)


class SelectiveKernelUnit(nn.Module):
    """SKNet's residual unit at constant width (the bottleneck): 1x1 conv + BN + ReLU, selective-
    kernel conv, 1x1 conv + BN, plus the input, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        self.sk = SelectiveKernel(channels, **BOTTLENECK_SK)
        self.expand = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.expand(self.sk(self.reduce(x))) + x)


class ResidualMamba(nn.Module):
    """Depth-wise 3x3 conv, VSS block (channels-last), InstanceNorm + LeakyReLU, plus the input
    scaled by a learned scalar: the network's only global (state-space) mixing."""

    def __init__(self, channels: int):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        self.vss = VSSBlock(channels)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.vss(self.dwconv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.leaky_relu(self.norm(y), 0.01) + self.scale * x


class ChannelGate(nn.Module):
    """CBAM channel gate: sigmoid of a shared MLP (with biases) on the average- and the
    max-pooled channel vectors, summed; multiplied into the map."""

    def __init__(self, channels: int, reduction: int = CBAM_REDUCTION):
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial gate: sigmoid of a 7x7 conv (no bias) + BN over [channel max, channel mean];
    multiplied into the map."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=SPATIAL_BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Sequential):
    """Convolutional block attention (Woo et al., ECCV 2018): channel gate, then spatial gate."""

    def __init__(self, channels: int):
        super().__init__(ChannelGate(channels), SpatialGate())


class EncoderStage(nn.Module):
    """Residual Mamba block at the input width, then 3x3 conv + BN + ReLU to the output width;
    returns the pre-pooling map (the skip)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        # the conv is registered first, as in the reference, so state_dicts align entry by entry
        self.conv = nn.Sequential(*conv_bn_relu(in_ch, out_ch))
        self.mamba = ResidualMamba(in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.mamba(x))


class DecoderStage(nn.Module):
    """Nearest x2 upsampling, attention-gated skip, [upsampled, gated skip] -> 3x3 conv + BN +
    ReLU, residual Mamba block."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.gate = AttentionGate(in_ch, skip_ch, skip_ch // 2)
        self.conv = nn.Sequential(*conv_bn_relu(in_ch + skip_ch, out_ch))
        self.mamba = ResidualMamba(out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.mamba(self.conv(torch.cat([x, self.gate(x, skip)], dim=1)))


class ACMambaSeg(nn.Module):
    """Stem -> five encoder stages (CBAM on each skip) -> selective-kernel bottleneck -> five
    gated decoder steps -> 1x1 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, WIDTHS[0], 1), SelectiveKernel(WIDTHS[0], **STEM_SK))
        self.encoder = nn.ModuleList(EncoderStage(i, o) for i, o in zip(WIDTHS[:-1], WIDTHS[1:]))
        self.skip_attention = nn.ModuleList(CBAM(w) for w in WIDTHS[1:])
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = SelectiveKernelUnit(WIDTHS[-1])
        # deepest first: the bottleneck (512) meets the 512-channel skip, ... down to 32 -> 16
        self.decoder = nn.ModuleList(
            DecoderStage(WIDTHS[i + 1], WIDTHS[i + 1], WIDTHS[i]) for i in reversed(range(len(WIDTHS) - 1))
        )
        self.head = nn.Conv2d(WIDTHS[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for stage, attention in zip(self.encoder, self.skip_attention):
            skip = stage(x)
            skips.append(attention(skip))
            x = self.pool(skip)
        x = self.bottleneck(x)
        for stage in self.decoder:
            x = stage(x, skips.pop())
        return self.head(x)


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="AC_MambaSeg",
        ubench_id=88,
        year=2024,
        paper="AC-MambaSeg: An adaptive convolution and Mamba-based architecture for enhanced skin "
        "lesion segmentation",
        deep_supervision=False,
        ref_params_m=7.994364,
        ref_source="U-Bench models/Mamba/AC_MambaSeg/AC_MambaSeg.py (ac_mambaseg(num_classes=1, "
        "input_channel=3) -> AC_MambaSeg(input_channel=3, num_classes=1)), counted by instantiating "
        "it with mamba_ssm's scan stubbed",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="No pretrained weights: U-Bench builds the network untrained (PyTorch's default "
        "init, no init pass). All 7,994,364 parameters are used and trainable. In U-Bench the "
        "selective-kernel convs take a `stride` (always 1) and their 'same' padding would reject any "
        "other; it is not an option here. Quirks of U-Bench's code kept: the encoder's Mamba block "
        "runs at the stage's INPUT width, before the conv that widens it (so the full-resolution "
        "block is 16 channels wide); the VSS block's output passes InstanceNorm + LeakyReLU before "
        "the scaled residual is added; CBAM's spatial gate pools [max, mean] in that order and its "
        "BatchNorm has momentum 0.01; the decoder concatenates [upsampled, gated skip]. The "
        "selective-kernel convs put a BatchNorm on the globally pooled (B, C, 1, 1) descriptor, so "
        "training needs a batch of at least 2 (as in U-Bench). The attention gate is "
        "ops/cascade.AttentionGate (Attention U-Net's gate, the same layers as U-Bench's "
        "Attention_block). Drop-path and dropout are 0 in U-Bench's build and absent here.",
    )
)
def ac_mambaseg(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """AC-MambaSeg as U-Bench benchmarks it (widths 16-512, VSS blocks at every level)."""
    return ACMambaSeg(in_channels=in_channels, num_classes=num_classes)
