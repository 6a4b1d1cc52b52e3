"""Blocks shared by the VMamba-based U-Nets (Mamba-UNet, Swin-UMamba) and MUCM-Net.

Why a separate file: ``ops/vss.py`` holds VMamba's SS2D / VSSBlock and VM-UNet's patch layers;
what these models need beyond them lives here: VMamba's Linear initialisation, Swin-Unet's final
x4 patch expand (channels-last maps (B, H, W, C), as in VMamba), and the 1D Mamba mixer that
MUCM-Net applies to token sequences, on top of ``ops/selective_scan.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_vit_weights
from ubench.models.ops.selective_scan import selective_scan_fn
from ubench.models.ops.vss import pixel_shuffle_last


def init_vmamba_linear(m: nn.Module) -> None:
    """VMamba's init: truncated normal (std 0.02) Linear weights, zero biases, unit LayerNorm.

    Parameters held directly by SS2D (x_proj_weight, dt_projs_*, A_logs, Ds) are not Linear
    modules, so their own Mamba-style initialisation is left untouched.
    """
    init_vit_weights(m)


class PatchExpandX4(nn.Module):
    """Swin-Unet's final x4 expand: Linear C -> 16C, to 4x4 pixels of C each, LayerNorm(C).

    Unlike VM-UNet's ``vss.FinalPatchExpand2D`` (C -> C/4 channels), this keeps the width.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.expand = nn.Linear(dim, 16 * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(pixel_shuffle_last(self.expand(x), 4))


class MambaMixer(nn.Module):
    """The Mamba (S6) mixer of Gu & Dao 2023 on token sequences (B, L, C) -> (B, L, C).

    Same parameters as ``mamba_ssm.Mamba`` (v1): in_proj to a gated pair of width expand*C, a
    causal depthwise conv1d, x_proj giving (dt, B, C) per token, a low-rank dt_proj whose bias is
    the scan's delta_bias, A = -exp(A_log), the skip D, and out_proj back to C.
    """

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        inner = expand * dim
        self.dt_rank = math.ceil(dim / 16)
        self.d_state = d_state
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1).float()).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, dim, bias=False)
        # Mamba's dt init: softplus(bias) log-uniform in [dt_min, dt_max]
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv1d(u.transpose(1, 2))[..., :length])  # causal: drop the look-ahead
        dt, b, c = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], -1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        y = selective_scan_fn(
            u, delta, -torch.exp(self.A_log.float()), b.transpose(1, 2), c.transpose(1, 2),
            self.D.float(), z=z.transpose(1, 2), delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))
