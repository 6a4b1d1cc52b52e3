"""CASCADE's decoder blocks: attention-gated skips, convolutional attention modules, four heads.

Rahman & Marculescu, "Medical Image Segmentation via Cascaded Attention Decoding", WACV 2023. The
same decoder, with one option or another, is the decoder of MERIT (Rahman & Marculescu, MIDL
2023): U-Bench ships it three times (models/Hybrid/CASCADE/decoders.py ``CASCADE``,
models/Hybrid/MERIT/decoders.py ``CASCADE_Cat`` and ``CASCADE_Add``, and again in
models/Hybrid/G_CASCADE/decoders.py, whose graph decoder reuses only the spatial gate and the grey
stem). Written here once, from those files' shapes and order of operations (read, not copied):

- ``CascadeDecoder(widths, aggregation)``: the deepest encoder map passes a 1x1 conv and a
  convolutional attention module (CAM: channel gate, spatial gate, double 3x3 conv); then, per
  finer level, an up-convolution (nearest x2, 3x3 conv + BN + ReLU) to that level's width, an
  additive attention gate on the encoder skip driven by the upsampled map, the gated skip and the
  upsampled map merged (``"cat"``: concatenated [gated skip, upsampled], CASCADE / CASCADE_Cat;
  ``"add"``: summed, CASCADE_Add), and a CAM whose double conv brings the merge back to the level
  width. One spatial gate (98 weights) serves all four CAMs, as in the references.
- ``gate_widths``: the gates' inner widths. The references use the next level's width for the
  first two and half the last level's width for the third (CASCADE hard-codes 32, which is half
  of its last width, 64): the default.
- ``CascadeHeads``: a 1x1 conv (bias) per decoder map, each logit map upsampled bilinearly
  (align_corners=False) by the map's stride.
- ``grey_stem()``: the learned 1x1 conv + BN + ReLU lifting a 1-channel image to 3 channels that
  all three references build (and use only for 1-channel inputs).

The double conv and the up-convolution are the U-Net blocks of ops/conv_blocks.py (same layers,
same order); everything keeps PyTorch's default initialisation, as the references do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import DoubleConv, UpConv

AGGREGATIONS = ("cat", "add")


class ChannelGate(nn.Module):
    """CBAM channel gate: sigmoid of a shared bias-free MLP (1x1 convs, C -> C/ratio -> C, ReLU)
    applied to the average- and the max-pooled map, summed; returns the (B, C, 1, 1) weights."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // ratio, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // ratio, channels, 1, bias=False)

    def _mlp(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._mlp(F.adaptive_avg_pool2d(x, 1)) + self._mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialGate(nn.Module):
    """CBAM spatial gate: sigmoid of a bias-free k x k conv over the channel mean and channel max;
    returns the (B, 1, H, W) weights."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size not in (3, 7):
            raise ValueError(f"spatial gate kernel must be 3 or 7, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class AttentionGate(nn.Module):
    """Additive attention gate (Attention U-Net): the skip ``x`` times
    sigmoid(BN(1x1(relu(BN(1x1 g) + BN(1x1 x))))), a one-channel map; all convs with bias."""

    def __init__(self, g_ch: int, x_ch: int, inner: int):
        super().__init__()
        self.from_g = nn.Sequential(nn.Conv2d(g_ch, inner, 1), nn.BatchNorm2d(inner))
        self.from_x = nn.Sequential(nn.Conv2d(x_ch, inner, 1), nn.BatchNorm2d(inner))
        self.psi = nn.Sequential(nn.Conv2d(inner, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.psi(F.relu(self.from_g(g) + self.from_x(x)))


class AttentionConv(nn.Module):
    """CASCADE's convolutional attention module (CAM): channel gate, then the spatial gate it is
    handed (shared by the decoder's CAMs), each multiplied in, then a double 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.channel = ChannelGate(in_ch)
        self.conv = DoubleConv(in_ch, out_ch)

    def forward(self, x: torch.Tensor, spatial: SpatialGate) -> torch.Tensor:
        x = self.channel(x) * x
        return self.conv(spatial(x) * x)


class CascadeStep(nn.Module):
    """One decoder level: up-convolve the coarser map to ``width``, gate the encoder skip with it,
    merge the two (concatenated or summed), refine with a CAM back to ``width``."""

    def __init__(self, in_ch: int, width: int, gate_inner: int, aggregation: str):
        super().__init__()
        self.concat = aggregation == "cat"
        self.up = UpConv(in_ch, width)
        self.gate = AttentionGate(width, width, gate_inner)
        self.cam = AttentionConv(2 * width if self.concat else width, width)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, spatial: SpatialGate) -> torch.Tensor:
        up = self.up(x)
        gated = self.gate(up, skip)
        merged = torch.cat([gated, up], dim=1) if self.concat else up + gated
        return self.cam(merged, spatial)


class CascadeDecoder(nn.Module):
    """The cascaded attention decoder over four encoder maps.

    ``widths``: the encoder widths, deepest first (CASCADE on PVTv2-B2: 512, 320, 128, 64);
    ``aggregation``: ``"cat"`` (CASCADE, MERIT's CASCADE_Cat) or ``"add"`` (CASCADE_Add);
    ``gate_widths``: the inner widths of the three attention gates, coarsest first (default:
    ``widths[2], widths[3], widths[3] // 2``). ``forward`` takes the encoder maps shallowest first
    (as encoders return them) and returns the four decoder maps deepest first, each with the
    encoder's width at that level.
    """

    def __init__(self, widths: Sequence[int] = (512, 320, 128, 64), aggregation: str = "cat",
                 gate_widths: Sequence[int] | None = None):
        super().__init__()
        widths = tuple(widths)
        if len(widths) != 4:
            raise ValueError(f"the cascaded decoder takes four encoder widths, got {widths}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if gate_widths is None:
            gate_widths = (widths[2], widths[3], widths[3] // 2)
        self.widths = widths
        self.entry = nn.Conv2d(widths[0], widths[0], 1)
        self.bottom = AttentionConv(widths[0], widths[0])
        self.steps = nn.ModuleList(
            CascadeStep(widths[i - 1], widths[i], gate_widths[i - 1], aggregation) for i in range(1, 4)
        )
        self.spatial = SpatialGate()

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        *skips, deepest = feats
        x = self.bottom(self.entry(deepest), self.spatial)
        outs = [x]
        for step, skip in zip(self.steps, reversed(skips)):
            x = step(x, skip, self.spatial)
            outs.append(x)
        return outs


class CascadeHeads(nn.ModuleList):
    """A 1x1 conv (bias) per decoder map, deepest first; ``forward`` upsamples each logit map
    bilinearly (align_corners=False) by its stride, ``strides`` deepest first."""

    def __init__(self, widths: Sequence[int], num_classes: int):
        super().__init__(nn.Conv2d(w, num_classes, 1) for w in widths)

    def logits(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [head(m) for head, m in zip(self, maps)]

    def forward(self, maps: Sequence[torch.Tensor], strides: Sequence[int] = (32, 16, 8, 4)) -> list[torch.Tensor]:
        return [F.interpolate(p, scale_factor=s, mode="bilinear") for p, s in zip(self.logits(maps), strides)]


def grey_stem() -> nn.Sequential:
    """1x1 conv (bias) + BN + ReLU from one channel to three: how CASCADE, MERIT and G-CASCADE feed
    a grey image to their ImageNet backbones."""
    return nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(inplace=True))
