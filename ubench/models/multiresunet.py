"""MultiResUNet: multi-resolution blocks in place of double convs, residual paths on the skips.

Paper: Ibtehaz, Rahman, "MultiResUNet: Rethinking the U-Net Architecture for Multimodal
Biomedical Image Segmentation", Neural Networks 121 (2020).

Configuration: U-Bench's ``MultiResUnet`` (repo FengheTan9/U-Bench, models/CNN/MultiResUnet/
MultiResUnet.py, ``multiresunet(3, 1)``, alpha = 1.67), a PyTorch port of the paper's Keras
model. A MultiRes block for U-Net width ``f`` (W = 1.67 f) chains three 3x3 conv + BN + ReLU
with int(0.167 W), int(0.333 W), int(0.5 W) filters (the 3x3, '5x5' and '7x7' receptive
fields), concatenates the three, applies BN, adds a 1x1 conv + BN shortcut, then BN + ReLU.
Widths f = 32, 64, 128, 256, 512 (outputs 51, 105, 212, 426, 853 channels), 2x2 max-pooling.
Skip i passes through a ResPath of 4, 3, 2, 1 units (to f channels); a unit is
x -> relu(bn(conv3x3 + BN + ReLU (x))) + conv1x1 + BN (x), then the SAME bn again and ReLU (U-Bench
applies each unit's outer BatchNorm twice; we keep that). Decoder: 2x2 transposed conv (bias) to
f channels, concatenation [upsampled, skip], MultiRes block. Head: 1x1 conv (bias) + BatchNorm,
no activation (a BN on the logits, as in U-Bench). Convs have bias. PyTorch default init.
No deep supervision. Parameters at 3 in / 1 class: 7,251,322, counted by building U-Bench's
module. Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import ResPathUNet, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

BASE_WIDTHS = (32, 64, 128, 256, 512)
ALPHA = 1.67
RESPATH_LENGTHS = (4, 3, 2, 1)


def multires_split(width: int, alpha: float = ALPHA) -> tuple[int, int, int]:
    """Filters of the three chained convs of a MultiRes block for U-Net width ``width``."""
    w = width * alpha
    return int(w * 0.167), int(w * 0.333), int(w * 0.5)


def conv_bn(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    """Conv (bias, 'same' padding) + BatchNorm, no activation: the shortcut / head unit."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2), nn.BatchNorm2d(out_ch))


class MultiResBlock(nn.Module):
    """Three chained 3x3 convs whose outputs are concatenated, plus a 1x1 residual shortcut."""

    def __init__(self, in_ch: int, width: int):
        super().__init__()
        c1, c2, c3 = multires_split(width)
        self.out_channels = c1 + c2 + c3
        self.shortcut = conv_bn(in_ch, self.out_channels, 1)
        self.convs = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(i, o)) for i, o in zip((in_ch, c1, c2), (c1, c2, c3))
        )
        self.bn_cat = nn.BatchNorm2d(self.out_channels)
        self.bn_out = nn.BatchNorm2d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        parts, y = [], x
        for conv in self.convs:
            y = conv(y)
            parts.append(y)
        return F.relu(self.bn_out(self.bn_cat(torch.cat(parts, dim=1)) + shortcut))


class ResPathUnit(nn.Module):
    """3x3 conv path plus 1x1 shortcut; one outer BatchNorm used before and after the sum."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.shortcut = conv_bn(in_ch, out_ch, 1)
        self.conv = nn.Sequential(*conv_bn_relu(in_ch, out_ch))
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        return F.relu(self.bn(F.relu(self.bn(self.conv(x))) + shortcut))


class ResPath(nn.Sequential):
    """A chain of ResPath units that narrows the semantic gap of one skip connection."""

    def __init__(self, in_ch: int, out_ch: int, length: int):
        super().__init__(*(ResPathUnit(in_ch if i == 0 else out_ch, out_ch) for i in range(length)))


class MultiResUNet(ResPathUNet):
    """MultiRes blocks down and up, ResPaths on the skips, transposed-conv upsampling."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=BASE_WIDTHS):
        super().__init__(
            in_channels,
            widths,
            block=MultiResBlock,
            res_path=lambda cin, w, level: ResPath(cin, w, RESPATH_LENGTHS[level]),
            head=lambda cin: conv_bn(cin, num_classes, 1),
        )


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MultiResUNet",
        ubench_id=16,
        year=2020,
        paper="MultiResUNet: Rethinking the U-Net Architecture for Multimodal Biomedical Image "
        "Segmentation",
        deep_supervision=False,
        ref_params_m=7.251322,
        ref_source="U-Bench models/CNN/MultiResUnet/MultiResUnet.py (multiresunet(3, 1), "
        "alpha=1.67), counted by building the module",
        ref_input_size=256,
        size_multiple=16,
        notes="U-Bench port: ResPath units apply their outer BatchNorm twice; BN on the logits",
    )
)
def multiresunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MultiResUNet as U-Bench benchmarks it (alpha 1.67, widths 32..512)."""
    return MultiResUNet(in_channels=in_channels, num_classes=num_classes)
