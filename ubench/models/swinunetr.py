"""Swin UNETR: a Swin Transformer encoder with a convolutional U-Net decoder.

Paper: Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic Segmentation of Brain
Tumors in MRI Images", BrainLes (MICCAI workshop) 2021.

Configuration: U-Bench's ``SwinUNETR`` (repo FengheTan9/U-Bench, models/Hybrid/SwinUNETR/
SwinUNETR.py) is MONAI's ``monai.networks.nets.SwinUNETR(in_channels, out_channels,
img_size=(256, 256), spatial_dims=2)`` with MONAI's defaults: patch size 2, feature_size 24,
depths (2, 2, 2, 2), heads (3, 6, 12, 24), window 7, qkv bias, instance norm, v1 blocks. MONAI
>= 1.5 dropped the ``img_size`` argument (it only served an input check), so it is not passed
here. Windows are relative-position based, so any H, W divisible by 32 (2^5) works.

Parameters at 3 in / 1 class: 6,302,875 with monai 1.2.0 (U-Bench's pinned version) and with
monai 1.6.1 alike. MONAI is imported in the factory; its blocks need ``einops``.
"""

from __future__ import annotations

import torch.nn as nn

from ubench.models.ops.monai_wrap import MonaiNet, require_packages
from ubench.models.registry import ModelInfo, register_model

require_packages("swinunetr", "monai", "einops")

STRIDE = 32


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="SwinUNETR",
        ubench_id=103,
        year=2021,
        paper="Swin UNETR: Swin Transformers for Semantic Segmentation of Brain Tumors in MRI Images",
        deep_supervision=False,
        ref_params_m=6.302875,
        ref_source="U-Bench models/Hybrid/SwinUNETR/SwinUNETR.py (MONAI SwinUNETR, img_size 256, "
        "spatial_dims 2) instantiated with monai==1.2.0 (U-Bench requirements.txt)",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="wraps monai.networks.nets.SwinUNETR (needs monai + einops)",
    )
)
def swinunetr(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MONAI's 2D Swin UNETR with U-Bench's configuration (MONAI defaults)."""
    from monai.networks.nets import SwinUNETR

    net = SwinUNETR(in_channels=in_channels, out_channels=num_classes, spatial_dims=2)
    return MonaiNet(net)
