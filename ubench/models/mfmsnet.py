"""MFMSNet (the paper's MADGNet): a ResNet-50 encoder and a decoder with multi-frequency,
multi-scale attention and cascaded map / distance / boundary heads.

Paper: Nam, Syed, Shin, Hwang, Kim, "Modality-Agnostic Domain Generalizable Medical Image
Segmentation by Multi-Frequency in Multi-Scale Attention", CVPR 2024 (MADGNet; U-Bench and the
authors' code call the network MFMSNet).

Configuration: U-Bench's ``MFMSNet(input_channel=3, num_classes=1)`` at its defaults (repo
FengheTan9/U-Bench, models/CNN/IS2D_models/mfmsnet.py, __init__.py and backbone/resnet.py):
scale_branches=3, frequency_branches=16, frequency_selection='top', min_channel=64,
min_resolution=8, cnn_backbone='resnet50' loaded with ImageNet weights; id 15, flagged
``deeps_supervision`` in models/model_id.json.
- encoder: torchvision's ResNet-50 (7x7/2 stem + BN + ReLU, 3x3/2 max-pool, Bottleneck stages of
  depths 3, 4, 6, 3); its classifier is replaced by an identity, so it has no parameters. Here it
  is built untrained with torchvision's init (see extra['pretrained'] for what U-Bench loads);
- skips: the stride-16/8/4/2 maps (layer3, layer2, layer1, the stem's ReLU output) each reduced
  to 64 channels by a 1x1 conv + BN + ReLU;
- four decoder stages (widths 256, 128, 64, 32): bilinear x2 upsampling, concatenation with the
  skip, 3x3 conv + BN + ReLU, the MFMS attention block, 3x3 conv + BN + ReLU;
- MFMS attention (residual, averaged over 3 scale branches): branch s average-pools the map by 2^s
  (only while the pooled height stays >= 8), applies a grouped (32 groups) 3x3 conv of dilation
  s + 1 and a 1x1 conv to max(width / 2^s, 64) channels (BN + ReLU after each), multi-frequency
  channel attention (the map, resized to the DCT tile of its level, times 16 fixed 2-D DCT bases;
  average, max and min pooling, each averaged over the bases, through one shared bottleneck MLP
  of reduction 16, summed, sigmoid), a spatial gate g = sigmoid(1x1 conv) that weights f(1 - g)
  by a learnt alpha and f g by a learnt beta, and a 3x3 conv + BN + ReLU back to the width,
  upsampled bilinearly to the block's input size;
- cascaded heads, one per stage: 1x1 convs give a map m, a distance d * sigmoid(m) and a boundary
  b * sigmoid(d); upsampled to full size (bilinear, align_corners=True), the boundary feeds the
  distance (+ sigmoid) and the distance the map (+ sigmoid).
The forward returns the four full-size maps, stride-16 stage first, the final (stride-2 stage)
prediction last, as U-Bench's module does in its default mode='train' (its main.py never passes
another mode; mode='eval' returns that last map alone). Spatial size: any multiple of 32.
Parameters at 3 in / 1 class: 31,555,684, of which 23,508,032 in the encoder (counted by
instantiating U-Bench's module with the backbone download disabled).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.resnet import ResNet50Encoder, torchvision_resnet_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
SKIP_WIDTH = 64  # every encoder skip is reduced to this width
DECODER_WIDTHS = (256, 128, 64, 32)
SCALE_BRANCHES = 3
MIN_BRANCH_WIDTH = 64
MIN_POOLED_SIZE = 8
GROUPS = 32
REDUCTION = 16
# the DCT tile of each decoder width: its map size at a 224-pixel input (FcaNet's convention)
DCT_TILE = {256: 14, 128: 28, 64: 56, 32: 112}
# FcaNet's 'top16' frequencies, (u, v) on a 7x7 grid, scaled to the tile: u * (tile // 7)
TOP16_FREQUENCIES = (
    (0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0),
    (5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2),
)


def dct_bases(tile: int, frequencies=TOP16_FREQUENCIES) -> torch.Tensor:
    """Orthonormal 2-D DCT-II bases on a ``tile`` x ``tile`` grid, (len(frequencies), tile, tile)."""
    pos = torch.arange(tile, dtype=torch.float64) + 0.5

    def basis(freq: int) -> torch.Tensor:
        b = torch.cos(math.pi * freq * pos / tile) / math.sqrt(tile)
        return b * math.sqrt(2) if freq else b

    step = tile // 7
    return torch.stack([torch.outer(basis(u * step), basis(v * step)) for u, v in frequencies]).float()


class FrequencyChannelAttention(nn.Module):
    """Multi-frequency channel attention: channel descriptors from the map projected on fixed DCT
    bases (average, max and min over space, each averaged over the bases), one shared bottleneck
    MLP per descriptor, summed, sigmoid gate on the channels."""

    def __init__(self, channels: int, tile: int, reduction: int = REDUCTION):
        super().__init__()
        self.tile = tile
        self.register_buffer("bases", dct_bases(tile), persistent=False)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tiled = x
        if tuple(x.shape[-2:]) != (self.tile, self.tile):
            tiled = F.adaptive_avg_pool2d(x, self.tile)
        # one basis at a time: a (B, bases, C, tile^2) product is 8x slower to differentiate on a
        # CPU, and max/min send the gradient to one position, as the reference's max-pooling does
        avg = peak = trough = 0
        for basis in self.bases:
            spectral = (tiled * basis).flatten(2)
            avg = avg + spectral.mean(-1)
            peak = peak + spectral.max(-1).values
            trough = trough + spectral.min(-1).values
        n = len(self.bases)
        logits = sum(self.mlp((stat / n)[..., None, None]) for stat in (avg, peak, trough))
        return x * torch.sigmoid(logits)


class ScaleBranch(nn.Module):
    """One scale of the MFMS block: dilated grouped context conv, width change, frequency channel
    attention, a spatial gate splitting the map into two learnt-weighted parts, conv back."""

    def __init__(self, channels: int, scale: int, tile: int):
        super().__init__()
        width = max(channels // 2**scale, MIN_BRANCH_WIDTH)
        self.context = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=scale + 1, dilation=scale + 1, groups=GROUPS, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            *conv_bn_relu(channels, width, 1, bias=False),
        )
        self.frequency = FrequencyChannelAttention(width, tile)
        self.gate = nn.Conv2d(width, 1, 1, bias=False)
        self.alpha = nn.Parameter(torch.ones(1))  # weight of the part the gate leaves out
        self.beta = nn.Parameter(torch.ones(1))  # weight of the part the gate selects
        self.project = nn.Sequential(*conv_bn_relu(width, channels, 3, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.frequency(self.context(x))
        g = torch.sigmoid(self.gate(f))
        return self.project(f * (1 - g) * self.alpha + f * g * self.beta)


class MFMSAttention(nn.Module):
    """Multi-frequency multi-scale attention: the mean of ``SCALE_BRANCHES`` branches, branch s
    on the map average-pooled by 2^s (while its height stays >= 8), plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.branches = nn.ModuleList(ScaleBranch(channels, s, DCT_TILE[channels]) for s in range(SCALE_BRANCHES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        out = 0
        for s, branch in enumerate(self.branches):
            k = 2**s
            pooled = F.avg_pool2d(x, k) if k > 1 and size[0] // k >= MIN_POOLED_SIZE else x
            y = branch(pooled)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear")
            out = out + y
        return out / len(self.branches) + x


class DecoderStage(nn.Module):
    """Bilinear x2, concatenation with the reduced skip, conv, MFMS attention, conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.fuse = nn.Sequential(*conv_bn_relu(in_ch + skip_ch, out_ch))
        self.attention = MFMSAttention(out_ch)
        self.refine = nn.Sequential(*conv_bn_relu(out_ch, out_ch))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear")
        return self.refine(self.attention(self.fuse(torch.cat([x, skip], 1))))


class CascadedHead(nn.Module):
    """Map, distance and boundary predictions, each gating the next at the stage's resolution;
    at full size the boundary feeds back into the distance and the distance into the map.
    Only the map is returned (U-Bench's training loop uses it alone)."""

    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        self.map = nn.Conv2d(in_ch, num_classes, 1)
        self.distance = nn.Conv2d(in_ch, num_classes, 1)
        self.boundary = nn.Conv2d(in_ch, num_classes, 1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        m = self.map(x)
        d = self.distance(x) * torch.sigmoid(m)
        b = self.boundary(x) * torch.sigmoid(d)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

        d = up(d) + torch.sigmoid(up(b))
        return up(m) + torch.sigmoid(d)


class MFMSNet(nn.Module):
    """ResNet-50 features -> four MFMS decoder stages -> cascaded heads; the four full-size maps,
    stride-16 stage first, the final prediction last."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = ResNet50Encoder(in_channels)
        skips = self.encoder.out_channels[-2::-1]  # 1024, 512, 256, 64: deepest skip first
        self.skips = nn.ModuleList(nn.Sequential(*conv_bn_relu(c, SKIP_WIDTH, 1)) for c in skips)
        ins = (self.encoder.out_channels[-1],) + DECODER_WIDTHS[:-1]
        self.stages = nn.ModuleList(DecoderStage(i, SKIP_WIDTH, o) for i, o in zip(ins, DECODER_WIDTHS))
        self.heads = nn.ModuleList(CascadedHead(c, num_classes) for c in DECODER_WIDTHS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        *feats, x = self.encoder(x)
        outs = []
        for stage, reduce, head, skip in zip(self.stages, self.skips, self.heads, reversed(feats)):
            x = stage(x, reduce(skip))
            outs.append(head(x, size))
        return outs


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MFMSNet",
        ubench_id=15,
        year=2024,
        paper="MADGNet (U-Bench: MFMSNet): Modality-Agnostic Domain Generalizable Medical Image "
        "Segmentation by Multi-Frequency in Multi-Scale Attention",
        deep_supervision=True,
        ref_params_m=31.555684,
        ref_source="U-Bench models/CNN/IS2D_models/mfmsnet.py + __init__.py + backbone/resnet.py "
        "(MFMSNet(input_channel=3, num_classes=1) at its defaults, cnn_backbone='resnet50', the "
        "backbone built with pretrained loading disabled), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="ResNet-50 encoder built untrained with torchvision's init; U-Bench always loads the "
        "torchvision ImageNet checkpoint into it (pretrained=True is hard-coded), see "
        "extra['pretrained']. Its classifier is an identity in U-Bench (no parameters), so the "
        "checkpoint's fc.* is dropped. U-Bench's input_channel is never used (main.py passes 3, the "
        "signature's default is 1): the stem always takes 3 channels and a 1-channel input is "
        "repeated to 3 (other counts fail); here the stem takes in_channels (summing a pretrained "
        "stem kernel over channels reproduces the repetition for 1 channel). Other unused U-Bench "
        "arguments: block_repetition (stored, never used); frequency_selection other than 'top' "
        "and frequency_branches other than 16 (only the defaults are built); cnn_backbone "
        "'res2net50_v1b_26w_4s' / 'resnest50' (not built; ResNeSt's optional rectified conv, "
        "rectified_conv=False by default, is therefore not built either: resnet50 has none). The "
        "fixed DCT bases are one non-persistent (16, tile, tile) buffer per attention here; U-Bench "
        "registers 16 persistent buffers dct_weight_i of (C, tile, tile) (the same basis repeated "
        "over channels): no parameters either way, but they are not in ubench's state_dict. The "
        "pooled scale branches are resized back to the block's input size; U-Bench upsamples by "
        "the scale factor 2^s, which gives the same result wherever its sizes divide and a shape "
        "error where they do not (height >= 512 with width/32 odd, e.g. 544x544); the pooling "
        "condition (pooled height >= 8) uses the height only, as in U-Bench. The cascaded heads' "
        "distance and boundary maps are computed (they feed the map) but not returned, as in "
        "U-Bench, whose forward returns the four maps in its default mode='train' (main.py never "
        "passes mode) and whose own loss (structure_loss) main.py does not use. Outputs: stride-16, "
        "8, 4, 2 stages, all at full size, final last.",
        extra={
            "pretrained": torchvision_resnet_record(
                "resnet50", "encoder.",
                "IS2D_models.load_cnn_backbone_model('resnet50', pretrained=True): "
                "backbone.resnet.ResNet(Bottleneck, [3, 4, 6, 3]) (torchvision's layout) loads "
                "model_zoo.load_url(url) -> MFMSNet.feature_encoding (fc then set to Identity)",
            ),
        },
    )
)
def mfmsnet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MFMSNet / MADGNet (ResNet-50 encoder, MFMS attention decoder) as U-Bench benchmarks it."""
    return MFMSNet(in_channels=in_channels, num_classes=num_classes)
