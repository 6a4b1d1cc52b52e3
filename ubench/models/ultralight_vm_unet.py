"""UltraLight VM-UNet: a 0.05M-parameter U-Net whose deep stages are parallel Mamba layers.

Paper: Wu, Li, Ruan, Zhang, "UltraLight VM-UNet: Parallel Vision Mamba Significantly Reduces
Parameters for Skin Lesion Segmentation", arXiv 2403.20035, 2024.

Configuration: U-Bench's ``UltraLight_VM_UNet`` (repo FengheTan9/U-Bench,
models/Mamba/UltraLight_VM_UNet/UltraLight_VM_UNet.py, ``ultralight_vm_unet(num_classes,
input_channel=3)``): widths 8, 16, 24, 32, 48, 64; encoder stages 1-3 a 3x3 conv, stages 4-6 a
PVM layer (LayerNorm, the channels split in four groups that all go through ONE shared Mamba
(d_state 16, d_conv 4, expand 2) plus a learned-scale skip, LayerNorm again, linear projection);
GroupNorm(4) + 2x max-pool + GELU after stages 1-5; the skips pass a spatial-then-channel
attention bridge (SC_Att_Bridge, split_att='fc'); the decoder mirrors the encoder with bilinear
(align_corners=True) 2x upsampling and additive skips; a 1x1 conv and a final 2x upsampling.
Initialisation as U-Bench's: truncated-normal(0.02) Linear weights with zero biases (this also
resets each Mamba's dt_proj bias to 0), He-normal (fan-out) convs, zero conv2d biases.
Parameters (3 in, 1 class): 49,457 (counted layer by layer; the paper reports 0.049M).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.mamba import Mamba
from ubench.models.ops.sc_att_bridge import BridgedUNet
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (8, 16, 24, 32, 48, 64)


class PVMLayer(nn.Module):
    """Parallel vision Mamba: four channel groups through one shared Mamba, then a projection."""

    def __init__(self, input_dim: int, output_dim: int, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.mamba = Mamba(input_dim // 4, d_state=d_state, d_conv=d_conv, expand=expand)
        self.proj = nn.Linear(input_dim, output_dim)
        self.skip_scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x.float().flatten(2).transpose(1, 2))  # (B, L, C)
        groups = torch.cat(tokens.chunk(4, dim=2), dim=0)  # the 4 groups as 4x the batch
        mixed = self.mamba(groups) + self.skip_scale * groups
        mixed = torch.cat(mixed.chunk(4, dim=0), dim=2)  # back to (B, L, C), group order kept
        out = self.proj(self.norm(mixed))
        return out.transpose(1, 2).reshape(b, -1, h, w)


class UltraLightVMUNet(BridgedUNet):
    """Conv stages at full resolution (three), PVM layers deep, SC attention bridge on the skips."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__(in_channels, num_classes, widths, n_conv=3,
                         deep=lambda cin, cout, level: PVMLayer(cin, cout))


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="UltraLight_VM_UNet",
        ubench_id=94,
        year=2024,
        paper="UltraLight VM-UNet: Parallel Vision Mamba Significantly Reduces Parameters for "
        "Skin Lesion Segmentation",
        deep_supervision=False,
        ref_params_m=0.049457,
        ref_source="U-Bench models/Mamba/UltraLight_VM_UNet/UltraLight_VM_UNet.py "
        "(ultralight_vm_unet(1, input_channel=3)), counted layer by layer; paper: 0.049M",
        ref_input_size=256,
        size_multiple=32,
    )
)
def ultralight_vm_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UltraLight VM-UNet as U-Bench benchmarks it (widths 8..64, SC attention bridge)."""
    return UltraLightVMUNet(in_channels=in_channels, num_classes=num_classes)
