"""UNeXt, a convolutional U-Net whose two deepest stages are shifted MLPs on tokens.

Paper: Valanarasu, Patel, "UNeXt: MLP-based Rapid Medical Image Segmentation Network",
MICCAI 2022.

Configuration: U-Bench's ``UNeXt`` (repo FengheTan9/U-Bench, models/CNN/UNeXt/UNeXt.py, built as
``UNeXt(num_classes=1, input_channel=3)``): conv widths 16, 32, 128 (each a 3x3 conv with bias +
BatchNorm, then max-pool and ReLU), token widths 160, 256, one shifted-MLP block per tokenized
stage (MLP ratio 1), no dropout or drop-path. The shifted MLP: shift the channel groups (5 groups,
shifts -2..2, zero filled) along H, Linear, 3x3 depthwise conv, GELU, shift along W, Linear; the
block is pre-LayerNorm residual. Decoder convs 256->160->128->32->16->16 (BatchNorm on all but the
last), bilinear x2 + ReLU, skips added. The skeleton lives in ops/light_blocks.py. Parameters at
3 in / 1 class: 1,471,921 (counted by instantiating U-Bench's module; the paper quotes 1.47M).
Needs H, W divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.light_blocks import TokenizedUNet, init_token_weights
from ubench.models.registry import ModelInfo, register_model

CONV_DIMS = (16, 32, 128)
TOKEN_DIMS = (160, 256)
SHIFT_GROUPS = 5


def shift_groups(x: torch.Tensor, dim: int, groups: int = SHIFT_GROUPS) -> torch.Tensor:
    """Shift channel group g of a (B, C, H, W) map by g - groups//2 pixels along ``dim``, zero filled.

    Channels are split as ``torch.chunk`` does (equal groups, a smaller last one), which is how
    the reference groups them.
    """
    reach = groups // 2
    h, w = x.shape[-2:]
    padded = F.pad(x, (reach, reach, reach, reach))
    moved = [torch.roll(part, s, dim) for part, s in zip(padded.chunk(groups, 1), range(-reach, reach + 1))]
    return torch.cat(moved, 1)[:, :, reach : reach + h, reach : reach + w]


class ShiftedMLP(nn.Module):
    """Token MLP whose inputs are shifted along H before fc1 and along W before fc2."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        t = self.fc1(map_to_tokens(shift_groups(tokens_to_map(t, h, w), 2)))
        x = self.act(self.dwconv(tokens_to_map(t, h, w)))
        return self.fc2(map_to_tokens(shift_groups(x, 3)))


class ShiftedBlock(nn.Module):
    """Pre-norm residual shifted MLP: t + mlp(LayerNorm(t))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = ShiftedMLP(dim)
        self.apply(init_token_weights)

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return t + self.mlp(self.norm(t), h, w)


def _enc_conv(in_ch: int, out_ch: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch))


def _dec_conv(in_ch: int, out_ch: int, last: bool) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
    return conv if last else nn.Sequential(conv, nn.BatchNorm2d(out_ch))


class UNeXt(TokenizedUNet):
    """UNeXt: the tokenized U-Net skeleton with single conv + BN blocks and shifted MLPs."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__(in_channels, num_classes, CONV_DIMS, TOKEN_DIMS, _enc_conv, _dec_conv, ShiftedBlock)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="UNeXt",
        ubench_id=2,
        year=2022,
        paper="UNeXt: MLP-based Rapid Medical Image Segmentation Network",
        deep_supervision=False,
        ref_params_m=1.471921,
        ref_source="U-Bench models/CNN/UNeXt/UNeXt.py (UNeXt(num_classes=1, input_channel=3)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=32,
    )
)
def unext(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UNeXt as U-Bench benchmarks it (conv 16/32/128, tokens 160/256)."""
    return UNeXt(in_channels=in_channels, num_classes=num_classes)
