"""LV-UNet, a lightweight U-Net on a MobileNetV3-Large stem with VanillaNet-style 1x1 stages.

Paper: Jiang, Chen, Zhang, Shen, Lin, Wang, "LV-UNet: A Lightweight and Vanilla Model for Medical
Image Segmentation", IEEE BIBM 2024.

Configuration: U-Bench's ``lv_unet(num_classes, input_channel)`` helper (repo FengheTan9/U-Bench,
models/CNN/LV_UNet/LV_UNet.py; models/__init__.py imports it as ``LV_UNet``), i.e. ``LV_UNet`` at
its defaults: dims 80, 160, 240, 480, decoder widths 80, 40, 24, 16, ``act_num=1``, strides
2, 2, 2 and ``deploy=False`` -- the *training* form (two 1x1 conv + BN pairs per step, the
activation's BN kept). U-Bench never calls ``switch_to_deploy`` nor ``change_act``, so that is
the form it trains and tests, and the one built here.

Encoder: the first ten ``features`` of torchvision's MobileNetV3-Large (3x3/2 conv + BN +
Hardswish, then inverted residuals 1-9), split as ``firstconv`` (/2, 16 ch), ``encoder1``
(features 1-2, /4, 24 ch), ``encoder2`` (features 3-5, /8, 40 ch), ``encoder3`` (features 6-9,
/16, 80 ch). U-Bench loads ImageNet weights into them (``torchvision.models.mobilenet_v3_large(
pretrained=True)``); ubench builds them untrained, with torchvision's initialisation and a
state_dict whose keys map onto the checkpoint's ``features.<i>`` (see ``extra["pretrained"]``).
Then three "vanilla" down steps (1x1 conv + BN -> ReLU -> 1x1 conv + BN -> 2x2 max-pool ->
series activation = ReLU, depthwise 3x3 conv, BN) 80 -> 160 -> 240 -> 480 down to /128, three
up steps (the same with bilinear x2 upsampling instead of pooling) back to /16 with each added to
the map of that scale, two more up steps added to the encoder2 / encoder1 maps, one to 16
channels at /2, a final 16 -> 16 up step to full size and a 1x1 conv to the logits.

Parameters at 3 in / 1 class: 934,545 (counted by instantiating U-Bench's module with a
torchvision stand-in of the same layout). The total stride is 128 (seven halvings, max-pooling
rounds down, the sums need matching sizes), so H and W must be multiples of 128.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.registry import ModelInfo, register_model

DIMS = (80, 160, 240, 480)  # width at /16 and of the three vanilla down steps
DECODER_DIMS = (80, 40, 24, 16)  # up steps from /16 to /2
HEAD_DIM = 16

# MobileNetV3-Large inverted residuals 1-9 (torchvision's table): in, kernel, expanded, out,
# squeeze-excitation, Hardswish (else ReLU), stride. Grouped as U-Bench splits them.
BNECK = (
    ((16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2)),
    (
        (24, 3, 72, 24, False, False, 1),
        (24, 5, 72, 40, True, False, 2),
        (40, 5, 120, 40, True, False, 1),
    ),
    (
        (40, 5, 120, 40, True, False, 1),
        (40, 3, 240, 80, False, True, 2),
        (80, 3, 200, 80, False, True, 1),
        (80, 3, 184, 80, False, True, 1),
    ),
)

mobilenet_norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)  # torchvision's MobileNetV3 BN


def _make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: nearest multiple of ``divisor``, never 10 % below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_norm_act(in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                  act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Bias-free conv -> BN (eps 1e-3) [-> activation]: torchvision's Conv2dNormActivation layout."""
    layers = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        mobilenet_norm(out_ch),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class MobileSqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-excitation: global average -> 1x1 conv (bias) -> ReLU -> 1x1 conv
    (bias) -> hard sigmoid gate; squeeze width = channels / 4 rounded to a multiple of 8."""

    def __init__(self, channels: int):
        super().__init__()
        squeeze = _make_divisible(channels // 4, 8)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * F.hardsigmoid(gate)


class MobileInvertedResidual(nn.Module):
    """MobileNetV3 bottleneck: [1x1 expansion] -> kxk depthwise (maybe strided) -> [SE] -> linear
    1x1 projection, with an identity shortcut when stride 1 keeps the width."""

    def __init__(self, in_ch: int, kernel_size: int, expanded: int, out_ch: int, se: bool,
                 hardswish: bool, stride: int):
        super().__init__()
        act = nn.Hardswish if hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(conv_norm_act(in_ch, expanded, act=act))
        layers.append(conv_norm_act(expanded, expanded, kernel_size, stride, groups=expanded, act=act))
        if se:
            layers.append(MobileSqueezeExcite(expanded))
        layers.append(conv_norm_act(expanded, out_ch, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


def init_mobilenet_weights(module: nn.Module) -> None:
    """torchvision's MobileNetV3 init: He normal (fan out) convs, zero biases, unit BN."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SeriesActivation(nn.Module):
    """VanillaNet's series-informed activation (training form): ReLU, then a bias-free depthwise
    (2 act_num + 1)^2 conv that mixes neighbouring activations, then BN (eps 1e-6)."""

    def __init__(self, channels: int, act_num: int = 1):
        super().__init__()
        size = 2 * act_num + 1
        self.weight = nn.Parameter(torch.empty(channels, 1, size, size))
        nn.init.trunc_normal_(self.weight, std=0.02)
        self.bn = nn.BatchNorm2d(channels, eps=1e-6)
        self.act_num = act_num

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.relu(x), self.weight, padding=self.act_num, groups=x.shape[1])
        return self.bn(x)


def conv1x1_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    """1x1 conv (bias) + BN (eps 1e-6)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch, eps=1e-6))


class VanillaStep(nn.Module):
    """One LV-UNet step (VanillaNet block, training form): 1x1 conv + BN -> ReLU -> 1x1 conv + BN
    to ``out_ch``, a resampling (2x2 max-pool down or bilinear x2 up), the series activation.
    U-Bench's ``leaky_relu(x, act_learn)`` has ``act_learn = 0`` throughout: a plain ReLU."""

    def __init__(self, in_ch: int, out_ch: int, resample: nn.Module):
        super().__init__()
        self.conv1 = conv1x1_bn(in_ch, in_ch)
        self.conv2 = conv1x1_bn(in_ch, out_ch)
        self.resample = resample
        self.act = SeriesActivation(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.resample(self.conv2(F.relu(self.conv1(x)))))


def down_step(in_ch: int, out_ch: int) -> VanillaStep:
    return VanillaStep(in_ch, out_ch, nn.MaxPool2d(2))


def up_step(in_ch: int, out_ch: int) -> VanillaStep:
    return VanillaStep(in_ch, out_ch, nn.Upsample(scale_factor=2, mode="bilinear"))


class LVUNet(nn.Module):
    """MobileNetV3-Large stem to /16, vanilla steps down to /128 and back with additive skips,
    up steps to full size, 1x1 head. Attribute names follow U-Bench's state_dict."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.firstconv = conv_norm_act(in_channels, 16, 3, 2, act=nn.Hardswish)
        self.encoder1, self.encoder2, self.encoder3 = (
            nn.Sequential(*(MobileInvertedResidual(*cfg) for cfg in group)) for group in BNECK
        )
        init_mobilenet_weights(self)
        n = len(DIMS) - 1
        self.stages = nn.ModuleList(down_step(DIMS[i], DIMS[i + 1]) for i in range(n))
        self.up_stages1 = nn.ModuleList(up_step(DIMS[i], DIMS[i - 1]) for i in range(n, 0, -1))
        self.up_stages2 = nn.ModuleList(
            up_step(a, b) for a, b in zip(DECODER_DIMS[:-1], DECODER_DIMS[1:])
        )
        self.final = nn.ModuleList([up_step(HEAD_DIM, HEAD_DIM), nn.Conv2d(HEAD_DIM, num_classes, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder1(self.firstconv(x))
        e2 = self.encoder2(e1)
        x = self.encoder3(e2)
        skips = []
        for step in self.stages:
            skips.append(x)
            x = step(x)
        for step in self.up_stages1:
            x = step(x) + skips.pop()
        for step, skip in zip(self.up_stages2, (e2, e1, None)):
            x = step(x)
            if skip is not None:
                x = x + skip
        for layer in self.final:
            x = layer(x)
        return x


# torchvision mobilenet_v3_large checkpoint ``features.<i>`` -> ours, as (regex, replacement) pairs
# for ubench/models/pretrained.py; features 10-16 and the classifier are not used (``drop``)
_FEATURE_TARGETS = ("firstconv", "encoder1.0", "encoder1.1", "encoder2.0", "encoder2.1", "encoder2.2",
                    "encoder3.0", "encoder3.1", "encoder3.2", "encoder3.3")
PRETRAINED_KEY_MAP = [[rf"^features\.{i}\.", f"{target}."] for i, target in enumerate(_FEATURE_TARGETS)]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="LV_UNet",
        ubench_id=26,
        year=2024,
        paper="LV-UNet: A Lightweight and Vanilla Model for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=0.934545,
        ref_source="U-Bench models/CNN/LV_UNet/LV_UNet.py (lv_unet(num_classes=1, input_channel=3) = "
        "LV_UNet(...) at its defaults, deploy=False), counted by instantiating it",
        ref_input_size=256,
        size_multiple=128,
        notes="Training form (deploy=False) as U-Bench builds and uses it; switch_to_deploy and "
        "change_act are never called (change_act would fail: it names stages2/stages3), so the "
        "leaky-ReLU slope act_learn stays 0 = ReLU. U-Bench loads ImageNet MobileNetV3-Large "
        "weights (torchvision mobilenet_v3_large(pretrained=True), features 0-9) into firstconv/"
        "encoder1-3; ubench builds them untrained with torchvision's init (see "
        "extra['pretrained'], key_map). U-Bench ignores input_channel (the MobileNet stem always "
        "takes 3 channels); ubench's stem takes in_channels (same model at 3). Total stride 128: "
        "four stride-2 MobileNet stages and three 2x2 max-pools.",
        extra={
            "pretrained": {
                "backbone": "mobilenet_v3_large (features 0-9)",
                "source": "torchvision.models.mobilenet_v3_large(pretrained=True): features[0] -> "
                "firstconv, features[1:3] / [3:6] / [6:10] -> encoder1 / encoder2 / encoder3",
                "file": "mobilenet_v3_large-8738ca79.pth",
                "url": "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
                "hash_in_name": True,
                "modules": ["firstconv", "encoder1", "encoder2", "encoder3"],
                "key_map": PRETRAINED_KEY_MAP,
                "drop": [r"^features\.1[0-6]\.", r"^classifier\."],
            }
        },
    )
)
def lv_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """LV-UNet (training form) as U-Bench benchmarks it."""
    return LVUNet(in_channels=in_channels, num_classes=num_classes)
