"""EGE-UNet, an extremely light U-Net (about 50K parameters) with deep-supervised skip bridges.

Paper: Ruan, Li, Xie, Liu, Gao, "EGE-UNet: an Efficient Group Enhanced UNet for Skin Lesion
Segmentation", MICCAI 2023.

Configuration: U-Bench's ``EGEUNet(input_channel=3, num_classes=1)`` with its defaults (repo
FengheTan9/U-Bench, models/CNN/Egeunet/Egeunet.py): widths 8, 16, 24, 32, 48, 64, the group
aggregation bridges on, and ground-truth deep supervision on (``gt_ds=True``; U-Bench's
models/model_id.json sets ``deeps_supervision: 1`` for Egeunet, so training averages the loss
over all outputs). Levels 1-3 are a 3x3 conv, levels 4-5 and the bottleneck a grouped multi-axis
Hadamard product attention (GHPA) block; each level is followed by GroupNorm(4), 2x2 max-pooling
and GELU (the bottleneck: GELU only). Decoder: GHPA for the three deepest steps, 3x3 convs for the
two shallow ones, each with GroupNorm(4), bilinear x2 (align_corners=True; none at the first
step) and GELU. After each decoder step a 1x1 conv predicts a mask; the group aggregation bridge
(GAB) fuses the previous, deeper bridged skip, the current skip and that mask in four dilated
groups (dilations 1, 2, 5, 7), and its output is added to the decoder features.

Output: a list of six logit maps, the five side masks (deepest first, upsampled bilinearly to the
input size) and the final map LAST, as U-Bench's training loop expects. U-Bench's side heads
always have one channel; here they have ``num_classes`` channels (identical at 1 class, the
benchmarked setting) so that every output has the shape of the target. Parameters at 3 in /
1 class: 53,374 (counted by instantiating U-Bench's module; the paper quotes 0.053M).
Needs H, W divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_conv_fan_out
from ubench.models.ops.light_blocks import gn_decoder, gn_encoder
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (8, 16, 24, 32, 48, 64)
BRIDGE_DILATIONS = (1, 2, 5, 7)
AXIS_PARAM_SIZE = 8  # the learned axis-weight maps are 8 long, resized to the feature size


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (ConvNeXt's channels_first variant)."""

    def __init__(self, ch: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class HadamardAttention(nn.Module):
    """GHPA: four channel quarters, three gated by learned maps over the (H,W), (C,H), (C,W) axes.

    Each learned map (8 long per axis) is resized to the feature size and passed through a small
    depthwise conv + GELU + pointwise conv before the element-wise product; the fourth quarter
    goes through a pointwise + depthwise conv. LayerNorm before and after, then a depthwise 3x3,
    GELU and a 1x1 projection to ``out_ch``.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        q, n = in_ch // 4, AXIS_PARAM_SIZE
        self.params_hw = nn.Parameter(torch.ones(1, q, n, n))
        self.conv_hw = nn.Sequential(nn.Conv2d(q, q, 3, padding=1, groups=q), nn.GELU(), nn.Conv2d(q, q, 1))
        self.params_ch = nn.Parameter(torch.ones(1, 1, q, n))
        self.conv_ch = nn.Sequential(nn.Conv1d(q, q, 3, padding=1, groups=q), nn.GELU(), nn.Conv1d(q, q, 1))
        self.params_cw = nn.Parameter(torch.ones(1, 1, q, n))
        self.conv_cw = nn.Sequential(nn.Conv1d(q, q, 3, padding=1, groups=q), nn.GELU(), nn.Conv1d(q, q, 1))
        self.local = nn.Sequential(nn.Conv2d(q, q, 1), nn.GELU(), nn.Conv2d(q, q, 3, padding=1, groups=q))
        self.norm_in = ChannelLayerNorm(in_ch)
        self.norm_out = ChannelLayerNorm(in_ch)
        self.proj = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch), nn.GELU(), nn.Conv2d(in_ch, out_ch, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, x3, x4 = self.norm_in(x).chunk(4, dim=1)
        c, h, w = x1.shape[1:]
        x1 = x1 * self.conv_hw(_resize(self.params_hw, (h, w)))
        x2 = x2 * self.conv_ch(_resize(self.params_ch, (c, h))[0]).unsqueeze(-1)  # (1, C, H, 1)
        x3 = x3 * self.conv_cw(_resize(self.params_cw, (c, w))[0]).unsqueeze(-2)  # (1, C, 1, W)
        x = torch.cat([x1, x2, x3, self.local(x4)], dim=1)
        return self.proj(self.norm_out(x))


class GroupAggregationBridge(nn.Module):
    """GAB: fuse a deeper skip, the current skip and a predicted mask in four dilated groups."""

    def __init__(self, deep_ch: int, ch: int, mask_ch: int):
        super().__init__()
        self.pre_project = nn.Conv2d(deep_ch, ch, 1)
        g = ch // 2 + mask_ch  # a quarter of each input plus the mask
        self.groups = nn.ModuleList(
            nn.Sequential(ChannelLayerNorm(g), nn.Conv2d(g, g, 3, padding=d, dilation=d, groups=g))
            for d in BRIDGE_DILATIONS
        )
        self.tail = nn.Sequential(ChannelLayerNorm(4 * g), nn.Conv2d(4 * g, ch, 1))

    def forward(self, deep: torch.Tensor, skip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        deep = _resize(self.pre_project(deep), skip.shape[-2:])
        parts = zip(self.groups, deep.chunk(4, dim=1), skip.chunk(4, dim=1))
        return self.tail(torch.cat([conv(torch.cat([d, s, mask], dim=1)) for conv, d, s in parts], dim=1))


class EGEUNet(nn.Module):
    """Five encoder levels, a GHPA bottleneck, five decoder levels with mask-guided GAB skips."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        c = widths
        self.encoder = gn_encoder(in_channels, c, HadamardAttention)
        self.bottleneck = HadamardAttention(c[4], c[5])
        self.decoder = gn_decoder(c, HadamardAttention)
        # deepest first, like the decoder: level k works at width c[4 - k]
        self.mask_heads = nn.ModuleList(nn.Conv2d(c[4 - k], num_classes, 1) for k in range(5))
        self.bridges = nn.ModuleList(
            GroupAggregationBridge(c[5 - k], c[4 - k], num_classes) for k in range(5)
        )
        self.head = nn.Conv2d(c[0], num_classes, 1)
        self.apply(init_conv_fan_out)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        deep = x = F.gelu(self.bottleneck(x))
        masks = []
        for level, mask_head, bridge in zip(self.decoder, self.mask_heads, self.bridges):
            x = level(x)
            mask = mask_head(x)
            deep = bridge(deep, skips.pop(), mask)
            x = x + deep
            masks.append(_resize(mask, size))
        out = F.interpolate(self.head(x), scale_factor=2, mode="bilinear", align_corners=True)
        return masks + [out]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="Egeunet",
        ubench_id=42,
        year=2023,
        paper="EGE-UNet: an Efficient Group Enhanced UNet for Skin Lesion Segmentation",
        deep_supervision=True,
        ref_params_m=0.053374,
        ref_source="U-Bench models/CNN/Egeunet/Egeunet.py (EGEUNet(input_channel=3, num_classes=1), "
        "bridge=True, gt_ds=True), counted by instantiating it",
        ref_input_size=256,
        size_multiple=32,
        notes="Returns the five side masks (deepest first) and the final map last. U-Bench's side "
        "heads and bridge masks have one channel whatever num_classes; ours have num_classes "
        "(the same model at 1 class).",
    )
)
def egeunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """EGE-UNet as U-Bench benchmarks it (with its ground-truth deep supervision)."""
    return EGEUNet(in_channels=in_channels, num_classes=num_classes)
