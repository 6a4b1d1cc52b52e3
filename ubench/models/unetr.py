"""UNETR: a plain ViT-B/16 encoder whose intermediate tokens feed a convolutional U-Net decoder.

Paper: Hatamizadeh et al., "UNETR: Transformers for 3D Medical Image Segmentation", WACV 2022.

Configuration: U-Bench's ``UNETR`` (repo FengheTan9/U-Bench, models/Hybrid/UNETR/UNETR.py) is
MONAI's ``monai.networks.nets.UNETR(in_channels, out_channels, img_size=(256, 256),
spatial_dims=2)`` with MONAI's defaults: 16x16 patches, hidden 768, 12 layers, 12 heads, MLP 3072,
feature_size 16, instance norm, residual conv blocks, learned positional embeddings, no qkv bias.
That is what this wraps (MONAI imported in the factory; MONAI's attention blocks need ``einops``).
Fixed 256x256 input (the positional table has 16x16 entries).

Parameters at 3 in / 1 class: 87,708,913 with monai 1.2.0 (the version U-Bench's requirements.txt
pins), 87,727,345 with monai 1.6.1: newer MONAI transformer blocks also build a cross-attention
LayerNorm (2 x 768 parameters a layer, +18,432, +0.02%) that is unused without cross-attention;
those are listed in ``extra["unused_params"]``.
"""

from __future__ import annotations

import torch.nn as nn

from ubench.models.ops.monai_wrap import MonaiNet, require_packages
from ubench.models.registry import ModelInfo, register_model

require_packages("unetr", "monai", "einops")

IMG_SIZE = 256
DEPTH = 12
# newer monai (1.6.1 here, not 1.2.0) builds these even without cross-attention: never used
_UNUSED = [f"net.vit.blocks.{i}.norm_cross_attn.{p}" for i in range(DEPTH) for p in ("weight", "bias")]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="UNETR",
        ubench_id=104,
        year=2022,
        paper="UNETR: Transformers for 3D Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=87.708913,
        ref_source="U-Bench models/Hybrid/UNETR/UNETR.py (MONAI UNETR, img_size 256, spatial_dims 2) "
        "instantiated with monai==1.2.0 (U-Bench requirements.txt)",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        size_multiple=16,
        notes="wraps monai.networks.nets.UNETR (needs monai + einops); fixed 256x256 input",
        extra={"unused_params": _UNUSED},
    )
)
def unetr(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MONAI's 2D UNETR with U-Bench's configuration (MONAI defaults, img_size 256)."""
    from monai.networks.nets import UNETR

    net = UNETR(in_channels=in_channels, out_channels=num_classes, img_size=(IMG_SIZE, IMG_SIZE), spatial_dims=2)
    return MonaiNet(net)
