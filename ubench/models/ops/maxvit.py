"""MaxViT / MaxxViT encoders (timm's "rmlp" small variants), built untrained, for models with a
MaxViT backbone (MERIT).

Tu et al., "MaxViT: Multi-Axis Vision Transformer", ECCV 2022; the variants are Ross Wightman's
own timm configurations (suffix ``_rw``), whose ImageNet checkpoints U-Bench loads. Written from
the papers and the layer shapes of the ``maxxvit_4out.py`` that U-Bench ships with MERIT (timm
0.6's ``maxxvit.py``, returning four maps; read, not copied):

- stem: 3x3/2 conv, norm + activation, 3x3 conv (both bias-free);
- four stages (strides 4, 8, 16, 32), each a stack of MaxViT blocks whose first block halves the
  map: a convolution block, then window attention (non-overlapping p x p windows), then grid
  attention (a p x p grid of tokens spread over the whole map), each attention block a pre-norm
  transformer layer on channels-last tokens with a layer scale on both branches;
- the convolution block is an MBConv for MaxViT (``conv="mbconv"``: BN pre-norm, 1x1 expansion x4
  of the *input* width, BN + SiLU, 3x3 depth-wise, BN + SiLU, squeeze-excite with 1/16 of the
  expanded width and SiLU, 1x1 projection, all convs bias-free) and a ConvNeXt block for MaxxViT
  (``conv="convnext"``: 7x7 depth-wise conv with bias, LayerNorm, 1x1 MLP x4 with GELU, layer
  scale); a halving block pools its shortcut (2x2 average, then a 1x1 conv where the width
  changes) and strides its depth-wise conv;
- attention: 32-channel heads, the per-head q/k/v packed side by side in one linear (timm's
  channels-last layout), and a relative-position bias computed by a small MLP (2 -> 512, ReLU,
  dropout 0.125, -> heads) from log-spaced (dy, dx) offsets (timm's ``RelPosMlp``, mode "cr");
- a LayerNorm on the last map only (what the classifier saw).

The partition size p is the input size // 32 (8 at 256, 7 at 224), fixed at build time, so an
encoder takes the one input size its config names. Initialisation is timm's "vit_eff" scheme:
convs He-normal (fan-out), attention/MLP linears Xavier-uniform with zero biases (1e-6-std normal
biases for the MLPs), layer scales 1e-6, norms at one/zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import LayerNorm2d, Mlp, init_conv_fan_out
from ubench.models.ops.swin import from_windows, relative_position_index, to_windows

TIMM_MAXX_RELEASE_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights-maxx/{file}"


@dataclass(frozen=True)
class MaxViTConfig:
    """One MaxViT variant: widths and depths per stage, stem widths, conv block type and the
    input size it is built for (partitions are ``img_size // 32``)."""

    name: str
    file: str  # the published ImageNet checkpoint
    dims: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (2, 2, 5, 2)
    stem_widths: tuple[int, int] = (32, 64)
    conv: str = "mbconv"  # or "convnext"
    img_size: int = 224
    dim_head: int = 32
    mlp_ratio: float = 4.0
    rel_pos_hidden: int = 512
    layer_scale: float = 1e-6

    @property
    def partition(self) -> int:
        return self.img_size // 32


MAXVIT_RMLP_SMALL_RW_224 = MaxViTConfig(
    "maxvit_rmlp_small_rw_224", "maxvit_rmlp_small_rw_224_sw-6ef0ae4f.pth",
    stem_widths=(32, 64), conv="mbconv", img_size=224,
)
MAXXVIT_RMLP_SMALL_RW_256 = MaxViTConfig(
    "maxxvit_rmlp_small_rw_256", "maxxvit_rmlp_small_rw_256_sw-37e217ff.pth",
    stem_widths=(48, 96), conv="convnext", img_size=256,
)


class LayerScale(nn.Module):
    """Per-channel gain on the last dimension (channels-last) or on dim 1 (``maps=True``)."""

    def __init__(self, dim: int, init: float, maps: bool = False):
        super().__init__()
        self.maps = maps
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.gamma.view(1, -1, 1, 1) if self.maps else self.gamma)


class PoolShortcut(nn.Module):
    """Shortcut of a halving block: 2x2 average pooling, then a 1x1 conv where the width changes."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool):
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.proj = nn.Conv2d(in_ch, out_ch, 1, bias=bias) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class ConvSqueezeExcite(nn.Module):
    """Squeeze-excite on maps with 1x1 convs (bias) and SiLU: x * sigmoid(fc2(silu(fc1(mean))))."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


class MBConv(nn.Module):
    """Pre-norm inverted bottleneck (timm's "rw" MBConv): BN, 1x1 expand (x4 of the input width),
    BN + SiLU, 3x3 depth-wise (strided when halving), BN + SiLU, squeeze-excite, 1x1 project."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expand: float = 4.0, se_ratio: float = 1 / 16):
        super().__init__()
        mid = int(in_ch * expand)
        self.shortcut = PoolShortcut(in_ch, out_ch, bias=False) if stride == 2 else nn.Identity()
        self.pre_norm = nn.BatchNorm2d(in_ch)
        self.conv_expand = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.se = ConvSqueezeExcite(mid, int(mid * se_ratio))
        self.conv_project = nn.Conv2d(mid, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.norm1(self.conv_expand(self.pre_norm(x))))
        y = self.se(F.silu(self.norm2(self.conv_dw(y))))
        return self.conv_project(y) + self.shortcut(x)


class PointwiseMlp(nn.Module):
    """1x1 conv, GELU, 1x1 conv (both with bias): the ConvNeXt MLP on maps."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """7x7 depth-wise conv (bias; strided and widening when halving), LayerNorm, 1x1 MLP x4,
    layer scale, residual (pooled shortcut when halving)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, mlp_ratio: float = 4.0, layer_scale: float = 1e-6):
        super().__init__()
        if stride == 2:
            self.shortcut = PoolShortcut(in_ch, out_ch, bias=True)
        else:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.conv_dw = nn.Conv2d(in_ch, out_ch, 7, stride=stride, padding=3, groups=in_ch)
        self.norm = LayerNorm2d(out_ch, eps=1e-6)
        self.mlp = PointwiseMlp(out_ch, int(out_ch * mlp_ratio))
        self.ls = LayerScale(out_ch, layer_scale, maps=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls(self.mlp(self.norm(self.conv_dw(x)))) + self.shortcut(x)


def log_offsets(p: int) -> torch.Tensor:
    """(2p-1, 2p-1, 2) table of sign(d) * log(1 + |d|) for every (dy, dx) offset in a p x p block."""
    d = torch.arange(-(p - 1), p, dtype=torch.float32)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    table = torch.stack([dy, dx], dim=-1)
    return torch.sign(table) * torch.log(1.0 + table.abs())


class RelPosMlp(nn.Module):
    """Relative-position bias from an MLP over log-spaced offsets: 2 -> hidden (ReLU, dropout
    0.125 while training) -> heads, gathered into a (1, heads, p*p, p*p) additive bias."""

    def __init__(self, p: int, heads: int, hidden: int = 512, drop: float = 0.125):
        super().__init__()
        self.heads = heads
        self.fc1 = nn.Linear(2, hidden)
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, heads)
        self.register_buffer("offsets", log_offsets(p), persistent=False)
        self.register_buffer("index", relative_position_index(p), persistent=False)

    def forward(self) -> torch.Tensor:
        table = self.fc2(self.drop(F.relu(self.fc1(self.offsets)))).view(-1, self.heads)
        return table[self.index].permute(2, 0, 1).unsqueeze(0)


class RelPosAttention(nn.Module):
    """Multi-head self-attention over the tokens of each block, q/k/v packed per head, plus the
    MLP relative-position bias."""

    def __init__(self, dim: int, p: int, dim_head: int = 32, rel_pos_hidden: int = 512):
        super().__init__()
        if dim % dim_head:
            raise ValueError(f"attention width {dim} is not a multiple of the head width {dim_head}")
        self.heads, self.dim_head = dim // dim_head, dim_head
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rel_pos = RelPosMlp(p, self.heads, rel_pos_hidden)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, self.heads, 3 * self.dim_head).transpose(1, 2).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.rel_pos())
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def to_grid(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/p * W/p, p*p, C): each group is a p x p grid of tokens H/p apart."""
    b, h, w, c = x.shape
    x = x.view(b, p, h // p, p, w // p, c).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, p * p, c)


def from_grid(x: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``to_grid``."""
    c = x.shape[-1]
    x = x.view(-1, h // p, w // p, p, p, c).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(-1, h, w, c)


class PartitionAttention(nn.Module):
    """Pre-norm transformer layer on (B, H, W, C) tokens partitioned into p x p windows
    (``grid=False``) or a p x p dilated grid (``grid=True``); layer scale on both branches."""

    def __init__(self, dim: int, p: int, grid: bool, cfg: MaxViTConfig):
        super().__init__()
        self.p, self.grid = p, grid
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RelPosAttention(dim, p, cfg.dim_head, cfg.rel_pos_hidden)
        self.ls1 = LayerScale(dim, cfg.layer_scale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(dim, cfg.layer_scale)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        if self.grid:
            return from_grid(self.attn(to_grid(x, self.p)), self.p, h, w)
        return from_windows(self.attn(to_windows(x, self.p)), self.p, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self._attend(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def init_weights(self) -> None:
        """Xavier-uniform linears; zero biases for q/k/v and the projection, N(0, 1e-6) for MLPs."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if "mlp" in name or "rel_pos" in name:
                    nn.init.normal_(m.bias, std=1e-6)
                else:
                    nn.init.zeros_(m.bias)


class MaxViTBlock(nn.Module):
    """Conv block (MBConv or ConvNeXt), then window attention, then grid attention."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, cfg: MaxViTConfig):
        super().__init__()
        if cfg.conv == "mbconv":
            self.conv = MBConv(in_ch, out_ch, stride)
        elif cfg.conv == "convnext":
            self.conv = ConvNeXtBlock(in_ch, out_ch, stride, layer_scale=cfg.layer_scale)
        else:
            raise ValueError(f"conv block must be 'mbconv' or 'convnext', got {cfg.conv!r}")
        self.window = PartitionAttention(out_ch, cfg.partition, grid=False, cfg=cfg)
        self.grid = PartitionAttention(out_ch, cfg.partition, grid=True, cfg=cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).permute(0, 2, 3, 1)
        return self.grid(self.window(x)).permute(0, 3, 1, 2)


class MaxViTStem(nn.Module):
    """3x3/2 conv, norm + activation (BN + SiLU for MBConv nets, LayerNorm + GELU for MaxxViT),
    3x3 conv; both convs bias-free."""

    def __init__(self, in_ch: int, widths: tuple[int, int], conv: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, widths[0], 3, stride=2, padding=1, bias=False)
        if conv == "mbconv":
            self.norm1, self.act = nn.BatchNorm2d(widths[0]), nn.SiLU()
        else:
            self.norm1, self.act = LayerNorm2d(widths[0], eps=1e-6), nn.GELU()
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.norm1(self.conv1(x))))


class MaxViTEncoder(nn.Module):
    """Stem and four MaxViT stages; ``forward`` returns the four maps (strides 4, 8, 16, 32),
    the last one LayerNorm'd. Takes ``cfg.img_size`` square inputs only (fixed partitions)."""

    def __init__(self, in_channels: int = 3, cfg: MaxViTConfig = MAXVIT_RMLP_SMALL_RW_224):
        super().__init__()
        self.cfg, self.dims = cfg, cfg.dims
        self.stem = MaxViTStem(in_channels, cfg.stem_widths, cfg.conv)
        stages, prev = [], cfg.stem_widths[1]
        for dim, depth in zip(cfg.dims, cfg.depths):
            stages.append(nn.Sequential(*(MaxViTBlock(prev if i == 0 else dim, dim, 2 if i == 0 else 1, cfg)
                                          for i in range(depth))))
            prev = dim
        self.stages = nn.ModuleList(stages)
        self.norm = LayerNorm2d(cfg.dims[-1], eps=1e-6)
        self.init_weights()

    def init_weights(self) -> None:
        """timm's "vit_eff": He-normal (fan-out) convs, Xavier attention linears (see module doc)."""
        self.stem.apply(init_conv_fan_out)
        for stage in self.stages:
            for block in stage:
                block.conv.apply(init_conv_fan_out)
                block.window.init_weights()
                block.grid.init_weights()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        feats[-1] = self.norm(feats[-1])
        return feats


def maxvit_key_map(prefix: str) -> list[list[str]]:
    """(regex, replacement) pairs taking timm's MaxxVit keys (stages.i.blocks.j, attn_block /
    attn_grid, rel_pos.mlp, conv1_1x1 / conv2_kxk / conv3_1x1, shortcut.expand) onto a
    ``MaxViTEncoder`` at ``prefix``; stem, norms, SE, ConvNeXt and layer-scale names are the same."""
    return [
        [r"^stages\.(\d+)\.blocks\.", r"stages.\1."],
        [r"\.attn_block\.", ".window."],
        [r"\.attn_grid\.", ".grid."],
        [r"\.rel_pos\.mlp\.", ".rel_pos."],
        [r"\.conv1_1x1\.", ".conv_expand."],
        [r"\.conv2_kxk\.", ".conv_dw."],
        [r"\.conv3_1x1\.", ".conv_project."],
        [r"\.shortcut\.expand\.", ".shortcut.proj."],
        [r"^", prefix],
    ]


def maxvit_record(cfg: MaxViTConfig, prefix: str, source: str, url: str | None = None) -> dict:
    """The ``extra["pretrained"]`` record (ubench/models/pretrained.py) of ``cfg``'s ImageNet
    checkpoint loaded into a ``MaxViTEncoder`` at ``prefix``; the classifier (``head.fc``) is
    dropped. ``url`` defaults to timm's GitHub release of the file."""
    return {
        "backbone": cfg.name,
        "source": source,
        "file": cfg.file,
        "url": url or TIMM_MAXX_RELEASE_URL.format(file=cfg.file),
        "modules": [prefix.rstrip(".")],
        "key_map": maxvit_key_map(prefix),
        "drop": [r"^head\."],
    }

