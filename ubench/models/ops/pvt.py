"""Pyramid Vision Transformer v2 encoder (PVTv2), built untrained, for models with a PVT backbone.

Wang et al., "PVT v2: Improved Baselines with Pyramid Vision Transformer", CVMJ 2022. Written from
the paper and the layer shapes of the ``pvtv2.py`` that U-Bench ships with Polyp-PVT (read, not
copied): four stages, each an overlapping patch embedding (strided conv with padding k//2, then
LayerNorm) followed by pre-norm blocks of spatial-reduction attention (keys/values from a map
shrunk by a strided conv + LayerNorm) and a feed-forward with a 3x3 depth-wise conv between its
two linears; a LayerNorm closes each stage. No classification head: the four maps (strides 4, 8,
16, 32) are what segmentation models use. U-Bench loads ImageNet weights; nothing is downloaded
here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn

from ubench.models.ops.common import OverlapPatchEmbed, init_vit_conv_weights, map_to_tokens, stochastic_depth, tokens_to_map


@dataclass(frozen=True)
class PVTConfig:
    dims: tuple[int, ...] = (64, 128, 320, 512)
    heads: tuple[int, ...] = (1, 2, 5, 8)
    mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    drop_path: float = 0.1


PVT_V2_B2 = PVTConfig()
PVT_V2_B3 = PVTConfig(depths=(3, 4, 18, 3))
PVT_RELEASE_URL = "https://github.com/whai362/PVT/releases/download/v2/{file}"
_BlockNorm = partial(nn.LayerNorm, eps=1e-6)  # blocks and stage norms; patch embeddings use 1e-5


def init_pvt_weights(m: nn.Module) -> None:
    """PVT's init: truncated-normal linears, unit LayerNorms, He-style (fan-out) convs."""
    init_vit_conv_weights(m)


class SRAttention(nn.Module):
    """Multi-head attention whose keys and values come from a map reduced ``sr`` times (a strided
    conv + LayerNorm): PVT-v2's and SegFormer's "efficient" attention, also MISSFormer's.

    The reduced map's LayerNorm is ``nn.LayerNorm(dim)`` (eps 1e-5) in every reference (PVT-v2's
    pvtv2.py too, whose blocks use eps 1e-6). The codes differ in rounding only: PVT-v2 scales the
    queries before ``q @ k^T`` (``pvt_order=True``), SegFormer / MISSFormer scale the product.
    ``attend`` takes the key/value source explicitly (MISSFormer's bridge attends to tokens of
    several levels).
    """

    def __init__(self, dim: int, heads: int, sr: int, pvt_order: bool = True):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.pvt_order = pvt_order
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, sr, stride=sr) if sr > 1 else None
        self.norm = nn.LayerNorm(dim) if sr > 1 else None

    def reduce(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if self.sr is None:
            return x
        return self.norm(map_to_tokens(self.sr(tokens_to_map(x, h, w))))

    def attend(self, x: torch.Tensor, kv_src: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        k, v = self.kv(kv_src).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        if self.pvt_order:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        else:
            attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.attend(x, self.reduce(x, h, w))


class ConvMlp(nn.Module):
    """Linear, 3x3 depth-wise conv on the token grid, GELU, linear (PVTv2's positional cue)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class PVTBlock(nn.Module):
    """Pre-norm SR-attention and conv-MLP, each with a residual connection."""

    def __init__(self, dim, heads, mlp_ratio, sr, drop_path=0.0):
        super().__init__()
        self.norm1 = _BlockNorm(dim)
        self.attn = SRAttention(dim, heads, sr)
        self.norm2 = _BlockNorm(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class PVTStage(nn.Module):
    """Patch embedding, blocks, LayerNorm; returns a (B, C, H, W) map."""

    def __init__(self, in_ch, dim, kernel, stride, depth, heads, mlp_ratio, sr, drop_paths):
        super().__init__()
        self.embed = OverlapPatchEmbed(in_ch, dim, kernel, stride)
        self.blocks = nn.ModuleList(PVTBlock(dim, heads, mlp_ratio, sr, drop_paths[i]) for i in range(depth))
        self.norm = _BlockNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self.embed(x)
        for block in self.blocks:
            x = block(x, h, w)
        return self.norm(x).transpose(1, 2).reshape(x.shape[0], -1, h, w)


class PVTv2Encoder(nn.Module):
    """Four PVTv2 stages (first embed 7x7/4, then 3x3/2); forward returns the four maps."""

    def __init__(self, in_channels: int = 3, cfg: PVTConfig = PVT_V2_B2):
        super().__init__()
        rates = torch.linspace(0, cfg.drop_path, sum(cfg.depths)).tolist()
        stages, start, prev = [], 0, in_channels
        for i, depth in enumerate(cfg.depths):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            stages.append(PVTStage(prev, cfg.dims[i], kernel, stride, depth, cfg.heads[i],
                                   cfg.mlp_ratios[i], cfg.sr_ratios[i], rates[start : start + depth]))
            start += depth
            prev = cfg.dims[i]
        self.stages = nn.ModuleList(stages)
        self.dims = cfg.dims
        self.apply(init_pvt_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def pvt_v2_key_map(prefix: str) -> list[list[str]]:
    """(regex, replacement) pairs taking the PVT authors' release keys (patch_embed{n}, block{n},
    norm{n}, mlp.dwconv.dwconv) onto a ``PVTv2Encoder`` at ``prefix`` (stages.{n-1}.embed /
    .blocks / .norm, mlp.dwconv); attention names are the same."""
    pairs = [
        pair
        for n in range(1, 5)
        for pair in ([rf"^patch_embed{n}\.", f"stages.{n - 1}.embed."],
                     [rf"^block{n}\.", f"stages.{n - 1}.blocks."],
                     [rf"^norm{n}\.", f"stages.{n - 1}.norm."])
    ]
    return pairs + [[r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."], [r"^", prefix]]


def pvt_v2_record(variant: str, prefix: str, source: str, url: str | None = None) -> dict:
    """The ``extra["pretrained"]`` record (ubench/models/pretrained.py) of the ImageNet
    ``pvt_v2_<variant>.pth`` loaded into a ``PVTv2Encoder`` at ``prefix``. ``source`` says where
    U-Bench loads it; ``url`` defaults to the PVT authors' GitHub release of that file."""
    file = f"pvt_v2_{variant}.pth"
    return {
        "backbone": f"pvt_v2_{variant}",
        "source": source,
        "file": file,
        "url": url or PVT_RELEASE_URL.format(file=file),
        "modules": [prefix.rstrip(".")],
        "key_map": pvt_v2_key_map(prefix),
        "drop": [r"^head\."],
    }
