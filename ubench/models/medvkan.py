"""MedVKAN: a U-Net whose two deepest levels pair VMamba's visual state-space blocks with
Kolmogorov-Arnold token blocks, under a convolutional encoder with CBAM-refined skips.

Paper: "MedVKAN: Efficient Feature Extraction with Mamba and KAN for Medical Image Segmentation",
arXiv 2505.11797, 2025 (code: github.com/beginner-cjh/MedVKAN).

Configuration: U-Bench's ``MedVKAN`` (repo FengheTan9/U-Bench, models/Mamba/MedVKAN/MedVKAN.py;
id 114; models/__init__.py builds ``medvkan(input_channel, num_classes)``, feature widths
24/48/96/192/384/768, depths 4/4, d_state 16, drop/attention-drop/drop-path rates 0.3):
- convolutional encoder: three levels of double 3x3 conv (+ BN + ReLU) to 48, 96, 192 channels,
  each followed by 2x2 max-pooling; the skip of each level is relu(x + CBAM(x)) (CBAM: channel gate
  with a bias-free C -> C/16 -> C MLP, then a 7x7 spatial gate), while the next level reads the
  un-gated pooled map;
- Mamba/KAN encoder: a 2x2 patch embedding (192 -> 384, + LayerNorm, dropout 0.3), a VKAN block
  at 384 channels (stride 16), 2x2 patch merging, a VKAN block at 768 channels (stride 32);
- VKAN block: four pre-norm VSS blocks (VMamba's SS2D, ops/vss.py, output dropout 0.3), then
  LayerNorm, an "expanded field" convolution (two plain 3x3 convs in a row, + LayerNorm on the
  tokens) and a KAN block: t + drop_path(dropout(n + [KANLinear C -> C/8, 3x3 depth-wise conv +
  BN + ReLU, KANLinear C/8 -> C, 3x3 depth-wise conv + BN + ReLU](n))) with n = LayerNorm(t);
  KANLinear is efficient-kan's layer (ops/kan.py) with 3 grid intervals, cubic splines;
- decoder: patch expansion x2 (768 -> 384 channels, ops/vss.py) concatenated with the stride-16
  map, 1x1 conv + BN + ReLU, VKAN block (384); patch expansion (384 -> 192) with the stride-8
  skip, 1x1 conv + BN + ReLU, VKAN block (192); then three convolutional steps (3x3 conv keeping
  the width + BN + ReLU, 3x3 conv halving it + BN + ReLU, bilinear x2, ReLU) to 96, 48, 24
  channels, the first two each followed by [upsampled, skip] -> 1x1 conv + BN (no ReLU);
- head: a 1x1 conv 24 -> classes at full resolution. U-Bench also builds three 1x1 heads for
  deep supervision (on 192, 96, 48 channels) but its forward returns the final map only.
Parameters at 3 in / 1 class: 51,874,330, all trainable (counted by instantiating U-Bench's
module), 339 of them in the three idle heads. Spatial size: any multiple of 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.cascade import ChannelGate, SpatialGate
from ubench.models.ops.common import init_vit_conv_weights, map_to_tokens, stochastic_depth
from ubench.models.ops.conv_blocks import DoubleConv, conv_bn_relu
from ubench.models.ops.kan import DepthwiseBnRelu, KANLinear
from ubench.models.ops.vss import PatchEmbed2D, PatchExpand2D, PatchMerging2D, VSSBlock
from ubench.models.registry import ModelInfo, register_model

CONV_WIDTHS = (48, 96, 192)  # the convolutional levels, strides 2, 4, 8
TOKEN_WIDTHS = (384, 768)  # the VKAN levels, strides 16, 32
HEAD_WIDTH = 24  # the last decoder width, at full resolution
DEPTH = 4  # VSS blocks per VKAN block, encoder and decoder alike
D_STATE = 16
DROP = 0.3  # dropout after the patch embedding and in the KAN blocks
ATTN_DROP = 0.3  # dropout on SS2D's output
DROP_PATH = 0.3
KAN_GRID = 3  # KANLinear grid intervals (cubic splines on [-1, 1])
KAN_REDUCTION = 8  # the KAN block's hidden width is C / 8


class ResidualCBAM(nn.Module):
    """relu(x + CBAM(x)): a skip refined by a channel gate then a spatial gate (7x7)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channel = ChannelGate(channels)
        self.spatial = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.channel(x)
        return F.relu(x + y * self.spatial(y))


class KANTokenBlock(nn.Module):
    """MedVKAN's KAN block on (B, N, C) tokens.

    Unlike U-KAN's block (ops/kan.py ``KANBlock``: three C -> C KAN layers) it narrows to C / 8
    and back, and the normalised input is added to the KAN branch before the outer residual.
    """

    def __init__(self, dim: int, drop: float, drop_path: float):
        super().__init__()
        hidden = dim // KAN_REDUCTION
        self.norm = nn.LayerNorm(dim)
        self.fc1 = KANLinear(dim, hidden, grid_size=KAN_GRID)
        self.dw1 = DepthwiseBnRelu(hidden)
        self.fc2 = KANLinear(hidden, dim, grid_size=KAN_GRID)
        self.dw2 = DepthwiseBnRelu(dim)
        self.drop = nn.Dropout(drop)
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n = self.norm(t)
        y = self.dw2(self.fc2(self.dw1(self.fc1(n), h, w)), h, w)
        return t + self.drop_path(self.drop(n + y))


class VKANBlock(nn.Module):
    """VSS blocks, then LayerNorm, two 3x3 convs + token LayerNorm, and a KAN token block, on
    channels-last maps (B, H, W, C). The only residuals are those inside the VSS and KAN blocks."""

    def __init__(self, dim: int, drop_path: float, depth: int = DEPTH):
        super().__init__()
        # one drop-path rate for every VSS block and the KAN block, as U-Bench passes it
        self.vss = nn.Sequential(*(
            VSSBlock(dim, drop_path=drop_path, norm_layer=nn.LayerNorm, attn_drop_rate=ATTN_DROP,
                     d_state=D_STATE)
            for _ in range(depth)
        ))
        self.norm = nn.LayerNorm(dim)
        self.field_conv = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.Conv2d(dim, dim, 3, padding=1))
        self.field_norm = nn.LayerNorm(dim)
        self.kan = KANTokenBlock(dim, DROP, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.vss(x)
        b, h, w, c = x.shape
        t = self.field_norm(map_to_tokens(self.field_conv(self.norm(x).permute(0, 3, 1, 2))))
        return self.kan(t, h, w).reshape(b, h, w, c)


class MedVKANEncoder(nn.Module):
    """Three conv levels (CBAM skips), patch embedding, two VKAN levels with merging between.

    Returns the five skips, finest first: three (B, C, H, W) conv skips, then the two VKAN outputs
    also as (B, C, H, W).
    """

    def __init__(self, in_channels: int):
        super().__init__()
        ins = (in_channels,) + CONV_WIDTHS[:-1]
        self.convs = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, CONV_WIDTHS))
        self.skip_attention = nn.ModuleList(ResidualCBAM(c) for c in CONV_WIDTHS)
        self.patch_embed = PatchEmbed2D(2, CONV_WIDTHS[-1], TOKEN_WIDTHS[0], nn.LayerNorm)
        self.patch_drop = nn.Dropout(DROP)
        # U-Bench spaces eight rates over the eight VSS blocks but gives stage i the i-th of them
        rates = torch.linspace(0, DROP_PATH, DEPTH * len(TOKEN_WIDTHS)).tolist()
        self.stages = nn.ModuleList(VKANBlock(d, rates[i]) for i, d in enumerate(TOKEN_WIDTHS))
        self.merge = PatchMerging2D(TOKEN_WIDTHS[0])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for conv, attention in zip(self.convs, self.skip_attention):
            x = F.max_pool2d(conv(x), 2)  # already >= 0: U-Bench's ReLU here changes nothing
            skips.append(attention(x))
        x = self.patch_drop(self.patch_embed(x))
        for i, stage in enumerate(self.stages):
            if i:
                x = self.merge(x)
            x = stage(x)
            skips.append(x.permute(0, 3, 1, 2))
        return skips


def _fuse(in_ch: int, out_ch: int) -> nn.Sequential:
    """1x1 conv + BN merging an upsampled map with its skip (the ReLU, where any, is applied by
    the caller)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch))


class ConvUp(nn.Sequential):
    """3x3 conv + BN + ReLU at the input width, 3x3 conv + BN + ReLU to ``out_ch``; the caller
    upsamples the result."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(*conv_bn_relu(in_ch, in_ch), *conv_bn_relu(in_ch, out_ch))


class MedVKANDecoder(nn.Module):
    """Two patch-expansion + VKAN levels, then three conv + bilinear levels, and the head."""

    def __init__(self, num_classes: int):
        super().__init__()
        deep, mid = TOKEN_WIDTHS[::-1]  # 768, 384
        self.expand = nn.ModuleList([PatchExpand2D(mid), PatchExpand2D(mid // 2)])
        self.token_fuse = nn.ModuleList([_fuse(deep, mid), _fuse(mid, mid // 2)])
        self.stages = nn.ModuleList([VKANBlock(mid, 0.0), VKANBlock(mid // 2, DROP_PATH)])
        widths = CONV_WIDTHS[::-1] + (HEAD_WIDTH,)  # 192, 96, 48, 24
        self.ups = nn.ModuleList(ConvUp(i, o) for i, o in zip(widths[:-1], widths[1:]))
        self.conv_fuse = nn.ModuleList(_fuse(2 * c, c) for c in widths[1:-1])
        self.head = nn.Conv2d(HEAD_WIDTH, num_classes, 1)
        # U-Bench's deep-supervision heads: built (and counted) but never run
        self.aux_heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in widths[:-1])

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = skips[-1].permute(0, 2, 3, 1)
        for i, (expand, fuse, stage) in enumerate(zip(self.expand, self.token_fuse, self.stages)):
            up = expand(x).permute(0, 3, 1, 2)
            x = F.relu(fuse(torch.cat([up, skips[-2 - i]], dim=1)))
            x = stage(x.permute(0, 2, 3, 1))
        x = x.permute(0, 3, 1, 2).contiguous()  # as U-Bench: convs then run on NCHW memory
        for i, up in enumerate(self.ups):
            if i:
                x = self.conv_fuse[i - 1](torch.cat([x, skips[-3 - i]], dim=1))
            x = F.relu(F.interpolate(up(x), scale_factor=2, mode="bilinear", align_corners=False))
        return self.head(x)


class MedVKAN(nn.Module):
    """Conv + VKAN encoder, VKAN + conv decoder, one full-resolution output."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = MedVKANEncoder(in_channels)
        self.decoder = MedVKANDecoder(num_classes)
        # U-Bench's init: trunc-normal(0.02) Linear, unit LayerNorm/BN, fan-out normal convs;
        # KANLinear and SS2D's own tensors keep their constructors' initialisation
        self.apply(init_vit_conv_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


_UNUSED = [f"decoder.aux_heads.{i}.{p}" for i in range(3) for p in ("weight", "bias")]


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="MedVKAN",
        ubench_id=114,
        year=2025,
        paper="MedVKAN: Efficient Feature Extraction with Mamba and KAN for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=51.874330,
        ref_source="U-Bench models/Mamba/MedVKAN/MedVKAN.py (medvkan(input_channel=3, num_classes=1)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=32,
        notes="No pretrained weights (U-Bench trains MedVKAN from scratch). U-Bench builds the decoder "
        "with deep_supervision=False and its forward returns only the final map; the three "
        "deep-supervision 1x1 heads are built and counted but never run (unused_params). Quirks of "
        "U-Bench's code kept: each conv level's CBAM-refined map relu(x + CBAM(x)) is only a skip, the "
        "next level and the patch embedding read the un-gated pooled map; the VKAN block has no "
        "residual around its LayerNorm + expanded-field convs (the two 3x3 convs have no activation "
        "between them); the KAN block adds its normalised input to the KAN branch before the outer "
        "residual; the last two conv fuses (1x1 conv + BN) have no ReLU; the encoder spaces its "
        "drop-path rates over 8 VSS blocks but gives VKAN stage i rate i (0 and 0.043) for all its "
        "blocks, the decoder uses 0 and 0.3; the VSS block's drop_rate argument is ignored by U-Bench "
        "(only SS2D's attention dropout, 0.3, applies). The ReLU after each encoder max-pool is "
        "omitted (its input is already non-negative). KANLinear's spline init solves the same least "
        "squares by a pseudo-inverse (ops/kan.py). With U-Bench's weights the outputs agree to ~5e-6 "
        "relative (ops/vss.py's SS2D adds its four scans in another order; in U-Bench's order they "
        "agree bit for bit, in train mode too).",
        extra={"unused_params": _UNUSED},
    )
)
def medvkan(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MedVKAN as U-Bench benchmarks it (widths 48-96-192 / 384-768, four VSS blocks per VKAN)."""
    return MedVKAN(in_channels=in_channels, num_classes=num_classes)
