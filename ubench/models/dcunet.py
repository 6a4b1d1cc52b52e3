"""DC-UNet: MultiResUNet with dual-channel blocks (two parallel 3-conv chains per block).

Paper: Lou, Guan, Loew, "DC-UNet: Rethinking the U-Net Architecture with Dual Channel Efficient
CNN for Medical Images Segmentation", SPIE Medical Imaging 2021 (arXiv 2006.00414).

Configuration: U-Bench's ``DC_Unet`` (repo FengheTan9/U-Bench, models/CNN/DC_Unet/DC_Unet.py,
``dc_unet(3, 1)``: nf = 32, alpha = 1.67, no dropout). Every conv is bias-free and 'same'-padded
by reflection. A conv unit is conv + BatchNorm (+ activation), and the BatchNorm is NOT affine
when followed by ReLU (affine otherwise, as in U-Bench). A DC block for width ``u`` (W = 1.67 u)
runs two independent chains of three 3x3 conv + BN + ReLU with int(0.167 W), int(0.333 W),
int(0.5 W) filters from the same input; each chain's outputs are concatenated and batch-normed;
the two are added to a 1x1 conv + BN shortcut, then ReLU, then BN. Widths u = 32..512 (outputs
51, 105, 212, 426, 853), 2x2 max-pooling. Skips pass ResPaths of 4, 3, 2, 1 units (1x1 conv + BN
shortcut plus 3x3 conv + BN + ReLU, summed, ReLU, BN) to u channels. Decoder: 2x2 transposed conv
(bias) to u, concatenation [upsampled, skip], DC block. Head: 1x1 conv + BN + tanh, so the
"logits" lie in [-1, 1] exactly as U-Bench trains them. PyTorch default init. No deep
supervision. Parameters at 3 in / 1 class: 10,811,071, counted by building U-Bench's module.
Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import ResPathUNet
from ubench.models.registry import ModelInfo, register_model

BASE_WIDTHS = (32, 64, 128, 256, 512)
ALPHA = 1.67
RESPATH_LENGTHS = (4, 3, 2, 1)


def conv_unit(in_ch: int, out_ch: int, kernel_size: int, act: nn.Module | None = None) -> nn.Sequential:
    """Reflection-padded bias-free conv + BN (+ act); BN is affine only without a ReLU after it."""
    pad = kernel_size // 2
    layers = [nn.ReflectionPad2d(pad)] if pad else []
    layers += [nn.Conv2d(in_ch, out_ch, kernel_size, bias=False)]
    layers += [nn.BatchNorm2d(out_ch, affine=not isinstance(act, nn.ReLU))]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def dc_split(width: int, alpha: float = ALPHA) -> tuple[int, int, int]:
    w = width * alpha
    return int(w * 0.167), int(w * 0.333), int(w * 0.5)


class ConvChain(nn.Module):
    """Three chained 3x3 units whose outputs are concatenated and batch-normed."""

    def __init__(self, in_ch: int, widths: tuple[int, int, int]):
        super().__init__()
        ins = (in_ch,) + widths[:-1]
        self.convs = nn.ModuleList(conv_unit(i, o, 3, nn.ReLU()) for i, o in zip(ins, widths))
        self.bn = nn.BatchNorm2d(sum(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for conv in self.convs:
            x = conv(x)
            parts.append(x)
        return self.bn(torch.cat(parts, dim=1))


class DCBlock(nn.Module):
    """Two parallel conv chains plus a 1x1 shortcut, summed, then ReLU and BN."""

    def __init__(self, in_ch: int, width: int):
        super().__init__()
        split = dc_split(width)
        self.out_channels = sum(split)
        self.shortcut = conv_unit(in_ch, self.out_channels, 1)
        self.chains = nn.ModuleList(ConvChain(in_ch, split) for _ in range(2))
        self.post = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(self.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.shortcut(x) + self.chains[0](x) + self.chains[1](x))


class ResPathUnit(nn.Module):
    """1x1 shortcut plus 3x3 conv path, summed, then ReLU and BN."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.shortcut = conv_unit(in_ch, out_ch, 1)
        self.conv = conv_unit(in_ch, out_ch, 3, nn.ReLU())
        self.post = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.shortcut(x) + self.conv(x))


class DCUNet(ResPathUNet):
    """DC blocks down and up, ResPaths on the skips, transposed-conv upsampling, tanh head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=BASE_WIDTHS):
        super().__init__(
            in_channels,
            widths,
            block=DCBlock,
            res_path=lambda cin, w, level: nn.Sequential(
                *(ResPathUnit(cin if k == 0 else w, w) for k in range(RESPATH_LENGTHS[level]))
            ),
            head=lambda cin: conv_unit(cin, num_classes, 1, nn.Tanh()),
        )


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="DC_UNet",
        ubench_id=24,
        year=2021,
        paper="DC-UNet: Rethinking the U-Net Architecture with Dual Channel Efficient CNN for "
        "Medical Images Segmentation",
        deep_supervision=False,
        ref_params_m=10.811071,
        ref_source="U-Bench models/CNN/DC_Unet/DC_Unet.py (dc_unet(3, 1), nf=32, alpha=1.67), "
        "counted by building the module",
        ref_input_size=256,
        size_multiple=16,
        notes="head ends in BatchNorm + tanh as in U-Bench (outputs in [-1, 1])",
    )
)
def dcunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """DC-UNet as U-Bench benchmarks it (nf 32, alpha 1.67, no dropout)."""
    return DCUNet(in_channels=in_channels, num_classes=num_classes)
