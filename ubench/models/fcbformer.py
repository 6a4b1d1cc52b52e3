"""FCBFormer: a PVTv2-B3 transformer branch and a full-resolution convolutional branch, fused by a
prediction head.

Paper: Sanderson, Matuszewski, "FCN-Transformer Feature Fusion for Polyp Segmentation", MIUA 2022
(LNCS 13413).

Configuration: U-Bench's ``FCBFormer`` (repo FengheTan9/U-Bench, models/Hybrid/FCBFormer/
FCBFormer.py + pvt_v2.py; models/__init__.py exposes ``fcbformer(num_classes, input_channel=3)``,
which builds ``FCBFormer(num_classes)`` with its default ``size=256`` and ignores
``input_channel``; model_id.json lists id 63 without deep supervision):
- transformer branch (TB): PVTv2-B3 (dims 64/128/320/512, depths 3/4/18/3, heads 1/2/5/8, MLP
  ratios 8/8/4/4, reductions 8/4/2/1, q/kv biases, block and stage LayerNorms with eps 1e-6, no
  stochastic depth), the four stage maps (strides 4-32) after each stage's LayerNorm; U-Bench
  loads the PVT authors' ImageNet ``pvt_v2_b3.pth`` and drops the classifier head. Each map goes
  through two residual blocks to 64 channels and is resized (nearest) to a fixed 88x88; from the
  coarsest, each finer map is concatenated with the running map and fused by two residual blocks.
- fully convolutional branch (FCB): a U-Net of residual blocks at full resolution: a 3x3 stem to
  32 channels, six levels of two blocks (widths 32/32/64/64/128/128) with a stride-2 3x3 conv
  between levels, two middle blocks, and six decoder levels of three blocks, each block fed the
  running map concatenated with one encoder output (all 18 of them, last first), a nearest x2 +
  3x3 conv closing every decoder level but the last.
- residual block: (GroupNorm(32), SiLU, 3x3 conv) twice plus the input (1x1 conv when the width
  changes).
- head: the TB map resized (nearest) to 256x256, concatenated with the FCB map (64 + 32 channels),
  two residual blocks to 64, a 1x1 conv to the classes.

Spatial size: 256x256 only: the head resizes the transformer map to 256x256 whatever the input,
so any other size cannot be concatenated with the full-resolution branch. Parameters at 3 in /
1 class: 52,962,337 (PVTv2-B3 without head 44,725,696; TB's residual blocks 1,678,848; FCB
6,384,800; head 172,993), counted by instantiating U-Bench's module.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.pvt import PVT_V2_B3, PVTv2Encoder, SRAttention, pvt_v2_record
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256  # U-Bench's FCBFormer(size=256): the size the head resizes the TB map to
TB_GRID = 88  # the TB's fixed working grid (352 / 4 in the paper's setting, kept at 256 input)
TB_CH = 64
FCB_BASE = 32
FCB_MULTS = (1, 1, 2, 2, 4, 4)
FCB_BLOCKS = 2  # residual blocks per encoder level (one more per decoder level)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm(32) -> SiLU -> 3x3 conv) twice, plus the input
    (through a 1x1 conv when the width changes)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(32, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.shortcut(x)


def res_pair(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two residual blocks, the first changing the width."""
    return nn.Sequential(ResBlock(in_ch, out_ch), ResBlock(out_ch, out_ch))


def resize_nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    """``nn.Upsample(size=size)``: nearest-neighbour (legacy rounding) to a square size."""
    return F.interpolate(x, size=(size, size), mode="nearest")


# --- transformer branch ---------------------------------------------------------------------------


class TransformerBranch(nn.Module):
    """PVTv2-B3 pyramid -> per-level emphasis (two residual blocks to 64, resized to 88x88) ->
    coarse-to-fine fusion of concatenated pairs by two residual blocks each."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.encoder = PVTv2Encoder(in_channels, replace(PVT_V2_B3, drop_path=0.0))
        for m in self.encoder.modules():
            if isinstance(m, SRAttention):
                m.pvt_order = False  # U-Bench's pvt_v2.py scales q @ k^T, not q
        self.emphasis = nn.ModuleList(res_pair(d, TB_CH) for d in self.encoder.dims)
        self.fuse = nn.ModuleList(res_pair(2 * TB_CH, TB_CH) for _ in self.encoder.dims[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [resize_nearest(le(f), TB_GRID) for le, f in zip(self.emphasis, self.encoder(x))]
        y = maps[-1]
        for i in reversed(range(len(self.fuse))):
            y = self.fuse[i](torch.cat([maps[i], y], dim=1))
        return y


# --- fully convolutional branch -------------------------------------------------------------------


class DecoderStep(nn.Module):
    """One decoder block of the FCB: a residual block over (running map, skip), optionally followed
    by a nearest x2 upsampling and a 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int, upsample: bool):
        super().__init__()
        self.block = ResBlock(in_ch, out_ch)
        self.up_conv = nn.Conv2d(out_ch, out_ch, 3, padding=1) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        if self.up_conv is not None:
            x = self.up_conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return x


class FullConvBranch(nn.Module):
    """Residual U-Net at full resolution whose decoder consumes every encoder output as a skip."""

    def __init__(self, in_channels: int, base: int = FCB_BASE, mults=FCB_MULTS, blocks: int = FCB_BLOCKS):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, base, 3, padding=1)
        ch, skip_chs, down = base, [base], []
        for level, mult in enumerate(mults):
            for _ in range(blocks):
                down.append(ResBlock(ch, mult * base))
                ch = mult * base
                skip_chs.append(ch)
            if level < len(mults) - 1:
                down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_chs.append(ch)
        self.down = nn.ModuleList(down)
        self.middle = res_pair(ch, ch)
        up = []
        for level, mult in enumerate(reversed(mults)):
            for b in range(blocks + 1):
                closes_level = b == blocks and level < len(mults) - 1
                up.append(DecoderStep(ch + skip_chs.pop(), mult * base, closes_level))
                ch = mult * base
        self.up = nn.ModuleList(up)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for layer in self.down:
            skips.append(layer(skips[-1]))
        y = self.middle(skips[-1])
        for step in self.up:
            y = step(torch.cat([y, skips.pop()], dim=1))
        return y


# --- full model -----------------------------------------------------------------------------------


class FCBFormer(nn.Module):
    """TB map (88x88, resized to 256) and FCB map (256x256) concatenated -> two residual blocks ->
    1x1 conv to the classes."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.tb = TransformerBranch(in_channels)
        self.fcb = FullConvBranch(in_channels)
        self.predict = nn.Sequential(
            res_pair(TB_CH + self.fcb.out_channels, TB_CH), nn.Conv2d(TB_CH, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        global_map = resize_nearest(self.tb(x), IMG_SIZE)
        return self.predict(torch.cat([global_map, self.fcb(x)], dim=1))


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="FCBFormer",
        ubench_id=63,
        year=2022,
        paper="FCN-Transformer Feature Fusion for Polyp Segmentation",
        deep_supervision=False,
        ref_params_m=52.962337,
        ref_source="U-Bench models/Hybrid/FCBFormer/FCBFormer.py + pvt_v2.py (fcbformer(num_classes=1): "
        "FCBFormer(num_classes=1, size=256), PVTv2-B3 backbone), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="PVTv2-B3 backbone built untrained (U-Bench downloads the PVT authors' ImageNet "
        "pvt_v2_b3.pth in the constructor and loads it strictly, then keeps every child but the "
        "classifier head). U-Bench's factory ignores input_channel (both stems are built for 3 "
        "channels); here in_channels reaches the first PVT patch embedding and the FCB stem. Fixed "
        "256x256 input: FCBFormer(size=256) resizes the TB map to 256x256 before concatenating it "
        "with the full-resolution FCB map. Quirk kept from U-Bench's code: the TB's LE blocks "
        "resize every pyramid level to 88x88 (the paper's 352/4), so at 256 input the 64x64 "
        "stride-4 map is upsampled to 88 and the fused 88x88 map again to 256 (nearest both "
        "times). No stochastic depth in the backbone (drop_path_rate left at 0). Its attention "
        "scales q @ k^T after the product, as U-Bench's pvt_v2.py does.",
        extra={
            "pretrained": pvt_v2_record(
                "b3", "tb.encoder.",
                "models/Hybrid/FCBFormer/FCBFormer.py TB.__init__: torch.hub.load_state_dict_from_url("
                "pvt_v2_b3.pth) loaded strictly into pvt_v2.PyramidVisionTransformerV2 (B3 config: keys "
                "patch_embed{1-4}, block{1-4}, norm{1-4}, head), then the head is dropped "
                "(Sequential(*children())[:-1])"),
        },
    )
)
def fcbformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """FCBFormer as U-Bench benchmarks it (PVTv2-B3 transformer branch, 256x256)."""
    return FCBFormer(in_channels=in_channels, num_classes=num_classes)
