"""UTNet: a pre-activation residual U-Net with efficient self-attention in its deeper stages.

Paper: Gao, Zhou, Metaxas, "UTNet: A Hybrid Transformer Architecture for Medical Image
Segmentation", MICCAI 2021.

Configuration: U-Bench's ``utnet`` (repo FengheTan9/U-Bench, models/Hybrid/UTNet/UTNet.py and
module/conv_trans_utils.py, module/unet_utils.py) with its defaults: base width 32, transformer
blocks in stages 2-4 (``block_list='234'``) with 1, 2, 4 attention blocks and 2, 4, 8 heads,
keys/values bilinearly resized to 8x8 (``reduce_size=8``, ``projection='interp'``), a learned 2D
relative position bias, no attention dropout, no deep supervision (``aux_loss=False``).
All residual blocks are pre-activation (BN, ReLU, conv). Stages 0-1 are convolutional (two blocks
each); stages 2-4 are max-pool + one residual block + attention blocks. The two deepest decoder
steps use transformer decoder blocks (queries from the skip, keys/values from the coarser map);
the two shallow ones are bilinear upsample + 1x1 conv + two residual blocks.
Input size: the reference tiles its 8x8 relative position bias onto each query grid with
``repeat_interleave``, which works only when 8 divides the H/16 grid (H a multiple of 128); here
each query cell takes the bias of the reduced cell it falls in, identical for those sizes and
defined for any multiple of 16 (the network's real stride), e.g. 64x64 where the deepest grid is 4x4.
Parameters at 3 in / 1 class: 14,418,755, counted by instantiating U-Bench's file.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.registry import ModelInfo, register_model

BASE = 32
REDUCE = 8
STRIDE = 16  # four poolings


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; the shortcut is BN-ReLU-conv1x1 when the width changes."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(),
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.BatchNorm2d(in_ch), nn.ReLU(), nn.Conv2d(in_ch, out_ch, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def sep_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, no bias: UTNet's q/k/v and output projections."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
    )


class RelativeBias(nn.Module):
    """Learned bias per (query cell, key cell) offset on the reduced grid, tiled to the query grid."""

    def __init__(self, heads: int, size: int = REDUCE):
        super().__init__()
        self.size = size
        self.table = nn.Parameter(torch.randn((2 * size - 1) ** 2, heads) * 0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij"))
        coords = coords.flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]) + (size - 1)  # (2, n, n), non-negative
        self.register_buffer("index", rel[0] * (2 * size - 1) + rel[1], persistent=False)

    def forward(self, h: int, w: int) -> torch.Tensor:
        """(1, heads, h*w, size*size): each query cell takes the bias of the reduced cell it lies in.

        The reference tiles by ``repeat_interleave(h // size)``, which needs ``size`` to divide h;
        nearest-cell indexing gives the same result there and also covers grids smaller than 8.
        """
        s = self.size
        bias = self.table[self.index.reshape(-1)].reshape(s, s, s * s, -1)
        rows = torch.arange(h, device=bias.device) * s // h  # = i // (h/s) when s divides h
        cols = torch.arange(w, device=bias.device) * s // w
        bias = bias[rows][:, cols]
        return bias.reshape(h * w, s * s, -1).permute(2, 0, 1).unsqueeze(0)


class ReducedAttention(nn.Module):
    """Multi-head attention whose keys/values are resized to a fixed 8x8 grid (linear cost in H*W).

    Self-attention (``kv_ch=None``) projects q, k, v with one separable conv, as the reference's
    encoder blocks do; the decoder's cross-attention has separate q and k/v projections.
    """

    def __init__(self, q_ch: int, heads: int, kv_ch: int | None = None):
        super().__init__()
        self.heads = heads
        self.dim_head = q_ch // heads
        self.scale = self.dim_head**-0.5
        if kv_ch is None:
            self.to_qkv = sep_conv(q_ch, 3 * q_ch)
        else:
            self.to_q = sep_conv(q_ch, q_ch)
            self.to_kv = sep_conv(kv_ch, 2 * q_ch)
        self.to_out = sep_conv(q_ch, q_ch)
        self.bias = RelativeBias(heads)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, dim_head*heads, H, W) -> (B, heads, H*W, dim_head); channels are head-interleaved."""
        b, _, h, w = t.shape
        return t.reshape(b, self.dim_head, self.heads, h * w).permute(0, 2, 3, 1)

    def forward(self, q_map: torch.Tensor, kv_map: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = q_map.shape
        if kv_map is None:
            q, k, v = self.to_qkv(q_map).chunk(3, dim=1)
        else:
            q = self.to_q(q_map)
            k, v = self.to_kv(kv_map).chunk(2, dim=1)
        if k.shape[-1] != REDUCE or k.shape[-2] != REDUCE:
            k, v = (F.interpolate(t, size=REDUCE, mode="bilinear", align_corners=True) for t in (k, v))
        scores = (self._heads(q) @ self._heads(k).transpose(-1, -2) + self.bias(h, w)) * self.scale
        out = torch.softmax(scores, dim=-1) @ self._heads(v)  # (B, heads, HW, d)
        out = out.permute(0, 3, 1, 2).reshape(b, -1, h, w)
        return self.to_out(out)


class TransBlock(nn.Module):
    """Encoder attention block: BN -> self-attention (+x), then BN-ReLU-1x1 conv (+x)."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(ch)
        self.attn = ReducedAttention(ch, heads)
        self.mlp = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, ch, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.mlp(x)


class TransDecoderBlock(nn.Module):
    """Decoder attention: queries from the skip, keys/values from the coarse map, residual from it."""

    def __init__(self, in_ch: int, out_ch: int, heads: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 1)
        self.norm_low = nn.BatchNorm2d(in_ch)
        self.norm_high = nn.BatchNorm2d(out_ch)
        self.attn = ReducedAttention(out_ch, heads, kv_ch=in_ch)
        self.mlp = nn.Sequential(nn.BatchNorm2d(out_ch), nn.ReLU(), nn.Conv2d(out_ch, out_ch, 1, bias=False))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        res = F.interpolate(self.proj(low), size=high.shape[-2:], mode="bilinear", align_corners=True)
        x = res + self.attn(self.norm_high(high), self.norm_low(low))
        return x + self.mlp(x)


class TransUp(nn.Module):
    """Attention decoder step, then concatenate with the skip and one residual block."""

    def __init__(self, in_ch: int, out_ch: int, heads: int):
        super().__init__()
        self.attn = TransDecoderBlock(in_ch, out_ch, heads)
        self.block = PreActBlock(2 * out_ch, out_ch)

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.attn(low, skip), skip], dim=1))


class ConvUp(nn.Module):
    """Bilinear x2, 1x1 conv to the skip width, concatenate [skip, up], two residual blocks."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 1)
        self.blocks = nn.Sequential(PreActBlock(2 * out_ch, out_ch), PreActBlock(out_ch, out_ch))

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.proj(F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=True))
        return self.blocks(torch.cat([skip, up], dim=1))


def _trans_down(in_ch: int, out_ch: int, depth: int, heads: int) -> nn.Sequential:
    return nn.Sequential(
        nn.MaxPool2d(2), PreActBlock(in_ch, out_ch), *(TransBlock(out_ch, heads) for _ in range(depth))
    )


class UTNet(nn.Module):
    """Five-stage residual U-Net; attention in stages 2-4 and the two deepest decoder steps."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base: int = BASE):
        super().__init__()
        c = base
        self.inc = nn.Sequential(PreActBlock(in_channels, c), PreActBlock(c, c))
        self.down1 = nn.Sequential(nn.MaxPool2d(2), PreActBlock(c, 2 * c), PreActBlock(2 * c, 2 * c))
        self.down2 = _trans_down(2 * c, 4 * c, depth=1, heads=2)
        self.down3 = _trans_down(4 * c, 8 * c, depth=2, heads=4)
        self.down4 = _trans_down(8 * c, 16 * c, depth=4, heads=8)
        self.up1 = TransUp(16 * c, 8 * c, heads=8)
        self.up2 = TransUp(8 * c, 4 * c, heads=4)
        self.up3 = ConvUp(4 * c, 2 * c)
        self.up4 = ConvUp(2 * c, c)
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        out = self.up2(self.up1(x5, x4), x3)
        out = self.up4(self.up3(out, x2), x1)
        return self.head(out)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="UTNet",
        ubench_id=73,
        year=2021,
        paper="UTNet: A Hybrid Transformer Architecture for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=14.418755,
        ref_source="U-Bench models/Hybrid/UTNet/UTNet.py (utnet(num_classes=1, input_channel=3)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="the 8x8 relative position bias is mapped to query cells by nearest cell, equal to the "
        "reference's tiling when 128 divides H and W and also defined for other multiples of 16",
    )
)
def utnet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UTNet as U-Bench benchmarks it (base 32, attention in stages 2-4, reduce size 8)."""
    return UTNet(in_channels=in_channels, num_classes=num_classes)
