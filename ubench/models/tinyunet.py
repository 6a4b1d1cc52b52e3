"""TinyU-Net, a 0.48M-parameter U-Net built from cascaded multi-receptive-field (CMRF) blocks.

Paper: Chen, Chen, Wang, Cheng, Zhang, Chen, "TinyU-Net: Lighter Yet Better U-Net with Cascaded
Multi-receptive Fields", MICCAI 2024.

Configuration: U-Bench's ``Tinyunet`` class (repo FengheTan9/U-Bench,
models/CNN/Tinyunet/Tinyunet.py; models/__init__.py builds ``Tinyunet(input_channel=3,
num_classes=1)``). Every block is a CMRF (N=8, expansion 0.5): a 1x1 conv to out/8 channels, the
channels split into even and odd halves, a cascade of seven depthwise 3x3 convs (+ BN, no
activation) starting from the odd half, [even + odd, cascade outputs] concatenated (out/2
channels), a 1x1 conv to out channels; conv -> BN (eps 1e-3, momentum 0.03) -> GELU on both 1x1
convs, a residual when in == out (never the case here). Encoder: CMRF to 64, 128, 256, 512, each
followed by 2x2 max-pooling (the pooled 512-channel map at 1/16 goes straight to the decoder, no
bottleneck block). Decoder: bicubic upsampling x2 (align_corners=False), concatenation [up, skip],
CMRF to 512, 256, 128, 64 (inputs 1024, 768, 384, 192); a 1x1 conv (bias) gives the logits.
Parameters at 3 in / 1 class: 481,105 (counted by instantiating U-Bench's module; the paper
quotes 0.48M). Needs H, W divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 128, 256, 512)
CASCADE = 8  # N: the 1x1 conv reduces to out/N channels; N - 1 depthwise convs in the cascade


def conv_bn(in_ch: int, out_ch: int, kernel_size: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) -> BN (eps 1e-3, momentum 0.03, YOLO-style) -> GELU or nothing."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=1e-3, momentum=0.03),
        nn.GELU() if act else nn.Identity(),
    )


class CMRF(nn.Module):
    """Cascaded multi-receptive fields: a chain of depthwise 3x3 convs over a narrow projection,
    every link of the chain kept, so receptive fields 3, 5, ... 15 are mixed by the last 1x1."""

    def __init__(self, in_ch: int, out_ch: int, n: int = CASCADE):
        super().__init__()
        if out_ch % (2 * n):
            raise ValueError(f"CMRF needs out_ch divisible by {2 * n}, got {out_ch}")
        half = out_ch // (2 * n)
        self.residual = in_ch == out_ch
        self.reduce = conv_bn(in_ch, out_ch // n)
        self.expand = conv_bn(out_ch // 2, out_ch)
        self.cascade = nn.ModuleList(conv_bn(half, half, 3, groups=half, act=False) for _ in range(n - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        even, odd = y[:, 0::2], y[:, 1::2]
        parts = [even + odd]
        for conv in self.cascade:
            odd = conv(odd)
            parts.append(odd)
        y = self.expand(torch.cat(parts, dim=1))
        return x + y if self.residual else y


class DecoderStep(nn.Module):
    """Bicubic upsampling x2, concatenation [up, skip], CMRF to the skip's level width."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.cmrf = CMRF(in_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        return self.cmrf(torch.cat([x, skip], dim=1))


class TinyUNet(nn.Module):
    """Four CMRF stages down (each pooled), four CMRF steps up, a 1x1 head."""

    stride = 2 ** len(WIDTHS)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.encoder = nn.ModuleList(CMRF(i, o) for i, o in zip(ins, widths))
        # deepest first: the pooled deepest map (widths[-1]) joins the deepest skip
        deeper = (widths[-1],) + tuple(widths[:0:-1])
        self.decoder = nn.ModuleList(DecoderStep(d + w, w) for d, w in zip(deeper, widths[::-1]))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder:
            skips.append(stage(x))
            x = F.max_pool2d(skips[-1], 2)
        for step in self.decoder:
            x = step(x, skips.pop())
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="Tinyunet",
        ubench_id=8,
        year=2024,
        paper="TinyU-Net: Lighter Yet Better U-Net with Cascaded Multi-receptive Fields",
        deep_supervision=False,
        ref_params_m=0.481105,
        ref_source="U-Bench models/CNN/Tinyunet/Tinyunet.py (Tinyunet(input_channel=3, "
        "num_classes=1)), counted by instantiating it",
        ref_input_size=256,
        size_multiple=TinyUNet.stride,
        notes="The encoder's last stage is pooled to 1/16 and fed to the decoder directly (no "
        "bottleneck block), as in U-Bench; BatchNorms use eps 1e-3 and momentum 0.03 (U-Bench's "
        "YOLO-style Conv); the CMRF residual never applies (in != out in every block).",
    )
)
def tinyunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """TinyU-Net as U-Bench benchmarks it (CMRF widths 64..512, N=8)."""
    return TinyUNet(in_channels=in_channels, num_classes=num_classes)
