"""CSCA U-Net: a deep U-Net with channel-and-space compound attention in its decoder.

Paper: Shu, Wang, Zhang, Shi, Wu, "CSCA U-Net: A channel and space compound attention CNN for
medical image segmentation", Artificial Intelligence in Medicine 150 (2024).

Configuration: U-Bench's ``CSCAUNet`` class with its defaults (repo FengheTan9/U-Bench,
models/CNN/CSCAUNet/CSCAUNet.py; models/__init__.py builds ``CSCAUNet(input_channel=3,
num_classes=1)``, decay 2). Encoder: six residual blocks of widths 32, 64, 128, 256, 512, 1024
with 2x2 max-pooling between them (total stride 32); each block is a 1x1 projection conv, then
two 3x3 conv (bias) + BN + ReLU, plus the projection as residual. The bottleneck is followed by a
double squeeze-excitation (DSE: an average-pooled channel gate, then a max-pooled one, each
1x1 conv /2 -> ReLU -> 1x1 conv -> sigmoid). Five decoder steps (CSCA blocks): 2x2 transposed
conv to the skip's width, concatenation [upsampled, skip], a residual block to half the step's
width, a DSE channel branch and a spatial branch (a one-channel sigmoid map Q and a DSE-gated map
K of the fused features, a DSE-gated map V of the channel branch, ``(Q * K) @ V``, then 3x3 conv +
BN + ReLU back to the width), output [channel * spatial, channel]. Cross-layer fusion: the input
of each decoder step, 1x1-convolved to the step's width and bilinearly upsampled, is added to its
output (all steps but the last). Deep supervision: 1x1 heads on the bottleneck and on the outputs
of the first four decoder steps, bilinearly upsampled to the input size, and a 3x3 head on the
last step; U-Bench returns (dec. 64, 128, 256, 512, bottleneck, final) and trains with
``deeps_supervision: 1`` (model_id.json, id 48). Parameters at 3 in / 1 class: 35,274,795
(counted by instantiating U-Bench's module).

The ``@`` in the spatial branch multiplies the feature maps as H x W matrices (U-Bench's and the
authors' code), so the model only takes square inputs: it declares the square multiples of 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 128, 256, 512, 1024)
DECAY = 2
STRIDE = 2 ** (len(WIDTHS) - 1)
SIZES = tuple(range(STRIDE, 1024 + 1, STRIDE))


class ResidualBlock(nn.Module):
    """1x1 projection to the output width, then two 3x3 conv + BN + ReLU added to it."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 1)
        self.body = nn.Sequential(*conv_bn_relu(out_ch, out_ch), *conv_bn_relu(out_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.body(x) + x


def _gate(ch: int, decay: int) -> nn.Sequential:
    """1x1 conv bottleneck on a pooled (B, C, 1, 1) vector, sigmoid: a channel gate."""
    return nn.Sequential(
        nn.Conv2d(ch, ch // decay, 1), nn.ReLU(inplace=True), nn.Conv2d(ch // decay, ch, 1), nn.Sigmoid()
    )


class DoubleSE(nn.Module):
    """Double squeeze-excitation: gate by the channel means, then by the channel maxima."""

    def __init__(self, ch: int, decay: int = DECAY):
        super().__init__()
        self.mean_gate = _gate(ch, decay)
        self.max_gate = _gate(ch, decay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.mean_gate(x.mean(dim=(2, 3), keepdim=True))
        return x * self.max_gate(F.adaptive_max_pool2d(x, 1))


def _conv_bn(in_ch: int, out_ch: int, kernel_size: int) -> list[nn.Module]:
    """Conv (bias) + BatchNorm, no activation."""
    return [nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2), nn.BatchNorm2d(out_ch)]


def _gated_map(ch: int, mid: int) -> nn.Sequential:
    """Two 3x3 convs to the reduced width (BN between), then a DSE: the K and V maps."""
    return nn.Sequential(*_conv_bn(ch, mid, 3), nn.Conv2d(mid, mid, 3, padding=1), DoubleSE(mid))


class SpatialAttention(nn.Module):
    """Spatial branch of the CSCA block: ``(Q(x) * K(x)) @ V(ref)``, back to the width.

    Q is a one-channel sigmoid map; the product with V is a per-channel matrix product of H x W
    maps (hence square inputs only), as in the reference code.
    """

    def __init__(self, ch: int, decay: int = DECAY):
        super().__init__()
        mid = ch // decay
        self.query = nn.Sequential(*_conv_bn(ch, mid, 1), nn.Conv2d(mid, 1, 1), nn.Sigmoid())
        self.key = _gated_map(ch, mid)
        self.value = _gated_map(ch, mid)
        self.out = nn.Sequential(*conv_bn_relu(mid, ch))

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.out((self.query(x) * self.key(x)) @ self.value(ref))


class CSCABlock(nn.Module):
    """Decoder step: transposed-conv upsampling, concat with the skip, residual fusion to half
    the width, then [channel-attended * spatial-attended, channel-attended]."""

    def __init__(self, in_ch: int, out_ch: int, decay: int = DECAY):
        super().__init__()
        half = out_ch // 2
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.fuse = ResidualBlock(in_ch, half)
        self.channel = DoubleSE(half, decay)
        self.spatial = SpatialAttention(half, decay)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([self.up(x), skip], dim=1))
        chan = self.channel(fused)
        return torch.cat([chan * self.spatial(fused, chan), chan], dim=1)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class CSCAUNet(nn.Module):
    """Six residual encoder stages + DSE, five CSCA decoder steps with cross-layer fusion,
    side outputs on the bottleneck and every decoder step (deep supervision)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS, decay: int = DECAY):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.encoder = nn.ModuleList(ResidualBlock(i, o) for i, o in zip(ins, widths))
        self.bottleneck_se = DoubleSE(widths[-1], decay)
        self.pool = nn.MaxPool2d(2)
        deep = widths[:0:-1]  # 1024, 512, ..., 64: the input widths of the decoder steps
        self.decoder = nn.ModuleList(CSCABlock(w, w // 2, decay) for w in deep)
        self.side_heads = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in deep)
        self.head = nn.Conv2d(widths[0], num_classes, 3, padding=1)
        self.bridges = nn.ModuleList(nn.Conv2d(w, w // 2, 1) for w in deep[:-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.bottleneck_se(skips.pop())
        sides = [_resize(self.side_heads[0](x), size)]
        for i, step in enumerate(self.decoder):
            y = step(x, skips.pop())
            if i == len(self.decoder) - 1:
                break
            sides.append(_resize(self.side_heads[i + 1](y), size))
            x = y + _resize(self.bridges[i](x), y.shape[-2:])
        return sides[::-1] + [self.head(y)]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CSCAUNet",
        ubench_id=48,
        year=2024,
        paper="CSCA U-Net: A channel and space compound attention CNN for medical image segmentation",
        deep_supervision=True,
        ref_params_m=35.274795,
        ref_source="U-Bench models/CNN/CSCAUNet/CSCAUNet.py (CSCAUNet(input_channel=3, num_classes=1), "
        "decay 2), counted by instantiating it",
        ref_input_size=256,
        input_sizes=SIZES,
        size_multiple=STRIDE,
        notes="square inputs only (multiples of 32 up to 1024): the spatial attention multiplies "
        "(Q*K) and V as per-channel H x W matrices (`@`), as U-Bench's code does; deep "
        "supervision returns 6 full-size logits in U-Bench's order (decoder 64, 128, 256, 512 "
        "widths, bottleneck, final 3x3 head last); the decay argument U-Bench passes to the "
        "encoder blocks is unused there too",
    )
)
def cscaunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CSCA U-Net as U-Bench benchmarks it (widths 32..1024, decay 2, deep supervision)."""
    return CSCAUNet(in_channels=in_channels, num_classes=num_classes)
