"""Blocks shared by the hybrid CNN-transformer models (UCTransNet, UTNet, MISSFormer, HiFormer,
H2Former).

Only what several of those models need lives here: a fixed-input-size check for the models whose
positional embeddings are tied to one resolution, stochastic depth, token <-> map reshapes, a
plain transformer MLP, and the Swin Transformer window-attention blocks (HiFormer and H2Former).
Everything is plain torch (no timm, no einops) so nothing beyond torch must be installed.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.checks import check_fixed_size  # noqa: F401  (re-exported)
from ubench.models.ops.common import (
    DropPath,  # noqa: F401  (re-exported)
    init_vit_weights,
)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


class TokenMlp(nn.Module):
    """Transformer feed-forward: Linear, GELU, Linear (dropout optional)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


# --- Swin Transformer pieces (HiFormer's and H2Former's encoders) ----------------------------
# Liu et al., "Swin Transformer", ICCV 2021: attention inside non-overlapping windows with a
# learned relative position bias; every second block shifts the windows by half a window and
# masks attention between pixels that the cyclic shift brought together.


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of window_partition: (B * nW, ws*ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into a ((2ws-1)^2)-row bias table for every pair of window cells."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]) + (ws - 1)
    return rel[0] * (2 * ws - 1) + rel[1]


class WindowAttention(nn.Module):
    """Multi-head self-attention within a window, plus Swin's relative position bias."""

    def __init__(self, dim: int, ws: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", relative_index(ws), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + self.bias_table[self.bias_index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)
        if mask is not None:  # (nW, n, n), the same for every image of the batch
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, self.heads, n, n) + mask[None, :, None]
            attn = attn.reshape(bw, self.heads, n, n)
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c))


def shift_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) additive mask: -100 between cells from different pre-shift regions."""
    region = torch.zeros(1, h, w, 1)
    label = 0
    bands = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for hs in bands:
        for wsl in bands:
            region[:, hs, wsl, :] = label
            label += 1
    cells = window_partition(region, ws).squeeze(-1)
    diff = cells[:, None, :] - cells[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention and MLP for a fixed token grid ``resolution``.

    As in the reference, a grid no larger than the window makes the window the whole grid
    and disables the shift. ``mlp`` replaces the plain two-layer MLP (H2Former adds ECA to it).
    """

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        heads: int,
        window: int,
        shift: int = 0,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        mlp: nn.Module | None = None,
    ):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp if mlp is not None else TokenMlp(dim, int(dim * mlp_ratio))
        mask = shift_mask(*resolution, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        ws, s = self.window, self.shift
        y = self.norm1(x).reshape(b, h, w, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, ws), self.attn_mask), ws, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, n, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def swin_stage(
    dim: int,
    resolution: tuple[int, int],
    depth: int,
    heads: int,
    window: int,
    drop_paths,
    mlp_ratio: float = 4.0,
    mlp_factory=None,
) -> nn.Sequential:
    """``depth`` Swin blocks, every second one shifted by half a window (no downsampling).

    ``mlp_factory()``, if given, builds each block's MLP (H2Former's ECA variant).
    """
    blocks = []
    for i in range(depth):
        shift = 0 if i % 2 == 0 else window // 2
        mlp = None if mlp_factory is None else mlp_factory()
        blocks.append(SwinBlock(dim, resolution, heads, window, shift, mlp_ratio, drop_paths[i], mlp))
    return nn.Sequential(*blocks)


def swin_init(module: nn.Module) -> None:
    """Swin/ViT initialisation: Linear weights ~ trunc N(0, 0.02), zero biases; LayerNorm 1, 0."""
    for m in module.modules():
        init_vit_weights(m)
