"""Mamba (v1) block for token sequences, the layer mamba-ssm ships as ``mamba_ssm.Mamba``.

Why: UltraLight VM-UNet (and other 1D-scan models) call ``Mamba(d_model, d_state, d_conv,
expand)`` on flattened image tokens. This is the same layer in plain torch, parameter for
parameter (names follow mamba-ssm: in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj), using
``ubench.models.ops.selective_scan.selective_scan_fn`` (the CUDA kernel when installed, else the
chunked torch scan). Facts from mamba-ssm's mamba_simple.py (state-spaces/mamba); written anew.

API: ``Mamba(d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001,
dt_max=0.1, dt_init="random", dt_scale=1.0, dt_init_floor=1e-4, conv_bias=True, bias=False)``;
forward (B, L, d_model) -> (B, L, d_model).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.selective_scan import selective_scan_fn


class Mamba(nn.Module):
    """in_proj -> causal depthwise conv + SiLU -> selective scan gated by SiLU(z) -> out_proj."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: float = 2,
                 dt_rank="auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init: str = "random", dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                 conv_bias: bool = True, bias: bool = False):
        super().__init__()
        self.d_state = d_state
        self.d_inner = d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1,
                                bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        std = self.dt_rank ** -0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "random":
                self.dt_proj.weight.uniform_(-std, std)
            elif dt_init == "constant":
                self.dt_proj.weight.fill_(std)
            else:
                raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
            dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)
                                            ).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        x = F.silu(self.conv1d(x)[..., :length])  # causal: keep the first L outputs
        dbl = self.x_proj(x.transpose(1, 2))  # (B, L, R + 2N)
        dt, b, c = torch.split(dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # bias goes in as delta_bias
        y = selective_scan_fn(
            x, dt, -torch.exp(self.A_log.float()), b.transpose(1, 2).contiguous(),
            c.transpose(1, 2).contiguous(), self.D.float(), z=z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))
