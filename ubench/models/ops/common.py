"""Small pieces shared by the transformer, Mamba, RWKV and hybrid models: stochastic depth and
the ViT-style weight initialisation their reference implementations all use."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample, with probability ``p``, while
    training (the survivors are scaled by 1/(1-p)); identity in evaluation mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def init_vit_weights(m: nn.Module) -> None:
    """ViT-style init of one module: truncated-normal (std 0.02) Linear weights, zero biases,
    unit LayerNorms; other modules are left as they are. Use with ``module.apply``."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def init_vit_conv_weights(m: nn.Module) -> None:
    """``init_vit_weights`` plus He-style convs: normal with std sqrt(2 / fan_out), fan_out counted
    per group, zero bias (the PVT / SegFormer / UNeXt init)."""
    init_vit_weights(m)
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
