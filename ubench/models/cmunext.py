"""CMUNeXt, a light fully convolutional U-Net with large-kernel depthwise mixing.

Paper: Tang, Zhang, Wu, Wang, Zhang, Liu, Zhang, "CMUNeXt: An Efficient Medical Image
Segmentation Network based on Large Kernel and Skip Fusion", ISBI 2024.

Configuration: U-Bench's ``CMUNeXt`` class with its constructor defaults (repo FengheTan9/U-Bench,
models/CNN/CMUNeXt/CMUNeXt.py; models/__init__.py builds the class itself, not the ``cmunext``
helper): widths 16, 32, 128, 160, 256, blocks per stage 1, 1, 1, 3, 1, depthwise kernels
3, 3, 7, 7, 7. A stem 3x3 conv + BN + ReLU, then five stages with 2x2 max-pooling between them;
each stage is ``depth`` ConvMixer-style blocks (residual depthwise conv -> GELU -> BN, then an
inverted 1x1 bottleneck x4 with GELU -> BN after each conv) followed by a 3x3 conv + BN + ReLU
that changes the width. Decoder steps: bilinear upsampling x2 (align_corners=False) + 3x3 conv +
BN + ReLU, concatenation [skip, upsampled], then the "skip-fusion" block (3x3 conv in 2 groups,
1x1 up x4, 1x1 down, each followed by GELU -> BN). A 1x1 conv gives the logits. Parameters at
3 in / 1 class: 3,149,185 (counted by instantiating U-Bench's module; the paper quotes 3.14M).
Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import contract
from ubench.models.registry import ModelInfo, register_model

DIMS = (16, 32, 128, 160, 256)
DEPTHS = (1, 1, 1, 3, 1)
KERNELS = (3, 3, 7, 7, 7)


def conv_gelu_bn(in_ch: int, out_ch: int, kernel_size: int = 1, groups: int = 1) -> list[nn.Module]:
    """Conv -> GELU -> BatchNorm (CMUNeXt normalises after the activation)."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups),
        nn.GELU(),
        nn.BatchNorm2d(out_ch),
    ]


def conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """3x3 conv (bias) -> BatchNorm -> ReLU: the stem and the width-changing step."""
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class MixerBlock(nn.Module):
    """Residual large-kernel depthwise conv for spatial mixing, then a 1x1 bottleneck for channels."""

    def __init__(self, ch: int, kernel_size: int):
        super().__init__()
        self.spatial = nn.Sequential(*conv_gelu_bn(ch, ch, kernel_size, groups=ch))
        self.channel = nn.Sequential(*conv_gelu_bn(ch, 4 * ch), *conv_gelu_bn(4 * ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel(x + self.spatial(x))


class EncoderStage(nn.Sequential):
    """``depth`` mixer blocks at the input width, then a 3x3 conv to the output width."""

    def __init__(self, in_ch: int, out_ch: int, depth: int, kernel_size: int):
        blocks = [MixerBlock(in_ch, kernel_size) for _ in range(depth)]
        super().__init__(*blocks, *conv_bn_relu(in_ch, out_ch))


class SkipFusion(nn.Sequential):
    """Fuse the concatenated skip and decoder maps: grouped 3x3, then 1x1 x4 bottleneck."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            *conv_gelu_bn(in_ch, in_ch, 3, groups=2),
            *conv_gelu_bn(in_ch, 4 * out_ch),
            *conv_gelu_bn(4 * out_ch, out_ch),
        )


class UpStep(nn.Sequential):
    """Bilinear upsampling x2, then 3x3 conv + BN + ReLU to the skip's width."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="bilinear"), *conv_bn_relu(in_ch, out_ch))


class DecoderStep(nn.Module):
    """Upsample the deeper map, concatenate [skip, upsampled], fuse to the skip's width."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = UpStep(in_ch, out_ch)
        self.fuse = SkipFusion(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([skip, self.up(x)], dim=1))


class CMUNeXt(nn.Module):
    """Five encoder stages (four poolings), four up-steps with skip fusion, a 1x1 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, dims=DIMS, depths=DEPTHS, kernels=KERNELS):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, dims[0]))
        ins = (dims[0],) + tuple(dims[:-1])
        self.encoder = nn.ModuleList(
            EncoderStage(i, o, d, k) for i, o, d, k in zip(ins, dims, depths, kernels)
        )
        self.pool = nn.MaxPool2d(2, 2)
        n = len(dims)
        self.decoder = nn.ModuleList(DecoderStep(dims[i], dims[i - 1]) for i in range(n - 1, 0, -1))
        self.head = nn.Conv2d(dims[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = contract(x, self.encoder, self.pool)
        x = skips.pop()
        for step in self.decoder:
            x = step(x, skips.pop())
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CMUNeXt",
        ubench_id=5,
        year=2024,
        paper="CMUNeXt: An Efficient Medical Image Segmentation Network based on Large Kernel "
        "and Skip Fusion",
        deep_supervision=False,
        ref_params_m=3.149185,
        ref_source="U-Bench models/CNN/CMUNeXt/CMUNeXt.py (CMUNeXt(input_channel=3, num_classes=1), "
        "default dims/depths/kernels), counted by instantiating it",
        ref_input_size=256,
        size_multiple=16,
    )
)
def cmunext(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CMUNeXt (base) as U-Bench benchmarks it."""
    return CMUNeXt(in_channels=in_channels, num_classes=num_classes)
