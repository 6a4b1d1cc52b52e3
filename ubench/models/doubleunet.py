"""DoubleUNet: two stacked U-Nets, the first on a VGG-19 encoder, the second gated by the first's mask.

Paper: Jha, Riegler, Johansen, Halvorsen, Johansen, "DoubleU-Net: A Deep Convolutional Neural
Network for Medical Image Segmentation", IEEE CBMS 2020.

Configuration: U-Bench's ``build_doubleunet`` (repo FengheTan9/U-Bench,
models/CNN/dobuleunet/dobuleunet.py; models/__init__.py registers it as ``DoubleUNet``, id 45,
trained with deep supervision, and ``build_model`` calls ``build_doubleunet(input_channel=3,
num_classes=1)``, whose arguments other than ``num_classes`` are unused):

- Network 1. Encoder: the 16 convolutions of VGG-19 (3x3, bias, ReLU, no BN; torchvision's
  ``vgg19(pretrained=True).features[:36]``) cut before each max-pool into five stages of widths
  64, 128, 256, 512, 512 (x2, x2, x4, x4, x4 convs); the last max-pool is dropped. ASPP on the
  deepest map (512 -> 64): a 2x2 adaptive average pool + 1x1 conv branch upsampled back
  (bilinear, align_corners=True), a 1x1 branch and 3x3 branches of dilation 6, 12, 18, all conv
  (no bias) + BN + ReLU, concatenated and projected by a 1x1 conv + BN + ReLU. Decoder: four steps
  of bilinear x2 (align_corners=True), concatenation [upsampled, VGG skip] and a conv block (two 3x3
  conv + BN + ReLU, no bias, then squeeze-excitation with biased Linear layers, reduction 8) to
  256, 128, 64, 32. A 1x1 conv (bias) gives the first logits ``y1``.
- Network 2 takes the image times sigmoid(y1). Encoder: four conv blocks (32, 64, 128, 256), each
  followed by 2x2 max-pooling; ASPP (256 -> 64) on the last pooled map; decoder as above, but each
  step concatenates [upsampled, VGG skip, encoder-2 skip] (832, 640, 320, 160 channels in) to
  256, 128, 64, 32; a 1x1 conv gives ``y2``.
- Deep supervision: returns [y1, y2], both at full resolution, the final output last.

Parameters at 3 in / 1 class: 29,288,886 (VGG-19 encoder 20,024,384), counted by instantiating
U-Bench's module with a stand-in ``torchvision.models.vgg19`` (no weights loaded). U-Bench loads
ImageNet weights into the VGG-19 convs; here the encoder is untrained, initialised as torchvision
initialises an untrained VGG (Kaiming normal, fan-out; zero bias), and its state_dict keeps
torchvision's layer indices (``encoder1.stages.<k>.<i>`` <- ``features.<i>``) so a checkpoint maps
on by stage. Everything else has torch's default initialisation, as in U-Bench. Needs H, W
divisible by 16.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import SqueezeExcite
from ubench.models.ops.conv_blocks import contract, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

VGG19_STAGES = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
ENCODER2_WIDTHS = (32, 64, 128, 256)
DECODER_WIDTHS = (256, 128, 64, 32)
ASPP_WIDTH = 64
ASPP_DILATIONS = (6, 12, 18)
SE_REDUCTION = 8
STRIDE = 16


class VGGEncoder(nn.Module):
    """VGG feature extractor (3x3 conv + ReLU, no BN) split into stages at its max-pools; every
    stage but the first starts with the pool. Layers keep torchvision's ``features`` indices as
    names, so ``features.<i>`` of a VGG checkpoint loads into ``stages.<k>.<i>``. The configuration
    is a tuple of per-stage widths (VGG-11/16 encoders, e.g. TernausNet's, fit the same class)."""

    def __init__(self, in_channels: int, stages=VGG19_STAGES):
        super().__init__()
        index, ch, built = 0, in_channels, []
        for k, widths in enumerate(stages):
            layers = OrderedDict()
            if k:
                layers[str(index)] = nn.MaxPool2d(2, 2)
                index += 1
            for width in widths:
                layers[str(index)] = nn.Conv2d(ch, width, 3, padding=1)
                layers[str(index + 1)] = nn.ReLU(inplace=True)
                index, ch = index + 2, width
            built.append(nn.Sequential(layers))
        self.stages = nn.ModuleList(built)
        for m in self.modules():  # torchvision's initialisation of an untrained VGG
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class ConvBlock(nn.Sequential):
    """Two 3x3 conv (no bias) + BN + ReLU, then squeeze-excitation: DoubleUNet's stage block."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            *conv_bn_relu(in_ch, out_ch, bias=False),
            *conv_bn_relu(out_ch, out_ch, bias=False),
            SqueezeExcite(out_ch, SE_REDUCTION, bias=True),
        )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a pooled branch (2x2 adaptive average, not global, then 1x1),
    a 1x1 branch and dilated 3x3 branches, concatenated and projected by a 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, dilations=ASPP_DILATIONS):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(2), *conv_bn_relu(in_ch, out_ch, 1, bias=False))
        branches = [nn.Sequential(*conv_bn_relu(in_ch, out_ch, 1, bias=False))]
        branches += [nn.Sequential(*conv_bn_relu(in_ch, out_ch, 3, bias=False, dilation=d)) for d in dilations]
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(*conv_bn_relu(out_ch * (len(branches) + 1), out_ch, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[2:], mode="bilinear", align_corners=True)
        return self.project(torch.cat([pooled, *(b(x) for b in self.branches)], dim=1))


class Decoder(nn.Module):
    """Per step: bilinear x2 (align_corners=True), concatenate [upsampled, skips...] (one skip from
    each skip list, deepest first), conv block."""

    def __init__(self, in_ch: int, skip_widths, out_widths=DECODER_WIDTHS):
        super().__init__()
        ins = (in_ch,) + tuple(out_widths[:-1])
        self.blocks = nn.ModuleList(ConvBlock(i + s, o) for i, s, o in zip(ins, skip_widths, out_widths))

    def forward(self, x: torch.Tensor, *skip_lists: list[torch.Tensor]) -> torch.Tensor:
        for k, block in enumerate(self.blocks):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = block(torch.cat([x, *(skips[k] for skips in skip_lists)], dim=1))
        return x


class DoubleUNet(nn.Module):
    """Network 1 (VGG-19 encoder, ASPP, decoder) predicts a mask; network 2 (its own encoder, ASPP,
    decoder over both networks' skips) segments the image gated by that mask."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        vgg_widths = tuple(widths[-1] for widths in VGG19_STAGES)
        vgg_skips = vgg_widths[-2::-1]  # 512, 256, 128, 64: deepest first, bottleneck excluded
        self.encoder1 = VGGEncoder(in_channels)
        self.aspp1 = ASPP(vgg_widths[-1], ASPP_WIDTH)
        self.decoder1 = Decoder(ASPP_WIDTH, vgg_skips)
        self.head1 = nn.Conv2d(DECODER_WIDTHS[-1], num_classes, 1)

        ins = (in_channels,) + ENCODER2_WIDTHS[:-1]
        self.encoder2 = nn.ModuleList(ConvBlock(i, o) for i, o in zip(ins, ENCODER2_WIDTHS))
        self.pool = nn.MaxPool2d(2, 2)
        self.aspp2 = ASPP(ENCODER2_WIDTHS[-1], ASPP_WIDTH)
        both_skips = [a + b for a, b in zip(vgg_skips, ENCODER2_WIDTHS[::-1])]
        self.decoder2 = Decoder(ASPP_WIDTH, both_skips)
        self.head2 = nn.Conv2d(DECODER_WIDTHS[-1], num_classes, 1)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats1 = self.encoder1(image)
        skips1 = feats1[-2::-1]
        y1 = self.head1(self.decoder1(self.aspp1(feats1[-1]), skips1))

        # U-Bench multiplies by sigmoid(y1) of its single class; with several classes, the
        # strongest class response gates the image
        gate = torch.sigmoid(y1 if y1.shape[1] == 1 else y1.amax(dim=1, keepdim=True))
        feats2 = contract(image * gate, self.encoder2, self.pool)
        x = self.aspp2(self.pool(feats2[-1]))
        y2 = self.head2(self.decoder2(x, skips1, feats2[::-1]))
        return [y1, y2]


# vgg19-dcbb9e9d.pth ``features.<i>`` -> ``encoder1.stages.<k>.<i>``: the conv indices of each stage
# (features 36, the last max-pool, has no weights)
VGG19_KEY_MAP = [
    [rf"^features\.({'|'.join(map(str, convs))})\.", rf"encoder1.stages.{k}.\1."]
    for k, convs in enumerate(((0, 2), (5, 7), (10, 12, 14, 16), (19, 21, 23, 25), (28, 30, 32, 34)))
]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="DoubleUNet",
        ubench_id=45,
        year=2020,
        paper="DoubleU-Net: A Deep Convolutional Neural Network for Medical Image Segmentation",
        deep_supervision=True,
        ref_params_m=29.288886,
        ref_source="U-Bench models/CNN/dobuleunet/dobuleunet.py (build_doubleunet(input_channel=3, "
        "num_classes=1), torchvision vgg19 stood in without weights), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="VGG-19 encoder untrained (U-Bench: torchvision vgg19(pretrained=True), ImageNet), "
        "initialised as torchvision's untrained VGG, layer names keep torchvision's features indices; "
        "as U-Bench's code: ASPP's pooled branch is a 2x2 adaptive average pool (not global); "
        "returns [y1, y2] (network 1's then network 2's logits). U-Bench ignores input_channel and "
        "repeats a 1-channel input to 3; here in_channels sizes the first conv of both encoders (the "
        "repeat equals summing a 3-channel kernel over its inputs). U-Bench's gate image*sigmoid(y1) "
        "works only for 1 class; with several classes the gate is sigmoid of the max logit",
        extra={
            "pretrained": {
                "backbone": "vgg19",
                "source": "torchvision.models.vgg19(pretrained=True).features[:36] "
                "(features.<i> -> encoder1.stages.<k>.<i>); the classifier is not kept",
                "file": "vgg19-dcbb9e9d.pth",
                "url": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                "hash_in_name": True,
                "modules": ["encoder1"],
                "key_map": VGG19_KEY_MAP,
                "drop": [r"^classifier\."],
            }
        },
    )
)
def doubleunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """DoubleUNet as U-Bench benchmarks it (VGG-19 + ASPP U-Net, then a gated second U-Net)."""
    return DoubleUNet(in_channels=in_channels, num_classes=num_classes)
