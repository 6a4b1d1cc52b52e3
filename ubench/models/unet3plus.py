"""UNet 3+: every decoder stage sees every encoder scale (full-scale skip connections).

Paper: Huang, Lin, Tong, Hu, Zhang, Iwamoto, Han, Chen, Wu, "UNet 3+: A Full-Scale Connected UNet
for Medical Image Segmentation", ICASSP 2020.

Configuration: U-Bench's ``UNet3plus`` (repo FengheTan9/U-Bench, models/CNN/UNet3plus/
UNet3plus.py, ``UNet3plus(input_channel=3, num_classes=1)``), which is the paper's plain UNet 3+
with neither deep supervision nor the classification-guided module (U-Bench's class has no such
heads and its models/model_id.json sets no ``deeps_supervision`` for it): one output tensor.
Encoder: U-Net's (two 3x3 conv (bias) + BN + ReLU per stage, widths 64..1024, 2x2 max-pooling).
Decoder stages hd4..hd1 (at H/8..H/1): each gathers five 64-channel maps, one per scale, ordered
shallow to deep: shallower encoder maps are max-pooled down (kernel = stride = 2^k, ceil mode),
the same-scale encoder map is used as is, deeper maps (the bottleneck, or a 320-channel decoder
stage) are bilinearly upsampled (align_corners=False); each goes through 3x3 conv (bias) + BN +
ReLU to 64 channels. The 5 x 64 = 320 channels are fused by one 3x3 conv (bias) + BN + ReLU, and
a 3x3 conv (bias) on hd1 gives the logits. PyTorch default initialisation (U-Bench's init call is
commented out). Parameters at 3 in / 1 class: 26,971,777, counted by building U-Bench's module.
Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import PlainEncoder, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 128, 256, 512, 1024)
CAT_CHANNELS = 64  # width of each of the five maps a decoder stage concatenates


class ScaleBridge(nn.Module):
    """Bring one feature map to a decoder stage's resolution, then 3x3 conv + BN + ReLU to 64 ch.

    ``shift`` > 0: the source is 2**shift times finer (max-pool); < 0: coarser (bilinear
    upsampling); 0: same scale.
    """

    def __init__(self, in_ch: int, shift: int):
        super().__init__()
        self.shift = shift
        self.conv = nn.Sequential(*conv_bn_relu(in_ch, CAT_CHANNELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift > 0:
            k = 2**self.shift
            x = F.max_pool2d(x, k, k, ceil_mode=True)
        elif self.shift < 0:
            x = F.interpolate(x, scale_factor=2 ** (-self.shift), mode="bilinear", align_corners=False)
        return self.conv(x)


class FullScaleStage(nn.Module):
    """One UNet 3+ decoder stage: five bridged maps concatenated, fused by 3x3 conv + BN + ReLU."""

    def __init__(self, level: int, source_channels: list[int]):
        super().__init__()
        self.bridges = nn.ModuleList(ScaleBridge(c, level - i) for i, c in enumerate(source_channels))
        width = CAT_CHANNELS * len(source_channels)
        self.fuse = nn.Sequential(*conv_bn_relu(width, width))

    def forward(self, sources: list[torch.Tensor]) -> torch.Tensor:
        return self.fuse(torch.cat([b(s) for b, s in zip(self.bridges, sources)], dim=1))


class UNet3Plus(nn.Module):
    """U-Net encoder + four full-scale decoder stages + a 3x3 logit conv."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        self.encoder = PlainEncoder(in_channels, widths)
        up_width = CAT_CHANNELS * len(widths)
        bottom = len(widths) - 1
        stages = []
        for level in range(bottom - 1, -1, -1):  # deepest decoder stage first
            # rows 0..level come from the encoder; rows above are decoder stages (bottom: encoder)
            chans = [widths[i] if i <= level or i == bottom else up_width for i in range(len(widths))]
            stages.append(FullScaleStage(level, chans))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Conv2d(up_width, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.encoder(x)  # rows[i] at H / 2**i, the bottleneck last
        decoded: list[torch.Tensor] = []  # decoder stages, deepest first
        for k, stage in enumerate(self.stages):
            level = len(rows) - 2 - k
            # shallow to deep: encoder rows 0..level, decoder rows level+1.., the bottleneck
            sources = rows[: level + 1] + decoded[::-1] + rows[-1:]
            decoded.append(stage(sources))
        return self.head(decoded[-1])


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="UNet3plus",
        ubench_id=6,
        year=2020,
        paper="UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=26.971777,
        ref_source="U-Bench models/CNN/UNet3plus/UNet3plus.py (UNet3plus(input_channel=3, "
        "num_classes=1)), counted by building the module",
        ref_input_size=256,
        size_multiple=16,
        notes="as U-Bench benchmarks it: no deep supervision, no classification-guided module",
    )
)
def unet3plus(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UNet 3+ as U-Bench benchmarks it (single output, no CGM)."""
    return UNet3Plus(in_channels=in_channels, num_classes=num_classes)
