"""R2U-Net: U-Net whose stages are recurrent residual convolution blocks.

Paper: Alom, Hasan, Yakopcic, Taha, Asari, "Recurrent Residual Convolutional Neural Network based
on U-Net (R2U-Net) for Medical Image Segmentation", arXiv 1802.06955 (2018).

Configuration: U-Bench's ``R2U_Net`` (repo FengheTan9/U-Bench, models/CNN/R2U_Net/R2U_Net.py,
built by ``r2unet(input_channel, num_classes)`` with recurrence t = 2). Same layout as U-Net
(widths 64..1024, 2x2 max-pooling, nearest upsampling x2 + 3x3 conv + BN + ReLU, concatenation
[skip, upsampled], 1x1 head), but every DoubleConv is an RRCNN block: a 1x1 conv (bias) maps the
input to the stage width, then two recurrent conv units follow and their output is added to the
1x1 result. A recurrent unit owns ONE 3x3 conv (bias) + BN + ReLU ``f`` and, with t = 2, computes
y = f(x); y = f(x + y); y = f(x + y) (three applications of shared weights). U-Bench leaves
PyTorch's default initialisation (its ``init_weights`` is never called). No deep supervision.
Parameters at 3 in / 1 class: 39,091,393, counted by building U-Bench's module. Needs H, W
divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import contract, conv_bn_relu, expand, fuse_convs, up_convs
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 128, 256, 512, 1024)
RECURRENCE = 2


class RecurrentConv(nn.Module):
    """One 3x3 conv + BN + ReLU applied 1 + t times, re-injecting the block input each time."""

    def __init__(self, channels: int, t: int = RECURRENCE):
        super().__init__()
        self.t = t
        self.conv = nn.Sequential(*conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        for _ in range(self.t):
            y = self.conv(x + y)
        return y


class RRCNNBlock(nn.Module):
    """1x1 projection to the stage width, two recurrent units, residual sum with the projection."""

    def __init__(self, in_ch: int, out_ch: int, t: int = RECURRENCE):
        super().__init__()
        self.project = nn.Conv2d(in_ch, out_ch, 1)
        self.recurrent = nn.Sequential(RecurrentConv(out_ch, t), RecurrentConv(out_ch, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        return x + self.recurrent(x)


class R2UNet(nn.Module):
    """U-Net with RRCNN blocks in place of the double convolutions, encoder and decoder alike."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)
        ins = (in_channels,) + tuple(widths[:-1])
        self.down = nn.ModuleList(RRCNNBlock(i, o) for i, o in zip(ins, widths))
        self.up = up_convs(widths)
        self.fuse = fuse_convs(widths, RRCNNBlock)
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = contract(x, self.down, self.pool)
        return self.head(expand(skips.pop(), skips, self.up, self.fuse))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="R2U_Net",
        ubench_id=17,
        year=2018,
        paper="Recurrent Residual Convolutional Neural Network based on U-Net (R2U-Net) for "
        "Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=39.091393,
        ref_source="U-Bench models/CNN/R2U_Net/R2U_Net.py (r2unet(3, 1), t=2), counted by "
        "building the module",
        ref_input_size=256,
        size_multiple=16,
        notes="recurrence t=2: each recurrent unit applies its shared conv three times",
    )
)
def r2unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """R2U-Net as U-Bench benchmarks it (widths 64..1024, t = 2)."""
    return R2UNet(in_channels=in_channels, num_classes=num_classes)
