"""AURA-Net: an attention U-Net on an ImageNet ResNet-18 encoder, with a full-resolution skip.

Paper: Cohen, Uhlmann, "AURA-net: robust segmentation of phase-contrast microscopy images with few
annotations", ISBI 2021 (arXiv 2102.01389).

Configuration: U-Bench's ``AURA_Net`` (repo FengheTan9/U-Bench, models/Hybrid/AURA_Net/AURA_Net.py;
models/__init__.py imports its ``aura_net(num_classes, input_channel)``, which builds
``AURA_Net(num_classes, input_channel)``), id 55, no deep supervision. U-Bench's constructor takes
torchvision's ``resnet18(pretrained=True)``; here it is built untrained with torchvision's
initialisation (``extra["pretrained"]`` says how to load the ImageNet file).

* Encoder: ResNet-18 (7x7/2 stem + BN + ReLU, 3x3/2 max-pool, BasicBlock stages of depth 2 and
  widths 64, 128, 256, 512), giving skips 64@H/2, 64@H/4, 128@H/8, 256@H/16 and 512@H/32.
* Bridge: a 2x2 max-pool then a U-Net double conv (3x3 conv with bias + BN + ReLU, twice) to
  1024@H/64. U-Bench builds it as the fifth stage of a whole plain U-Net encoder (widths 64..1024,
  the first taking ``input_channel``) whose other four stages it never runs: kept here as
  ``plain.down.0-3`` so the parameter count matches.
* Decoder, deepest first, five steps: nearest upsampling x2 + 3x3 conv + BN + ReLU to the skip's
  width (512, 256, 128, 64, 64), an additive attention gate on the skip driven by the upsampled map
  (``skip * sigmoid(BN(conv1x1(relu(BN(conv1x1(g)) + BN(conv1x1(skip))))))``, intermediate width
  half the skip's), then a double conv on [gated skip, upsampled]. A sixth up-step (64 -> 64)
  brings the map to full size, where it is concatenated after a plain full-resolution branch of
  the input (two 3x3 conv + ReLU, 64 wide) and fused by one 3x3 conv + ReLU; a 1x1 conv gives the
  logits. U-Bench also builds a sixth gate and a sixth double conv for that level and never runs
  them (kept as ``gates.5`` and ``fuse.5``).

Parameters at 3 in / 1 class: 46,948,443, the same as U-Bench's module (counted by instantiating
it). That count includes the ResNet-18 ImageNet classifier (``fc``, 513,000 parameters), which
U-Bench keeps inside its module and never runs (``encoder.fc`` here), and the never-run modules
above: 5,280,651 parameters in all (``extra["unused_params"]``; 4,689,216 of them the four idle
plain-encoder stages). The total stride is 64.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import DoubleConv, PlainEncoder, UpConv
from ubench.models.ops.resnet import BasicBlock, ResNetEncoder, torchvision_resnet_record
from ubench.models.registry import ModelInfo, register_model

RESNET18_DEPTHS = (2, 2, 2, 2)
PLAIN_WIDTHS = (64, 128, 256, 512, 1024)  # U-Bench's plain encoder; only its last stage runs
DECODER_WIDTHS = (512, 256, 128, 64, 64, 64)  # up-step outputs, deepest first; the last is full size
FULL_RES_WIDTH = 64
IMAGENET_CLASSES = 1000
STRIDE = 64  # ResNet's 32, then the bridge's max-pool


class ResNet18Encoder(ResNetEncoder):
    """torchvision's ResNet-18 trunk (BasicBlocks, depths 2, 2, 2, 2), five feature maps as in
    ``ResNetEncoder``, plus its ImageNet classifier ``fc``: U-Bench's module holds the whole
    torchvision model (so ``fc`` is in its parameter count and its checkpoint) but never runs it."""

    out_channels = (64, 64, 128, 256, 512)

    def __init__(self, in_channels: int = 3):
        super().__init__(in_channels, BasicBlock, RESNET18_DEPTHS)
        self.fc = nn.Linear(self.out_channels[-1], IMAGENET_CLASSES)  # PyTorch default init


class SkipGate(nn.Module):
    """Additive attention gate (Oktay et al.): the skip scaled by a [0, 1] map computed from the
    skip and the upsampled decoder map ``g``; 1x1 convs with bias, each followed by BatchNorm."""

    def __init__(self, channels: int, inter: int):
        super().__init__()
        self.from_g = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.BatchNorm2d(inter))
        self.from_skip = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.BatchNorm2d(inter))
        self.score = nn.Sequential(nn.Conv2d(inter, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * self.score(torch.relu(self.from_g(g) + self.from_skip(skip)))


def conv3x3_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """3x3 conv (bias, 'same' padding) + ReLU, no normalisation."""
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]


class AURANet(nn.Module):
    """ResNet-18 encoder, double-conv bridge at H/64, attention-gated U-Net decoder, and a
    full-resolution input branch merged before the head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = ResNet18Encoder(in_channels)
        self.plain = PlainEncoder(in_channels, PLAIN_WIDTHS)  # plain.pool + plain.down[-1]: the bridge
        ins = (PLAIN_WIDTHS[-1],) + DECODER_WIDTHS[:-1]
        self.up = nn.ModuleList(UpConv(i, o) for i, o in zip(ins, DECODER_WIDTHS))
        # one gate and one fuse per up-step; the last of each (full-size level) is never run
        self.gates = nn.ModuleList(SkipGate(w, w // 2) for w in DECODER_WIDTHS)
        fuse_in = [2 * w for w in DECODER_WIDTHS[:-1]] + [DECODER_WIDTHS[-1]]
        self.fuse = nn.ModuleList(DoubleConv(i, o) for i, o in zip(fuse_in, DECODER_WIDTHS))
        self.full_res = nn.Sequential(*conv3x3_relu(in_channels, FULL_RES_WIDTH),
                                      *conv3x3_relu(FULL_RES_WIDTH, FULL_RES_WIDTH))
        self.merge = nn.Sequential(*conv3x3_relu(FULL_RES_WIDTH + DECODER_WIDTHS[-1], FULL_RES_WIDTH))
        self.head = nn.Conv2d(FULL_RES_WIDTH, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.full_res(x)
        skips = self.encoder(x)
        y = self.plain.down[-1](self.plain.pool(skips[-1]))
        # five skips: zip stops before the last up-step, whose gate and fuse U-Bench never runs
        for up, gate, fuse, skip in zip(self.up, self.gates, self.fuse, reversed(skips)):
            g = up(y)
            y = fuse(torch.cat([gate(g, skip), g], dim=1))
        y = self.up[-1](y)
        return self.head(self.merge(torch.cat([full, y], dim=1)))


def _double_conv_params(prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{p}" for i in (0, 1, 3, 4) for p in ("weight", "bias")]


def _gate_params(prefix: str) -> list[str]:
    return [f"{prefix}.{part}.{i}.{p}" for part in ("from_g", "from_skip", "score") for i in (0, 1)
            for p in ("weight", "bias")]


_UNUSED = (
    ["encoder.fc.weight", "encoder.fc.bias"]
    + [n for i in range(len(PLAIN_WIDTHS) - 1) for n in _double_conv_params(f"plain.down.{i}")]
    + _gate_params(f"gates.{len(DECODER_WIDTHS) - 1}")
    + _double_conv_params(f"fuse.{len(DECODER_WIDTHS) - 1}")
)

_RESNET_RECORD = torchvision_resnet_record(
    "resnet18", "encoder.",
    "torchvision.models.resnet18(pretrained=True) (torchvision 0.22: ResNet18_Weights.IMAGENET1K_V1) "
    "-> AURA_Net.base_model, whole (conv1, bn1, layer1-4 and the unused fc); layer0..layer4 are "
    "views of its children (conv1/bn1/relu, maxpool+layer1, layer2, layer3, layer4)",
    drop_fc=False,
)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="AURA_Net",
        ubench_id=55,
        year=2021,
        paper="AURA-net: robust segmentation of phase-contrast microscopy images with few annotations",
        deep_supervision=False,
        ref_params_m=46.948443,
        ref_source="U-Bench models/Hybrid/AURA_Net/AURA_Net.py (aura_net(1, input_channel=3); a "
        "weight-free stand-in of torchvision's resnet18), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="ResNet-18 untrained (U-Bench loads torchvision's ImageNet weights: extra['pretrained']), "
        "initialised as torchvision's resnet18 (He-normal fan-out convs, unit BN, default fc); the "
        "rest PyTorch defaults, as in U-Bench. Total stride 64: U-Bench max-pools ResNet's H/32 map "
        "once more before its bridge. U-Bench keeps the whole torchvision ResNet-18 in its module, "
        "so its ImageNet classifier fc (513,000 params) is in its count and checkpoint but never "
        "run: kept as encoder.fc. It also builds, and never runs, the first four stages of a plain "
        "U-Net encoder (Conv1-Conv4; only Conv5 is the bridge), a sixth attention gate (Att0) and a "
        "sixth decoder double conv (Up_conv0): kept as plain.down.0-3, gates.5, fuse.5 "
        "(unused_params: 5,280,651 params with fc). U-Bench's input_channel reaches only the "
        "unused Conv1: its ResNet stem and its full-resolution branch (conv_original_size0) take a "
        "hard-coded 3 channels (its loaders feed 3-channel images); here the ResNet stem, the "
        "full-resolution branch and plain.down.0 all take in_channels (a pretrained 3-channel stem "
        "kernel is summed over the inputs for 1 channel, as repeating a grey image would compute). "
        "The paper's active-contour-inspired loss is not part of the module (U-Bench trains it "
        "with its common loss).",
        extra={"unused_params": _UNUSED, "pretrained": _RESNET_RECORD},
    )
)
def aura_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """AURA-Net (ResNet-18 untrained) as U-Bench benchmarks it."""
    return AURANet(in_channels=in_channels, num_classes=num_classes)
