"""Mobile U-ViT (large): a ConvUtr patch embedding, large-kernel local-global-local blocks and a
small transformer bottleneck, decoded through downsampled skip connections.

Paper: Tang, Nian, Ding, Ma, Quan, Dong, Yang, Liu, Zhou, "Mobile U-ViT: Revisiting large kernel
and U-shaped ViT for efficient medical image segmentation", ACM MM 2025 (arXiv 2508.01064).

Configuration: U-Bench's ``MobileUViT``, which models/__init__.py binds to the factory
``mobileuvit_l(input_channel, num_classes)`` (repo FengheTan9/U-Bench,
models/Hybrid/MobileUViT/MobileUViT.py); that factory ignores its other arguments and always builds
the large variant: widths 32, 64, 128, 256, depths 1, 1, 3, 3, 4, embedding kernels 3, 3, 7,
``embed_dim`` 512 (so 512 // 64 = 8 attention heads in every block).

- Hierarchical patch embedding (ConvUtr): a 3x3 conv + BN + ReLU stem at full resolution, then three
  stages (the 2nd and 3rd after 2x2 max-pooling) of ``depth`` blocks, each a residual depthwise
  k x k conv -> GELU -> BN and a residual inverted 1x1 bottleneck (x4, each conv -> GELU -> BN),
  closed by a 3x3 conv + BN + ReLU to the stage's width: 32 at H, 64 at H/2, 128 at H/4 (the
  three skips).
- Bottleneck at H/8 (max-pooled): three LGL blocks at width 128, a double 3x3 conv to 256, four
  transformer blocks at width 256, a double 3x3 conv back to 128. An LGL block is a local
  aggregation (three gated residuals ``x + x * (sigmoid(f(x)) - 0.5)``: a 9x9 depthwise
  positional conv; BN -> 1x1 -> 9x9 depthwise -> 1x1; BN -> depthwise-grouped 3x3 conv MLP x4)
  followed by a ViT block (residual 3x3 depthwise positional conv, pre-norm attention and MLP
  x4, LayerNorm eps 1e-6, q/k/v biases) whose attention runs over every other pixel of every
  other row (sr 2) and is spread back by a 2x2 depthwise transposed conv + LayerNorm; stochastic
  depth 0.1 in all three LGL blocks. The transformer blocks are the same ViT block at full
  bottleneck resolution, without the local aggregation, the sparse sampling and stochastic depth.
- Decoder: three steps of [concatenate (x, max-pooled skip), double 3x3 conv, bilinear x2
  (align_corners=True) + 3x3 conv + BN + ReLU], widths 128, 64, 32 (each skip is max-pooled once
  to the decoder's resolution: the paper's "downsampled skip connections", so the decoder reaches
  H only in its last upsampling); a 1x1 conv gives the logits. No deep supervision.

PyTorch default initialisation throughout (U-Bench's module applies no init of its own).
U-Bench sizes its stem with ``input_channel`` but repeats a 1-channel input to 3 channels before
it, so its 1-channel build fails at the stem; here ``in_channels`` sizes the stem and the input
is used as given. Nothing is pretrained. Needs H, W divisible by 16 (three poolings to H/8, and
the sparse attention's stride-2 sampling and transposed conv need an even H/8).
Parameters at 3 in / 1 class: 6,209,217 (counted by instantiating U-Bench's module).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import Mlp, map_to_tokens, stochastic_depth, tokens_to_map
from ubench.models.ops.conv_blocks import DoubleConv, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 128, 256)
EMBED_DEPTHS = (1, 1, 3)  # ConvUtr blocks per embedding stage
EMBED_KERNELS = (3, 3, 7)
LGL_DEPTH = 3  # sparse local-global-local blocks at width 128
TRANSFORMER_DEPTH = 4  # plain transformer blocks at width 256
HEADS = 512 // 64  # U-Bench: embed_dim // 64
MLP_RATIO = 4
LGL_DROP_PATH = 0.1
SPARSE_STRIDE = 2
LOCAL_KERNEL = 9


def _conv_gelu_bn(in_ch: int, out_ch: int, kernel_size: int = 1, groups: int = 1) -> list[nn.Module]:
    """Conv ('same' padding, bias) -> GELU -> BatchNorm: normalised after the activation."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups),
        nn.GELU(),
        nn.BatchNorm2d(out_ch),
    ]


# --- ConvUtr patch embedding ---------------------------------------------------------------------


class ConvUtrBlock(nn.Module):
    """Residual depthwise k x k mixing, then a residual inverted 1x1 bottleneck (x4)."""

    def __init__(self, ch: int, kernel_size: int):
        super().__init__()
        self.spatial = nn.Sequential(*_conv_gelu_bn(ch, ch, kernel_size, groups=ch))
        self.channel = nn.Sequential(*_conv_gelu_bn(ch, 4 * ch), *_conv_gelu_bn(4 * ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.spatial(x)
        return x + self.channel(x)


class ConvUtrStage(nn.Sequential):
    """``depth`` ConvUtr blocks at the input width, then 3x3 conv + BN + ReLU to the output width."""

    def __init__(self, in_ch: int, out_ch: int, depth: int, kernel_size: int):
        blocks = [ConvUtrBlock(in_ch, kernel_size) for _ in range(depth)]
        super().__init__(*blocks, *conv_bn_relu(in_ch, out_ch))


class ConvUtrEmbedding(nn.Module):
    """Stem at full resolution and three ConvUtr stages (max-pooling before the 2nd and 3rd);
    returns every stage's map, shallowest first."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, WIDTHS[0]))
        ins = (WIDTHS[0],) + WIDTHS[:2]
        self.stages = nn.ModuleList(
            ConvUtrStage(i, o, d, k) for i, o, d, k in zip(ins, WIDTHS[:3], EMBED_DEPTHS, EMBED_KERNELS)
        )
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


# --- Local-global-local bottleneck -------------------------------------------------------------


def _gated(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + x * (sigmoid(branch) - 0.5)``: a residual that rescales x by a factor in (0.5, 1.5)."""
    return x + x * (torch.sigmoid(branch) - 0.5)


class ConvMlp(nn.Module):
    """Feed-forward on maps: 3x3 conv in ``dim`` groups to ``hidden``, GELU, 3x3 conv in ``dim``
    groups back (dropout after each, off here)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 3, padding=1, groups=dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LocalAggregation(nn.Module):
    """Three sigmoid-gated residuals: 9x9 depthwise position conv; BN -> 1x1 -> 9x9 depthwise ->
    1x1; BN -> ConvMlp. Stochastic depth acts on the last two branches before their sigmoid (a
    dropped sample gets gate 0, i.e. the identity)."""

    def __init__(self, dim: int, drop_path: float):
        super().__init__()
        pad = LOCAL_KERNEL // 2
        self.pos_embed = nn.Conv2d(dim, dim, LOCAL_KERNEL, padding=pad, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, LOCAL_KERNEL, padding=pad, groups=dim)
        self.drop_path = stochastic_depth(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, MLP_RATIO * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _gated(x, self.pos_embed(x))
        x = _gated(x, self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x))))))
        return _gated(x, self.drop_path(self.mlp(self.norm2(x))))


class SparseGlobalAttention(nn.Module):
    """Multi-head self-attention (fused q/k/v with bias). With ``stride`` > 1 the tokens are first
    subsampled (every ``stride``-th pixel of every ``stride``-th row), attend among themselves, and
    are spread back to the full grid by a ``stride`` x ``stride`` depthwise transposed conv and a
    LayerNorm, before the output projection."""

    def __init__(self, dim: int, heads: int, stride: int = 1):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.stride = stride
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if stride > 1:
            self.spread = nn.ConvTranspose2d(dim, dim, stride, stride=stride, groups=dim)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        s = self.stride
        if s > 1:  # the reference's AvgPool2d(kernel 1, stride s): plain strided sampling
            x = map_to_tokens(tokens_to_map(x, h, w)[:, :, ::s, ::s])
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        if s > 1:
            x = self.norm(map_to_tokens(self.spread(tokens_to_map(x, h // s, w // s))))
        return self.proj(x)


class GlobalBlock(nn.Module):
    """Residual 3x3 depthwise position conv, then a pre-norm ViT block (LayerNorm eps 1e-6) over
    the map's tokens; maps in, maps out."""

    def __init__(self, dim: int, stride: int, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SparseGlobalAttention(dim, HEADS, stride)
        self.drop_path = stochastic_depth(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, MLP_RATIO * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        h, w = x.shape[-2:]
        t = map_to_tokens(x)
        t = t + self.drop_path(self.attn(self.norm1(t), h, w))
        t = t + self.drop_path(self.mlp(self.norm2(t)))
        return tokens_to_map(t, h, w)


class LGLBlock(nn.Module):
    """Local aggregation (only with sparse attention, ``stride`` > 1), then the global block."""

    def __init__(self, dim: int, stride: int, drop_path: float):
        super().__init__()
        self.local = LocalAggregation(dim, drop_path) if stride > 1 else nn.Identity()
        self.global_block = GlobalBlock(dim, stride, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_block(self.local(x))


# --- Network -------------------------------------------------------------------------------------


class BilinearUp(nn.Sequential):
    """Bilinear upsampling x2 (align_corners=True), then 3x3 conv + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), *conv_bn_relu(in_ch, out_ch)
        )


class MobileUViT(nn.Module):
    """ConvUtr embedding, LGL + transformer bottleneck at H/8, decoder on max-pooled skips."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        c1, c2, c3, c4 = WIDTHS
        self.embed = ConvUtrEmbedding(in_channels)
        self.pool = nn.MaxPool2d(2, 2)
        self.lgl = nn.Sequential(*(LGLBlock(c3, SPARSE_STRIDE, LGL_DROP_PATH) for _ in range(LGL_DEPTH)))
        self.expand = DoubleConv(c3, c4)
        self.transformer = nn.Sequential(*(LGLBlock(c4, 1, 0.0) for _ in range(TRANSFORMER_DEPTH)))
        self.reduce = DoubleConv(c4, c3)
        # decoder, deepest first: fuse [x, pooled skip] at the skip's width, then upsample
        self.fuse = nn.ModuleList([DoubleConv(2 * c3, c3), DoubleConv(2 * c2, c2), DoubleConv(2 * c1, c1)])
        self.up = nn.ModuleList([BilinearUp(c3, c2), BilinearUp(c2, c1), BilinearUp(c1, c1)])
        self.head = nn.Conv2d(c1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.embed(x)
        x = self.transformer(self.expand(self.lgl(self.pool(skips[-1]))))
        x = self.reduce(x)
        for fuse, up in zip(self.fuse, self.up):
            x = up(fuse(torch.cat([x, self.pool(skips.pop())], dim=1)))
        return self.head(x)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="MobileUViT",
        ubench_id=86,
        year=2025,
        paper="Mobile U-ViT: Revisiting large kernel and U-shaped ViT for efficient medical image "
        "segmentation",
        deep_supervision=False,
        ref_params_m=6.209217,
        ref_source="U-Bench models/Hybrid/MobileUViT/MobileUViT.py (mobileuvit_l(input_channel=3, "
        "num_classes=1): dims 32/64/128/256, depths 1/1/3/3/4, kernels 3/3/7, embed_dim 512), counted "
        "by instantiating it",
        ref_input_size=256,
        size_multiple=16,
        notes="The large variant (U-Bench's mobileuvit_l, which fixes dims/depths/kernels/embed_dim "
        "whatever it is passed). U-Bench repeats a 1-channel input to 3 channels in forward although "
        "its stem takes input_channel channels (so its 1-channel build cannot run); here in_channels "
        "sizes the stem and the input is used as given. The sparse attention's AvgPool2d(kernel 1, "
        "stride 2) sampler is written as strided slicing (the same values). Stochastic depth 0.1 "
        "(constant, not a linear ramp) in the three LGL blocks, applied before the sigmoid gates of "
        "the local aggregation as in U-Bench. PyTorch default initialisation, nothing pretrained.",
    )
)
def mobile_uvit(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Mobile U-ViT (large) as U-Bench benchmarks it."""
    return MobileUViT(in_channels=in_channels, num_classes=num_classes)
