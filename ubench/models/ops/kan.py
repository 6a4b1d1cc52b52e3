"""A Kolmogorov-Arnold linear layer (learnable B-spline activations on every edge), plain torch.

U-KAN (and U-Bench's copy of it, models/CNN/U_KAN/kan.py) uses the "efficient-kan" formulation:
the output is a linear map of SiLU(x) plus, for every (output, input) pair, a spline of the input
expressed in a fixed B-spline basis, so the whole layer is two matrix products:

    y = W_base @ silu(x) + (W_spline * scaler) @ B(x)

with B(x) the cubic B-spline basis (``grid_size`` intervals on ``grid_range``, extended by
``spline_order`` knots each side so the basis covers the range fully). Parameters per layer:
out * in * (2 + grid_size + spline_order). The knots are a buffer (one row per input feature, so
a later grid update could move them per feature); U-Bench never updates them, so neither do we.

Initialisation, as in the reference: ``W_base`` and ``scaler`` Kaiming-uniform (a = sqrt(5)),
``W_spline`` the least-squares (minimum-norm) spline coefficients that fit small uniform noise
(``scale_noise / grid_size``) at the grid points, so each spline starts near zero but not at it.
The reference solves one batched ``torch.linalg.lstsq`` per layer, whose result varies in the
last bits from run to run; we apply one pseudo-inverse instead (same solution to ~1e-8, and
reproducible bit for bit under a fixed seed).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_vit_conv_weights, map_to_tokens, tokens_to_map


def bspline_basis(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """B-spline basis functions of degree ``order`` by the Cox-de Boor recursion.

    x: (N, F) inputs; knots: (F, K) increasing knots per feature. Returns (N, F, K - 1 - order):
    the value of every basis function at every input. Inputs outside [knots[0], knots[-1]) get 0.
    """
    x = x.unsqueeze(-1)
    left, right = knots[:, :-1], knots[:, 1:]
    basis = ((x >= left) & (x < right)).to(x.dtype)  # degree 0: interval indicators
    for d in range(1, order + 1):
        lo, hi = knots[:, : -(d + 1)], knots[:, d:-1]  # support start / end of the rising part
        lo2, hi2 = knots[:, 1:-d], knots[:, d + 1 :]  # same for the falling part
        rising = (x - lo) / (hi - lo) * basis[..., :-1]
        falling = (hi2 - x) / (hi2 - lo2) * basis[..., 1:]
        basis = rising + falling
    return basis


class KANLinear(nn.Module):
    """Linear layer whose edges carry SiLU + B-spline activations (efficient-kan style)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        grid_range: tuple[float, float] = (-1.0, 1.0),
    ):
        super().__init__()
        if grid_size < 1 or spline_order < 0:
            raise ValueError(f"need grid_size >= 1 and spline_order >= 0, got {grid_size}, {spline_order}")
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        self.scale_noise, self.scale_base, self.scale_spline = scale_noise, scale_base, scale_spline
        n_basis = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, n_basis))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        step = (grid_range[1] - grid_range[0]) / grid_size
        knots = grid_range[0] + step * torch.arange(-spline_order, grid_size + spline_order + 1)
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.reset_parameters()

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, in, grid_size + spline_order) B-spline basis values."""
        return bspline_basis(x, self.grid, self.spline_order)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        k = self.spline_order
        points = self.grid[0, k:-k]  # the grid_size + 1 grid points (every feature shares them)
        noise = torch.rand(points.numel(), self.in_features, self.out_features) - 0.5
        noise *= self.scale_noise / self.grid_size
        # Least-squares (minimum-norm) spline coefficients through the noise at the grid points.
        # Every feature has the same knots, so one pseudo-inverse serves all; applying it by
        # element-wise sums keeps the init bit-for-bit reproducible (batched lstsq is not).
        a = bspline_basis(points[:, None].double(), self.grid[:1].double(), k)[:, 0, :]
        fit = torch.linalg.pinv(a).float()  # (n_basis, grid_size + 1)
        coef = sum(fit[:, p, None, None] * noise[p] for p in range(points.numel()))  # (n_basis, in, out)
        self.spline_weight.copy_(coef.permute(2, 1, 0))
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        base = F.linear(F.silu(x), self.base_weight)
        spline_w = (self.spline_weight * self.spline_scaler.unsqueeze(-1)).flatten(1)
        spline = F.linear(self.basis(x).flatten(1), spline_w)
        return (base + spline).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"grid_size={self.grid_size}, spline_order={self.spline_order}"
        )


class DepthwiseBnRelu(nn.Module):
    """3x3 depthwise conv + BN + ReLU applied to tokens through their (H, W) map."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return map_to_tokens(torch.relu(self.bn(self.conv(tokens_to_map(t, h, w)))))


class KANBlock(nn.Module):
    """U-KAN's token block (also ResU-KAN's): t + [KANLinear -> depthwise conv + BN + ReLU] x
    ``steps`` applied to LayerNorm(t)."""

    def __init__(self, dim: int, steps: int = 3):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.kan = nn.ModuleList(KANLinear(dim, dim) for _ in range(steps))
        self.dw = nn.ModuleList(DepthwiseBnRelu(dim) for _ in range(steps))
        self.apply(init_vit_conv_weights)  # convs and LayerNorm; KANLinear keeps its own init

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = self.norm(t)
        for kan, dw in zip(self.kan, self.dw):
            y = dw(kan(y), h, w)
        return t + y
