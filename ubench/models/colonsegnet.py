"""ColonSegNet, a shallow two-block encoder-decoder of squeeze-excitation residual blocks.

Paper: Jha, Ali, Tomar, Johansen, Johansen, Rittscher, Riegler, Halvorsen, "Real-Time Polyp
Detection, Localization and Segmentation in Colonoscopy Using Deep Learning", IEEE Access 9, 2021.

Configuration: U-Bench's ``ColonSegNet`` (repo FengheTan9/U-Bench, models/CNN/ColonSegNet/
ColonSegNet.py, ``colonsegnet(input_channel=3, num_classes=1)`` which builds its ``CompNet``).
Residual block: 3x3 conv + BN + ReLU, 3x3 conv + BN, added to a 1x1 conv + BN shortcut that
goes through squeeze-excitation (global mean, bias-free linears c -> c/16 -> c with ReLU, sigmoid),
then ReLU; all convs have bias. Two encoder blocks (widths 64, 256), each: residual block (skip
a), 3x3 conv stride 2 + BN + ReLU, residual block (skip b). With the input at 1/1, the skips are
a1 (64, 1/1), b1 (64, 1/2), a2 (256, 1/4), b2 (256, 1/8). Decoder, each step a transposed conv,
a concatenation and a residual block: b2 -> ConvT 4x4 stride 4 -> 128 at 1/2, [., b1] -> 128;
a2 -> ConvT 4x4 stride 2 -> 128 at 1/2, [previous, .] -> 128; ConvT stride 2 -> 64 at 1/1,
[., a1] -> 64; b1 -> ConvT stride 2 -> 32 at 1/1, [previous, .] -> 32; a 1x1 conv gives the
logits. Parameters at 3 in / 1 class: 5,014,049, counted by instantiating U-Bench's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import SqueezeExcite
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 256)
SE_REDUCTION = 16


class SEResidualBlock(nn.Module):
    """Two 3x3 convs plus a 1x1 projection shortcut recalibrated by squeeze-excitation."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)
        self.shortcut_bn = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch, SE_REDUCTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + self.se(self.shortcut_bn(self.shortcut(x))))


class EncoderBlock(nn.Module):
    """Residual block, stride-2 3x3 conv + BN + ReLU, residual block; returns both residual maps."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.res1 = SEResidualBlock(in_ch, out_ch)
        self.down = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, 3, stride=2, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
        )
        self.res2 = SEResidualBlock(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.res1(x)
        return a, self.res2(self.down(a))


def up(in_ch: int, out_ch: int, factor: int) -> nn.ConvTranspose2d:
    """Transposed 4x4 conv that enlarges by ``factor`` (2: padding 1, 4: no padding)."""
    return nn.ConvTranspose2d(in_ch, out_ch, 4, stride=factor, padding=1 if factor == 2 else 0)


class ColonSegNet(nn.Module):
    """Two encoder blocks (the second after a 2x2 max-pool), two decoder stages of two steps."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        c1, c2 = widths
        self.enc1 = EncoderBlock(in_channels, c1)
        self.enc2 = EncoderBlock(c1, c2)
        self.pool = nn.MaxPool2d(2)
        # decoder 1 (to 1/2), then decoder 2 (to 1/1)
        self.up1 = up(c2, c2 // 2, 4)
        self.fuse1 = SEResidualBlock(c2 // 2 + c1, c2 // 2)
        self.up2 = up(c2, c2 // 2, 2)
        self.fuse2 = SEResidualBlock(c2, c2 // 2)
        self.up3 = up(c2 // 2, c1, 2)
        self.fuse3 = SEResidualBlock(2 * c1, c1)
        self.up4 = up(c1, c1 // 2, 2)
        self.fuse4 = SEResidualBlock(c1 + c1 // 2, c1 // 2)
        self.head = nn.Conv2d(c1 // 2, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1, b1 = self.enc1(x)  # 1/1, 1/2
        a2, b2 = self.enc2(self.pool(b1))  # 1/4, 1/8 (U-Bench also pools b2, then drops it)
        y = self.fuse1(torch.cat([self.up1(b2), b1], 1))
        y = self.fuse2(torch.cat([y, self.up2(a2)], 1))
        y = self.fuse3(torch.cat([self.up3(y), a1], 1))
        y = self.fuse4(torch.cat([y, self.up4(b1)], 1))
        return self.head(y)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="ColonSegNet",
        ubench_id=25,
        year=2021,
        paper="Real-Time Polyp Detection, Localization and Segmentation in Colonoscopy Using Deep "
        "Learning",
        deep_supervision=False,
        ref_params_m=5.014049,
        ref_source="U-Bench models/CNN/ColonSegNet/ColonSegNet.py (colonsegnet(input_channel=3, "
        "num_classes=1) = CompNet), counted by instantiating it",
        ref_input_size=256,
        size_multiple=8,
        notes="Total stride 8 (U-Bench's second encoder block also max-pools its output to 1/16 and "
        "discards it; left out here, no parameters).",
    )
)
def colonsegnet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """ColonSegNet as U-Bench benchmarks it (widths 64, 256)."""
    return ColonSegNet(in_channels=in_channels, num_classes=num_classes)
