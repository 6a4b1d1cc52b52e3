"""LFU-Net, a very light nested U-Net whose every decoder node sees every coarser and finer map.

Paper: Deng, Wang, Hou, Liang, Zeng, "LFU-Net: A Lightweight U-Net with Full Skip Connections for
Medical Image Segmentation", Current Medical Imaging 19(4), 2023 (online 2022).

Configuration: U-Bench's ``LFU_Net`` (repo FengheTan9/U-Bench, models/CNN/LFU_Net/LFU_Net.py,
``lfu_net(input_channel=3, num_classes=1)``): base width n = 8 and every 3x3 conv in 8 groups
(except the very first one). Encoder: five nodes X(i,0) of widths 8, 16, 32, 64, 128, each two
(grouped 3x3 conv + BN + ReLU), with 2x2 max-pooling between them. Decoder: the UNet++ grid of
nodes X(i,j), i + j <= 4, j >= 1, each the same double conv from (i + 2j) * 8 channels to 8,
computed diagonal by diagonal as soon as X(i+j,0) exists. X(i,j) concatenates, in this order:
every shallower encoder node X(k,0), k < i, max-pooled by 2^(i-k); X(i,0) itself; the earlier
nodes of its row X(i,1..j-1); the encoder node X(i+j,0) upsampled by 2^j; the inner nodes
X(i+j-m,m), m = 1..j-1, upsampled by 2^(j-m) (bilinear, align_corners=True). Each input first
passes through a grouped 3x3 conv to 8 channels (no BN, no activation), chosen by the input's
width (one per encoder level, the level-0 one for the 8-channel inner nodes) and by its role: a
"lateral" conv for X(i,0) and for the map just below (the last input), a "cross" conv for all
the others. Output: the one 1x1 head applied to X(0,1..4), averaged (U-Bench trains it with a
single loss, no deep supervision). Parameters at 3 in / 1 class: 47,849, counted by
instantiating U-Bench's module. Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.registry import ModelInfo, register_model

WIDTH = 8
GROUPS = 8
LEVELS = 5


def grouped_conv(in_ch: int, out_ch: int, groups: int = GROUPS) -> nn.Conv2d:
    """3x3 conv with bias in ``groups`` groups: LFU-Net's one way of saving parameters."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, groups=groups)


class GroupedDoubleConv(nn.Sequential):
    """Two (grouped 3x3 conv -> BN -> ReLU); the first conv may use other groups (the stem: 1)."""

    def __init__(self, in_ch: int, out_ch: int, first_groups: int = GROUPS):
        layers: list[nn.Module] = []
        for conv in (grouped_conv(in_ch, out_ch, first_groups), grouped_conv(out_ch, out_ch)):
            layers += [conv, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        super().__init__(*layers)


def grid_nodes(levels: int) -> list[tuple[int, int]]:
    """Decoder nodes (i, j) in the order they can be computed: diagonal d = i + j, deepest first."""
    return [(d - j, j) for d in range(1, levels) for j in range(1, d + 1)]


def resample(x: torch.Tensor, log2_scale: int) -> torch.Tensor:
    """Max-pool by 2^-s (s < 0) or bilinear-upsample by 2^s (s > 0, align_corners=True)."""
    if log2_scale < 0:
        return F.max_pool2d(x, 2**-log2_scale)
    if log2_scale > 0:
        return F.interpolate(x, scale_factor=2**log2_scale, mode="bilinear", align_corners=True)
    return x


class LFUNet(nn.Module):
    """Encoder column, full-skip nested decoder grid, averaged head over the top row."""

    stride = 2 ** (LEVELS - 1)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, width: int = WIDTH, levels: int = LEVELS):
        super().__init__()
        widths = [width * 2**i for i in range(levels)]
        ins = [in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(  # the stem's first conv is dense (groups 1)
            GroupedDoubleConv(c_in, c_out, first_groups=1 if i == 0 else GROUPS)
            for i, (c_in, c_out) in enumerate(zip(ins, widths))
        )
        self.nodes = nn.ModuleDict(
            {f"{i}_{j}": GroupedDoubleConv((i + 2 * j) * width, width) for i, j in grid_nodes(levels)}
        )
        # one projection to `width` channels per encoder level (index 0 also serves inner nodes)
        self.lateral = nn.ModuleList(grouped_conv(w, width) for w in widths)
        self.cross = nn.ModuleList(grouped_conv(w, width) for w in widths)
        self.head = nn.Conv2d(width, num_classes, 1)
        self.levels = levels

    def _node_inputs(self, i: int, j: int, enc: list, inner: dict) -> list[torch.Tensor]:
        feats = [self.cross[k](resample(enc[k], k - i)) for k in range(i)]
        feats.append(self.lateral[i](enc[i]))
        feats += [self.cross[0](inner[i, m]) for m in range(1, j)]
        # from below: X(i+j,0), then X(i+j-m,m); the last of them (just below) is "lateral"
        below = [(enc[i + j], i + j)] + [(inner[i + j - m, m], 0) for m in range(1, j)]
        for m, (t, level) in enumerate(below):
            proj = self.lateral[level] if m == j - 1 else self.cross[level]
            feats.append(proj(resample(t, j - m)))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc: list[torch.Tensor] = []
        inner: dict[tuple[int, int], torch.Tensor] = {}
        for d in range(self.levels):
            x = self.encoder[d](x if d == 0 else F.max_pool2d(x, 2))
            enc.append(x)
            for j in range(1, d + 1):
                i = d - j
                inner[i, j] = self.nodes[f"{i}_{j}"](torch.cat(self._node_inputs(i, j, enc, inner), 1))
        top = [self.head(inner[0, j]) for j in range(1, self.levels)]
        return sum(top[1:], top[0]) / len(top)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="LFU_Net",
        ubench_id=23,
        year=2023,
        paper="LFU-Net: A Lightweight U-Net with Full Skip Connections for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=0.047849,
        ref_source="U-Bench models/CNN/LFU_Net/LFU_Net.py (lfu_net(input_channel=3, num_classes=1)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=LFUNet.stride,
        notes="The paper's deep supervision is folded into one output as in U-Bench: the mean of the "
        "shared 1x1 head over X(0,1..4). U-Bench's module registers two aliases (stagep = stage0p, "
        "stagezp = stage0zp) that repeat those weights under a second name in its state_dict; ours "
        "has each weight once. Its separate 4x and 8x max-pools equal our 2^k pools.",
    )
)
def lfu_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """LFU-Net as U-Bench benchmarks it (base width 8, groups 8, averaged top-row outputs)."""
    return LFUNet(in_channels=in_channels, num_classes=num_classes)
