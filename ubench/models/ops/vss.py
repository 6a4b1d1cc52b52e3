"""VMamba's visual state-space block (SS2D / VSSBlock) and VM-UNet's patch layers.

Why here: VM-UNet, VM-UNet v2 and H-vmunet all build on VMamba's SS2D; one implementation keeps
their numbers comparable. Facts (layer shapes, scan order, initialisation) are from the VMamba
code as vendored by U-Bench (FengheTan9/U-Bench models/Mamba/VMUNet/vmamba.py, identical in
VMUNetV2/ and H_vmunet/); the code is written from scratch in plain torch.

API (all tensors channels-last, (B, H, W, C), as in VMamba)::

    SS2D(d_model, d_state=16, d_conv=3, expand=2, dt_rank="auto", dt_min=0.001, dt_max=0.1,
         dt_init="random", dt_scale=1.0, dt_init_floor=1e-4, dropout=0.0, conv_bias=True,
         bias=False)                              (B, H, W, d_model) -> (B, H, W, d_model)
    VSSBlock(hidden_dim, drop_path=0.0, norm_layer=LayerNorm(eps=1e-6), attn_drop_rate=0.0,
             d_state=16, **ss2d_kwargs)           x + drop_path(SS2D(norm(x)))
    PatchEmbed2D(patch_size=4, in_chans=3, embed_dim=96, norm_layer=None)
                                                  (B, C, H, W) -> (B, H/4, W/4, embed_dim)
    PatchMerging2D(dim)                           (B, H, W, dim) -> (B, H/2, W/2, 2 dim)
    PatchExpand2D(dim)                            (B, H, W, 2 dim) -> (B, 2H, 2W, dim)
    FinalPatchExpand2D(dim, dim_scale=4)          (B, H, W, dim) -> (B, 4H, 4W, dim / 4)
    pixel_shuffle_last(x, p)                      channels-last pixel shuffle, (p1 p2 c) order
    VSSStage(dim, depth, drop_path=0.0, d_state=16, downsample=False, upsample=False)
                                                  VM-UNet's VSSLayer / VSSLayer_up
    VSSEncoder(in_chans=3, dims=(96, 192, 384, 768), depths=(2, 2, 9, 2), drop_path_rate=0.2,
               d_state=16)                        (B, C, H, W) -> (bottom, [stage inputs])
    vmamba_init_(module)                          VMamba's trunc-normal(0.02) Linear init

SS2D: in_proj to 2 * d_inner (x and gate z); depthwise d_conv x d_conv conv + SiLU on x; four
scans of the H*W tokens (row-major, column-major, and both reversed), each with its own x_proj
(-> dt_rank + 2 d_state), dt_proj, A and D; one grouped selective scan over the four; the four
outputs mapped back to row-major order and summed; LayerNorm; times SiLU(z); out_proj.
The selective scan is ``ubench.models.ops.selective_scan.selective_scan_fn`` (mamba-ssm's CUDA
kernel when installed and on GPU, the chunked torch scan otherwise).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import (
    init_vit_weights,
    stochastic_depth,
)
from ubench.models.ops.selective_scan import selective_scan_fn

DIRECTIONS = 4  # row, column, reversed row, reversed column


def _f32(t: torch.Tensor) -> torch.Tensor:
    """At least float32 for the scan (VMamba scans in fp32 even under autocast)."""
    return t if t.dtype == torch.float64 else t.float()


def _dt_bias(d_inner: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Bias whose softplus is log-uniform in [dt_min, dt_max] (Mamba's dt initialisation)."""
    dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse of softplus


class SS2D(nn.Module):
    """2D selective scan over four directions (see the module docstring)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 3, expand: float = 2,
                 dt_rank="auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init: str = "random", dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                 dropout: float = 0.0, conv_bias: bool = True, bias: bool = False):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        k = DIRECTIONS
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2,
                                groups=d_inner, bias=conv_bias)
        # per-direction projections, stacked: (K, dt_rank + 2N, d_inner) and (K, d_inner, dt_rank)
        bound = 1.0 / math.sqrt(d_inner)  # nn.Linear's default init, as VMamba gets it
        self.x_proj_weight = nn.Parameter(
            torch.empty(k, self.dt_rank + 2 * d_state, d_inner).uniform_(-bound, bound))
        std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "random":
            dt_w = torch.empty(k, d_inner, self.dt_rank).uniform_(-std, std)
        elif dt_init == "constant":
            dt_w = torch.full((k, d_inner, self.dt_rank), std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        self.dt_projs_weight = nn.Parameter(dt_w)
        self.dt_projs_bias = nn.Parameter(
            torch.stack([_dt_bias(d_inner, dt_min, dt_max, dt_init_floor) for _ in range(k)]))
        # S4D-real init: A = -(1..N) for every channel; stored as log so A stays negative
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k * d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(a))
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _scan(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d, H, W) -> (B, d, H, W): the four directional scans, summed in row-major order."""
        b, d, h, w = x.shape
        length = h * w
        rows = x.reshape(b, d, length)
        cols = x.transpose(2, 3).reshape(b, d, length)
        pair = torch.stack([rows, cols], dim=1)
        xs = torch.cat([pair, pair.flip(-1)], dim=1)  # (B, K, d, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        y = selective_scan_fn(
            _f32(xs).reshape(b, -1, length), _f32(dts).reshape(b, -1, length),
            -torch.exp(_f32(self.A_logs)), _f32(bs).contiguous(), _f32(cs).contiguous(),
            _f32(self.Ds), delta_bias=_f32(self.dt_projs_bias).reshape(-1),
            delta_softplus=True,
        ).reshape(b, DIRECTIONS, d, length)
        y = y[:, :2] + y[:, 2:].flip(-1)  # undo the reversal
        col = y[:, 1].reshape(b, d, w, h).transpose(2, 3)
        return y[:, 0].reshape(b, d, h, w) + col

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(x)
        x, z = xz.chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self._scan(x).permute(0, 2, 3, 1).to(z.dtype)
        y = self.out_norm(y) * F.silu(z)
        return self.dropout(self.out_proj(y))


class VSSBlock(nn.Module):
    """Pre-norm residual block around SS2D, as in VMamba / VM-UNet."""

    def __init__(self, hidden_dim: int, drop_path: float = 0.0,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6), attn_drop_rate: float = 0.0,  # noqa: B008 (a constructor)
                 d_state: int = 16, **ss2d_kwargs):
        super().__init__()
        self.ln_1 = norm_layer(hidden_dim)
        self.self_attention = SS2D(hidden_dim, d_state=d_state, dropout=attn_drop_rate,
                                   **ss2d_kwargs)
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))


def pixel_shuffle_last(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, H, W, p*p*c) -> (B, pH, pW, c), channels split in (p1, p2, c) order."""
    b, h, w, ch = x.shape
    c = ch // (p * p)
    x = x.reshape(b, h, w, p, p, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * p, w * p, c)


class PatchEmbed2D(nn.Module):
    """Non-overlapping patch projection to channels-last tokens (optionally normalised)."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96,
                 norm_layer=None):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging2D(nn.Module):
    """2x2 neighbourhoods concatenated, normalised, projected 4C -> 2C (Swin's merging)."""

    def __init__(self, dim: int, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm = norm_layer(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class PatchExpand2D(nn.Module):
    """2x upsampling of a (B, H, W, 2*dim) map to (B, 2H, 2W, dim): linear, shuffle, norm."""

    def __init__(self, dim: int, norm_layer=nn.LayerNorm):
        super().__init__()
        self.expand = nn.Linear(2 * dim, 4 * dim, bias=False)
        self.norm = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(pixel_shuffle_last(self.expand(x), 2))


class FinalPatchExpand2D(nn.Module):
    """Undo the 4x patch embedding: (B, H, W, dim) -> (B, 4H, 4W, dim / 4)."""

    def __init__(self, dim: int, dim_scale: int = 4, norm_layer=nn.LayerNorm):
        super().__init__()
        self.dim_scale = dim_scale
        self.expand = nn.Linear(dim, dim_scale * dim, bias=False)
        self.norm = norm_layer(dim // dim_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(pixel_shuffle_last(self.expand(x), self.dim_scale))


class VSSStage(nn.Module):
    """``depth`` VSSBlocks with an optional PatchExpand2D before or PatchMerging2D after.

    VM-UNet's VSSLayer (encoder: blocks then merge) and VSSLayer_up (decoder: expand then
    blocks). Blocks use plain LayerNorm (eps 1e-5), which is what VSSLayer passes to VSSBlock.
    """

    def __init__(self, dim: int, depth: int, drop_path=0.0, d_state: int = 16,
                 downsample: bool = False, upsample: bool = False):
        super().__init__()
        rates = drop_path if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        self.upsample = PatchExpand2D(dim) if upsample else None
        self.blocks = nn.ModuleList(
            VSSBlock(dim, drop_path=rates[i], norm_layer=nn.LayerNorm, d_state=d_state)
            for i in range(depth)
        )
        self.downsample = PatchMerging2D(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class VSSEncoder(nn.Module):
    """VMamba's hierarchy as VM-UNet uses it: 4x4 patch embed, then stages with merging.

    forward returns (bottom, skips): skips[i] is the input of stage i (channels-last), bottom the
    last stage's output, exactly the tensors VM-UNet's ``forward_features`` hands on.
    """

    def __init__(self, in_chans: int = 3, dims=(96, 192, 384, 768), depths=(2, 2, 9, 2),
                 drop_path_rate: float = 0.2, d_state: int = 16, patch_size: int = 4):
        super().__init__()
        self.patch_embed = PatchEmbed2D(patch_size, in_chans, dims[0], nn.LayerNorm)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            first = sum(depths[:i])
            self.layers.append(VSSStage(dim, depth, rates[first:first + depth], d_state,
                                        downsample=i < len(dims) - 1))

    def forward(self, x: torch.Tensor):
        x = self.patch_embed(x)
        skips = []
        for layer in self.layers:
            skips.append(x)
            x = layer(x)
        return x, skips


def vmamba_init_(module: nn.Module) -> None:
    """VMamba's init: truncated-normal(0.02) Linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        init_vit_weights(m)
