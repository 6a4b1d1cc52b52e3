"""DCSAU-Net, a U-Net of compact split-attention bottlenecks behind a large-kernel stem.

Paper: Xu, Ma, He, Duan, "DCSAU-Net: A Deeper and More Compact Split-Attention U-Net for Medical
Image Segmentation", Computers in Biology and Medicine 154, 2023.

Configuration: U-Bench's ``DCSAU_Net`` = ``dcsau_net(input_channel, num_classes)`` (repo
FengheTan9/U-Bench, models/CNN/DCSAU_Net/DCSAU_Net.py with encoder.py, resnet.py, splat.py; the
blocks come from a modified ResNeSt ``ResNet(Bottleneck, [2, 2, 2, 2], radix=2, groups=1,
bottleneck_width=64, avd=True, avd_first=False)``, no rectified conv, no DropBlock; its stem, pooling
and classifier are never built). The "primary feature conservation" stem at full resolution: 7x7
conv (bias) to 64, a residual 7x7 depthwise conv, a 1x1 conv, each followed by ReLU -> BatchNorm.
Then four 2x2 max-poolings, each followed by an encoder stage; stage widths (bottleneck width w,
output 4w) are w = 32, 64, 128, 128 (outputs 128, 256, 512, 512). The decoder has four steps:
bilinear upsampling x2 (align_corners=True), concatenation [skip, upsampled] and a stage with
w = 64, 32, 16, 16 (inputs 1024, 512, 256, 128; outputs 256, 128, 64, 64). Each stage is two
bottlenecks (1x1 conv -> BN -> ReLU, the compact split attention below, optionally a 3x3 stride-1
average pool, 1x1 conv to 4w -> BN, residual, ReLU); the first one has a 1x1 conv + BN shortcut
when the width changes, and the 3x3 average pool (ResNeSt's "avd" layer, which at stride 1 only
blurs) in every stage except the first encoder and the last decoder stage. A 1x1 conv gives the
logits. Stage convs use ResNeSt's He-normal (fan-out) init, BN weight 1 and bias 0; the stem and
head keep torch's default init. Parameters at 3 in / 1 class: 2,598,785 (counted by instantiating
U-Bench's module). Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import FeatureConservation
from ubench.models.ops.resnet import init_resnet_weights
from ubench.models.registry import ModelInfo, register_model

STEM_WIDTH = 64
# (input channels, bottleneck width w, 3x3 average pool in the first block); output is 4w
ENCODER = ((64, 32, False), (128, 64, True), (256, 128, True), (512, 128, True))
DECODER = ((1024, 64, True), (512, 32, True), (256, 16, True), (128, 16, False))
BLOCKS_PER_STAGE = 2


class CompactSplitAttention(nn.Module):
    """Two-branch split attention in which the second branch refines the sum of both.

    A 3x3 conv in two groups gives two maps A and B of ``ch`` channels each (BN, ReLU); B is
    replaced by a 3x3 conv (two groups) of A + B (BN, ReLU), so the branches see different
    receptive fields. Their sum is pooled globally and squeezed through 1x1 convs into one weight
    per branch and channel, normalised across the two branches by a softmax; the output is the
    weighted sum of A and B.
    """

    radix = 2

    def __init__(self, ch: int, reduction: int = 4, min_hidden: int = 32):
        super().__init__()
        hidden = max(ch * self.radix // reduction, min_hidden)
        self.split = nn.Conv2d(ch, ch * self.radix, 3, padding=1, groups=self.radix, bias=False)
        self.split_bn = nn.BatchNorm2d(ch * self.radix)
        self.refine_bn = nn.BatchNorm2d(ch)
        self.fc1 = nn.Conv2d(ch, hidden, 1)
        self.fc_bn = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, ch * self.radix, 1)
        self.refine = nn.Conv2d(ch, ch, 3, padding=1, groups=self.radix, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = F.relu(self.split_bn(self.split(x))).chunk(self.radix, dim=1)
        b = F.relu(self.refine_bn(self.refine(a + b)))
        pooled = F.adaptive_avg_pool2d(a + b, 1)
        logits = self.fc2(F.relu(self.fc_bn(self.fc1(pooled))))
        weights = logits.view(x.shape[0], self.radix, -1, 1, 1).softmax(dim=1)
        return weights[:, 0] * a + weights[:, 1] * b


class CSABlock(nn.Module):
    """ResNeSt-style bottleneck around the compact split attention (1x1 in, attention, optional
    3x3 stride-1 average pool, 1x1 out to 4x the width, residual sum, ReLU)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, blur: bool = False):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.attn = CompactSplitAttention(width)
        # ResNeSt's avd layer at stride 1 (count_include_pad=True): a 3x3 box blur, no parameters
        self.blur = nn.AvgPool2d(3, stride=1, padding=1) if blur else nn.Identity()
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn3(self.conv3(self.blur(self.attn(y))))
        return F.relu(y + self.shortcut(x))


def csa_stage(in_ch: int, width: int, blur: bool, depth: int = BLOCKS_PER_STAGE) -> nn.Sequential:
    """``depth`` CSA blocks; only the first changes the width or blurs."""
    out_ch = width * CSABlock.expansion
    return nn.Sequential(CSABlock(in_ch, width, blur), *(CSABlock(out_ch, width) for _ in range(depth - 1)))


class DCSAUNet(nn.Module):
    """Stem at full resolution, four pool + CSA stages down, four upsample + concat + CSA stages
    up, a 1x1 head."""

    stride = 2 ** len(ENCODER)

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.stem = FeatureConservation(in_channels, STEM_WIDTH)
        self.encoder = nn.ModuleList(csa_stage(*spec) for spec in ENCODER)
        self.decoder = nn.ModuleList(csa_stage(*spec) for spec in DECODER)
        self.head = nn.Conv2d(DECODER[-1][1] * CSABlock.expansion, num_classes, 1)
        init_resnet_weights(self.encoder)
        init_resnet_weights(self.decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for stage in self.encoder:
            skips.append(x)
            x = stage(F.max_pool2d(x, 2))
        for stage in self.decoder:
            up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = stage(torch.cat([skips.pop(), up], dim=1))
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="DCSAU_Net",
        ubench_id=31,
        year=2023,
        paper="DCSAU-Net: A Deeper and More Compact Split-Attention U-Net for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=2.598785,
        ref_source="U-Bench models/CNN/DCSAU_Net/DCSAU_Net.py (dcsau_net(input_channel=3, "
        "num_classes=1)), counted by instantiating it",
        ref_input_size=256,
        size_multiple=DCSAUNet.stride,
        notes="U-Bench's stem conv is hard-wired to 3 input channels (input_channel is ignored); "
        "here it takes in_channels, identical at 3. U-Bench builds the CSA stages once at import "
        "(a module-level CSA()), so every DCSAU_Net instance in one process shares those "
        "parameters; here each instance owns its own. U-Bench's decoder zero-pads the upsampled "
        "map to the skip's size; with H, W divisible by 16 that padding is always empty and is "
        "left out. The ResNeSt 'avd' 3x3 average pool runs at stride 1 (a blur, no parameters), "
        "in the first block of every stage but the first encoder and last decoder stage; the "
        "'avg_down' pooling in the shortcuts is 1x1/1 (identity) and left out. The attention's BatchNorm "
        "acts on globally pooled 1x1 maps, so training needs batch size >= 2 (as in U-Bench).",
    )
)
def dcsau_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """DCSAU-Net as U-Bench benchmarks it."""
    return DCSAUNet(in_channels=in_channels, num_classes=num_classes)
