"""CMU-Net: U-Net with a ConvMixer bottleneck and multi-scale attention gates on the skips.

Paper: Tang, He, Yuan, Zhang, Zhou, Wang, "CMU-Net: A Strong ConvMixer-based Medical Ultrasound
Image Segmentation Network", IEEE ISBI 2023 (arXiv 2210.13012).

Configuration: U-Bench's ``CMU_Net`` (repo FengheTan9/U-Bench, models/CNN/CMU_Net/CMU_Net.py,
``CMU_Net(input_channel=3, num_classes=1)``, l = 7 ConvMixer layers, kernel k = 7). Encoder and
decoder are U-Net's (double 3x3 conv (bias) + BN + ReLU, widths 64..1024, 2x2 max-pooling;
nearest upsampling x2 + 3x3 conv + BN + ReLU, concatenation [skip, upsampled]; 1x1 head). The
1024-channel bottleneck then passes 7 ConvMixer layers: x + BN(GELU(depthwise 7x7 conv (bias) x)),
then BN(GELU(1x1 conv (bias))). Each skip passes an MSAG: 1x1 conv + BN, 3x3 conv + BN and 3x3
dilation-2 conv + BN (all with bias) in parallel, concatenated, ReLU, 1x1 conv + BN + sigmoid
gives a per-pixel, per-channel gate g, and the skip becomes x + x * g. PyTorch default init. No
deep supervision. Parameters at 3 in / 1 class: 49,932,353, counted by building U-Bench's module.
Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import PlainEncoder, expand, fuse_convs, up_convs
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 128, 256, 512, 1024)
MIXER_DEPTH = 7
MIXER_KERNEL = 7


class ConvMixerLayer(nn.Module):
    """Residual depthwise k x k conv (spatial mixing), then a 1x1 conv (channel mixing)."""

    def __init__(self, dim: int, kernel_size: int = MIXER_KERNEL):
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, groups=dim, padding=kernel_size // 2), nn.GELU(), nn.BatchNorm2d(dim)
        )
        self.channel = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel(x + self.spatial(x))


class MultiScaleAttentionGate(nn.Module):
    """MSAG: a sigmoid gate voted from 1x1, 3x3 and dilated 3x3 views; the skip is amplified by it."""

    def __init__(self, channels: int):
        super().__init__()

        def conv_bn(k: int, dilation: int = 1) -> nn.Sequential:
            pad = dilation * (k // 2)
            conv = nn.Conv2d(channels, channels, k, padding=pad, dilation=dilation)
            return nn.Sequential(conv, nn.BatchNorm2d(channels))

        self.views = nn.ModuleList([conv_bn(1), conv_bn(3), conv_bn(3, dilation=2)])
        self.relu = nn.ReLU(inplace=True)
        self.vote = nn.Sequential(nn.Conv2d(3 * channels, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.vote(self.relu(torch.cat([v(x) for v in self.views], dim=1)))
        return x + x * gate


class CMUNet(nn.Module):
    """U-Net + ConvMixer bottleneck + MSAG-gated skips."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        self.encoder = PlainEncoder(in_channels, widths)
        self.mixer = nn.Sequential(*(ConvMixerLayer(widths[-1]) for _ in range(MIXER_DEPTH)))
        self.gates = nn.ModuleList(MultiScaleAttentionGate(w) for w in widths[:-1])
        self.up = up_convs(widths)
        self.fuse = fuse_convs(widths)
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        x = self.mixer(feats.pop())
        skips = [gate(f) for gate, f in zip(self.gates, feats)]
        return self.head(expand(x, skips, self.up, self.fuse))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CMU_Net",
        ubench_id=4,
        year=2023,
        paper="CMU-Net: A Strong ConvMixer-based Medical Ultrasound Image Segmentation Network",
        deep_supervision=False,
        ref_params_m=49.932353,
        ref_source="U-Bench models/CNN/CMU_Net/CMU_Net.py (CMU_Net(input_channel=3, "
        "num_classes=1), l=7, k=7), counted by building the module",
        ref_input_size=256,
        size_multiple=16,
    )
)
def cmunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CMU-Net as U-Bench benchmarks it (7 ConvMixer layers, kernel 7)."""
    return CMUNet(in_channels=in_channels, num_classes=num_classes)
