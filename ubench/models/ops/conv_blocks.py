"""Plain convolution blocks of the classic U-Net family (U-Net, Attention U-Net).

U-Bench builds U-Net and Attention U-Net from the same two blocks (its models/CNN/U_Net and
models/CNN/AttU_Net): a double 3x3 convolution (conv with bias, BatchNorm, ReLU, twice) and an
up-step that is nearest-neighbour upsampling x2 followed by one such conv + BN + ReLU (not a
transposed convolution). They live here so that both models share one definition.

``ResPathUNet`` is the skeleton of MultiResUNet and DC-UNet (U-Bench models/CNN/MultiResUnet and
models/CNN/DC_Unet): the same encoder/decoder, only the blocks, the ResPaths and the head differ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ubench.models.ops.common import SqueezeExcite


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = True,
                 dilation: int = 1) -> list[nn.Module]:
    """One conv -> BatchNorm -> ReLU, 'same' padding; a list so callers can chain several."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation, bias=bias),
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
        return contract(x, self.down, self.pool)


def contract(x: torch.Tensor, blocks, pool: nn.Module) -> list[torch.Tensor]:
    """Run ``blocks`` with ``pool`` between them; every block's output, shallowest first."""
    feats = []
    for i, block in enumerate(blocks):
        x = block(x if i == 0 else pool(x))
        feats.append(x)
    return feats


def up_convs(widths) -> nn.ModuleList:
    """U-Net's up-steps, deepest first: ``UpConv(widths[i], widths[i - 1])``."""
    return nn.ModuleList(UpConv(widths[i], widths[i - 1]) for i in range(len(widths) - 1, 0, -1))


def fuse_convs(widths, block: Callable[[int, int], nn.Module] = DoubleConv) -> nn.ModuleList:
    """U-Net's decoder blocks, deepest first: ``block(widths[i], widths[i - 1])`` on [skip, up]."""
    return nn.ModuleList(block(widths[i], widths[i - 1]) for i in range(len(widths) - 1, 0, -1))


def expand(x: torch.Tensor, skips: list[torch.Tensor], ups, fuses) -> torch.Tensor:
    """U-Net's decoder: per step, upsample, concatenate [skip, upsampled], fuse (pops ``skips``)."""
    for up, fuse in zip(ups, fuses):
        x = fuse(torch.cat([skips.pop(), up(x)], dim=1))
    return x


class ResPathUNet(nn.Module):
    """Blocks down (2x max-pool between them) and up, ResPaths on the skips, transposed-conv x2
    upsampling, concatenation [upsampled, skip]; MultiResUNet and DC-UNet.

    ``block(in_ch, width)`` builds a block with an ``out_channels`` attribute; ``res_path(in_ch,
    width, level)`` the ResPath of skip ``level``; ``head(in_ch)`` the output layer. Modules are
    built in the references' order (block, then its ResPath, level by level; then up, fuse).
    """

    def __init__(self, in_channels: int, widths, block: Callable[[int, int], nn.Module],
                 res_path: Callable[[int, int, int], nn.Module], head: Callable[[int], nn.Module]):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        down, paths, prev = [], [], in_channels
        for i, w in enumerate(widths):
            down.append(block(prev, w))
            prev = down[-1].out_channels
            if i < len(widths) - 1:
                paths.append(res_path(prev, w, i))
        self.down = nn.ModuleList(down)
        self.paths = nn.ModuleList(paths)
        ups, fuses = [], []
        for w in reversed(widths[:-1]):
            ups.append(nn.ConvTranspose2d(prev, w, 2, stride=2))
            fuses.append(block(2 * w, w))
            prev = fuses[-1].out_channels
        self.up = nn.ModuleList(ups)
        self.fuse = nn.ModuleList(fuses)
        self.head = head(prev)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            if i < len(self.paths):
                skips.append(self.paths[i](x))
        for up, fuse in zip(self.up, self.fuse):
            x = fuse(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class ResidualDoubleConv(nn.Module):
    """Two 3x3 conv + BN (ReLU between) added to a 1x1 conv + BN shortcut, ReLU after the sum
    (TransFuse's decoder block); ``se=True`` gates the shortcut with squeeze-excitation (DDANet)."""

    def __init__(self, in_ch: int, out_ch: int, se: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
        )
        gate = [SqueezeExcite(out_ch)] if se else []
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch), *gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def conv_relu_bn(in_ch: int, out_ch: int, kernel_size: int, groups: int = 1) -> nn.Sequential:
    """Conv (bias, 'same' padding) -> ReLU -> BatchNorm: normalised after the activation."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(out_ch),
    )


class FeatureConservation(nn.Module):
    """A large receptive field at full resolution for few parameters: a dense 7x7 conv, a residual
    depthwise 7x7 and a pointwise 1x1, each conv -> ReLU -> BN (DCSAU-Net's PFC stem, which
    ERDUnet reuses)."""

    def __init__(self, in_ch: int, ch: int, kernel_size: int = 7):
        super().__init__()
        self.embed = conv_relu_bn(in_ch, ch, kernel_size)
        self.depthwise = conv_relu_bn(ch, ch, kernel_size, groups=ch)
        self.pointwise = conv_relu_bn(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        return self.pointwise(x + self.depthwise(x))
