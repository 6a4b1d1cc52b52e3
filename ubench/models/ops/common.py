"""Small pieces shared by the transformer, Mamba, RWKV and hybrid models: token <-> map reshapes,
the transformer MLP, the overlapping patch embedding, stochastic depth and the ViT-style weight
initialisation their reference implementations all use.

Stochastic depth is MONAI's ``DropPath`` (a dependency; the same computation as timm's, which the
reference implementations use: the kept samples are multiplied by 1 / keep, not divided by keep),
built by ``stochastic_depth`` so that MONAI (1.5 s to import) loads when a model is built, never
when the registry lists models.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def stochastic_depth(p: float) -> nn.Module:
    """MONAI's ``DropPath(p)``: drops a whole residual branch per sample while training."""
    from monai.networks.layers import DropPath

    return DropPath(p)


def up2_aligned(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear upsampling with ``align_corners=True`` (the partial decoders of PraNet and
    CaraNet, the reference's ``nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)``)."""
    return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature map -> (B, H*W, C) row-major tokens."""
    return x.flatten(2).transpose(1, 2)


def tokens_to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H*W, C) row-major tokens -> (B, C, H, W) feature map."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (timm/ConvNeXt ``ln_2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Mlp(nn.Module):
    """Transformer feed-forward on tokens: Linear, GELU, Linear (dropout after each, default off)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows (padding kernel // 2), flattened to tokens and
    LayerNorm'd; returns the tokens and the new (H, W). PVT-v2 / SegFormer / MISSFormer use 7/4 then
    3/2; UNeXt and U-KAN 3/2."""

    def __init__(self, in_ch: int, dim: int, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(map_to_tokens(x)), h, w


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018): channel gates from the global average,
    Linear -> ReLU -> Linear -> sigmoid. Without biases in ResUNet++, DDANet, ColonSegNet
    (reduction 16) and MBSNet (reduction 1); with biases (``bias=True``) in MSRF-Net and DoubleU-Net."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        hidden = channels // reduction
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=bias),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


def _init_linear_trunc_normal(m: nn.Linear) -> None:
    nn.init.trunc_normal_(m.weight, std=0.02)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _init_conv2d_fan_out(m: nn.Conv2d) -> None:
    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
    nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def init_vit_weights(m: nn.Module) -> None:
    """ViT-style init of one module: truncated-normal (std 0.02) Linear weights, zero biases,
    unit LayerNorms; other modules are left as they are. Use with ``module.apply``."""
    if isinstance(m, nn.Linear):
        _init_linear_trunc_normal(m)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def init_vit_conv_weights(m: nn.Module) -> None:
    """``init_vit_weights`` plus He-style convs: normal with std sqrt(2 / fan_out), fan_out counted
    per group, zero bias (the PVT / SegFormer / UNeXt init)."""
    init_vit_weights(m)
    if isinstance(m, nn.Conv2d):
        _init_conv2d_fan_out(m)


def init_linear_conv(m: nn.Module) -> None:
    """Truncated-normal (std 0.02) Linear weights with zero bias and He-style (fan-out, per group)
    Conv2d weights with zero bias; everything else left as built (Zig-RiR's encoder, MUCM-Net's
    blocks). Use with ``module.apply``."""
    if isinstance(m, nn.Linear):
        _init_linear_trunc_normal(m)
    elif isinstance(m, nn.Conv2d):
        _init_conv2d_fan_out(m)


def init_conv_fan_out(m: nn.Module) -> None:
    """MALUNet / EGE-UNet / UltraLight VM-UNet / H-vmunet init; use with ``module.apply``.

    Linear: truncated normal (std 0.02), zero bias; Conv2d: normal with std sqrt(2 / fan_out),
    fan_out per group, zero bias; Conv1d: normal with std sqrt(2 / (k * out_channels)) (groups not
    counted, bias left at torch's default), as in the references. LayerNorms are left as built.
    """
    if isinstance(m, nn.Linear):
        _init_linear_trunc_normal(m)
    elif isinstance(m, nn.Conv1d):
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.out_channels)))
    elif isinstance(m, nn.Conv2d):
        _init_conv2d_fan_out(m)
