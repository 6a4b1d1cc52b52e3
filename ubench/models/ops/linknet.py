"""The LinkNet / CE-Net blocks shared by CE-Net, TA-Net and FAT-Net.

- ``LinkNetUp`` (Chaurasia and Culurciello, "LinkNet", VCIP 2017): a decoder block that doubles
  the size: 1x1 conv to in/4, 3x3 transposed conv (stride 2, output_padding 1), 1x1 conv to
  ``out_ch``; each followed by BatchNorm and ReLU; convs with bias, as the references.
- ``DenseAtrousContext`` and ``PoolingPyramid`` (Gu et al., "CE-Net: Context Encoder Network for
  2D Medical Image Segmentation", TMI 2019): the dense atrous convolution block (four cascaded
  branches of receptive field 3, 7, 9, 19 added to the input, the 1x1 ``mix`` shared by the
  three deeper ones, biases zero-initialised) and the residual multi-kernel pooling (one-channel
  summaries of the map max-pooled at 2, 3, 5, 6, upsampled and stacked in front of it).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import conv_bn_relu

PYRAMID_POOLS = (2, 3, 5, 6)


class LinkNetUp(nn.Sequential):
    """x2 upsampling: 1x1 squeeze to a quarter, 3x3 transposed conv, 1x1 expand; BN + ReLU after each."""

    def __init__(self, in_ch: int, out_ch: int):
        mid = in_ch // 4
        super().__init__(
            *conv_bn_relu(in_ch, mid, kernel_size=1),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            *conv_bn_relu(mid, out_ch, kernel_size=1),
        )


class DenseAtrousContext(nn.Module):
    """Four cascaded branches with receptive fields 3, 7, 9 and 19 pixels, rectified and added to
    the input in the reference's order; the 1x1 ``mix`` conv is shared by the three deeper ones."""

    def __init__(self, channels: int):
        super().__init__()
        self.dil1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.dil3 = nn.Conv2d(channels, channels, 3, padding=3, dilation=3)
        self.dil5 = nn.Conv2d(channels, channels, 3, padding=5, dilation=5)
        self.mix = nn.Conv2d(channels, channels, 1)
        for conv in (self.dil1, self.dil3, self.dil5, self.mix):
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.dil1(x)
        a3 = self.dil3(a)
        out = x + F.relu(a)
        for branch in (self.dil3(x), a3, self.dil5(a3)):
            out = out + F.relu(self.mix(branch))
        return out


class PoolingPyramid(nn.Module):
    """One-channel summaries of the map max-pooled at several scales, upsampled and stacked in
    front of it (``len(pools)`` extra channels)."""

    def __init__(self, channels: int, pools=PYRAMID_POOLS):
        super().__init__()
        self.pools = tuple(pools)
        self.summary = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        maps = [
            F.interpolate(self.summary(F.max_pool2d(x, k, k)), size=size, mode="bilinear", align_corners=False)
            for k in self.pools
        ]
        return torch.cat(maps + [x], dim=1)
