"""A ResNet-34 feature encoder written from scratch (no torchvision, no pretrained weights).

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), table 1: a 7x7/2 conv
stem with BatchNorm and ReLU, a 3x3/2 max-pool, then four stages of BasicBlocks (two 3x3 convs)
with widths 64, 128, 256, 512 and depths 3, 4, 6, 3; a stage that changes stride or width starts
with a 1x1 strided conv + BN shortcut. Convs have no bias. Initialisation follows torchvision's
resnet (Kaiming-normal, fan_out, for convs; BN weight 1, bias 0), which is what U-Bench's UNet++
gets from ``torchvision.models.resnet34(pretrained=False)``. The classifier head is omitted.
"""

from __future__ import annotations

import torch
import torch.nn as nn

RESNET34_DEPTHS = (3, 4, 6, 3)
RESNET_WIDTHS = (64, 128, 256, 512)


def init_resnet_weights(module: nn.Module) -> None:
    """torchvision's ResNet init: He-normal (fan-out) convs, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with an identity (or 1x1 projection) shortcut, ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _stage(in_ch: int, out_ch: int, depth: int, stride: int) -> nn.Sequential:
    blocks = [BasicBlock(in_ch, out_ch, stride)]
    blocks += [BasicBlock(out_ch, out_ch) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class ResNet34Encoder(nn.Module):
    """ResNet-34 trunk that returns the five feature maps a U-shaped decoder needs.

    ``forward(x)`` for x of shape (B, in_channels, H, W) returns
    ``[stem (64, H/2), layer1 (64, H/4), layer2 (128, H/8), layer3 (256, H/16), layer4 (512, H/32)]``.
    """

    out_channels = (64,) + RESNET_WIDTHS

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, prev = [], 64
        for i, (width, depth) in enumerate(zip(RESNET_WIDTHS, RESNET34_DEPTHS)):
            stages.append(_stage(prev, width, depth, stride=1 if i == 0 else 2))
            prev = width
        self.layers = nn.ModuleList(stages)
        init_resnet_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        x = self.pool(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats
