"""Plain convolution blocks of the classic U-Net family (U-Net, Attention U-Net).

U-Bench builds U-Net and Attention U-Net from the same two blocks (its models/CNN/U_Net and
models/CNN/AttU_Net): a double 3x3 convolution (conv with bias, BatchNorm, ReLU, twice) and an
up-step that is nearest-neighbour upsampling x2 followed by one such conv + BN + ReLU (not a
transposed convolution). They live here so that both models share one definition.
"""

from __future__ import annotations

import torch.nn as nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = True) -> list[nn.Module]:
    """One conv -> BatchNorm -> ReLU, 'same' padding; a list so callers can chain several."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


class DoubleConv(nn.Sequential):
    """(3x3 conv + BN + ReLU) x 2: one encoder or decoder stage of U-Net."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(*conv_bn_relu(in_ch, out_ch), *conv_bn_relu(out_ch, out_ch))


class UpConv(nn.Sequential):
    """Nearest upsampling x2, then 3x3 conv + BN + ReLU that halves the channels."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), *conv_bn_relu(in_ch, out_ch))


class PlainEncoder(nn.Module):
    """U-Net's contracting path: a DoubleConv per width, 2x2 max-pooling between them.

    ``forward`` returns the feature map of every stage, shallowest first (the skips, with the
    bottleneck last), so U-Net and its gated variants share one encoder definition.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)
        ins = (in_channels,) + tuple(widths[:-1])
        self.down = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, widths))

    def forward(self, x):
        feats = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats
