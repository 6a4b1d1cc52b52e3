"""SimpleUNet, an ultra-light fixed-width U-Net with narrowed skip connections.

Paper: Yu, Chen, He, Zeng, Qin, Liang, Luo, Liao, Ren, Kang, Yang, Liang, Pu, Yuan, Li, "Simple is
what you need for efficient and accurate medical image segmentation", arXiv 2506.13415, 2025.

Configuration: U-Bench's ``SimpleUNet`` class with its constructor defaults (repo FengheTan9/U-Bench,
models/CNN/SimpleUNet/SimpleUNet.py; models/__init__.py builds the class with input_channel,
num_classes only): kernel 3, dilation 1, five stages all 32 channels wide, one block per stage,
short_rate 0.5, adw False. Every block is a conv (no bias) + BatchNorm + ReLU.

* Encoder: a 3x3 block (in -> 32), then four times 2x2 max-pooling + a 3x3 block (32 -> 32).
* Skips: the first four stage outputs each go through a 1x1 block to 16 channels ("partial
  feature selection", short_rate 0.5).
* Bottleneck: a 3x3 block on the deepest map, 32 -> 16.
* Decoder, four steps: concatenate [skip x alpha, upsample(x x beta)] (bilinear x2,
  align_corners=True), a 3x3 block 32 -> 16. alpha and beta are per-channel weights of ones; with
  adw=False U-Bench builds them with requires_grad=False, so they stay 1 (kept here as frozen
  parameters so U-Bench's state_dict maps onto this one).
* Head: a 1x1 block 16 -> classes, i.e. conv + BatchNorm + ReLU: the logits are never negative.

Parameters at 3 in / 1 class: 63,570 in all, 63,442 trainable (the 128 frozen alpha/beta ones;
U-Bench's main.py logs the trainable count), counted by instantiating U-Bench's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 32, 32, 32, 32)
BLOCKS = (1, 1, 1, 1, 1)
SHORT_RATE = 0.5


def block(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    """SimpleUNet's only building block: conv (no bias, 'same' padding) -> BN -> ReLU."""
    return nn.Sequential(*conv_bn_relu(in_ch, out_ch, kernel_size, bias=False))


def frozen_ones(ch: int) -> nn.Parameter:
    """A (ch, 1, 1) fusion weight of ones that is not trained (U-Bench's adw=False)."""
    return nn.Parameter(torch.ones(ch, 1, 1), requires_grad=False)


class SimpleUNet(nn.Module):
    """Fixed-width encoder, 1x1-narrowed skips, narrow decoder fused by weighted concatenation."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        widths=WIDTHS,
        blocks=BLOCKS,
        short_rate: float = SHORT_RATE,
    ):
        super().__init__()
        narrow = [int(short_rate * w) for w in widths]
        # stage i: (blocks[i] - 1) blocks at the previous width, then one that changes the width
        stages = [nn.Sequential(block(in_channels, widths[0]))]
        for i in range(1, len(widths)):
            repeat = [block(widths[i - 1], widths[i - 1]) for _ in range(blocks[i] - 1)]
            stages.append(nn.Sequential(*repeat, block(widths[i - 1], widths[i])))
        self.encoder = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.shortcuts = nn.ModuleList(block(w, n, 1) for w, n in zip(widths[:-1], narrow[:-1]))
        self.bottleneck = nn.Sequential(
            block(widths[-1], narrow[-1]), *(block(narrow[-1], narrow[-1]) for _ in range(blocks[-1] - 1))
        )
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        # decoder step j fuses skip level k = depth-2-j (narrow[k] channels) with the deeper map
        deep, skip, reps = narrow[:0:-1], narrow[-2::-1], blocks[-2::-1]
        self.decoder = nn.ModuleList(
            nn.Sequential(block(d + s, s), *(block(s, s) for _ in range(r - 1))) for d, s, r in zip(deep, skip, reps)
        )
        self.skip_gain = nn.ParameterList(frozen_ones(s) for s in skip)
        self.deep_gain = nn.ParameterList(frozen_ones(d) for d in deep)
        self.head = block(narrow[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.bottleneck(skips.pop())
        skips = [short(s) for short, s in zip(self.shortcuts, skips)]
        for step, a, b in zip(self.decoder, self.skip_gain, self.deep_gain):
            x = step(torch.cat([skips.pop() * a, self.up(x * b)], dim=1))
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="SimpleUNet",
        ubench_id=52,
        year=2025,
        paper="Simple is what you need for efficient and accurate medical image segmentation",
        deep_supervision=False,
        ref_params_m=0.063570,
        ref_source="U-Bench models/CNN/SimpleUNet/SimpleUNet.py (SimpleUNet(input_channel=3, "
        "num_classes=1), defaults: 5 x 32 channels, 1 block per stage, short_rate 0.5, adw False), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=16,
        notes="Count includes the 128 alpha/beta fusion weights, ones that U-Bench builds with "
        "requires_grad=False (adw=False) and so never trains: 63,442 trainable, the number U-Bench's "
        "main.py logs. As U-Bench's code: the segmentation head is conv 1x1 + BatchNorm + ReLU, so the "
        "logits are >= 0 (sigmoid >= 0.5 everywhere; background can only reach exactly 0.5). The "
        "decoder block's input width is the sum of the two narrowed widths (U-Bench writes "
        "int(0.5 * (a + b)), equal for its widths).",
    )
)
def simple_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """SimpleUNet (U-Bench's default, 5 x 32 channels) as U-Bench benchmarks it."""
    return SimpleUNet(in_channels=in_channels, num_classes=num_classes)
