"""LeViT-UNet: a convolutional stem and LeViT attention blocks tapped three times, with a
TransUNet-style decoder that re-uses the stem's maps as skips.

Paper: Xu, Wu, Zhang, He, "LeViT-UNet: Make Faster Encoders with Transformer for Medical Image
Segmentation", arXiv 2107.08623 (2021), PRCV 2023.

Configuration: U-Bench's ``LeViT_UNet`` (repo FengheTan9/U-Bench, models/Hybrid/LeViT_UNet/
LeViT_UNet.py). models/__init__.py imports ``levit_unet(num_classes, input_channel)``, which builds
``LeViT_UNet_192(input_channel=..., num_classes=...)`` with all its class defaults; it does NOT go
through the file's ``Build_LeViT_UNet_192`` / ``model_factory_v3_NM`` (the paper's LeViT-192
encoder: three stages 192/288/384 with attention sub-sampling between them, key dim 32). What the
defaults build, and what is built here:
- stem: four 3x3 stride-2 convs (no bias) + BN, widths 24, 48, 96, 192 (H/2 .. H/16), Hardswish
  after the first three only;
- transformer: the 16x16 tokens of the last stem map, width 192 throughout, 12 LeViT blocks (a
  residual attention then a residual MLP each) tapped after blocks 4, 9 and 12. Attention: 3
  heads, 64-d queries/keys, 128-d values, from one linear (no bias) + BatchNorm over tokens, plus a
  learned bias per head for each (|row offset|, |column offset|) on the 16x16 grid; Hardswish,
  then linear + BN (BN weight starts at 0). MLP: linear + BN to 384, Hardswish, linear + BN back
  (BN weight 0). No stochastic depth, no positional embedding;
- bridge: the three tapped outputs as 192-channel 16x16 maps; the last is upsampled x2 and resized
  back to 16x16 (both bilinear, align_corners=True: not an identity, a slight blur), then
  [stem map, tap 1, tap 2, tap 3] are concatenated (768 channels);
- decoder: three steps of (bilinear x2 with align_corners, two 3x3 conv (no bias) + BN + ReLU) to
  512, 256, 128, each followed by concatenation of the stem map of that size (96, 48, 24
  channels); head: 3x3 conv (with bias) to the classes at H/2, then bilinear x2 (align_corners).
  No deep supervision.
U-Bench loads no pretrained weights for this model: only ``model_factory_v3_NM(pretrained=True)``
would fetch LeViT-192's ImageNet checkpoint, and the factory U-Bench calls never reaches it (nor
would that file fit: key dim 32 and a 14x14 grid give other q/k/v and bias-table shapes).
Fixed input size 256x256: the bias index tables are built for the 16x16 grid of a 256 input.
Parameters at 3 in / 1 class: 13,080,369, all trainable (counted by instantiating U-Bench's module).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import map_to_tokens, tokens_to_map, up2_aligned
from ubench.models.ops.vit_hybrid import CupBlock
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
STEM_WIDTHS = (24, 48, 96, 192)  # stride 2, 4, 8, 16
DIM = 192
KEY_DIM = 64
HEADS = 3
VALUE_RATIO = 2  # value width = 2 * key width per head
MLP_RATIO = 2
TAPS = (4, 5, 3)  # LeViT blocks between the outputs the decoder takes (12 in all)
DECODER_WIDTHS = (512, 256, 128)


def _stem_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 stride-2 conv without bias + BatchNorm (LeViT's ``Conv2d_BN``)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_ch))


class ConvStem(nn.Module):
    """Four stride-2 conv + BN steps, Hardswish after all but the last; returns every step's map."""

    def __init__(self, in_channels: int, widths=STEM_WIDTHS):
        super().__init__()
        ins = (in_channels, *widths[:-1])
        self.steps = nn.ModuleList(_stem_conv(i, o) for i, o in zip(ins, widths))
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for k, step in enumerate(self.steps):
            x = step(x)
            if k < len(self.steps) - 1:
                x = self.act(x)
            maps.append(x)
        return maps


class TokenLinearBN(nn.Module):
    """Linear without bias, then BatchNorm1d over the channels of all B * N tokens together."""

    def __init__(self, in_dim: int, out_dim: int, bn_weight: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.bn = nn.BatchNorm1d(out_dim)
        nn.init.constant_(self.bn.weight, bn_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return self.bn(y.flatten(0, 1)).view_as(y)


def offset_bias_index(side: int) -> torch.Tensor:
    """(side**2, side**2) index of the bias-table column for each query/key cell pair of a
    side x side grid: |row offset| * side + |column offset| (LeViT's table order)."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    return (rows[:, None] - rows[None, :]).abs() * side + (cols[:, None] - cols[None, :]).abs()


class OffsetBiasAttention(nn.Module):
    """Multi-head attention over a fixed grid with a learned bias per head and absolute offset.

    q, k, v come from one TokenLinearBN whose output is laid out head by head ([q, k, v] of
    head 0, then head 1, ...); the merged heads pass Hardswish and a zero-started TokenLinearBN.
    """

    def __init__(self, dim: int, side: int, key_dim: int = KEY_DIM, heads: int = HEADS,
                 value_ratio: int = VALUE_RATIO):
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.value_dim = value_ratio * key_dim
        self.scale = key_dim**-0.5
        self.qkv = TokenLinearBN(dim, heads * (2 * key_dim + self.value_dim))
        self.proj = nn.Sequential(nn.Hardswish(), TokenLinearBN(heads * self.value_dim, dim, bn_weight=0.0))
        self.bias_table = nn.Parameter(torch.zeros(heads, side * side))
        self.register_buffer("bias_index", offset_bias_index(side), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, self.heads, -1).transpose(1, 2)  # b, heads, n, per-head
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias_table[:, self.bias_index]
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, self.heads * self.value_dim))


class LeViTBlock(nn.Module):
    """x + attention(x), then x + MLP(x) (linear-BN, Hardswish, zero-started linear-BN)."""

    def __init__(self, dim: int, side: int, mlp_ratio: int = MLP_RATIO):
        super().__init__()
        self.attn = OffsetBiasAttention(dim, side)
        hidden = dim * mlp_ratio
        self.mlp = nn.Sequential(TokenLinearBN(dim, hidden), nn.Hardswish(),
                                 TokenLinearBN(hidden, dim, bn_weight=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class LeViTUNet(nn.Module):
    """Conv stem -> LeViT blocks tapped three times -> conv decoder over the stem's maps."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, img_size: int = IMG_SIZE):
        super().__init__()
        self.side = img_size // 16
        self.stem = ConvStem(in_channels)
        self.stages = nn.ModuleList(
            nn.Sequential(*(LeViTBlock(DIM, self.side) for _ in range(n))) for n in TAPS
        )
        skips = STEM_WIDTHS[-2::-1]  # 96, 48, 24
        ins = (STEM_WIDTHS[-1] + len(TAPS) * DIM, *(w + s for w, s in zip(DECODER_WIDTHS[:-1], skips)))
        self.decoder = nn.ModuleList(CupBlock(i, o) for i, o in zip(ins, DECODER_WIDTHS))
        self.head = nn.Conv2d(DECODER_WIDTHS[-1] + skips[-1], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *skips, grid = self.stem(x)
        s = self.side
        tokens, taps = map_to_tokens(grid), []
        for stage in self.stages:
            tokens = stage(tokens)
            taps.append(tokens_to_map(tokens, s, s))
        # the reference doubles the last tap, then resizes it back to the grid (a mild blur)
        taps[-1] = F.interpolate(up2_aligned(taps[-1]), size=(s, s), mode="bilinear", align_corners=True)
        y = torch.cat([grid, *taps], dim=1)
        for block, skip in zip(self.decoder, reversed(skips)):
            y = torch.cat([block(y), skip], dim=1)
        return up2_aligned(self.head(y))


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="LeViT_UNet",
        ubench_id=64,
        year=2021,
        paper="LeViT-UNet: Make Faster Encoders with Transformer for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=13.080369,
        ref_source="U-Bench models/Hybrid/LeViT_UNet/LeViT_UNet.py (levit_unet(num_classes=1, "
        "input_channel=3) -> LeViT_UNet_192 class defaults: img_size 256, one width-192 stage of 12 "
        "LeViT blocks, key dim 64, 3 heads), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="What U-Bench's factory builds, not the paper's LeViT-UNet-192: levit_unet() calls the "
        "LeViT_UNet_192 class with its defaults (embed_dim [192], key_dim [64], depth [12], heads [3], "
        "no down_ops), so the encoder is one 16x16 stage of width 192 with no attention sub-sampling, "
        "its 24 residual modules split 8/10/6 into the three taps (4/5/3 attention+MLP blocks); the "
        "decoder's 768 input channels are 192 + 3 x 192 (the 128/256/384 widths in its code comments "
        "are another LeViT variant's). No pretrained weights: the LeViT-192 "
        "ImageNet checkpoint is fetched only by model_factory_v3_NM(pretrained=True), which U-Bench "
        "never calls (and whose key dim 32 / 14x14 grid would not fit these shapes). The last tap is "
        "upsampled x2 then interpolated back to 16x16 (both align_corners=True), as in U-Bench; this "
        "is a slight blur, not an identity. Fixed input 256: the attention bias index tables are built "
        "for the 16x16 grid (U-Bench's img_size=256 default; any other size fails in its bias addition). "
        "U-Bench caches the bias tables at .eval() (indexed at each call here: same values, and "
        "the tables get gradients in eval mode too); its index tables are persistent buffers (here "
        "non-persistent: no parameters), and its state_dict lists every transformer tensor twice "
        "(blocks.* and block_1/2/3.*, the same modules). input_channel sizes the first stem conv, "
        "as in U-Bench. Stochastic depth is 0 (drop_path default), as in U-Bench.",
        extra={},
    )
)
def levit_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """LeViT-UNet as U-Bench's factory builds it (256x256)."""
    return LeViTUNet(in_channels=in_channels, num_classes=num_classes)
