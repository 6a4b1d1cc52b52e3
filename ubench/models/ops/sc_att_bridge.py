"""Spatial-channel attention bridge, init and U-Net skeleton shared by UltraLight VM-UNet and
H-vmunet.

Why: both models (U-Bench models/Mamba/UltraLight_VM_UNet and models/Mamba/H_vmunet, same
code in each) gate their five skip connections with the same SC_Att_Bridge (split_att='fc'),
run the same six-level encoder/decoder around them (``BridgedUNet``: only the stages differ) and
initialise weights the same way; written once here from those facts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_conv_fan_out


class ChannelAttBridge(nn.Module):
    """Channel gates for all skips from one shared descriptor (pooled stages, 1D conv, FCs)."""

    def __init__(self, widths):
        super().__init__()
        total = sum(widths) - widths[-1]
        self.get_all_att = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.att = nn.ModuleList(nn.Linear(total, c) for c in widths[:-1])

    def forward(self, ts):
        desc = torch.cat([t.mean((2, 3)) for t in ts], dim=1)[:, None]  # (B, 1, sum C)
        desc = self.get_all_att(desc)
        return [torch.sigmoid(fc(desc)).transpose(1, 2)[..., None] for fc in self.att]


class SpatialAttBridge(nn.Module):
    """One dilated 7x7 conv (shared by all skips) on channel mean and max, sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=9, dilation=3)

    def forward(self, ts):
        return [torch.sigmoid(self.conv(torch.cat([t.mean(1, keepdim=True),
                                                   t.amax(1, keepdim=True)], dim=1)))
                for t in ts]


class SCAttBridge(nn.Module):
    """Spatial gate with residual, then channel gate, plus the spatially gated map."""

    def __init__(self, widths):
        super().__init__()
        self.catt = ChannelAttBridge(widths)
        self.satt = SpatialAttBridge()

    def forward(self, ts):
        gated = [a * t for a, t in zip(self.satt(ts), ts)]
        summed = [g + t for g, t in zip(gated, ts)]
        return [c * s + g for c, s, g in zip(self.catt(summed), summed, gated)]


class BridgedUNet(nn.Module):
    """Six encoder stages and five decoder stages around an SC attention bridge.

    The first ``n_conv`` encoder stages (and their mirrors, the last decoder stages) are 3x3
    convs; the deeper ones are ``deep(in_ch, out_ch, level)`` with ``level`` counted from the
    shallowest deep stage (PVM layers in UltraLight VM-UNet, H_VSS stages in H-vmunet). Stages are
    built in the references' order (encoder, bridge, decoder), so every weight is drawn as there.
    After each of the first five encoder stages: GroupNorm(4), 2x max-pool, GELU (the pooled maps
    are the skips, gated by the bridge); the decoder adds them back after GroupNorm, bilinear x2
    (align_corners=True) and GELU; a 1x1 conv and a last x2 upsampling give the logits. Total
    stride 32.
    """

    def __init__(self, in_channels: int, num_classes: int, widths, n_conv: int,
                 deep: Callable[[int, int, int], nn.Module]):
        super().__init__()
        c = widths
        ins = (in_channels,) + tuple(c[:5])

        def stage(cin: int, cout: int, k: int) -> nn.Module:  # k: encoder index of this width step
            return nn.Conv2d(cin, cout, 3, padding=1) if k < n_conv else deep(cin, cout, k - n_conv)

        self.encoder = nn.ModuleList(stage(ins[k], c[k], k) for k in range(6))
        self.ebn = nn.ModuleList(nn.GroupNorm(4, c[i]) for i in range(5))
        self.scab = SCAttBridge(c)
        self.decoder = nn.ModuleList(stage(c[k], c[k - 1], k) for k in range(5, 0, -1))
        self.dbn = nn.ModuleList(nn.GroupNorm(4, c[i]) for i in (4, 3, 2, 1, 0))
        self.final = nn.Conv2d(c[0], num_classes, 1)
        self.apply(init_conv_fan_out)  # the references' init (Linear, Conv1d, Conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc, norm in zip(self.encoder[:5], self.ebn):
            x = F.gelu(F.max_pool2d(norm(enc(x)), 2))
            skips.append(x)
        skips = self.scab(skips)
        x = F.gelu(self.encoder[5](x))
        x = F.gelu(self.dbn[0](self.decoder[0](x))) + skips[4]
        for k in range(1, 5):
            y = self.dbn[k](self.decoder[k](x))
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
            x = F.gelu(y) + skips[4 - k]
        return F.interpolate(self.final(x), scale_factor=2, mode="bilinear", align_corners=True)
