"""DDS-UNet, a U-Net with deformable residual encoder stages, multi-scale attention after every
stage and small U-Nets on the skip connections.

Paper: Ou, Chen, Zhang, Yang, Zhang, Zhou, Chen, Peng, "Enhanced Medical Image Segmentation via
Deep Dynamic Self-Adjusting U-Net with Multi-scale Attention and Semantic Mitigation", submitted to
The Visual Computer, 2025 (code: github.com/ououyy/DDS_UNet).

Configuration: U-Bench's ``dds_unet(input_channel, num_classes)`` (repo FengheTan9/U-Bench,
models/CNN/DDS_UNet/DDS_UNet.py with LDR.py, MSM.py, SMM.py), the "L" variant, widths 64, 128, 256,
512, 1024. Five encoder stages, each an LDR block (3x3 conv + BN, 2x2 max-pool, ReLU; then a
residual bottleneck: 1x1 conv + BN + ReLU to a quarter width, a 3x3 deformable conv added to its
input, a 1x1 conv back, added to the pooled map) followed by an MSM block. MSM: a squeeze-excitation
gate, the gated map split into four channel quarters convolved with 3x3, 5x5, 7x7 and 9x9 kernels,
the six pairwise products of those four, concatenated with a 1x1 conv of the global average (spread
over the map) and a half-width 1x1 conv of the input, a 1x1 conv back to the width, plus the input.
Decoder: five steps of 3x3 conv + BN, bilinear x2 upsampling (align_corners=False), ReLU; after each
of the first four, an MSM block and the skip refined by an SMM: at strides 2, 4 and 8 a small U-Net
(halving the width per level, pooling down to stride 32 and upsampling back with the same steps as
the main network, adding its own skips), at stride 16 a 3x3 conv + BN + ReLU. A 1x1 conv gives the
logits. Total stride 32. Parameters at 3 in / 1 class: 43,616,403 (counted by instantiating
U-Bench's module).

The deformable conv follows the PyTorch port U-Bench uses (offsets from a 3x3 conv whose weights
start at zero; bilinear sampling in the zero-padded map with the sample points and their corners
clamped to it, so a point beyond the border gets weight 2 on the clamped corner pair; the 3x3
samples tiled into a 3x-larger map and convolved with a 3x3 stride-3 kernel without bias). Its
backward hook meant to scale the offsets' gradient by 0.1 returns nothing, so it is left out.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import SqueezeExcite
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 128, 256, 512, 1024)
BRANCH_KERNELS = (3, 5, 7, 9)
# SMM depth per skip, shallowest first: the U-Nets pool the stride-2, -4 and -8 skips down to
# stride 32; the stride-16 skip gets a single conv (levels 0), not a one-level U-Net
SKIP_LEVELS = (4, 3, 2, 0)


def conv_bn(in_ch: int, out_ch: int) -> list[nn.Module]:
    """3x3 conv (bias) + BatchNorm."""
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch)]


def down_step(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv + BN, 2x2 max-pool, ReLU (DDS-UNet pools before the activation)."""
    return nn.Sequential(*conv_bn(in_ch, out_ch), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True))


def up_step(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv + BN, bilinear x2 (align_corners=False), ReLU."""
    return nn.Sequential(*conv_bn(in_ch, out_ch), nn.Upsample(scale_factor=2, mode="bilinear"),
                         nn.ReLU(inplace=True))


def _corners(p: torch.Tensor, size: int):
    """Per axis, the two neighbouring grid indices of the points ``p`` and their bilinear weights,
    computed as U-Bench's port does: indices and points clamped to [0, size - 1]."""
    low = p.detach().floor()
    lo = low.clamp(0, size - 1)
    hi = (low + 1).clamp(0, size - 1)
    p = p.clamp(0, size - 1)
    return (lo.long(), 1 + (lo - p)), (hi.long(), 1 - (hi - p))


class DeformConv(nn.Module):
    """3x3 deformable convolution v1 (Dai et al., ICCV 2017), stride 1, padding 1, no modulation,
    no bias; offsets predicted by a 3x3 conv with zero-initialised weights."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 3):
        super().__init__()
        self.k = k
        self.conv = nn.Conv2d(in_ch, out_ch, k, stride=k, bias=False)
        self.p_conv = nn.Conv2d(in_ch, 2 * k * k, 3, padding=1)
        nn.init.zeros_(self.p_conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, n, pad = self.k, self.k * self.k, self.k // 2
        offset = self.p_conv(x).permute(0, 2, 3, 1)  # (B, h, w, 2n): row offsets, then column
        b, h, w, _ = offset.shape
        x = F.pad(x, (pad, pad, pad, pad))
        c, hp, wp = x.shape[1:]
        taps = torch.arange(k, device=x.device, dtype=offset.dtype) - (k - 1) // 2
        rows = torch.arange(h, device=x.device, dtype=offset.dtype)[:, None, None] + pad + taps.repeat_interleave(k)
        cols = torch.arange(w, device=x.device, dtype=offset.dtype)[None, :, None] + pad + taps.repeat(k)
        row_corners = _corners(offset[..., :n] + rows, hp)
        col_corners = _corners(offset[..., n:] + cols, wp)
        flat = x.reshape(b, c, hp * wp)
        samples = 0
        for i, j in ((0, 0), (1, 1), (0, 1), (1, 0)):  # the reference's corner order
            (ri, rw), (ci, cw) = row_corners[i], col_corners[j]
            index = (ri * wp + ci).reshape(b, 1, h * w * n).expand(b, c, h * w * n)
            values = flat.gather(2, index).reshape(b, c, h, w, n)
            samples = samples + (rw * cw).unsqueeze(1) * values
        # tile each pixel's k x k samples into a k x k patch, then one stride-k conv
        samples = samples.reshape(b, c, h, w, k, k).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h * k, w * k)
        return self.conv(samples)


class LDR(nn.Module):
    """Lightweight deformable residual stage: conv + BN + pool + ReLU, then a quarter-width
    deformable bottleneck added back to it."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        q = out_ch // 4
        self.down = down_step(in_ch, out_ch)
        self.reduce = nn.Sequential(*conv_bn_relu(out_ch, q, kernel_size=1))
        self.deform = DeformConv(q, q)
        self.expand = nn.Conv2d(q, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        r = self.reduce(x)
        return self.expand(self.deform(r) + r) + x


class DoubledMeanSE(SqueezeExcite):
    """U-Bench's SE block: its descriptor "average + max" adds the average pool to itself (the
    max pool is built but not used), so the gate sees twice the channel means."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))
        return x * self.fc(mean + mean)[:, :, None, None]


class MSM(nn.Module):
    """Multi-scale self-attention module: SE gate, four kernel sizes on channel quarters, their
    pairwise products, global context and a 1x1 branch fused by a 1x1 conv, plus the input."""

    def __init__(self, ch: int):
        super().__init__()
        q = ch // 4
        self.context = nn.Conv2d(ch, ch, 1)
        self.point = nn.Conv2d(ch, ch // 2, 1)
        self.se = DoubledMeanSE(ch)
        self.branches = nn.ModuleList(nn.Conv2d(q, q, k, padding=k // 2) for k in BRANCH_KERNELS)
        self.fuse = nn.Conv2d(3 * ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.context(x.mean(dim=(2, 3), keepdim=True)).expand_as(x)
        parts = [conv(p) for conv, p in zip(self.branches, self.se(x).chunk(4, dim=1))]
        products = [a * b for a, b in combinations(parts, 2)]
        return self.fuse(torch.cat([context, self.point(x), *products], dim=1)) + x


class SMM(nn.Module):
    """Semantic mitigation on a skip: a ``levels``-deep U-Net (width halving per level, the last
    level keeping its width) whose down/up steps are the main network's, with additive skips."""

    def __init__(self, ch: int, levels: int):
        super().__init__()
        widths = [ch] + [ch >> min(i, levels - 1) for i in range(1, levels + 1)]
        self.down = nn.ModuleList(down_step(widths[i], widths[i + 1]) for i in range(levels))
        self.up = nn.ModuleList(up_step(widths[i], widths[i - 1]) for i in range(levels, 0, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for step in self.down:
            x = step(x)
            skips.append(x)
        skips.pop()
        for step in self.up:
            x = step(x)
            if skips:
                x = x + skips.pop()
        return x


def smm(ch: int, levels: int) -> nn.Module:
    """The skip refiner at one level: a small U-Net, or at the deepest skip one conv + BN + ReLU."""
    return SMM(ch, levels) if levels else nn.Sequential(*conv_bn_relu(ch, ch))


class DDSUNet(nn.Module):
    """Five LDR + MSM stages down, five up-steps (MSM and a refined skip after the first four)."""

    stride = 2 ** len(WIDTHS)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.down = nn.ModuleList(LDR(i, o) for i, o in zip(ins, widths))
        outs = tuple(reversed(widths[:-1])) + (widths[0],)
        self.up = nn.ModuleList(up_step(i, o) for i, o in zip(reversed(widths), outs))
        self.refine = nn.ModuleList(smm(w, lv) for w, lv in zip(widths[:-1], SKIP_LEVELS))
        self.enc_att = nn.ModuleList(MSM(w) for w in widths)
        self.dec_att = nn.ModuleList(MSM(w) for w in reversed(widths[:-1]))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage, att in zip(self.down, self.enc_att):
            x = att(stage(x))
            skips.append(x)
        x = skips.pop()
        for up, att, refine in zip(self.up, self.dec_att, reversed(self.refine)):
            x = att(up(x)) + refine(skips.pop())
        return self.head(self.up[-1](x))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="DDS_UNet",
        ubench_id=98,
        year=2025,
        paper="Enhanced Medical Image Segmentation via Deep Dynamic Self-Adjusting U-Net with "
        "Multi-scale Attention and Semantic Mitigation",
        deep_supervision=False,
        ref_params_m=43.616403,
        ref_source="U-Bench models/CNN/DDS_UNet/DDS_UNet.py (dds_unet(input_channel=3, num_classes=1)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=DDSUNet.stride,
        notes="U-Bench's dds_unet passes n_channels=input_channel, which DDS_UNet swallows in **kwargs, "
        "so U-Bench always builds 3 input channels; here in_channels is honoured. The SE gate's "
        "'avg + max' descriptor is avg + avg (max pool unused, no params); the deformable conv's "
        "gradient-scaling backward hook is a no-op and is left out; points sampled beyond the padded "
        "border get weight 2 on the clamped corners, as in the reference port",
    )
)
def dds_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """DDS-UNet (L, widths 64..1024) as U-Bench benchmarks it."""
    return DDSUNet(in_channels=in_channels, num_classes=num_classes)
