"""RWKV-UNet: an inverted-residual encoder with Vision-RWKV mixing and a cross-channel-mix skip.

Paper: Jiang et al., "RWKV-UNet: Improving UNet with Long-Range Cooperation for Effective Medical
Image Segmentation", 2025.

Configuration: U-Bench's ``RWKV_UNet`` (repo FengheTan9/U-Bench, models/RWKV/RWKV_UNet/
RWKV_UNet.py, built by ``rwkv_unet(input_channel, num_classes)``), i.e. the "B" encoder: a stem
block (3 -> 24, 5x5 depthwise, squeeze-excitation) and four stages of inverted-residual (iR)
blocks, depths 3, 3, 6, 3, widths 48, 72, 144, 240, expansion 2, 2.5, 4, 4 (doubled in each
stage's first, stride-2 block), BatchNorm in the first two stages and channel LayerNorm in the
last two, where every block but the first also runs a Vision-RWKV spatial mix on its expanded
features; stochastic depth 0 -> 0.05. The skips at 1/2, 1/4 and 1/8 are fused by CCMix (project
to 48 channels, resize to 1/2 scale, a Vision-RWKV channel mix across the concatenation, project
back). Four decoder blocks (1x1 conv, 9x9 depthwise conv, 1x1 conv, bilinear x2) go from the 1/16
bottleneck back to full size; a 1x1 conv gives the logits. No deep supervision.

Differences from U-Bench, all deliberate: (1) WKV is the pure-torch ``ops.wkv.bi_wkv`` instead of
the CUDA kernel; (2) CCMix works at the 1/2-scale skip's own size instead of a size fixed by
``img_size=256`` (identical at 256x256, and lets other multiples of 16 run); (3) blocks map tokens
back with the real (H, W) instead of assuming a square; (4) the stem takes ``in_channels`` (U-Bench
always builds it for 3); (5) U-Bench loads ImageNet weights for the encoder (net_B.pth); ours
starts untrained. U-Bench also builds, and counts, parameters the segmentation forward never
uses: the encoder's classification norm and 1000-way head (241,480), and a LayerNorm ``ln1`` in
every encoder block without a spatial mix and in every decoder block (6,774). We leave them out:
17,125,513 parameters here vs. 17,373,767 in U-Bench's count (1.4% fewer; ref_params_m below is
U-Bench's count, ours counted layer by layer plus those unused layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import LayerNorm2d, map_to_tokens, stochastic_depth, tokens_to_map
from ubench.models.ops.rwkv_blocks import ChannelMix, SpatialMix, constant_mix, q_shift_tokens
from ubench.models.registry import ModelInfo, register_model

STEM = 24
DEPTHS = (3, 3, 6, 3)
WIDTHS = (48, 72, 144, 240)
EXPANSIONS = (2.0, 2.5, 4.0, 4.0)
CHANNEL_NORM = ("bn", "bn", "ln", "ln")
ACTS = (nn.SiLU, nn.SiLU, nn.GELU, nn.GELU)
HAS_RWKV = (False, False, True, True)
DW_KERNEL = 5
DROP_PATH = 0.05
STRIDE = 16


def _norm(kind: str, dim: int) -> nn.Module:
    return nn.BatchNorm2d(dim, eps=1e-6) if kind == "bn" else LayerNorm2d(dim, eps=1e-6)


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + activation, 'same' padding for odd kernels."""

    def __init__(self, cin, cout, k=1, stride=1, groups=1, act: type[nn.Module] | None = nn.ReLU, norm=True):
        layers = [nn.Conv2d(cin, cout, k, stride, math.ceil((k - stride) / 2), groups=groups, bias=False)]
        if norm:
            layers.append(nn.BatchNorm2d(cout, eps=1e-6))
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate from global average pooling (used in the stem only)."""

    def __init__(self, dim: int, reduced: int, act: type[nn.Module]):
        super().__init__()
        self.reduce = nn.Conv2d(dim, reduced, 1)
        self.act = act()
        self.expand = nn.Conv2d(reduced, dim, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


class InvertedResidualRWKV(nn.Module):
    """iR block: norm, 1x1 expand, [Vision-RWKV spatial mix], depthwise conv, 1x1 project.

    The spatial mix and the depthwise conv each add to their input when the block keeps its
    width and resolution, as does the whole block.
    """

    def __init__(self, cin, cout, expansion, norm, act, stride=1, rwkv=False, se=False, residual=True, drop_path=0.0):
        super().__init__()
        mid = int(cin * expansion)
        self.norm = _norm(norm, cin) if norm else nn.Identity()
        self.expand = ConvBNAct(cin, mid, 1)
        self.rwkv = rwkv
        if rwkv:
            self.att = SpatialMix(
                mid, q_shift_tokens, constant_mix(mid, 0.5, ("k", "v", "r")), torch.zeros(mid), torch.zeros(mid)
            )
            self.att_norm = nn.LayerNorm(mid)
        self.local = ConvBNAct(mid, mid, DW_KERNEL, stride, groups=mid, act=nn.SiLU)
        self.se = SqueezeExcite(mid, round(mid * 1.0), act) if se else nn.Identity()
        self.project = ConvBNAct(mid, cout, 1, act=None, norm=False)
        self.residual = residual and cin == cout and stride == 1
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, x):
        shortcut = x
        x = self.expand(self.norm(x))
        if self.rwkv:
            hw = x.shape[-2:]
            t = map_to_tokens(x)
            t = t + self.drop_path(self.att_norm(self.att(t, hw)))
            x = tokens_to_map(t, *hw)
        x = x + self.se(self.local(x)) if self.residual else self.se(self.local(x))
        x = self.project(x)
        return shortcut + self.drop_path(x) if self.residual else x


class Encoder(nn.Module):
    """Stem block at full resolution, then four stages each halving the resolution once."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.stem = InvertedResidualRWKV(in_channels, STEM, 1.0, None, ACTS[0], se=True, residual=False)
        rates = torch.linspace(0, DROP_PATH, sum(DEPTHS)).tolist()
        self.stages = nn.ModuleList()
        cin, n = STEM, 0
        for i, depth in enumerate(DEPTHS):
            blocks = []
            for j in range(depth):
                first = j == 0
                blocks.append(
                    InvertedResidualRWKV(
                        cin,
                        WIDTHS[i],
                        EXPANSIONS[i] * (2 if first else 1),
                        CHANNEL_NORM[i],
                        ACTS[i],
                        stride=2 if first else 1,
                        rwkv=HAS_RWKV[i] and not first,
                        residual=not first,
                        drop_path=rates[n],
                    )
                )
                cin, n = WIDTHS[i], n + 1
            self.stages.append(nn.Sequential(*blocks))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)

    def forward(self, x) -> list[torch.Tensor]:
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats  # 1/2, 1/4, 1/8, 1/16


class CCMix(nn.Module):
    """Fuse the 1/8, 1/4 and 1/2 skips: project to a common width at 1/2 scale, run one
    Vision-RWKV channel mix over their concatenation, split, project back and resize."""

    def __init__(self, dims=(WIDTHS[2], WIDTHS[1], WIDTHS[0]), width=WIDTHS[0]):
        super().__init__()
        self.width = width
        total = width * len(dims)
        self.inp = nn.ModuleList(nn.Conv2d(d, width, 1) for d in dims)
        self.mix = ChannelMix(total, 2, q_shift_tokens, constant_mix(total, 0.5, ("k", "r")))
        self.mix_norm = nn.LayerNorm(total)
        self.drop_path = stochastic_depth(0.05)
        self.out = nn.ModuleList(nn.Conv2d(width, d, 1) for d in dims)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        size = feats[-1].shape[-2:]
        x = torch.cat(
            [p(F.interpolate(f, size=size, mode="bilinear", align_corners=False)) for p, f in zip(self.inp, feats)],
            dim=1,
        )
        t = map_to_tokens(x)
        t = t + self.drop_path(self.mix_norm(self.mix(t, size)))
        parts = tokens_to_map(t, *size).split(self.width, dim=1)
        return [
            F.interpolate(p(part), size=f.shape[-2:], mode="bilinear", align_corners=False)
            for p, part, f in zip(self.out, parts, feats)
        ]


class UpBlock(nn.Sequential):
    """1x1 conv, 9x9 depthwise conv + SiLU, 1x1 conv to the output width, bilinear x2."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            ConvBNAct(cin, cin, 1),
            ConvBNAct(cin, cin, 9, groups=cin, act=nn.SiLU),
            ConvBNAct(cin, cout, 1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )


class RWKVUNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = Encoder(in_channels)
        self.ccm = CCMix()
        w = WIDTHS
        self.decoder = nn.ModuleList(
            [UpBlock(w[3], w[2]), UpBlock(2 * w[2], w[1]), UpBlock(2 * w[1], w[0]), UpBlock(2 * w[0], STEM)]
        )
        self.head = nn.Conv2d(STEM, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1, e2, e3, x = self.encoder(x)
        skips = self.ccm([e3, e2, e1])  # 1/8, 1/4, 1/2
        x = self.decoder[0](x)
        for up, skip in zip(self.decoder[1:], skips):
            x = up(torch.cat([x, skip], dim=1))
        return self.head(x)


@register_model(
    ModelInfo(
        family="rwkv",
        ubench_name="RWKV_UNet",
        ubench_id=112,
        year=2025,
        paper="RWKV-UNet: Improving UNet with Long-Range Cooperation for Effective Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=17.373767,
        ref_source="U-Bench models/RWKV/RWKV_UNet/RWKV_UNet.py (rwkv_unet(input_channel=3, num_classes=1)), "
        "counted layer by layer, including its unused classification head and LayerNorms",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="pure-torch Bi-WKV instead of the CUDA kernel; CCMix at the 1/2-scale skip's size instead of a "
        "fixed 128 (same at 256); untrained encoder (U-Bench loads ImageNet net_B.pth); 248,254 parameters "
        "U-Bench builds but never uses (classification head and norm, LayerNorms of blocks without RWKV) "
        "left out, hence 1.4% fewer parameters than U-Bench's count",
    )
)
def rwkv_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """RWKV-UNet (B encoder) as U-Bench benchmarks it, WKV in pure torch."""
    return RWKVUNet(in_channels=in_channels, num_classes=num_classes)
