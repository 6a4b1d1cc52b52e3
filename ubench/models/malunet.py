"""MALUNet, a very light U-Net built from dilated gated attention and external attention.

Paper: Ruan, Xiang, Xie, Liu, Gao, "MALUNet: A Multi-Attention and Light-weight UNet for Skin
Lesion Segmentation", IEEE BIBM 2022.

Configuration: U-Bench's ``malunet(input_channel, num_classes)`` (repo FengheTan9/U-Bench,
models/CNN/MALUNet/MALUNet.py), i.e. ``MALUNet`` with widths 8, 16, 24, 32, 48, 64, the
spatial-channel attention bridge on, channel attention through Linear layers ('fc'). Levels 1-3
are a 3x3 conv; levels 4-5 are external attention (EA) then dilated gated attention (DGA); each
is followed by GroupNorm(4), 2x2 max-pooling and GELU. The bottleneck EA + DGA (48 -> 64) is
followed by GELU only. The five skips go through the bridge (spatial attention from one shared
dilated 7x7 conv, then channel attention from the pooled channels of all five levels). Decoder:
DGA + EA for the three deepest steps, 3x3 convs for the two shallow ones, each followed by
GroupNorm(4), bilinear x2 upsampling (align_corners=True; none at the first step) and GELU,
then the skip is added; a 1x1 conv and a final bilinear x2 give the logits.

External attention: U-Bench sets its second memory unit to the transpose of the first by sharing
storage, which ``model.to(device)`` undoes, so on a GPU the two are independent parameters that
start as transposes of each other; that is what we build. Parameters at 3 in / 1 class: 177,943
(counted by instantiating U-Bench's module; the paper quotes 0.175M). Needs H, W divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_conv_fan_out
from ubench.models.ops.light_blocks import gn_decoder, gn_encoder
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (8, 16, 24, 32, 48, 64)
DILATIONS = (7, 5, 2, 1)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise k x k conv, GroupNorm(4), pointwise conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int):
        super().__init__(
            nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size // 2, groups=in_ch),
            nn.GroupNorm(4, in_ch),
            nn.Conv2d(in_ch, out_ch, 1),
        )


class GatedAttentionUnit(nn.Module):
    """A sigmoid gate (3x3) times a GELU value (5x5), projected, plus a 1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.gate = DepthwiseSeparable(in_ch, in_ch, 3)
        self.value = DepthwiseSeparable(in_ch, in_ch, 5)
        self.proj = DepthwiseSeparable(in_ch, out_ch, 3)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.sigmoid(self.gate(x)) * F.gelu(self.value(x))
        return F.gelu(self.proj(mixed)) + self.shortcut(x)


class DilatedGatedAttention(nn.Module):
    """Each channel quarter gets a depthwise 3x3 conv of its own dilation (7, 5, 2, 1), then GAU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        q = in_ch // 4
        self.branches = nn.ModuleList(nn.Conv2d(q, q, 3, padding=d, dilation=d, groups=q) for d in DILATIONS)
        self.norm = nn.GroupNorm(4, in_ch)
        self.mix = nn.Conv2d(in_ch, in_ch, 1)
        self.gau = GatedAttentionUnit(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [conv(p) for conv, p in zip(self.branches, x.chunk(4, dim=1))]
        x = F.gelu(self.mix(self.norm(torch.cat(parts, dim=1))))
        return self.gau(x)


class ExternalAttention(nn.Module):
    """Attention against 4C learned memory units (double-normalised), residual, then GELU."""

    def __init__(self, ch: int):
        super().__init__()
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.memory_key = nn.Conv1d(ch, 4 * ch, 1, bias=False)
        self.memory_value = nn.Conv1d(4 * ch, ch, 1, bias=False)
        self.proj_out = nn.Conv2d(ch, ch, 1, bias=False)
        self.norm = nn.GroupNorm(4, ch)

    def tie_memory_init(self) -> None:
        """Start the key memory as the transpose of the value memory (the reference's init)."""
        with torch.no_grad():
            self.memory_key.weight.copy_(self.memory_value.weight.permute(1, 0, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        attn = self.memory_key(self.proj_in(x).reshape(b, c, h * w)).softmax(dim=-1)
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        out = self.memory_value(attn).reshape(b, c, h, w)
        return F.gelu(self.norm(self.proj_out(out)) + x)


class SpatialAttentionBridge(nn.Module):
    """One dilated 7x7 conv on [channel mean, channel max] gives every level's spatial gate."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=9, dilation=3)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        gates = []
        for t in feats:
            pooled = torch.cat([t.mean(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)], dim=1)
            gates.append(torch.sigmoid(self.conv(pooled)))
        return gates


class ChannelAttentionBridge(nn.Module):
    """Channel gates for every level from the pooled channels of all levels together."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        total = sum(widths)
        self.mix = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.heads = nn.ModuleList(nn.Linear(total, c) for c in widths)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        pooled = torch.cat([t.mean(dim=(2, 3)) for t in feats], dim=1)  # (B, sum C)
        mixed = self.mix(pooled.unsqueeze(1))  # (B, 1, sum C)
        return [torch.sigmoid(head(mixed)).transpose(1, 2).unsqueeze(-1) for head in self.heads]


class SpatialChannelBridge(nn.Module):
    """Spatial then channel attention on the skips, each with its residual (MALUNet's SC bridge)."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        self.channel = ChannelAttentionBridge(widths)
        self.spatial = SpatialAttentionBridge()

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        spatial = [g * t for g, t in zip(self.spatial(feats), feats)]
        summed = [s + t for s, t in zip(spatial, feats)]
        return [g * u + s for g, u, s in zip(self.channel(summed), summed, spatial)]


def _down_block(cin: int, cout: int) -> nn.Sequential:
    """Encoder attention block: external attention, then dilated gated attention (widens)."""
    return nn.Sequential(ExternalAttention(cin), DilatedGatedAttention(cin, cout))


def _up_block(cin: int, cout: int) -> nn.Sequential:
    """Decoder attention block: dilated gated attention (narrows), then external attention."""
    return nn.Sequential(DilatedGatedAttention(cin, cout), ExternalAttention(cout))


class MALUNet(nn.Module):
    """Five encoder levels, a bottleneck, the SC bridge on the skips, five decoder levels."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        c = widths
        self.encoder = gn_encoder(in_channels, c, _down_block)
        self.bottleneck = _down_block(c[4], c[5])
        self.bridge = SpatialChannelBridge(tuple(c[:5]))
        self.decoder = gn_decoder(c, _up_block)
        self.head = nn.Conv2d(c[0], num_classes, 1)
        self.apply(init_conv_fan_out)
        for m in self.modules():
            if isinstance(m, ExternalAttention):
                m.tie_memory_init()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        x = F.gelu(self.bottleneck(x))
        skips = self.bridge(skips)
        for level in self.decoder:
            x = level(x) + skips.pop()
        return F.interpolate(self.head(x), scale_factor=2, mode="bilinear", align_corners=True)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MALUNet",
        ubench_id=30,
        year=2022,
        paper="MALUNet: A Multi-Attention and Light-weight UNet for Skin Lesion Segmentation",
        deep_supervision=False,
        ref_params_m=0.177943,
        ref_source="U-Bench models/CNN/MALUNet/MALUNet.py (malunet(3, 1): widths 8..64, SC bridge, "
        "split_att='fc'), counted by instantiating it",
        ref_input_size=256,
        size_multiple=32,
        notes="The external-attention memories are independent parameters initialised as "
        "transposes of each other (U-Bench's shared storage does not survive .to(device)).",
    )
)
def malunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MALUNet as U-Bench benchmarks it."""
    return MALUNet(in_channels=in_channels, num_classes=num_classes)
