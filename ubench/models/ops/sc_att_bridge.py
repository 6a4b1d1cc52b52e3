"""Spatial-channel attention bridge and init shared by UltraLight VM-UNet and H-vmunet.

Why: both models (U-Bench models/Mamba/UltraLight_VM_UNet and models/Mamba/H_vmunet, same
code in each) gate their five skip connections with the same SC_Att_Bridge (split_att='fc') and
initialise weights the same way; written once here from those facts.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


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


def ultralight_init_(module: nn.Module) -> None:
    """UltraLight VM-UNet's init (also H-vmunet's): trunc-normal Linear, He fan-out convs."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv1d):
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.out_channels)))
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
