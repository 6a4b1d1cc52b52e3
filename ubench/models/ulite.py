"""U-Lite, a sub-million-parameter U-Net built from axial depthwise convolutions.

Paper: Dinh, Nguyen, Tran, Nguyen, Le, Nguyen, Dinh, "1M parameters are enough? A lightweight
CNN-based model for medical image segmentation", APSIPA ASC 2023.

Configuration: U-Bench's ``ULite(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/CNN/ULite/ULite.py): a 7x7 stem conv to 16 channels; five encoder blocks 16->32->64->128->
256->512, each an axial depthwise mixer (x + a 7x1 and a 1x7 depthwise conv), BatchNorm (that
output is the skip), a 1x1 conv to the next width, 2x2 max-pooling and GELU; a bottleneck that
projects 512 -> 128, concatenates it with three axial 3x3 depthwise mixers of dilation 1, 2, 3,
then BN, 1x1 back to 512 and GELU; five decoder blocks, each nearest x2 upsampling, concatenation
[upsampled, skip], 1x1 conv, BN, axial 7x7 mixer, 1x1 conv, GELU; a 1x1 head. PyTorch default
initialisation. Parameters at 3 in / 1 class: 878,417 (counted by instantiating U-Bench's
module; the paper quotes 878K). Needs H, W divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.registry import ModelInfo, register_model

WIDTHS = (16, 32, 64, 128, 256, 512)
MIXER_KERNEL = 7
BOTTLENECK_DILATIONS = (1, 2, 3)


class AxialDepthwise(nn.Module):
    """x + depthwise (k x 1) conv + depthwise (1 x k) conv: a cheap large receptive field."""

    def __init__(self, dim: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.dw_h = nn.Conv2d(dim, dim, (kernel_size, 1), padding=(pad, 0), dilation=dilation, groups=dim)
        self.dw_w = nn.Conv2d(dim, dim, (1, kernel_size), padding=(0, pad), dilation=dilation, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dw_h(x) + self.dw_w(x)


class EncoderBlock(nn.Module):
    """Axial mixer + BN (kept as the skip), then 1x1 to the next width, max-pool, GELU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.mixer = AxialDepthwise(in_ch, MIXER_KERNEL)
        self.bn = nn.BatchNorm2d(in_ch)
        self.proj = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.bn(self.mixer(x))
        return F.gelu(F.max_pool2d(self.proj(skip), 2)), skip


class DecoderBlock(nn.Module):
    """Nearest x2, concatenate [x, skip], 1x1 + BN, axial mixer, 1x1, GELU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.fuse = nn.Conv2d(in_ch + out_ch, out_ch, 1)
        self.bn = nn.BatchNorm2d(out_ch)
        self.mixer = AxialDepthwise(out_ch, MIXER_KERNEL)
        self.proj = nn.Conv2d(out_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip], dim=1)
        return F.gelu(self.proj(self.mixer(self.bn(self.fuse(x)))))


class Bottleneck(nn.Module):
    """Project to a quarter, stack it with three dilated axial mixers of it, project back."""

    def __init__(self, dim: int):
        super().__init__()
        q = dim // 4
        self.reduce = nn.Conv2d(dim, q, 1)
        self.mixers = nn.ModuleList(AxialDepthwise(q, 3, d) for d in BOTTLENECK_DILATIONS)
        self.bn = nn.BatchNorm2d(4 * q)
        self.expand = nn.Conv2d(4 * q, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        x = torch.cat([x] + [m(x) for m in self.mixers], dim=1)
        return F.gelu(self.expand(self.bn(x)))


class ULite(nn.Module):
    """Stem, five encoder blocks, bottleneck, five decoder blocks, 1x1 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 7, padding=3)
        pairs = list(zip(widths[:-1], widths[1:]))
        self.encoder = nn.ModuleList(EncoderBlock(i, o) for i, o in pairs)
        self.bottleneck = Bottleneck(widths[-1])
        self.decoder = nn.ModuleList(DecoderBlock(o, i) for i, o in reversed(pairs))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for block in self.encoder:
            x, skip = block(x)
            skips.append(skip)
        x = self.bottleneck(x)
        for block in self.decoder:
            x = block(x, skips.pop())
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="ULite",
        ubench_id=51,
        year=2023,
        paper="1M parameters are enough? A lightweight CNN-based model for medical image segmentation",
        deep_supervision=False,
        ref_params_m=0.878417,
        ref_source="U-Bench models/CNN/ULite/ULite.py (ULite(input_channel=3, num_classes=1)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=32,
    )
)
def ulite(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """U-Lite as U-Bench benchmarks it."""
    return ULite(in_channels=in_channels, num_classes=num_classes)
