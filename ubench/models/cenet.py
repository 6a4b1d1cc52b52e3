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

from ubench.models.ops.linknet import PYRAMID_POOLS, DenseAtrousContext, LinkNetUp, PoolingPyramid
from ubench.models.ops.resnet import ResNet34Encoder, torchvision_resnet_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
MIN_SIZE = STRIDE * max(PYRAMID_POOLS)  # 192: the largest pool must fit layer4
SIZES = tuple(range(MIN_SIZE, 1024 + 1, STRIDE))
DECODER_WIDTHS = (256, 128, 64, 64)


class CENet(nn.Module):
    """ResNet-34 -> DAC -> RMP -> four additive-skip decoder blocks -> transposed-conv head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = ResNet34Encoder(in_channels)
        top = ResNet34Encoder.out_channels[-1]
        self.dac = DenseAtrousContext(top)
        self.rmp = PoolingPyramid(top)
        ins = (top + len(PYRAMID_POOLS),) + DECODER_WIDTHS[:-1]
        self.decoder = nn.ModuleList(LinkNetUp(i, o) for i, o in zip(ins, DECODER_WIDTHS))
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
        extra={
            "pretrained": torchvision_resnet_record(
                "resnet34", "encoder.",
                "CE_Net_: get_resnet_backbone('resnet34')(pretrain=True) builds "
                "backbones/resnet/build_resnet.py (conv1, bn1, layer1-4, no fc) and loads "
                "model_zoo.load_url(model_urls['resnet34']) with strict=False (fc ignored) -> "
                "firstconv/firstbn, encoder1-4; torchvision's legacy file of the ImageNet weights "
                "resnet34-b627a593.pth re-serialises",
                file="resnet34-333f7ec4.pth",
            ),
        },
    )
)
def cenet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CE-Net as U-Bench benchmarks it (ResNet-34 encoder, DAC + RMP context, untrained)."""
    return CENet(in_channels=in_channels, num_classes=num_classes)
