"""Mamba-UNet: Swin-Unet's layout with VMamba's visual state-space (VSS) blocks.

Paper: Wang, Zheng, Ma, Li, Dong, Chen, Yu, Zhang, Li, Ye, "Mamba-UNet: UNet-Like Pure Visual
Mamba for Medical Image Segmentation", arXiv 2402.05079 (2024).

Configuration: U-Bench's ``MambaUnet`` (repo FengheTan9/U-Bench, models/Mamba/MambaUnet/
MambaUnet.py and mamba_sys.py, ``VSSM(patch_size=4, depths=[2, 2, 2, 2], drop_path_rate=0.1)``,
widths 96, 192, 384, 768, d_state 16). Facts read from those files:

* 4x4 patch embedding (conv + LayerNorm) to 96 channels at 1/4;
* encoder stages of two VSS blocks (LayerNorm + SS2D, no MLP), each followed by patch merging
  except the last; the input of every stage is kept as a skip; LayerNorm on the bottleneck;
* decoder: patch expand (Linear C -> 2C, to 2x2 pixels of C/2, LayerNorm) from the bottleneck,
  then per stage: concatenate [upsampled, skip], Linear 2C -> C, two VSS blocks, patch expand
  (none after the last); LayerNorm, a x4 final expand (Linear C -> 16C + LayerNorm) and a 1x1
  conv without bias to the classes;
* stochastic depth 0..0.1 linearly over the 8 encoder blocks; the decoder stage of width C reuses
  the rates of the encoder stage of width C.

U-Bench initialises the encoder from VMamba-S ImageNet weights; nothing is downloaded here, the
model is built untrained (VMamba's init: trunc-normal Linear weights, std 0.02).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.mamba_extra import PatchExpandX4, init_vmamba_linear
from ubench.models.ops.vss import PatchEmbed2D, PatchExpand2D, PatchMerging2D, VSSBlock
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (96, 192, 384, 768)
DEPTHS = (2, 2, 2, 2)
DROP_PATH = 0.1
D_STATE = 16


def _blocks(dim: int, rates: list[float]) -> nn.Sequential:
    """VSS blocks with the plain LayerNorm (eps 1e-5) that Mamba-UNet's stages pass in."""
    blocks = (VSSBlock(dim, drop_path=r, norm_layer=nn.LayerNorm, d_state=D_STATE) for r in rates)
    return nn.Sequential(*blocks)


class MambaUNet(nn.Module):
    """VSS encoder, VSS decoder with patch expanding, skips fused by concat + Linear."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS, depths=DEPTHS):
        super().__init__()
        total = sum(depths)
        rates = [DROP_PATH * i / (total - 1) for i in range(total)]
        stage_rates = [rates[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(len(depths))]
        last = len(widths) - 1
        self.embed = PatchEmbed2D(4, in_channels, widths[0], norm_layer=nn.LayerNorm)
        self.enc = nn.ModuleList(_blocks(widths[i], stage_rates[i]) for i in range(len(widths)))
        self.merge = nn.ModuleList(PatchMerging2D(widths[i]) for i in range(last))
        self.bottleneck_norm = nn.LayerNorm(widths[-1])
        # Swin-Unet's expand of a C-wide map is VM-UNet's PatchExpand2D(C/2): Linear C -> 2C, shuffle
        self.first_expand = PatchExpand2D(widths[-1] // 2)
        self.fuse = nn.ModuleList(nn.Linear(2 * widths[i], widths[i]) for i in reversed(range(last)))
        self.dec = nn.ModuleList(_blocks(widths[i], stage_rates[i]) for i in reversed(range(last)))
        self.expand = nn.ModuleList(PatchExpand2D(widths[i] // 2) for i in reversed(range(1, last)))
        self.out_norm = nn.LayerNorm(widths[0])
        self.final_expand = PatchExpandX4(widths[0])
        self.head = nn.Conv2d(widths[0], num_classes, 1, bias=False)
        self.apply(init_vmamba_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)  # (B, H/4, W/4, C) channels-last from here on
        skips = []
        for i, stage in enumerate(self.enc):
            skips.append(x)
            x = stage(x)
            if i < len(self.merge):
                x = self.merge[i](x)
        x = self.first_expand(self.bottleneck_norm(x))
        for i, (fuse, stage) in enumerate(zip(self.fuse, self.dec)):
            x = stage(fuse(torch.cat([x, skips[-2 - i]], dim=-1)))
            if i < len(self.expand):
                x = self.expand[i](x)
        x = self.final_expand(self.out_norm(x))
        return self.head(x.permute(0, 3, 1, 2))


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="MambaUnet",
        ubench_id=90,
        year=2024,
        paper="Mamba-UNet: UNet-Like Pure Visual Mamba for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=19.121376,
        ref_source="U-Bench models/Mamba/MambaUnet/MambaUnet.py + mamba_sys.py (MambaUnet("
        "input_channel=3, num_classes=1)), instantiated and counted",
        ref_input_size=256,
        size_multiple=32,
        notes="U-Bench loads VMamba-S ImageNet weights into the encoder; built untrained here.",
    )
)
def mamba_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Mamba-UNet as U-Bench benchmarks it (widths 96..768, two VSS blocks per stage)."""
    return MambaUNet(in_channels=in_channels, num_classes=num_classes)
