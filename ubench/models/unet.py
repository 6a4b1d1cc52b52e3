"""U-Net, the baseline every other variant is compared against.

Paper: Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015.

Configuration: U-Bench's ``U_Net`` (repo FengheTan9/U-Bench, models/CNN/U_Net/U_Net.py), which is
the common 'padded' re-implementation rather than the paper's valid-convolution original: five
stages of two 3x3 conv (bias) + BatchNorm + ReLU with widths 64, 128, 256, 512, 1024 and 2x2
max-pooling between them; each decoder step is nearest upsampling x2 + 3x3 conv + BN + ReLU that
halves the width, concatenation [skip, upsampled], then a double conv; a 1x1 conv gives the logits.
Output size equals input size for H, W divisible by 16. Parameters at 3 in / 1 class: 34,527,041,
counted layer by layer from that file (U-Bench quotes ~34.5M).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import PlainEncoder, expand, fuse_convs, up_convs
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 128, 256, 512, 1024)


class UNet(nn.Module):
    """Four poolings down, four upsamplings up, skip connections by concatenation."""

    stride = 2 ** (len(WIDTHS) - 1)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        self.encoder = PlainEncoder(in_channels, widths)
        self.up = up_convs(widths)
        self.fuse = fuse_convs(widths)
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encoder(x)
        return self.head(expand(skips.pop(), skips, self.up, self.fuse))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="U_Net",
        ubench_id=1,
        year=2015,
        paper="U-Net: Convolutional Networks for Biomedical Image Segmentation",
        deep_supervision=False,
        ref_params_m=34.527041,
        ref_source="U-Bench models/CNN/U_Net/U_Net.py (U_Net(input_channel=3, num_classes=1)), "
        "counted layer by layer",
        ref_input_size=256,
        size_multiple=UNet.stride,
    )
)
def unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """U-Net as U-Bench benchmarks it (widths 64..1024, BatchNorm, upsample + conv)."""
    return UNet(in_channels=in_channels, num_classes=num_classes)
