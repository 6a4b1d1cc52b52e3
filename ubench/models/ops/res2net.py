"""Res2Net-v1b 26w x 4s (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2019),
the encoder of PraNet, CaraNet and UACANet in U-Bench, written from scratch (no timm).

v1b: a deep stem (three 3x3 convs 3->32 stride 2, 32->32, 32->64, BN/ReLU between), BN + ReLU,
3x3 max-pool; bottlenecks whose 3x3 conv is split into ``scale`` groups of 26*planes/64 channels
processed hierarchically; a stage's first block strides every group's 3x3 conv, average-pools the
last group and has an avg-pool + 1x1 conv + BN shortcut. Attribute names follow the released
checkpoints (conv1, bn1, layer1..4, fc), so a checkpoint's keys load as they are. ``strides`` and
``dilations`` (per stage) give the dilated variants of a smaller output stride (UACANet's
``output_stride=16``: strides (1, 2, 2, 1), dilations (1, 1, 1, 2)); the defaults are the plain
stride-32 network.
Initialisation: torchvision's ResNet init (``init_resnet_weights``), as the reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ubench.models.ops.resnet import init_resnet_weights

RES2NET50_DEPTHS = (3, 4, 6, 3)
RES2NET101_DEPTHS = (3, 4, 23, 3)
RES2NET_PLANES = (64, 128, 256, 512)
EXPANSION = 4


class Res2Bottleneck(nn.Module):
    """Res2Net bottleneck: the 3x3 conv works on ``scale`` channel groups, each group after the
    first also receiving the previous group's output (multi-scale receptive fields in one block).
    A stage's first block ('stage' type) strides every group's conv, skips the hierarchy and
    average-pools the last group instead of passing it through. ``dilation`` dilates (and pads
    alike) every group's 3x3 conv."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 first: bool = False, base_width: int = 26, scale: int = 4, dilation: int = 1):
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        self.width, self.scale, self.first = width, scale, first
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        if first:
            self.pool = nn.AvgPool2d(kernel_size=3, stride=stride, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
            for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, 1)
        outs = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            g = groups[i] if i == 0 or self.first else outs[-1] + groups[i]
            outs.append(self.relu(bn(conv(g))))
        outs.append(self.pool(groups[-1]) if self.first else groups[-1])
        out = self.bn3(self.conv3(torch.cat(outs, 1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _res2_stage(inplanes: int, planes: int, depth: int, stride: int, dilation: int = 1) -> nn.Sequential:
    """``depth`` bottlenecks, all with 3x3 convs dilated by ``dilation``; the first one with the v1b
    shortcut (avg-pool, then 1x1 conv + BN; the pool is the identity at stride 1)."""
    downsample = nn.Sequential(
        nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(inplanes, planes * EXPANSION, 1, bias=False),
        nn.BatchNorm2d(planes * EXPANSION),
    )
    blocks = [Res2Bottleneck(inplanes, planes, stride, downsample, first=True, dilation=dilation)]
    blocks += [Res2Bottleneck(planes * EXPANSION, planes, dilation=dilation) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class Res2NetV1b(nn.Module):
    """Res2Net-v1b 26w x 4s with a deep stem; attribute names follow the released checkpoints
    (conv1, bn1, layer1..4, fc), so ``load_state_dict`` takes them as they are. ``fc`` is the
    ImageNet classifier: built (it is in the checkpoint and in U-Bench's count), never called.
    ``strides`` / ``dilations``: per stage (layer1..4), for a dilated, smaller output stride.
    ``planes``: per-stage bottleneck widths (outputs are 4x), the released (64, 128, 256, 512) by
    default; CFM-UNet halves them."""

    def __init__(self, in_channels: int = 3, depths=RES2NET101_DEPTHS, num_classes: int = 1000,
                 strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), planes=RES2NET_PLANES):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        stages = zip(planes, depths, strides, dilations)
        for i, (width, depth, stride, dilation) in enumerate(stages):
            self.add_module(f"layer{i + 1}", _res2_stage(inplanes, width, depth, stride, dilation))
            inplanes = width * EXPANSION
        self.fc = nn.Linear(inplanes, num_classes)
        init_resnet_weights(self)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of layer1..4 (strides 4, 8, 16, 32 with the default ``strides``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


RES2NET_RELEASES = {RES2NET50_DEPTHS: "res2net50_v1b_26w_4s-3cf99910.pth",
                    RES2NET101_DEPTHS: "res2net101_v1b_26w_4s-0812c246.pth"}


def res2net_v1b_record(depths: tuple[int, ...], source: str, prefix: str = "backbone.") -> dict:
    """The ``extra["pretrained"]`` record (ubench/models/pretrained.py) of the ImageNet Res2Net-v1b
    release with ``depths``, loaded as it is (classifier included, as U-Bench's strict load) into
    a ``Res2NetV1b`` at ``prefix``; ``source`` says where U-Bench puts it."""
    file = RES2NET_RELEASES[tuple(depths)]
    return {
        "backbone": file.split("-")[0],
        "source": source,
        "file": file,
        "url": f"https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/{file}",
        "modules": [prefix.rstrip(".")],
        "key_map": [[r"^", prefix]],
        "drop": [],
    }
