"""ESKNet, a U-Net whose every conv block is an enhanced selective-kernel unit.

Paper: Chen, Zhou, Zhang, Yin, Cui, Dai, "ESKNet: An enhanced adaptive selection kernel
convolution for ultrasound breast tumors segmentation", Expert Systems with Applications 246,
2024 (arXiv 2211.02915, 2022).

Configuration: U-Bench's ``ESKNet`` (repo FengheTan9/U-Bench, models/CNN/ESKNet/ESKNet.py,
``esknet(num_classes=1, input_channel=3)``, i.e. ``ESKNet(dim=32, deep=False)``): widths 32, 64,
128, 256, 512, one selective-kernel unit per encoder stage with 2x2 max-pooling between them. The
unit: 3x3 conv + BN + LeakyReLU(0.01) to the stage width (x); two branches on x, a 3x3 conv
dilated 3 (d) and a 5x5 conv (w), each + BN + LeakyReLU; from their concatenation [w, d] a
channel gate g (global mean, linear 2c -> c, ReLU, linear c -> c, sigmoid) and a one-channel
spatial gate s (ReLU, 1x1 conv, sigmoid); the five maps [d*g, w*(1-g), w*(1-s), d*s, x] are
fused by a 1x1 conv + BN + LeakyReLU. All convs and linears have bias. Each of four decoder
steps: bilinear upsampling x2 (align_corners=True), concatenation [upsampled, skip], two units
(to the skip's width). A 1x1 conv gives the logits. Parameters at 3 in / 1 class: 26,709,390,
counted by instantiating U-Bench's module. Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import contract
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 128, 256, 512)
SLOPE = 0.01


def conv_bn_lrelu(in_ch: int, out_ch: int, kernel_size: int, dilation: int = 1) -> nn.Sequential:
    """'Same'-padded conv (bias) -> BatchNorm -> LeakyReLU(0.01)."""
    pad = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=pad, dilation=dilation),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(SLOPE),
    )


class SelectiveKernelUnit(nn.Module):
    """Two receptive fields (dilated 3x3, 5x5) weighed against each other by complementary
    channel and spatial gates, fused with the unit's own input map."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.stem = conv_bn_lrelu(in_ch, out_ch, 3)
        self.dilated = conv_bn_lrelu(out_ch, out_ch, 3, dilation=3)
        self.wide = conv_bn_lrelu(out_ch, out_ch, 5)
        self.channel_fc1 = nn.Linear(2 * out_ch, out_ch)
        self.channel_fc2 = nn.Linear(out_ch, out_ch)
        self.spatial = nn.Conv2d(2 * out_ch, 1, 1)
        self.fuse = conv_bn_lrelu(5 * out_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        d, w = self.dilated(x), self.wide(x)
        both = torch.cat([w, d], 1)
        g = torch.sigmoid(self.channel_fc2(F.relu(self.channel_fc1(both.mean(dim=(2, 3))))))
        g = g[:, :, None, None]
        s = torch.sigmoid(self.spatial(F.relu(both)))
        return self.fuse(torch.cat([d * g, w * (1 - g), w * (1 - s), d * s, x], 1))


class DecoderStep(nn.Module):
    """Upsample x2, concatenate [upsampled, skip], two selective-kernel units."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.unit1 = SelectiveKernelUnit(in_ch + out_ch, out_ch)
        self.unit2 = SelectiveKernelUnit(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.unit2(self.unit1(torch.cat([x, skip], 1)))


def _pool2(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2)


class ESKNet(nn.Module):
    """Five selective-kernel encoder stages (four poolings), four decoder steps, a 1x1 head."""

    stride = 2 ** (len(WIDTHS) - 1)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        ins = (in_channels, *widths[:-1])
        self.encoder = nn.ModuleList(SelectiveKernelUnit(i, o) for i, o in zip(ins, widths))
        self.decoder = nn.ModuleList(DecoderStep(widths[k], widths[k - 1]) for k in range(len(widths) - 1, 0, -1))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = contract(x, self.encoder, _pool2)
        x = skips.pop()
        for step in self.decoder:
            x = step(x, skips.pop())
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="ESKNet",
        ubench_id=29,
        year=2024,
        paper="ESKNet: An enhanced adaptive selection kernel convolution for ultrasound breast "
        "tumors segmentation",
        deep_supervision=False,
        ref_params_m=26.709390,
        ref_source="U-Bench models/CNN/ESKNet/ESKNet.py (esknet(num_classes=1, input_channel=3) = "
        "ESKNet(dim=32, deep=False)), counted by instantiating it",
        ref_input_size=256,
        size_multiple=ESKNet.stride,
        notes="The paper's deep supervision is off in U-Bench (deep=False: no side heads are built; "
        "model_id.json does not flag it), so one output. U-Bench's own class default "
        "num_classes=2 is overridden by its factory.",
    )
)
def esknet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """ESKNet as U-Bench benchmarks it (dim 32, no deep supervision)."""
    return ESKNet(in_channels=in_channels, num_classes=num_classes)
