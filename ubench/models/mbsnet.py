"""MBSNet, a two-branch (local + global) light CNN with cross-fused decoders.

Paper: Jin, Yu, Peng, Wang, Zhao, "A novel medical image segmentation approach by using
multi-branch segmentation network based on local and global information synchronous learning",
Scientific Reports 13, 6762 (2023).

Configuration: U-Bench's ``mbsnet(input_channel, num_classes)`` helper (repo FengheTan9/U-Bench,
models/CNN/MBSNet/MBSNet.py; models/__init__.py registers it as ``MBSNet``), i.e. ``MBSNet(in_ch=3,
out_ch=1)`` with widths 16, 32, 64, 128, 256. Local branch: five stages of 3x3 conv (bias) + BN +
ReLU followed by a parallel residual mixer (PRM: a max-pool 3x3 / 1x1 conv path and a 1x1 conv +
ConvNeXt-style depthwise/LayerNorm/MLP path, concatenated, 3x3 conv + BN, residual, ReLU), 2x2
max-pooling between stages, a squeeze-excitation (reduction 1) on the 1/16 map. Global branch on
the input: three dilated bottlenecks (1x1, 3x3 dilation 2/4/8, 1x1, each + BN + ReLU), each
concatenated with the local map of its level and fused by a 3x3 conv + BN + ReLU, 2x2 average
pooling between levels; a spatial attention (channel-softmax query, 1x1 value, residual) at 1/4.
Decoder: two plain up-steps on the local branch (bilinear x2 + conv, concatenation [skip, up], one
conv) down to 1/4, then two cross-fused levels where each branch's decoder takes the other
branch's deeper map (3x3 conv, then bilinear x2, concatenation [up, skip], 3x3 conv, dropout 0.1);
the global decoder's full-resolution skip is the input image itself. The two full-resolution maps
are concatenated and projected by two 1x1 convs (no activation between). Parameters at 3 in /
1 class: 3,977,361 (counted by instantiating U-Bench's module). Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import SqueezeExcite
from ubench.models.ops.conv_blocks import conv_bn_relu, expand
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (16, 32, 64, 128, 256)
RATES = (2, 4, 8)  # dilations of the global branch's three levels
DROPOUT = 0.1


def conv_unit(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv (bias) + BN + ReLU: the model's one generic conv step."""
    return nn.Sequential(*conv_bn_relu(in_ch, out_ch))


class ConvNeXtMixer(nn.Module):
    """Depthwise 3x3 conv, then LayerNorm and a x4 MLP over channels (a ConvNeXt block without
    its residual and layer scale)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.fc2(self.act(self.fc1(self.norm(x))))
        return x.permute(0, 3, 1, 2)


class ParallelResidualMixer(nn.Module):
    """PRM: a max-pooled and a ConvNeXt-mixed view of the map, fused by a 3x3 conv, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.pool_path = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), *conv_bn_relu(ch, ch, 1, bias=False)
        )
        self.mix_path = nn.Sequential(
            nn.Conv2d(ch, ch, 1, bias=False), ConvNeXtMixer(ch), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)
        )
        self.fuse = nn.Sequential(nn.Conv2d(2 * ch, ch, 3, padding=1), nn.BatchNorm2d(ch))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([self.pool_path(x), self.mix_path(x)], dim=1))
        return self.act(y + x)


class DilatedBottleneck(nn.Sequential):
    """1x1 conv -> dilated 3x3 conv -> 1x1 conv, each + BN + ReLU (no residual)."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int):
        super().__init__(
            *conv_bn_relu(in_ch, out_ch, 1),
            nn.Conv2d(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            *conv_bn_relu(out_ch, out_ch, 1),
        )


class SpatialAttention(nn.Module):
    """One spatial map from a channel-softmax query (pooled, 1x1 -> GELU -> 1x1) applied to a 1x1
    value projection, added to every channel of the input (no sigmoid, as in U-Bench)."""

    def __init__(self, ch: int):
        super().__init__()
        self.q1 = nn.Conv2d(ch, ch, 1, bias=False)
        self.q2 = nn.Conv2d(ch, ch, 1, bias=False)
        self.act = nn.GELU()
        self.v = nn.Conv2d(ch, ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.q2(self.act(self.q1(x.mean(dim=(2, 3), keepdim=True)))).softmax(dim=1)
        attn = torch.matmul(q.reshape(b, 1, -1), self.v(x).flatten(2))
        return x + attn.reshape(b, 1, h, w)


class LocalBranch(nn.Module):
    """Conv + PRM per width, 2x2 max-pooling between stages, SE on the deepest map."""

    def __init__(self, in_channels: int, widths):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.convs = nn.ModuleList(conv_unit(i, o) for i, o in zip(ins, widths))
        self.mixers = nn.ModuleList(ParallelResidualMixer(w) for w in widths)
        self.se = SqueezeExcite(widths[-1], reduction=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, (conv, mixer) in enumerate(zip(self.convs, self.mixers)):
            x = mixer(conv(x if i == 0 else F.max_pool2d(x, 2)))
            feats.append(x)
        feats[-1] = self.se(feats[-1])
        return feats


class GlobalBranch(nn.Module):
    """Dilated bottlenecks from the input, each fused with the local map of its level, 2x2
    average pooling between levels, spatial attention on the last; returns every level."""

    def __init__(self, in_channels: int, widths, rates):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.fuse = nn.ModuleList(conv_unit(2 * w, w) for w in widths)
        self.dilated = nn.ModuleList(DilatedBottleneck(i, o, r) for i, o, r in zip(ins, widths, rates))
        self.attn = SpatialAttention(widths[-1])

    def forward(self, x: torch.Tensor, local: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = []
        for i, (dilated, fuse, skip) in enumerate(zip(self.dilated, self.fuse, local)):
            x = fuse(torch.cat([dilated(x if i == 0 else F.avg_pool2d(x, 2)), skip], dim=1))
            feats.append(x)
        feats[-1] = self.attn(feats[-1])
        return feats


class CrossStep(nn.Module):
    """Decode one level from the other branch's deeper map: conv to the level's width, bilinear
    x2, concatenation [up, skip], conv, dropout."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int):
        super().__init__()
        self.reduce = conv_unit(in_ch, out_ch)
        self.fuse = conv_unit(out_ch + skip_ch, out_ch)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(deep), scale_factor=2, mode="bilinear", align_corners=False)
        return self.drop(self.fuse(torch.cat([up, skip], dim=1)))


class MBSNet(nn.Module):
    """Local and global encoders, a local up-path to 1/4, two cross-fused levels, a 1x1 head."""

    stride = 2 ** (len(WIDTHS) - 1)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS, rates=RATES):
        super().__init__()
        w = widths
        self.local = LocalBranch(in_channels, w)
        self.glob = GlobalBranch(in_channels, w[:3], rates)
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), conv_unit(w[i], w[i - 1]))
            for i in (4, 3)
        )
        self.fuse = nn.ModuleList(conv_unit(w[i], w[i - 1]) for i in (4, 3))
        # (local, global) per level, 1/2 then full resolution; the global skip at full size is the input
        self.cross = nn.ModuleList([
            CrossStep(w[2], w[1], w[1]), CrossStep(w[2], w[1], w[1]),
            CrossStep(w[1], w[0], w[0]), CrossStep(w[1], w[0], in_channels),
        ])
        self.head = nn.Sequential(nn.Conv2d(2 * w[0], w[0], 1), nn.Conv2d(w[0], num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.local(x)
        g = self.glob(x, e[:3])
        loc = expand(e[4], e[2:4], self.up, self.fuse)  # local decoder down to 1/4
        glb = g[2]
        steps = zip(self.cross[0::2], self.cross[1::2], (e[1], e[0]), (g[1], x))
        for to_local, to_global, l_skip, g_skip in steps:
            loc, glb = to_local(glb, l_skip), to_global(loc, g_skip)
        return self.head(torch.cat([loc, glb], dim=1))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MBSNet",
        ubench_id=20,
        year=2023,
        paper="A novel medical image segmentation approach by using multi-branch segmentation "
        "network based on local and global information synchronous learning",
        deep_supervision=False,
        ref_params_m=3.977361,
        ref_source="U-Bench models/CNN/MBSNet/MBSNet.py (mbsnet(input_channel=3, num_classes=1) = "
        "MBSNet(in_ch=3, out_ch=1)), counted by instantiating it",
        ref_input_size=256,
        size_multiple=MBSNet.stride,
        notes="U-Bench's last global-decoder conv is built for 16 + 3 channels whatever "
        "input_channel (it concatenates the input image); here it takes 16 + in_channels, "
        "identical at 3. The spatial attention's sigmoid is defined but commented out in U-Bench's "
        "forward, so its map is added un-squashed, as here. Unused Maxpool5/D_Avgpool3 (no "
        "parameters) are not built.",
    )
)
def mbsnet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MBSNet as U-Bench benchmarks it (widths 16..256, dilations 2/4/8)."""
    return MBSNet(in_channels=in_channels, num_classes=num_classes)
