"""ResNet-34 and ResNet-50 feature encoders written from scratch (no torchvision, no weights).

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), table 1: a 7x7/2 conv
stem with BatchNorm and ReLU, a 3x3/2 max-pool, then four stages of depths 3, 4, 6, 3 and widths
64, 128, 256, 512: BasicBlocks (two 3x3 convs) for ResNet-34, Bottlenecks (1x1, strided 3x3, 1x1
x4; torchvision's v1.5) for ResNet-50; a stage that changes stride or width starts with a 1x1
strided conv + BN shortcut. Convs have no bias. Initialisation follows torchvision's resnet
(Kaiming-normal, fan_out, for convs; BN weight 1, bias 0), what U-Bench's models get from
``torchvision.models.resnet34(pretrained=False)``. The classifier head is omitted; module names
differ from torchvision's, and ``torchvision_resnet_key_map`` renames its checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn as nn

RESNET34_DEPTHS = (3, 4, 6, 3)
RESNET50_DEPTHS = (3, 4, 6, 3)
RESNET_WIDTHS = (64, 128, 256, 512)


def init_resnet_weights(module: nn.Module) -> None:
    """torchvision's ResNet init: He-normal (fan-out) convs, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with an identity (or 1x1 projection) shortcut, ReLU after the sum."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """torchvision's ResNet-50/101 bottleneck (ResNet v1.5): 1x1 conv to ``planes``, 3x3 conv that
    carries the stride, 1x1 conv to ``expansion * planes``, BN after each and ReLU after the first
    two; the sum with an identity (or 1x1 strided conv + BN) shortcut goes through a last ReLU.

    Convs have no bias. Names follow torchvision's (conv1..3, bn1..3) except the projection,
    called ``shortcut`` as in ``BasicBlock`` (torchvision: ``downsample``, which
    ``torchvision_resnet_key_map`` renames).
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def res_stage(block: type[nn.Module], in_ch: int, planes: int, depth: int, stride: int) -> nn.Sequential:
    """One ResNet stage (torchvision's ``_make_layer``): ``depth`` blocks of width ``planes`` and
    output ``block.expansion * planes``, the first one striding and projecting."""
    out_ch = planes * block.expansion
    blocks = [block(in_ch, planes, stride)] + [block(out_ch, planes) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class ResNetEncoder(nn.Module):
    """A torchvision-layout ResNet trunk without its classifier: 7x7/2 conv stem + BN + ReLU, 3x3/2
    max-pool, four stages. ``forward(x)`` returns the five feature maps a U-shaped decoder needs:
    ``[stem (64, H/2), layer1 (H/4), layer2 (H/8), layer3 (H/16), layer4 (H/32)]``, of widths
    ``out_channels``. ``torchvision_resnet_key_map`` renames a torchvision checkpoint onto it."""

    def __init__(self, in_channels: int, block: type[nn.Module], depths: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, prev = [], 64
        for i, (planes, depth) in enumerate(zip(RESNET_WIDTHS, depths)):
            stages.append(res_stage(block, prev, planes, depth, stride=1 if i == 0 else 2))
            prev = planes * block.expansion
        self.layers = nn.ModuleList(stages)
        init_resnet_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        x = self.pool(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class ResNet34Encoder(ResNetEncoder):
    """ResNet-34: BasicBlocks, depths 3, 4, 6, 3; widths 64, 64, 128, 256, 512."""

    out_channels = (64,) + RESNET_WIDTHS

    def __init__(self, in_channels: int = 3):
        super().__init__(in_channels, BasicBlock, RESNET34_DEPTHS)


def torchvision_resnet_key_map(prefix: str) -> list[list[str]]:
    """(regex, replacement) pairs that rename torchvision ResNet checkpoint keys (conv1, bn1,
    layer1..4, downsample) to ``ResNet34Encoder`` keys under ``prefix`` (e.g. ``"encoder."``);
    the loader in ubench/models/pretrained.py applies them in order. ``fc.*`` is not mapped."""
    pairs = [[r"^conv1\.", "stem.0."], [r"^bn1\.", "stem.1."]]
    pairs += [[rf"^layer{i + 1}\.", f"layers.{i}."] for i in range(len(RESNET_WIDTHS))]
    pairs += [[r"\.downsample\.", ".shortcut."], [r"^", prefix]]
    return pairs


class ResNet50Encoder(ResNetEncoder):
    """ResNet-50 (v1.5): Bottlenecks, depths 3, 4, 6, 3; widths 64, 256, 512, 1024, 2048."""

    out_channels = (64,) + tuple(w * Bottleneck.expansion for w in RESNET_WIDTHS)

    def __init__(self, in_channels: int = 3):
        super().__init__(in_channels, Bottleneck, RESNET50_DEPTHS)


TORCHVISION_RESNET_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
                            "resnet50": "resnet50-0676ba61.pth"}


def torchvision_resnet_record(arch: str, prefix: str, source: str, drop_fc: bool = True,
                              file: str | None = None) -> dict:
    """The ``extra["pretrained"]`` record (ubench/models/pretrained.py) of torchvision's ImageNet
    ``arch`` loaded into a ``ResNetEncoder`` at ``prefix``. ``source`` says where U-Bench puts it;
    ``drop_fc`` leaves out the classifier; ``file`` names another (older) torchvision release
    than the current one. Every torchvision file name carries its SHA-256 prefix, which is checked."""
    name = file or TORCHVISION_RESNET_FILES[arch]
    return {
        "backbone": arch,
        "source": source,
        "file": name,
        "url": f"https://download.pytorch.org/models/{name}",
        "hash_in_name": True,  # torchvision's loader checks its files' SHA-256 prefix, old releases too
        "modules": [prefix.rstrip(".")],
        "key_map": torchvision_resnet_key_map(prefix),
        "drop": [r"^fc\."] if drop_fc else [],
    }
