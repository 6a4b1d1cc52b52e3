"""CE-Net: ResNet-34 encoder, dense atrous + spatial pyramid pooling context module, light decoder.

Paper: Gu, Cheng, Fu, Zhou, Hao, Zhao, Zhang, Gao, Liu, "CE-Net: Context Encoder Network for 2D
Medical Image Segmentation", IEEE TMI 38(10), 2019.

Configuration: U-Bench's ``CE_Net_`` (repo FengheTan9/U-Bench, models/CNN/CE_Net/CE_Net.py,
``ce_net(3, 1)``). Encoder: ResNet-34 (stem, max-pool, layer1..4), ImageNet-pretrained in U-Bench,
here untrained (ops/resnet.py; nothing is downloaded). Context: a DAC block on layer4 (three 3x3
convs with dilation 1, 3, 5 and one shared 1x1 conv, all with bias initialised to 0; the input plus
four cascaded branches relu(d1 x), relu(c d3 x), relu(c d3 d1 x), relu(c d5 d3 d1 x)), then an RMP
block: max-pools of size = stride 2, 3, 5, 6, ONE shared 1x1 conv to a single channel, bilinear
upsampling back (align_corners=False), concatenated before the 512 input channels (516 in all).
Decoder: four blocks (1x1 conv to in/4, BN, ReLU; 3x3 transposed conv stride 2 (output_padding 1),
BN, ReLU; 1x1 conv, BN, ReLU) to 256, 128, 64, 64 channels, each of the first three added to
layer3, layer2, layer1. Head: 4x4 transposed conv stride 2 to 32, ReLU, 3x3 conv, ReLU, 3x3 conv to
the classes. All decoder/head convs have bias. No deep supervision.

U-Bench's module ignores its ``num_channels`` argument (the ResNet stem is fixed at 3 channels);
ours builds the stem for ``in_channels``. The RMP block's 6x6 pooling needs layer4 of at least
6 x 6, so inputs must be multiples of 32 and at least 192 pixels a side (listed in input_sizes).
Parameters at 3 in / 1 class: 29,003,093 (encoder 21,284,672), counted by building U-Bench's
module with pretrain=False.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.resnet import ResNet34Encoder
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
RMP_POOLS = (2, 3, 5, 6)
MIN_SIZE = STRIDE * max(RMP_POOLS)  # 192: the largest pool must fit layer4
SIZES = tuple(range(MIN_SIZE, 1024 + 1, STRIDE))
DECODER_WIDTHS = (256, 128, 64, 64)


class DenseAtrousBlock(nn.Module):
    """DAC: four cascaded branches of growing receptive field (1, 3, 9, 19) summed with the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.d1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.d3 = nn.Conv2d(channels, channels, 3, padding=3, dilation=3)
        self.d5 = nn.Conv2d(channels, channels, 3, padding=5, dilation=5)
        self.mix = nn.Conv2d(channels, channels, 1)
        for conv in (self.d1, self.d3, self.d5, self.mix):
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.d1(x)
        ab = self.d3(a)
        branches = (a, self.mix(self.d3(x)), self.mix(ab), self.mix(self.d5(ab)))
        return x + sum(F.relu(b) for b in branches)


class ResidualMultiPooling(nn.Module):
    """RMP: one-channel summaries of four max-pooled scales, concatenated in front of the input."""

    def __init__(self, channels: int, pools=RMP_POOLS):
        super().__init__()
        self.pools = pools
        self.squeeze = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        maps = [
            F.interpolate(self.squeeze(F.max_pool2d(x, p, p)), size=size, mode="bilinear", align_corners=False)
            for p in self.pools
        ]
        return torch.cat(maps + [x], dim=1)


def bn_relu_after(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class DecoderBlock(nn.Sequential):
    """1x1 squeeze to in/4, transposed 3x3 conv x2 upsampling, 1x1 expand; each + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        mid = in_ch // 4
        super().__init__(
            *bn_relu_after(nn.Conv2d(in_ch, mid, 1), mid),
            *bn_relu_after(nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1), mid),
            *bn_relu_after(nn.Conv2d(mid, out_ch, 1), out_ch),
        )


class CENet(nn.Module):
    """ResNet-34 -> DAC -> RMP -> four additive-skip decoder blocks -> transposed-conv head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = ResNet34Encoder(in_channels)
        top = ResNet34Encoder.out_channels[-1]
        self.dac = DenseAtrousBlock(top)
        self.rmp = ResidualMultiPooling(top)
        ins = (top + len(RMP_POOLS),) + DECODER_WIDTHS[:-1]
        self.decoder = nn.ModuleList(DecoderBlock(i, o) for i, o in zip(ins, DECODER_WIDTHS))
        self.head = nn.Sequential(
            nn.ConvTranspose2d(DECODER_WIDTHS[-1], 32, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, num_classes, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)  # stem, layer1..layer4; the stem output is not a skip here
        skips = feats[1:4]
        y = self.rmp(self.dac(feats[4]))
        for block in self.decoder:
            y = block(y)
            if skips:
                y = y + skips.pop()
        return self.head(y)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CE_Net",
        ubench_id=18,
        year=2019,
        paper="CE-Net: Context Encoder Network for 2D Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=29.003093,
        ref_source="U-Bench models/CNN/CE_Net/CE_Net.py (ce_net(3, 1), ResNet-34 backbone from "
        "backbones/resnet built with pretrain=False), counted by building the module",
        ref_input_size=256,
        input_sizes=SIZES,
        size_multiple=STRIDE,
        notes="ResNet-34 encoder untrained (U-Bench: ImageNet-pretrained); multiples of 32 from "
        "192 (the RMP block's 6x6 pooling needs layer4 >= 6x6); stem honours in_channels",
    )
)
def cenet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CE-Net as U-Bench benchmarks it (ResNet-34 encoder, DAC + RMP context, untrained)."""
    return CENet(in_channels=in_channels, num_classes=num_classes)
