"""MDSA-UNet, a U-Net of dynamic sparse (bi-level routing) attention blocks on multi-scale maps.

Paper: Li, Fu, Wang, Zhang, Ye, Chen, Sham, "Multi-Scale Dynamic Sparse Attention UNet for Medical
Image Segmentation", IEEE Journal of Biomedical and Health Informatics (JBHI) 2025; its attention
derives from BiFormer (Zhu et al., "BiFormer: Vision Transformer with Bi-Level Routing Attention",
CVPR 2023).

Configuration: U-Bench's ``mdsa_unet(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/CNN/MDSA_UNet/MDSA_UNet.py with bra_legacy.py), i.e. ``MDSA_UNet`` with its defaults:
widths 128, 320, 512 (heads = width / 32: 4, 10, 16), one block per stage, an 8 x 8 grid of
routing windows per map, top-k routed windows 1, 4, 16 in the encoder and 4, 1 in the decoder, MLP
ratio 2. Encoder: three down-sampling steps (7x7 stride 4, then 3x3 stride 2 twice; each a conv +
BN + ReLU plus a thin branch: conv to width/8 + BN, max-pool with the same stride, 1x1 conv + BN +
ReLU, the two added), each followed by a block. Decoder, two steps: the deeper map resized
bilinearly to the skip, concatenated [deeper, skip], a 1x1 conv + BN + ReLU plus a thin branch
(3x3 conv to width/8 + BN, 1x1 conv + BN + ReLU), then a block at the skip's width. Head: 1x1
conv on the stride-4 map, bilinear x4 (align_corners=False). Block: x + dwconv3x3(x); then
pre-LayerNorm (eps 1e-6) residual attention and MLP, each branch through Dropout(0.1). Attention
(U-Bench's modified BiFormer routing, no q/k/v projections): the map is first mixed by a
multi-scale aggregator (1x1 conv, four channel quarters: BN + ReLU | separable 3x3 / 5x5 / 7x7 +
BN + ReLU, concatenated, 1x1 conv); it is cut into an 8 x 8 grid of windows; each window's mean, L2-normalised,
routes it to the ``topk`` windows nearest in squared distance (no gradient through the routing);
each pixel attends to every pixel of those windows, with q = k = v = the aggregated map and the
scale width^-1/2 (not head_dim^-1/2); a 5x5 depthwise conv of the map (LePE) is added and a Linear
projects out. MLP (Context-GLU): Linear to 2x width, multiplied by its own 3x3 depthwise conv,
LayerNorm, GELU, Linear back. Init: truncated-normal Linears, unit norms, fan-out normal convs.
Parameters at 3 in / 1 class: 6,576,225 (counted by instantiating U-Bench's module).

Every stage's map must split into an 8 x 8 grid of windows, and the deepest is at stride 16: H and W must be
multiples of 128.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_vit_conv_weights
from ubench.models.registry import ModelInfo, register_model

DIMS = (128, 320, 512)
PATCH = ((7, 4), (3, 2), (3, 2))  # (kernel, stride) of each down-sampling step
TOPKS = (1, 4, 16)  # routed windows per stage (the decoder mirrors the encoder: 4, 1)
DEPTH = 1
HEAD_DIM = 32
N_WIN = 8
MLP_RATIO = 2
DROP = 0.1  # plain Dropout on the residual branches, as in U-Bench (not stochastic depth)
STRIDE = 4 * 2 * 2 * N_WIN  # deepest map at stride 16, cut into N_WIN x N_WIN windows


def conv_bn(in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2), nn.BatchNorm2d(out_ch)]


class TwoBranchConv(nn.Module):
    """A conv + BN + ReLU main branch plus a thin branch through width/8 (optionally max-pooled to
    the main branch's stride), summed: MDSA-UNet's down-sampling (EDM) and fusion (EUF) step."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, thin_kernel: int):
        super().__init__()
        thin = out_ch // 8
        self.main = nn.Sequential(*conv_bn(in_ch, out_ch, kernel_size, stride), nn.ReLU(inplace=True))
        pool = [nn.MaxPool2d(thin_kernel, stride, thin_kernel // 2)] if stride > 1 else []
        self.thin = nn.Sequential(
            *conv_bn(in_ch, thin, thin_kernel), *pool, *conv_bn(thin, out_ch), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.thin(x)


class SkipMerge(TwoBranchConv):
    """Resize the deeper map to the skip (bilinear), concatenate [deeper, skip], 1x1 fusion."""

    def __init__(self, deep_ch: int, skip_ch: int):
        super().__init__(deep_ch + skip_ch, skip_ch, kernel_size=1, stride=1, thin_kernel=3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return super().forward(torch.cat([x, skip], dim=1))


class MultiScaleAggregator(nn.Module):
    """1x1 conv, then four channel quarters: BN + ReLU, or a separable 3x3 / 5x5 / 7x7 conv (no
    bias) + BN + ReLU; concatenated and mixed by a 1x1 conv. Channels-last in and out."""

    def __init__(self, dim: int, kernels=(3, 5, 7)):
        super().__init__()
        q = dim // 4
        self.proj = nn.Conv2d(dim, dim, 1)
        branches = [nn.Sequential(nn.BatchNorm2d(q), nn.ReLU())]
        for k in kernels:
            branches.append(
                nn.Sequential(
                    nn.Conv2d(q, q, k, padding=k // 2, groups=q, bias=False),
                    nn.Conv2d(q, q, 1, bias=False),
                    nn.BatchNorm2d(q),
                    nn.ReLU(),
                )
            )
        self.branches = nn.ModuleList(branches)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.proj(x.permute(0, 3, 1, 2)).chunk(len(self.branches), dim=1)
        x = torch.cat([branch(p) for branch, p in zip(self.branches, parts)], dim=1)
        return self.out_proj(x).permute(0, 2, 3, 1)


def to_windows(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """(N, H, W, C) -> (N, n_win**2, H/n_win, W/n_win, C), windows row-major."""
    n, h, w, c = x.shape
    x = x.reshape(n, n_win, h // n_win, n_win, w // n_win, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, n_win * n_win, h // n_win, w // n_win, c)


def from_windows(x: torch.Tensor, n_win: int, h: int, w: int) -> torch.Tensor:
    """(N, n_win**2, h*w, C) window tokens -> (N, n_win*h, n_win*w, C)."""
    n, c = x.shape[0], x.shape[-1]
    x = x.reshape(n, n_win, n_win, h, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, n_win * h, n_win * w, c)


def nearest_windows(desc: torch.Tensor, topk: int) -> torch.Tensor:
    """Indices (N, P, topk) of the ``topk`` windows whose L2-normalised descriptors are nearest
    each window's (squared Euclidean distance); no gradient flows through the routing."""
    with torch.no_grad():
        d = F.normalize(desc, dim=-1)
        sq = (d * d).sum(-1, keepdim=True)
        dist = sq + (-2 * d @ d.transpose(1, 2)) + sq.transpose(1, 2)
        return (-dist).topk(topk, dim=-1).indices


def routed_attention(q: torch.Tensor, kv: torch.Tensor, idx: torch.Tensor, heads: int, scale: float):
    """Window-to-window sparse attention: every token of window p attends to all tokens of the
    windows ``idx[:, p]``. q, kv: (N, P, T, C) window tokens; idx: (N, P, k). Returns (N, P, T, C)."""
    n, p, t, c = q.shape
    k = idx.shape[-1]
    sel = kv[torch.arange(n, device=kv.device)[:, None, None], idx]  # (N, P, k, T, C)
    q = q.reshape(n * p, t, heads, c // heads).transpose(1, 2)
    sel = sel.reshape(n * p, k * t, heads, c // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, sel, sel, scale=scale)
    return out.transpose(1, 2).reshape(n, p, t, c)


class RoutingAttention(nn.Module):
    """U-Bench's variant of BiFormer's bi-level routing attention (no q/k/v projections; q = k = v
    = the multi-scale aggregated map), plus a 5x5 depthwise LePE and an output Linear."""

    def __init__(self, dim: int, heads: int, topk: int, n_win: int = N_WIN, side_kernel: int = 5):
        super().__init__()
        self.heads, self.topk, self.n_win = heads, topk, n_win
        self.scale = dim**-0.5  # U-Bench scales by the full width, not the head width
        self.lepe = nn.Conv2d(dim, dim, side_kernel, padding=side_kernel // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)
        self.aggregate = MultiScaleAggregator(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        if h % self.n_win or w % self.n_win:
            raise ValueError(f"feature map {h}x{w} does not split into {self.n_win}x{self.n_win} windows")
        x = self.aggregate(x)
        lepe = self.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        win = to_windows(x, self.n_win)  # (N, P, h', w', C)
        idx = nearest_windows(win.mean((2, 3)), self.topk)
        tokens = win.flatten(2, 3)
        out = routed_attention(tokens, tokens, idx, self.heads, self.scale)
        out = from_windows(out, self.n_win, h // self.n_win, w // self.n_win)
        return self.proj(out + lepe)


class ContextGLU(nn.Module):
    """Channels-last MLP gated by its own 3x3 depthwise conv: fc2(GELU(LN(dw(fc1 x) * fc1 x)))."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        gate = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(F.gelu(self.norm(gate * x)))


class RoutingBlock(nn.Module):
    """x + dwconv3x3(x), then pre-norm residual routing attention and Context-GLU (NCHW in/out)."""

    def __init__(self, dim: int, topk: int):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RoutingAttention(dim, dim // HEAD_DIM, topk)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ContextGLU(dim, MLP_RATIO * dim)
        self.drop = nn.Dropout(DROP)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + self.pos_embed(x)).permute(0, 2, 3, 1)
        x = x + self.drop(self.attn(self.norm1(x)))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


def stage(dim: int, topk: int) -> nn.Sequential:
    return nn.Sequential(*(RoutingBlock(dim, topk) for _ in range(DEPTH)))


class MDSAUNet(nn.Module):
    """Three down-sampling steps with routing blocks, two fusion steps with routing blocks, a 1x1
    head at stride 4 upsampled x4."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        ins = (in_channels,) + DIMS[:-1]
        self.down = nn.ModuleList(
            TwoBranchConv(i, o, k, s, thin_kernel=k) for i, o, (k, s) in zip(ins, DIMS, PATCH)
        )
        self.enc = nn.ModuleList(stage(d, t) for d, t in zip(DIMS, TOPKS))
        levels = range(len(DIMS) - 1, 0, -1)  # deepest first
        self.merge = nn.ModuleList(SkipMerge(DIMS[i], DIMS[i - 1]) for i in levels)
        self.dec = nn.ModuleList(stage(DIMS[i - 1], TOPKS[i - 1]) for i in levels)
        self.head = nn.Conv2d(DIMS[0], num_classes, 1)
        self.apply(init_vit_conv_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down, blocks in zip(self.down, self.enc):
            x = blocks(down(x))
            skips.append(x)
        x = skips.pop()
        for merge, blocks in zip(self.merge, self.dec):
            x = blocks(merge(x, skips.pop()))
        return F.interpolate(self.head(x), scale_factor=4, mode="bilinear", align_corners=False)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MDSA_UNet",
        ubench_id=100,
        year=2025,
        paper="Multi-Scale Dynamic Sparse Attention UNet for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=6.576225,
        ref_source="U-Bench models/CNN/MDSA_UNet/MDSA_UNet.py (mdsa_unet(input_channel=3, "
        "num_classes=1): MDSA_UNet defaults), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Size multiple 128: U-Bench's routing attention asserts every map splits into 8x8 "
        "windows (auto_pad=False) and the deepest map is at stride 16. U-Bench's q/k/v 'linear' is "
        "parameter-free (q = k = v = the aggregated map) and the attention scale is width^-1/2, not "
        "head_dim^-1/2; residual branches use nn.Dropout(0.1), not stochastic depth; kept as in the "
        "code. U-Bench's encoder repeats a 1-channel input to 3 channels although its first conv "
        "takes input_channel channels (so input_channel=1 fails there); we drop the repeat and take "
        "in_channels directly (same network at 3 channels).",
    )
)
def mdsa_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MDSA-UNet as U-Bench benchmarks it."""
    return MDSAUNet(in_channels=in_channels, num_classes=num_classes)
