"""Blocks shared by the CNN+ViT hybrids (TransUNet, DA-TransUNet, TransFuse).

* ``StdConv2d`` / ``ResNetV2Encoder``: the "R50" half of R50-ViT-B/16 (Kolesnikov et al., BiT,
  ECCV 2020; as used by Dosovitskiy et al.'s hybrid ViT and by TransUNet): weight-standardised
  convolutions with GroupNorm(32), a 7x7/2 root without its max-pool in the module (the pool is
  applied in forward, unpadded), then bottleneck stages of 3, 4, 9 units with widths 256, 512, 1024.
* ``ViTEncoder``: pre-norm transformer blocks (LayerNorm eps 1e-6, fused qkv, GELU MLP) and a final
  LayerNorm, for a token sequence that the caller has already embedded.
* ``CupDecoder``: TransUNet's cascaded upsampler (bilinear x2, concat skip, two conv-BN-ReLU).
* ``TransUNetCore``: the whole TransUNet, with optional attention modules on the patch embedding
  and on the skips, which is all DA-TransUNet adds.

Facts (widths, norms, eps, the max-pool/zero-pad quirk, decoder widths) come from U-Bench's
``models/Hybrid/TransUnet/vit_seg_modeling*.py`` and ``models/Hybrid/TransFuse/module/``
(repo FengheTan9/U-Bench), which follow Chen et al.'s TransUNet and Zhang et al.'s TransFuse code.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import stochastic_depth

# --------------------------------------------------------------------------------------------
# ResNet-v2 (BiT) trunk with weight standardisation and GroupNorm
# --------------------------------------------------------------------------------------------


class StdConv2d(nn.Conv2d):
    """Conv whose kernel is standardised per output channel on every call (BiT); pairs with GN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (self.weight - mean) / torch.sqrt(var + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class GNBottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 StdConvs, each followed by GroupNorm(32), ReLU after the sum.

    The projection shortcut uses one group per channel with GroupNorm's default eps, as the
    reference does; the other norms use eps 1e-6.
    """

    def __init__(self, in_ch: int, out_ch: int, mid_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = StdConv2d(in_ch, mid_ch, 1, bias=False)
        self.gn1 = nn.GroupNorm(32, mid_ch, eps=1e-6)
        self.conv2 = StdConv2d(mid_ch, mid_ch, 3, stride=stride, padding=1, bias=False)
        self.gn2 = nn.GroupNorm(32, mid_ch, eps=1e-6)
        self.conv3 = StdConv2d(mid_ch, out_ch, 1, bias=False)
        self.gn3 = nn.GroupNorm(32, out_ch, eps=1e-6)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                StdConv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.GroupNorm(out_ch, out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        return self.relu(y + self.shortcut(x))


class ResNetV2Encoder(nn.Module):
    """R50 trunk of R50-ViT-B/16 without its 4th stage: output stride 16, 1024 channels.

    ``forward(x)`` returns ``(features at H/16, [skip H/8 (512), skip H/4 (256), skip H/2 (64)])``.
    The 3x3/2 max-pool has no padding, so an H/2 map of even size n gives n/2 - 1; the H/4 skip
    is zero-padded on the bottom/right back to n/2 (the reference's behaviour), while the trunk
    itself continues on the unpadded map.
    """

    def __init__(self, in_channels: int = 3, units=(3, 4, 9), width: int = 64):
        super().__init__()
        self.root = nn.Sequential(
            StdConv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.GroupNorm(32, width, eps=1e-6),
            nn.ReLU(inplace=True),
        )
        stages, in_ch = [], width
        for i, n_units in enumerate(units):
            out_ch, mid_ch = width * 4 * 2**i, width * 2**i
            blocks = [GNBottleneck(in_ch, out_ch, mid_ch, stride=1 if i == 0 else 2)]
            blocks += [GNBottleneck(out_ch, out_ch, mid_ch) for _ in range(n_units - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_ch
        self.skip_channels = [width * 4 * 2 ** (len(units) - 2 - i) for i in range(len(units) - 1)] + [width]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        size = x.shape[-1]
        x = self.root(x)
        skips = [x]
        x = F.max_pool2d(x, 3, stride=2)
        for i, stage in enumerate(self.stages[:-1]):
            x = stage(x)
            want = size // (4 * 2**i)
            pad_h, pad_w = want - x.shape[-2], want - x.shape[-1]
            skips.append(F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x)
        return self.stages[-1](x), skips[::-1]


# --------------------------------------------------------------------------------------------
# ViT encoder
# --------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (same parameters as q, k, v apart);
    ``qkv_bias=False`` drops the projection's bias (MONAI's ``SABlock`` default)."""

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.proj_drop = nn.Dropout(attn_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)); GELU MLP with dropout after each FC.

    The defaults are TransUNet's (qkv bias, LayerNorm eps 1e-6); ``qkv_bias=False, eps=1e-5`` is
    MONAI's ``TransformerBlock`` (D-TrAttUnet's ViT). ``drop_path`` > 0 adds stochastic depth on both
    residual branches (timm's ViT ``Block``, as Conformer/ScribFormer use it).
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0, attn_dropout: float = 0.0,
                 qkv_bias: bool = True, eps: float = 1e-6, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, heads, attn_dropout, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.drop = nn.Dropout(dropout)
        self.drop_path = stochastic_depth(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm2(x)))))))


class ViTEncoder(nn.Module):
    """``depth`` transformer blocks and a final LayerNorm over (B, N, dim) tokens.

    ``init="transunet"``: PyTorch default Linear init except the MLP (Xavier-uniform weights,
    N(0, 1e-6) biases), as TransUNet's ViT; ``init="deit"``: every Linear truncated-normal(0.02)
    with zero bias, as timm's DeiT.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float = 0.0, init: str = "transunet"):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if init == "transunet":
            for blk in self.blocks:
                for fc in (blk.fc1, blk.fc2):
                    nn.init.xavier_uniform_(fc.weight)
                    nn.init.normal_(fc.bias, std=1e-6)
        elif init == "deit":
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)
        else:
            raise ValueError(f"unknown init {init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


# --------------------------------------------------------------------------------------------
# TransUNet
# --------------------------------------------------------------------------------------------


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv (no bias) + BatchNorm + ReLU, TransUNet's decoder unit."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class CupBlock(nn.Module):
    """Bilinear x2 (align_corners), concat [x, skip] when there is one, two conv-BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int = 0):
        super().__init__()
        self.conv1 = conv_bn_relu(in_ch + skip_ch, out_ch)
        self.conv2 = conv_bn_relu(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class CupDecoder(nn.Module):
    """TransUNet's cascaded upsampler: hidden -> 512, then four x2 steps (256, 128, 64, 16).

    The first ``len(skip_channels)`` steps concatenate the CNN skips; ``skip_attn`` (optional,
    one module or None per skip) transforms a skip before concatenation (DA-TransUNet).
    """

    def __init__(self, hidden: int, skip_channels, widths=(256, 128, 64, 16), head_ch: int = 512, skip_attn=None):
        super().__init__()
        self.conv_more = conv_bn_relu(hidden, head_ch)
        ins = [head_ch, *widths[:-1]]
        skips = list(skip_channels) + [0] * (len(widths) - len(skip_channels))
        self.blocks = nn.ModuleList(CupBlock(i, o, s) for i, o, s in zip(ins, widths, skips))
        attn = list(skip_attn or [])
        attn += [None] * (len(skip_channels) - len(attn))
        self.skip_attn = nn.ModuleList(a if a is not None else nn.Identity() for a in attn)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv_more(x)
        for i, block in enumerate(self.blocks):
            x = block(x, self.skip_attn[i](skips[i]) if i < len(skips) else None)
        return x


class TransUNetCore(nn.Module):
    """R50 trunk -> 1x1 patch embedding (+ learned positions) -> ViT -> CUP decoder -> 3x3 head.

    With a 16x16 token grid the hybrid's patch size on the H/16 map is 1, so the input must be
    ``16 * grid`` pixels square. ``embed_attn`` (optional) acts on the embedded patch map before
    the positions are added; ``skip_attn`` is passed to the decoder (both are DA-TransUNet's).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        img_size: int = 256,
        hidden: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_dim: int = 3072,
        dropout: float = 0.1,
        embed_attn: nn.Module | None = None,
        skip_attn=None,
        n_skip: int = 3,
    ):
        super().__init__()
        self.img_size, self.n_skip = img_size, n_skip
        self.cnn = ResNetV2Encoder(in_channels)
        self.patch_embed = nn.Conv2d(self.cnn.out_channels, hidden, 1)
        self.embed_attn = embed_attn if embed_attn is not None else nn.Identity()
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // 16) ** 2, hidden))
        self.embed_drop = nn.Dropout(dropout)
        self.vit = ViTEncoder(hidden, depth, heads, mlp_dim, dropout, init="transunet")
        self.decoder = CupDecoder(hidden, self.cnn.skip_channels[:n_skip], skip_attn=skip_attn)
        self.head = nn.Conv2d(16, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, skips = self.cnn(x)
        grid = self.embed_attn(self.patch_embed(feats))
        b, d, h, w = grid.shape
        tokens = self.embed_drop(grid.flatten(2).transpose(1, 2) + self.pos_embed)
        tokens = self.vit(tokens)
        y = tokens.transpose(1, 2).reshape(b, d, h, w)
        return self.head(self.decoder(y, skips[: self.n_skip]))
