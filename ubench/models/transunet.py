"""TransUNet: a ResNet-50 + ViT-B/16 hybrid encoder with a cascaded upsampling decoder.

Paper: Chen et al., "TransUNet: Transformers Make Strong Encoders for Medical Image
Segmentation", arXiv 2102.04306 (2021).

Configuration: U-Bench's ``TransUnet`` (repo FengheTan9/U-Bench, models/Hybrid/TransUnet/), i.e.
the "R50-ViT-B_16" config at img_size 256: BiT ResNet-50 v2 trunk (StdConv + GroupNorm, stages of
3, 4, 9 bottlenecks, output stride 16, 1024 channels), a 1x1 patch embedding to 768 with learned
positions for the 16x16 token grid, 12 pre-norm ViT layers (12 heads, MLP 3072, dropout 0.1),
then the CUP decoder (512 -> 256, 128, 64, 16, three skips: 512@H/8, 256@H/4, 64@H/2) and a 3x3
head. Blocks live in ``ubench/models/ops/vit_hybrid.py``. Parameters at 3 in / 1 class:
105,322,001, counted by instantiating the U-Bench code (ours: the same). U-Bench's ``transunet()``
builds the network untrained: its config names ImageNet-21k R50+ViT-B/16 weights
(``pretrained_path``), but nothing in its build calls ``load_from``, so U-Bench's numbers come from
training from scratch, as here. U-Bench repeats a 1-channel input to 3 channels; here the root
conv takes ``in_channels`` directly.
"""

from __future__ import annotations

import torch.nn as nn

from ubench.models.ops.vit_hybrid import TransUNetCore
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="TransUnet",
        ubench_id=10,
        year=2021,
        paper="TransUNet: Transformers Make Strong Encoders for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=105.322001,
        ref_source="U-Bench models/Hybrid/TransUnet/TransUnet.py (R50-ViT-B_16, img_size 256, "
        "n_skip 3), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        size_multiple=16,
        notes="trained from scratch, as U-Bench's build does (its config names ImageNet-21k "
        "R50+ViT-B/16 weights, but transunet() never calls load_from); fixed 256x256 input "
        "(16x16 positional embeddings)",
    )
)
def transunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """R50-ViT-B/16 TransUNet at 256x256 as U-Bench benchmarks it."""
    return TransUNetCore(in_channels=in_channels, num_classes=num_classes, img_size=IMG_SIZE)
