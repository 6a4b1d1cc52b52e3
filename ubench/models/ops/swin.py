"""Swin Transformer building blocks on token sequences (B, H*W, C): Swin-Unet's stages, and the
Swin encoders of HiFormer and H2Former (one implementation for all three).

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV 2021,
and the patch-expanding decoder of Cao et al., "Swin-Unet", ECCVW 2022. Written from the papers'
description and the layer shapes of U-Bench's models/Transformer/SwinUnet (read, not copied):
windowed attention with a learned relative-position bias, cyclic shift with a mask on alternate
blocks, 2x2 patch merging (LayerNorm then a bias-free linear 4C -> 2C) and patch expanding (a
bias-free linear that widens the channels, a pixel-shuffle-like rearrangement, then LayerNorm).
Every block knows the (H, W) of its token grid at build time, as in the reference: the shift
masks depend on it, which is why Swin-Unet accepts one input size only.

Two containers hold the same blocks, because the models' checkpoints name them differently:
``SwinStage`` (a module with ``blocks.<i>``, Swin-Unet's layout) and ``swin_stage`` (a plain
``nn.Sequential``, ``<i>``, HiFormer's and H2Former's).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import Mlp, init_vit_weights, stochastic_depth


def init_transformer_weights(module: nn.Module) -> None:
    """ViT-style init of one module (use with ``module.apply``): truncated normal (std 0.02)
    linears with zero bias, unit LayerNorms."""
    init_vit_weights(module)


def swin_init(module: nn.Module) -> None:
    """``init_transformer_weights`` on every submodule of ``module``."""
    for m in module.modules():
        init_vit_weights(m)


def to_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, w*w, C), windows in raster order."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def from_windows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """Inverse of ``to_windows``: (B * windows, w*w, C) -> (B, H, W, C)."""
    c = x.shape[-1]
    x = x.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, wd, c)


def relative_position_index(w: int) -> torch.Tensor:
    """(w*w, w*w) index into a ((2w-1)^2)-row bias table for every query/key pair of a window."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # 2, w*w
    rel = coords[:, :, None] - coords[:, None, :] + (w - 1)  # shifted to start at 0
    return rel[0] * (2 * w - 1) + rel[1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, plus a learned relative-position bias."""

    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # bw, heads, n, n
        attn = attn + self.bias_table[self.bias_index].permute(2, 0, 1)
        if mask is not None:  # (windows, n, n): -100 between tokens from different regions
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.heads, n, n)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


def shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(windows, w*w, w*w) additive mask keeping attention inside each region after a roll."""
    regions = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for ys in cuts:
        for xs in cuts:
            regions[:, ys, xs, :] = label
            label += 1
    r = to_windows(regions, window).squeeze(-1)  # windows, w*w
    diff = r[:, None, :] - r[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each with a residual connection.

    ``mlp`` replaces the plain two-layer MLP (H2Former adds ECA to it); built by the caller, before
    the block, so its weights are drawn first.
    """

    def __init__(self, dim, resolution, heads, window=7, shift=0, mlp_ratio=4.0, drop_path=0.0,
                 mlp: nn.Module | None = None):
        super().__init__()
        self.resolution = tuple(resolution)
        if min(self.resolution) <= window:  # grid no larger than a window: one window, no shift
            window, shift = min(self.resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp if mlp is not None else Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = stochastic_depth(drop_path)
        mask = shift_mask(*self.resolution, window, shift) if shift else None
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(to_windows(y, self.window), self.mask)
        y = from_windows(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, n, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """``depth`` Swin blocks alternating plain and shifted windows."""

    def __init__(self, dim, resolution, depth, heads, window=7, drop_paths=(), mlp_ratio=4.0):
        super().__init__()
        drop_paths = list(drop_paths) or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio,
                      drop_paths[i])
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def swin_stage(dim, resolution, depth: int, heads: int, window: int, drop_paths, mlp_ratio: float = 4.0,
               mlp_factory=None) -> nn.Sequential:
    """``depth`` Swin blocks in an ``nn.Sequential``, every second one shifted by half a window.

    ``mlp_factory()``, if given, builds each block's MLP (H2Former's ECA variant).
    """
    blocks = []
    for i in range(depth):
        mlp = None if mlp_factory is None else mlp_factory()
        shift = 0 if i % 2 == 0 else window // 2
        blocks.append(SwinBlock(dim, resolution, heads, window, shift, mlp_ratio, drop_paths[i], mlp))
    return nn.Sequential(*blocks)


class PatchMerging(nn.Module):
    """Halve the grid: concatenate each 2x2 neighbourhood (4C), normalise, project to 2C."""

    def __init__(self, dim: int, resolution):
        super().__init__()
        self.resolution = tuple(resolution)
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        # order (row, col) offsets: (0,0), (1,0), (0,1), (1,1), as in the Swin reference
        parts = [x[:, i::2, j::2] for j in (0, 1) for i in (0, 1)]
        x = torch.cat(parts, dim=-1).view(b, -1, 4 * c)
        return self.reduction(self.norm(x))


class PatchExpand(nn.Module):
    """Grow the grid ``scale`` times: widen linearly, spread channels over a scale x scale patch."""

    def __init__(self, dim: int, resolution, scale: int = 2, out_dim: int | None = None):
        super().__init__()
        self.resolution = tuple(resolution)
        self.scale = scale
        self.out_dim = out_dim if out_dim is not None else dim // 2
        self.expand = nn.Linear(dim, scale * scale * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        s, c = self.scale, self.out_dim
        b = x.shape[0]
        x = self.expand(x).view(b, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5)
        return self.norm(x.reshape(b, h * s * w * s, c))
