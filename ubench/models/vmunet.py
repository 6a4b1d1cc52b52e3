"""VM-UNet: a U-shaped network built only from VMamba's visual state-space (VSS) blocks.

Paper: Ruan, Li, Xiang, "VM-UNet: Vision Mamba UNet for Medical Image Segmentation",
arXiv 2402.02491, 2024.

Configuration: U-Bench's ``VMUNet`` (repo FengheTan9/U-Bench, models/Mamba/VMUNet/VMUNet.py and
vmamba.py, built by ``vmunet(num_classes, input_channel=3)``): 4x4 patch embedding to 96 channels
(+ LayerNorm); encoder stages of depths 2, 2, 9, 2 at widths 96, 192, 384, 768 with patch merging
between them; decoder stages of depths 2, 9, 2, 2 at widths 768, 384, 192, 96, each after the
first preceded by a 2x patch expansion of (decoder state + encoder skip, added); a final 4x patch
expansion to 24 channels and a 1x1 conv. d_state 16, drop-path 0.2 (linear over depth, decoder
reversed). SS2D/VSSBlock are in ``ubench.models.ops.vss``. U-Bench loads VMamba-S ImageNet
weights (vmamba_small_e238_ema.pth); nothing is downloaded here, so this is the same network
untrained. Parameters (3 in, 1 class): 44,273,833 (the VM-UNet paper reports 44.27M), counted
from U-Bench's vmamba.py layer by layer; the count is independent of the input size.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.vss import FinalPatchExpand2D, VSSEncoder, VSSStage, vmamba_init_
from ubench.models.registry import ModelInfo, register_model

DIMS = (96, 192, 384, 768)
DEPTHS = (2, 2, 9, 2)
DEPTHS_DECODER = (2, 9, 2, 2)
DROP_PATH = 0.2


class VMUNet(nn.Module):
    """VSS encoder, VSS decoder with additive skips, 4x patch expansion head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, dims=DIMS, depths=DEPTHS,
                 depths_decoder=DEPTHS_DECODER, drop_path_rate: float = DROP_PATH,
                 d_state: int = 16):
        super().__init__()
        self.encoder = VSSEncoder(in_channels, dims, depths, drop_path_rate, d_state)
        up_dims = dims[::-1]
        rates = torch.linspace(0, drop_path_rate, sum(depths_decoder)).tolist()[::-1]
        self.layers_up = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(up_dims, depths_decoder)):
            first = sum(depths_decoder[:i])
            self.layers_up.append(VSSStage(dim, depth, rates[first:first + depth], d_state,
                                           upsample=i > 0))
        self.final_up = FinalPatchExpand2D(up_dims[-1], dim_scale=4)
        self.final_conv = nn.Conv2d(up_dims[-1] // 4, num_classes, 1)
        vmamba_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.encoder(x)
        for i, layer in enumerate(self.layers_up):
            x = layer(x if i == 0 else x + skips[-i])
        x = self.final_up(x).permute(0, 3, 1, 2)
        return self.final_conv(x)


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="VMUNet",
        ubench_id=95,
        year=2024,
        paper="VM-UNet: Vision Mamba UNet for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=44.273833,
        ref_source="U-Bench models/Mamba/VMUNet/VMUNet.py + vmamba.py "
        "(vmunet(1, input_channel=3)), "
        "counted layer by layer; the paper reports 44.27M",
        ref_input_size=256,
        size_multiple=32,
        notes="untrained: U-Bench initialises the encoder and decoder from VMamba-S ImageNet "
        "weights, which are not downloaded here",
    )
)
def vmunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """VM-UNet as U-Bench benchmarks it (depths 2-2-9-2 / 2-9-2-2, d_state 16, drop-path 0.2)."""
    return VMUNet(in_channels=in_channels, num_classes=num_classes)
