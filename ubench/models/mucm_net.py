"""MUCM-Net: UCM-Net's very light conv/MLP U-Net with a Mamba branch in every token block.

Paper: Yuan, Shen, Ng, "MUCM-Net: A Mamba Powered UCM-Net for Skin Lesion Segmentation",
Exploration of Medicine 2024 (arXiv 2405.15925).

Configuration: U-Bench's ``MUCM_Net`` (repo FengheTan9/U-Bench, models/Mamba/MUCM_Net/MUCM_Net.py,
built by ``mucm_net(num_classes, input_channel)``), widths 8, 16, 24, 32, 48, 64 and one block
per stage. Facts read from that file:

* stem: 3x3 conv -> GroupNorm(4) -> 2x2 max-pool -> ReLU (8 channels at 1/2);
* five token stages, each a 1x1 conv of stride 2 + LayerNorm (its "overlap patch embed"), one UCM
  block, a LayerNorm: 16 @ 1/4, 24 @ 1/8, 32 @ 1/16, 48 @ 1/32, 64 @ 1/64 (total stride 64);
* UCM block (mlp ratio 1) on LayerNorm'd tokens x: a main path Linear -> DWConv -> GELU ->
  Linear -> DWConv, where DWConv is a per-channel layer norm over (H, W) without affine followed
  by a 3x3 depthwise conv; a side path s = x' + Mamba(x') with x' = x *detached* (as U-Bench's
  ``x.clone().detach()``: no gradient flows back through the Mamba branch's input); the block
  returns 2 * (main + s), U-Bench's ``x + drop_path(x)`` with drop_path the identity;
  Mamba: d_state 4, d_conv 4, expand 2;
* decoder step: 1x1 conv halving towards the skip's width -> GroupNorm(4) -> bilinear x2 ->
  ReLU, add the skip, UCM block, LayerNorm; last: 1x1 conv 8 -> 3, bilinear x2, ReLU, 1x1 conv to
  the classes; upsampling goes to the skip's (or the input's) size, which is U-Bench's bilinear
  x2 whenever sizes are multiples of 64.

U-Bench calls ``forward(x)`` with ``inference_mode=True``, so only the final output exists (no deep
supervision); the five side heads (finalpre0-4), the two LayerNorms per block never called (norm3,
norm4) and DWConv's unused weight/bias vectors are left out here: 2,629 of U-Bench's 138,652
parameters, which never receive a gradient. The stem conv takes ``in_channels`` (U-Bench hard-wires
3 there). Initialisation as in U-Bench: truncated-normal Linear weights (std 0.02) with zero biases
(dt_proj's bias included, since UCM's init runs over the Mamba layer), He-normal depthwise convs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_linear_conv
from ubench.models.ops.mamba_extra import MambaMixer
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (8, 16, 24, 32, 48, 64)
OUT_MID = 3  # width of the last 1x1 conv before the head (U-Bench's embed_dims[-1])


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class SpatialNormDWConv(nn.Module):
    """Per-channel layer norm over the whole map (no affine), then a 3x3 depthwise conv."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = _map(x, h, w)
        return _tokens(self.conv(F.layer_norm(x, (h, w))))


class UCMBlock(nn.Module):
    """UCM-Net's token block with MUCM-Net's Mamba side branch (see the module docstring)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.dw1 = SpatialNormDWConv(dim)
        self.fc2 = nn.Linear(dim, dim)
        self.dw2 = SpatialNormDWConv(dim)
        self.mamba = MambaMixer(dim, d_state=4, d_conv=4, expand=2)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.norm(x)
        side = x.detach()
        side = side + self.mamba(side)
        main = self.dw1(self.fc1(x), h, w)
        main = self.dw2(self.fc2(F.gelu(main)), h, w)
        return 2 * (main + side)


class TokenStage(nn.Module):
    """Stride-2 1x1 conv + LayerNorm to tokens, one UCM block, LayerNorm, back to a map."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 1, stride=2)
        self.embed_norm = nn.LayerNorm(out_ch)
        self.block = UCMBlock(out_ch)
        self.norm = nn.LayerNorm(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        h, w = x.shape[-2:]
        x = self.block(self.embed_norm(_tokens(x)), h, w)
        return _map(self.norm(x), h, w)


class UpStage(nn.Module):
    """1x1 conv -> GroupNorm -> bilinear x2 -> ReLU, add the skip, UCM block, LayerNorm."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1)
        self.gn = nn.GroupNorm(4, out_ch)
        self.block = UCMBlock(out_ch)
        self.norm = nn.LayerNorm(out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.interpolate(self.gn(self.conv(x)), size=skip.shape[-2:], mode="bilinear")) + skip
        h, w = x.shape[-2:]
        return _map(self.norm(self.block(_tokens(x), h, w)), h, w)


class MUCMNet(nn.Module):
    """Conv stem, five token stages down, five up with additive skips, x2 head."""

    # Five stride-2 token stages after the pooled stem make the bottleneck 1/64, but upsampling
    # goes to each skip's size (bilinear, same numbers as U-Bench's x2 when sizes are even), so
    # multiples of 32 work too: the last 1x1 stride-2 conv then rounds an odd side up.
    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.stem_norm = nn.GroupNorm(4, widths[0])
        self.down = nn.ModuleList(TokenStage(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        self.up = nn.ModuleList(
            UpStage(widths[i + 1], widths[i]) for i in reversed(range(len(widths) - 1))
        )
        self.out_conv = nn.Conv2d(widths[0], OUT_MID, 1)
        self.head = nn.Conv2d(OUT_MID, num_classes, 1)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        """U-Bench's UCM init: trunc-normal Linear, He-normal (fan-out) convs inside blocks."""
        if isinstance(m, UCMBlock):
            for sub in m.modules():
                init_linear_conv(sub)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = F.relu(F.max_pool2d(self.stem_norm(self.stem(x)), 2))
        skips = [x]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        x = skips.pop()
        for stage in self.up:
            x = stage(x, skips.pop())
        x = F.relu(F.interpolate(self.out_conv(x), size=size, mode="bilinear"))
        return self.head(x)


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="MUCM_Net",
        ubench_id=91,
        year=2024,
        paper="MUCM-Net: A Mamba Powered UCM-Net for Skin Lesion Segmentation",
        deep_supervision=False,
        ref_params_m=0.138652,
        ref_source="U-Bench models/Mamba/MUCM_Net/MUCM_Net.py (mucm_net(num_classes=1, "
        "input_channel=3)), instantiated with a parameter-shape stub of mamba_ssm.Mamba v1",
        ref_input_size=256,
        size_multiple=32,
        notes="2,629 parameters U-Bench allocates but never uses (side heads, norm3/norm4, DWConv "
        "weight/bias) are left out: 136,023 here (-1.9%). The Mamba branch's input is detached as "
        "in U-Bench. Total stride 64; upsampling to the skip's size (identical to U-Bench's x2 on "
        "multiples of 64) lets multiples of 32 through as well.",
    )
)
def mucm_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MUCM-Net as U-Bench benchmarks it (widths 8..64, one UCM+Mamba block per stage)."""
    return MUCMNet(in_channels=in_channels, num_classes=num_classes)
