"""LGMSNet: a light U-Net with multi-kernel convolution blocks and sparse transformer/conv hybrids.

Paper: Dong, Tang, Mao, Gao, Zhou, "LGMSNet: Thinning a medical image segmentation model via
dual-level multiscale fusion", arXiv 2508.15476, 2025 (code: github.com/cq-dong/LGMSNet).

Configuration: U-Bench's ``lgmsnet(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/Hybrid/LGMSNet/LGMSNet.py with Mobilevit.py; models/__init__.py imports the factory as
``LGMSNet``), i.e. ``LGMSNet`` with its defaults: widths 16, 32, 64, 128, 128, the
``CMUNeXtBlock_MK_resiual2`` block, channel splits (96, 32), (96, 32), (96, 32), (48, 16).

* Local multiscale (encoder stages 1-3, strides 1, 2, 4, after a 3x3 conv + BN + ReLU stem and
  2x2 max-pooling between stages): one multi-kernel block at the input width (the channels split
  in four quarters, depthwise convs of kernels 3, 5, 7, 9, one per quarter, concatenated, plus the
  input, GroupNorm(4) -> GELU, a 1x1 squeeze to a quarter of the width and a 3x3 back, each
  conv + BN + SiLU, plus the input), then a 1x1 conv + BN + SiLU to the stage width.
* Global multiscale (encoder stages 4-5 at strides 8 and 16, and the two deepest decoder steps):
  a MobileViT-like block. 3x3 then 1x1 conv (+ BN + SiLU) to the output width, whose channels are
  split: the first part (96 or 48) goes through one pre-norm transformer layer (4 heads of 8,
  SiLU MLP) where a token attends to every token at the same offset in its 2x2 patch (a dilated,
  "sparse" attention over the whole map); the rest (32 or 16) through a residual depthwise
  3x3 -> BN -> ReLU -> depthwise 1x1 -> BN. Both parts are concatenated, 1x1 conv + BN + SiLU,
  concatenated with the block input and fused by a 3x3 conv + BN + SiLU.
* Decoder (CMUNeXt's): bilinear x2 + 3x3 conv + BN + ReLU, concatenation [skip, upsampled], then
  at stride 8 a hybrid block (256 -> 128), at stride 4 a skip-fusion block (grouped 3x3, 1x1 x4,
  1x1, each conv -> GELU -> BN) followed by a hybrid block (64), at strides 2 and 1 a skip-fusion
  block; a 1x1 conv gives the logits.

Parameters at 3 in / 1 class: 2,321,393 (counted by instantiating U-Bench's module). Needs H, W
divisible by 32: four poolings, then 2x2 patches at stride 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import contract, conv_bn_relu, expand
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (16, 32, 64, 128, 128)
ENCODER_SPLITS = ((96, 32), (96, 32))  # stages 4, 5: (transformer channels, conv channels)
DECODER_SPLITS = ((96, 32), (48, 16))  # decoder strides 8, 4
GROUP_KERNELS = (3, 5, 7, 9)
HEADS = 4
HEAD_DIM = 8
MLP_RATIO = 2
PATCH = 2
STRIDE = 32


def conv_bn_silu(in_ch: int, out_ch: int, kernel_size: int = 1) -> nn.Sequential:
    """Bias-free conv ('same' padding) + BatchNorm + SiLU: MobileViT's conv unit."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.SiLU(),
    )


class MultiKernelBlock(nn.Module):
    """Heterogeneous intra-layer kernels: each quarter of the channels gets its own depthwise
    kernel size; residual GroupNorm -> GELU, then a residual 1x1 squeeze / 3x3 expand."""

    def __init__(self, ch: int, kernels=GROUP_KERNELS):
        super().__init__()
        if ch % len(kernels):
            raise ValueError(f"MultiKernelBlock: {ch} channels must divide into {len(kernels)} groups")
        self.group = ch // len(kernels)
        self.norm = nn.GroupNorm(len(kernels), ch)
        self.depthwise = nn.ModuleList(
            nn.Conv2d(self.group, self.group, k, padding=k // 2, groups=self.group) for k in kernels
        )
        self.squeeze = conv_bn_silu(ch, self.group)
        self.expand = conv_bn_silu(self.group, ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.group, dim=1)
        y = torch.cat([conv(p) for conv, p in zip(self.depthwise, parts)], dim=1)
        y = F.gelu(self.norm(y + x))
        return x + self.expand(self.squeeze(y))


class LocalStage(nn.Sequential):
    """A multi-kernel block at the input width, then a 1x1 conv + BN + SiLU to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(MultiKernelBlock(in_ch), conv_bn_silu(in_ch, out_ch))


class DepthwiseBranch(nn.Sequential):
    """Depthwise 3x3 -> BN -> ReLU -> depthwise 1x1 (a per-channel scale) -> BN, no conv biases."""

    def __init__(self, ch: int):
        super().__init__(
            nn.Conv2d(ch, ch, 3, padding=1, groups=ch, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 1, groups=ch, bias=False),
            nn.BatchNorm2d(ch),
        )


class TransformerLayer(nn.Module):
    """Pre-norm layer on (N, L, dim) tokens: multi-head self-attention with a bias-free q/k/v
    projection to ``heads * head_dim`` (narrower than ``dim`` here) and a biased output projection,
    then a LayerNorm -> Linear -> SiLU -> Linear MLP; both residual, no dropout."""

    def __init__(self, dim: int, mlp_dim: int, heads: int = HEADS, head_dim: int = HEAD_DIM):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mlp_dim), nn.SiLU(), nn.Linear(mlp_dim, dim))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attn_norm(x))
        return x + self.mlp(x)


def patch_offsets_to_tokens(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * patch**2, H*W / patch**2, C): one sequence per offset inside the
    ``patch`` x ``patch`` patches, holding that pixel of every patch (MobileViT's unfolding)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // patch, patch, w // patch, patch).permute(0, 3, 5, 2, 4, 1)
    return x.reshape(b * patch * patch, (h // patch) * (w // patch), c)


def tokens_to_patch_offsets(x: torch.Tensor, patch: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``patch_offsets_to_tokens`` for an (h, w) map."""
    c = x.shape[-1]
    x = x.view(-1, patch, patch, h // patch, w // patch, c).permute(0, 5, 3, 1, 4, 2)
    return x.reshape(-1, c, h, w)


class SparseHybridBlock(nn.Module):
    """Local 3x3 + 1x1 convs to ``out_ch``; ``split[0]`` channels through a transformer layer over
    the patch-offset sequences, ``split[1]`` through a residual depthwise branch; 1x1 fusion, then a
    3x3 conv on [fused, block input]."""

    def __init__(self, in_ch: int, out_ch: int, split: tuple[int, int], mlp_dim: int):
        super().__init__()
        if sum(split) != out_ch:
            raise ValueError(f"SparseHybridBlock: split {split} must add up to {out_ch} channels")
        self.split = tuple(split)
        self.local = nn.Sequential(conv_bn_silu(in_ch, out_ch, 3), conv_bn_silu(out_ch, out_ch))
        self.conv_branch = DepthwiseBranch(split[1])
        self.transformer = TransformerLayer(split[0], mlp_dim)
        self.fuse = conv_bn_silu(out_ch, out_ch)
        self.merge = conv_bn_silu(in_ch + out_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        glob, loc = self.local(x).split(self.split, dim=1)
        glob = self.transformer(patch_offsets_to_tokens(glob, PATCH))
        glob = tokens_to_patch_offsets(glob, PATCH, h, w)
        y = self.fuse(torch.cat([glob, loc + self.conv_branch(loc)], dim=1))
        return self.merge(torch.cat([y, x], dim=1))


class SkipFusion(nn.Sequential):
    """CMUNeXt's skip fusion on [skip, upsampled]: grouped (2) 3x3, 1x1 up x4, 1x1 down, each
    conv (bias) -> GELU -> BN."""

    def __init__(self, in_ch: int, out_ch: int):
        layers = []
        for i, o, k, g in ((in_ch, in_ch, 3, 2), (in_ch, 4 * out_ch, 1, 1), (4 * out_ch, out_ch, 1, 1)):
            layers += [nn.Conv2d(i, o, k, padding=k // 2, groups=g), nn.GELU(), nn.BatchNorm2d(o)]
        super().__init__(*layers)


class UpStep(nn.Sequential):
    """Bilinear x2 (align_corners=False), then 3x3 conv + BN + ReLU to the skip's width."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="bilinear"), *conv_bn_relu(in_ch, out_ch))


class LGMSNet(nn.Module):
    """Three multi-kernel stages and two hybrid stages down, four up-steps (hybrid at the two
    deepest), a 1x1 head. Modules are built in U-Bench's order (same seed, same weights)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        w = widths
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, w[0]))
        self.encoder = nn.ModuleList([
            LocalStage(w[0], w[0]),
            LocalStage(w[0], w[1]),
            LocalStage(w[1], w[2]),
            SparseHybridBlock(w[2], w[3], ENCODER_SPLITS[0], MLP_RATIO * w[3]),
            SparseHybridBlock(w[3], w[4], ENCODER_SPLITS[1], MLP_RATIO * w[4]),
        ])
        self.pool = nn.MaxPool2d(2, 2)
        fuse_makers = (  # deepest first
            lambda: SparseHybridBlock(2 * w[3], w[3], DECODER_SPLITS[0], MLP_RATIO * w[3]),
            lambda: nn.Sequential(SkipFusion(2 * w[2], w[2]),
                                  SparseHybridBlock(w[2], w[2], DECODER_SPLITS[1], MLP_RATIO * w[2])),
            lambda: SkipFusion(2 * w[1], w[1]),
            lambda: SkipFusion(2 * w[0], w[0]),
        )
        ups, fuses = [], []
        for i, make_fuse in zip(range(len(w) - 1, 0, -1), fuse_makers):  # U-Bench's order: up, fuse, ...
            ups.append(UpStep(w[i], w[i - 1]))
            fuses.append(make_fuse())
        self.ups = nn.ModuleList(ups)
        self.fuses = nn.ModuleList(fuses)
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = contract(self.stem(x), self.encoder, self.pool)
        x = expand(skips.pop(), skips, self.ups, self.fuses)
        return self.head(x)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="LGMSNet",
        ubench_id=87,
        year=2025,
        paper="LGMSNet: Thinning a medical image segmentation model via dual-level multiscale fusion",
        deep_supervision=False,
        ref_params_m=2.321393,
        ref_source="U-Bench models/Hybrid/LGMSNet/LGMSNet.py + Mobilevit.py (lgmsnet(input_channel=3, "
        "num_classes=1), i.e. LGMSNet() with its defaults), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Built as U-Bench's code builds it. Its depths=[1, 1, 1, 3, 1] and kernels=[3, 3, 7, 7, 7] "
        "arguments are inherited from CMUNeXt: only depths[0..2] are used (one multi-kernel block per "
        "stage), the hybrid stages have one transformer layer each, and kernels has no effect (the "
        "depthwise kernels are always 3, 5, 7, 9). The attention is 4 heads of 8 (inner width 32) "
        "whatever the token width (96 or 48), with no positional encoding and no LayerNorm after the "
        "transformer. The multi-kernel block's ch_out argument is ignored by U-Bench (the width change "
        "is the 1x1 conv after it). in_channels sets the stem, as U-Bench's input_channel does. "
        "Init: PyTorch defaults throughout, as U-Bench (its BN constant init equals the default). "
        "Attention via F.scaled_dot_product_attention (same computation, float rounding only). "
        "U-Bench's multi-kernel block only asserts ch // 4 != 0 (a width that is not a multiple of 4 "
        "fails later in torch.split); here it is a ValueError at build time. Mobilevit.py's other "
        "variants (attention with a conv on V, padded 2x2 convs) are not used by this configuration.",
    )
)
def lgmsnet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """LGMSNet as U-Bench benchmarks it (widths 16..128, splits 96/32 and 48/16)."""
    return LGMSNet(in_channels=in_channels, num_classes=num_classes)
