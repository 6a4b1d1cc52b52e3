"""UNet++ with a ResNet-34 encoder, as U-Bench benchmarks it.

Paper: Zhou, Rahman Siddiquee, Tajbakhsh, Liang, "UNet++: A Nested U-Net Architecture for Medical
Image Segmentation", DLMIA 2018 (MICCAI workshop).

Configuration: U-Bench's ``ResNet34UnetPlus`` (repo FengheTan9/U-Bench, models/CNN/UNetplus/
UNetplus.py), which is not segmentation_models_pytorch's UNet++ (no decoder widths
256..16). Encoder: an untrained torchvision ResNet-34 (here ops/resnet.py, written from scratch)
whose stem output (64 ch, H/2) is row 0 and layer1..layer4 (64, 128, 256, 512 ch, H/4..H/32)
are rows 1..4. Nested decoder: node X(i, j), j >= 1, concatenates X(i, 0..j-1) with X(i+1, j-1)
upsampled x2 (nearest) and applies three 3x3 conv (no bias) + BN + ReLU with widths out/2, out/2,
out; ``out`` depends on i + j: 64, 64, 128, 256 for i + j = 1..4. Head: 1x1 convs (bias) on
X(0, 1..4) give four logit maps at H/2, summed with learnable weights (initialised to 1), then
bilinearly upsampled (align_corners=False) to H x W. It returns that one fused tensor: U-Bench
trains it without deep supervision (its models/model_id.json sets no ``deeps_supervision`` for
ResNet34UnetPlus), so ``deep_supervision=False``. U-Bench allocates five mixing weights and
never uses the first; we keep all five (``mix[0]`` unused) so that U-Bench's ``mix`` loads
as it is. Parameters at 3 in / 1 class: 26,904,137, as in U-Bench's module (encoder
21,284,672), counted layer by layer. Needs H, W divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.resnet import ResNet34Encoder
from ubench.models.registry import ModelInfo, register_model

DEPTH = 4  # decoder columns; rows 0..4 are the encoder outputs
NODE_WIDTH = {1: 64, 2: 64, 3: 128, 4: 256}  # output width of node X(i, j) by i + j


class NestedNode(nn.Sequential):
    """One UNet++ decoder node: 3x3 conv + BN + ReLU three times, widths out/2, out/2, out."""

    def __init__(self, in_ch: int, out_ch: int):
        half = out_ch // 2
        super().__init__(
            *conv_bn_relu(in_ch, half, bias=False),
            *conv_bn_relu(half, half, bias=False),
            *conv_bn_relu(half, out_ch, bias=False),
        )


class UNetPlusPlus(nn.Module):
    """ResNet-34 encoder + nested dense skip decoder + weighted fusion of the four top outputs."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = ResNet34Encoder(in_channels)
        width = {(i, 0): c for i, c in enumerate(ResNet34Encoder.out_channels)}
        nodes = {}
        for j in range(1, DEPTH + 1):
            for i in range(DEPTH + 1 - j):
                in_ch = sum(width[(i, k)] for k in range(j)) + width[(i + 1, j - 1)]
                width[(i, j)] = NODE_WIDTH[i + j]
                nodes[f"x{i}_{j}"] = NestedNode(in_ch, width[(i, j)])
        self.nodes = nn.ModuleDict(nodes)
        self.heads = nn.ModuleList(nn.Conv2d(width[(0, j)], num_classes, 1) for j in range(1, DEPTH + 1))
        self.mix = nn.Parameter(torch.ones(DEPTH + 1))  # mix[0] unused, as in U-Bench

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = {(i, 0): f for i, f in enumerate(self.encoder(x))}
        for j in range(1, DEPTH + 1):  # column by column: every input of a node already exists
            for i in range(DEPTH + 1 - j):
                below = F.interpolate(feats[(i + 1, j - 1)], scale_factor=2, mode="nearest")
                row = [feats[(i, k)] for k in range(j)]
                feats[(i, j)] = self.nodes[f"x{i}_{j}"](torch.cat(row + [below], dim=1))
        logits = sum(w * head(feats[(0, j + 1)]) for j, (w, head) in enumerate(zip(self.mix[1:], self.heads)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="ResNet34UnetPlus",
        ubench_id=12,
        year=2018,
        paper="UNet++: A Nested U-Net Architecture for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=26.904137,
        ref_source="U-Bench models/CNN/UNetplus/UNetplus.py (ResNet34UnetPlus(input_channel=3, "
        "num_classes=1), untrained ResNet-34 encoder), counted layer by layer",
        ref_input_size=256,
        notes="ResNet-34 encoder; four side outputs fused by learnable weights, one output",
    )
)
def unetpp(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UNet++ (ResNet-34 encoder, untrained) as U-Bench benchmarks it."""
    return UNetPlusPlus(in_channels=in_channels, num_classes=num_classes)
