"""RAT-Net: a region-aware transformer encoder and a CNN decoder with region-aware self-attention.

Paper: Zhu et al., "Region Aware Transformer for Automatic Breast Ultrasound Tumor Segmentation",
MIDL 2022.

Configuration: U-Bench's ``rat_net`` (repo FengheTan9/U-Bench, models/CNN/RAT_Net/RAT_Net.py with
the ``RASAB_t3`` blocks of RASAB_t3.py; ``rat_net(input_channel=3, num_classes=1)`` builds
``RAT(input_channel=3, num_classes)``, threshold 't3'). The tumour-region prior is a fixed box in
768ths of each map's height and width (the paper's ABUS images are 768 pixels): the "focus" box,
rows 200-500 and columns 100-600, and a larger "context" box, rows 100-550 and columns 26-767.

- Region non-local block (RAC): 1x1 convs to C/2 give queries on the focus box and keys / values on
  the context box (2x2 max-pooled); softmax(q k^T) v, then a 1x1 conv + BatchNorm (initialised to
  zero) back to C: a map of the focus box's size.
- Encoder: a MiT-style transformer, widths 64, 128, 320, 512, heads 1, 2, 5, 8, depths 3, 8, 27, 3,
  spatial reduction 1, 4, 2, 1, MLP ratio 4, LayerNorm eps 1e-6, dropout 0.05, stochastic depth up
  to 0.1. Each stage: overlapping patch embedding (7x7/4, then 3x3/2); the region non-local block
  turns its focus box into the tokens (LayerNorm eps 1e-5) that the blocks (pre-norm SegFormer-
  order spatial-reduction attention and 3x3 depth-wise conv MLP) see; the result is pasted back
  into the focus box of the embedding map, concatenated with the plain embedding map, fused by a
  1x1 conv + BN, and LayerNorm'd. Strides 4, 8, 16, 32.
- Decoder: a region-aware self-attention block (RASAB: the map with its focus box replaced by the
  non-local output, concatenated with the map, 1x1 conv + BN) on each encoder map and on a
  full-resolution stem (two 3x3 conv + BN + ReLU, 16 and 32 channels). Up-steps are 3x3 conv +
  BN + ReLU then bilinear x2 (align_corners=True): 512 -> 320, [.., 320] -> 128, [.., 128] -> 64,
  [.., 64] -> 64, 64 -> 32 (no skip at stride 2); the stem's RASAB is concatenated last and a 3x3
  conv gives the logits.

No weight initialisation besides PyTorch's defaults and the zeroed BN of each non-local block (as
U-Bench). Parameters at 3 in / 1 class: 65,614,609 (counted by instantiating U-Bench's module).
Input: multiples of 32 from 96 (the boxes must keep at least one pooled key on the stride-32 map
and at least ``sr`` tokens a side at strides 8 and 16).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from ubench.models.ops.common import map_to_tokens, stochastic_depth, tokens_to_map
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.pvt import ConvMlp, SRAttention
from ubench.models.registry import ModelInfo, register_model

# boxes as (row start, row end, column start, column end), in 768ths of a map's height / width
FOCUS = (200, 500, 100, 600)
CONTEXT = (100, 550, 26, 767)

DIMS = (64, 128, 320, 512)
HEADS = (1, 2, 5, 8)
DEPTHS = (3, 8, 27, 3)
SR_RATIOS = (1, 4, 2, 1)
MLP_RATIO = 4
DROP, DROP_PATH = 0.05, 0.1
STEM_WIDTHS = (16, 32)
# up-steps (in, out), deepest first; the first four take [up-step output, RASAB(skip)] after them
UP_STEPS = ((512, 320), (640, 128), (256, 64), (128, 64), (64, 32))

STRIDE = 32
MIN_SIZE = 96
SIZES = tuple(range(MIN_SIZE, 1024 + 1, STRIDE))

_BlockNorm = partial(nn.LayerNorm, eps=1e-6)


def box_index(h: int, w: int, box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """Row and column slices of ``box`` (in 768ths) on an h x w map."""
    r0, r1, c0, c1 = box
    return slice(h * r0 // 768, h * r1 // 768), slice(w * c0 // 768, w * c1 // 768)


def crop(x: torch.Tensor, box) -> torch.Tensor:
    rows, cols = box_index(*x.shape[-2:], box)
    return x[:, :, rows, cols]


class RegionNonLocal(nn.Module):
    """Non-local attention from the focus box (queries) to the pooled context box (keys, values);
    returns the focus box's new content (RAT-Net's RAC). The output BN starts at zero, so the
    block starts as a zero map."""

    def __init__(self, ch: int):
        super().__init__()
        inner = max(ch // 2, 1)
        self.value = nn.Sequential(nn.Conv2d(ch, inner, 1), nn.MaxPool2d(2))
        self.proj = nn.Sequential(nn.Conv2d(inner, ch, 1), nn.BatchNorm2d(ch))
        nn.init.zeros_(self.proj[1].weight)
        nn.init.zeros_(self.proj[1].bias)
        self.query = nn.Conv2d(ch, inner, 1)
        self.key = nn.Sequential(nn.Conv2d(ch, inner, 1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        focus, context = crop(x, FOCUS), crop(x, CONTEXT)
        q = map_to_tokens(self.query(focus))
        k = self.key(context).flatten(2)
        v = map_to_tokens(self.value(context))
        y = torch.softmax(q @ k, dim=-1) @ v
        return self.proj(tokens_to_map(y, *focus.shape[-2:]))


class RegionFuse(nn.Sequential):
    """1x1 conv + BN over [map, map with its focus box replaced by ``patch``]: how RAT-Net writes a
    region result back (RASAB's ``conv_z``, the encoder's ``regionreplacement``)."""

    def __init__(self, ch: int):
        super().__init__(nn.Conv2d(2 * ch, ch, 1), nn.BatchNorm2d(ch))

    def merge(self, x: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        pasted = x.clone()
        rows, cols = box_index(*x.shape[-2:], FOCUS)
        pasted[:, :, rows, cols] = patch
        return self(torch.cat([x, pasted], dim=1))


class RegionAttention(nn.Module):
    """RASAB: the region non-local block's output written back into the map, then fused."""

    def __init__(self, ch: int):
        super().__init__()
        self.fuse = RegionFuse(ch)
        self.attn = RegionNonLocal(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse.merge(x, self.attn(x))


class RegionEmbed(nn.Module):
    """Overlapping patch embedding whose tokens are the region non-local output on the focus box;
    returns the tokens, their grid and the full embedding map."""

    def __init__(self, in_ch: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)
        self.attn = RegionNonLocal(dim)

    def forward(self, x: torch.Tensor):
        x = self.proj(x)
        region = self.attn(x)
        return self.norm(map_to_tokens(region)), region.shape[-2:], x


class DropConvMlp(ConvMlp):
    """PVTv2's conv-MLP with dropout after the activation and after the output linear."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__(dim, hidden)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = map_to_tokens(self.dwconv(tokens_to_map(self.fc1(x), h, w)))
        return self.drop(self.fc2(self.drop(self.act(x))))


class RegionBlock(nn.Module):
    """Pre-norm transformer block: spatial-reduction attention (SegFormer order, dropout after the
    projection) and conv-MLP, each residual with stochastic depth."""

    def __init__(self, dim: int, heads: int, sr: int, drop_path: float):
        super().__init__()
        self.norm1 = _BlockNorm(dim)
        self.attn = SRAttention(dim, heads, sr, pvt_order=False)
        self.attn_drop = nn.Dropout(DROP)
        self.drop_path = stochastic_depth(drop_path)
        self.norm2 = _BlockNorm(dim)
        self.mlp = DropConvMlp(dim, MLP_RATIO * dim, DROP)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn_drop(self.attn(self.norm1(x), h, w)))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class RegionStage(nn.Module):
    """Embedding, transformer blocks on the focus box, write-back fusion, LayerNorm; a map."""

    def __init__(self, in_ch, dim, kernel, stride, depth, heads, sr, drop_paths):
        super().__init__()
        self.embed = RegionEmbed(in_ch, dim, kernel, stride)
        self.blocks = nn.ModuleList(RegionBlock(dim, heads, sr, drop_paths[i]) for i in range(depth))
        self.norm = _BlockNorm(dim)
        self.fuse = RegionFuse(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (h, w), full = self.embed(x)
        for block in self.blocks:
            tokens = block(tokens, h, w)
        x = self.fuse.merge(full, tokens_to_map(tokens, h, w))
        return tokens_to_map(self.norm(map_to_tokens(x)), *x.shape[-2:])


class RegionEncoder(nn.Module):
    """Four region-aware transformer stages (strides 4, 8, 16, 32); returns the four maps."""

    def __init__(self, in_channels: int):
        super().__init__()
        rates = torch.linspace(0, DROP_PATH, sum(DEPTHS)).tolist()
        stages, start, prev = [], 0, in_channels
        for i, depth in enumerate(DEPTHS):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            stages.append(RegionStage(prev, DIMS[i], kernel, stride, depth, HEADS[i], SR_RATIOS[i],
                                      rates[start : start + depth]))
            start += depth
            prev = DIMS[i]
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class UpStep(nn.Sequential):
    """3x3 conv + BN + ReLU, then bilinear upsampling x2 (align_corners=True)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(*conv_bn_relu(in_ch, out_ch),
                         nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))


class RATNet(nn.Module):
    """Region-aware transformer encoder; RASAB on every skip and on a full-resolution stem."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = RegionEncoder(in_channels)
        self.skip_attn = nn.ModuleList(RegionAttention(c) for c in (STEM_WIDTHS[-1], *DIMS))
        self.up = nn.ModuleList(UpStep(i, o) for i, o in UP_STEPS)
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, STEM_WIDTHS[0]),
                                  *conv_bn_relu(STEM_WIDTHS[0], STEM_WIDTHS[1]))
        self.head = nn.Conv2d(2 * STEM_WIDTHS[-1], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        stem = self.stem(x)
        skips = [attn(f) for attn, f in zip(self.skip_attn, (stem, *feats))]
        y = self.up[0](skips.pop())
        for up in self.up[1:-1]:
            y = up(torch.cat([y, skips.pop()], dim=1))
        y = self.up[-1](y)
        return self.head(torch.cat([y, skips.pop()], dim=1))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="RAT_Net",
        ubench_id=110,
        year=2022,
        paper="Region Aware Transformer for Automatic Breast Ultrasound Tumor Segmentation",
        deep_supervision=False,
        ref_params_m=65.614609,
        ref_source="U-Bench models/CNN/RAT_Net/RAT_Net.py (rat_net(input_channel=3, "
        "num_classes=1), RASAB_t3 blocks), counted by instantiating it",
        ref_input_size=256,
        input_sizes=SIZES,
        size_multiple=STRIDE,
        notes="U-Bench files it under CNN although its encoder is a MiT-style transformer (depths "
        "3, 8, 27, 3; spatial reduction 1, 4, 2, 1, so stage 1 attends over its whole box). The "
        "region prior is a fixed box in 768ths of each map (focus rows 200-500, cols 100-600; "
        "context rows 100-550, cols 26-767): the transformer blocks see only the focus box of each "
        "embedding map. U-Bench's rat_net ignores input_channel (always 3) and its stem conv is "
        "hard-wired to 3 channels; ours honours in_channels (identical at 3). No MiT weight init "
        "(PyTorch defaults; the non-local blocks' output BN zeroed), dropout 0.05 and stochastic "
        "depth 0.1 as U-Bench. Multiples of 32 from 96 (smaller maps leave an empty pooled box). "
        "Memory grows with the square of the area: the stem's RASAB at 256 attends 16,700 queries "
        "to 9,225 keys per image.",
    )
)
def rat_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """RAT-Net as U-Bench benchmarks it (region-aware MiT encoder, RASAB decoder, 't3' boxes)."""
    return RATNet(in_channels=in_channels, num_classes=num_classes)
