"""Swin-Unet: a pure-Transformer U-Net built from Swin blocks.

Paper: Cao et al., "Swin-Unet: Unet-like Pure Transformer for Medical Image Segmentation", ECCV
Workshops 2022.

Configuration: U-Bench's ``swinunet`` (repo FengheTan9/U-Bench, models/Transformer/SwinUnet/
SwinUnet.py -> vision_transformer.py -> swin_transformer_unet_skip_expand_decoder_sys.py), which
is Swin-T sized: 224x224 input, 4x4 patches embedded to 96 channels (+ LayerNorm), four encoder
stages of depths (2, 2, 6, 2) with 3, 6, 12, 24 heads, window 7, MLP ratio 4, qkv bias, stochastic
depth rising linearly to 0.1, patch merging between stages and a LayerNorm after the bottleneck.
The decoder mirrors it: patch expanding x2, then at each level a concatenation with the encoder
stage's input, a linear 2C -> C and Swin blocks of the same depth as the matching encoder stage;
a final x4 patch expanding back to 224x224 at 96 channels and a bias-free 1x1 conv give the
logits. The shift masks and window partition are tied to the 224 grid (56, 28, 14, 7 tokens a
side), so this model accepts 224x224 only. U-Bench's wrapper hard-codes 3 input channels; here
``in_channels`` reaches the patch embedding. U-Bench loads ImageNet Swin-T weights; nothing is
downloaded here, the network starts untrained. Parameters at 3 in / 1 class: 41,380,068, counted
layer by layer from U-Bench's code (its decoder reuses the encoder depths, so the 384-channel
decoder level has 6 blocks; the official Swin-Unet yaml with depths 2-2-2-2 gives ~27.2M).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.swin import PatchExpand, PatchMerging, SwinStage, init_transformer_weights
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 224
PATCH = 4
EMBED_DIM = 96
DEPTHS = (2, 2, 6, 2)
HEADS = (3, 6, 12, 24)
WINDOW = 7
DROP_PATH = 0.1


class SwinUnet(nn.Module):
    """Swin encoder, symmetric Swin decoder with patch expanding, skips joined by a linear layer."""

    def __init__(self, in_channels=3, num_classes=1, img_size=IMG_SIZE):
        super().__init__()
        self.img_size = img_size
        levels = len(DEPTHS)
        grid = img_size // PATCH
        dims = [EMBED_DIM * 2**i for i in range(levels)]
        res = [(grid // 2**i,) * 2 for i in range(levels)]
        rates = torch.linspace(0, DROP_PATH, sum(DEPTHS)).tolist()
        slices = [rates[sum(DEPTHS[:i]) : sum(DEPTHS[: i + 1])] for i in range(levels)]

        self.embed = nn.Conv2d(in_channels, EMBED_DIM, PATCH, stride=PATCH)
        self.embed_norm = nn.LayerNorm(EMBED_DIM)
        self.stages = nn.ModuleList(
            SwinStage(dims[i], res[i], DEPTHS[i], HEADS[i], WINDOW, slices[i]) for i in range(levels)
        )
        self.merges = nn.ModuleList(PatchMerging(dims[i], res[i]) for i in range(levels - 1))
        self.norm = nn.LayerNorm(dims[-1])

        # decoder levels, deepest first: expand from level i+1 into level i, fuse, Swin blocks
        self.expands = nn.ModuleList(PatchExpand(dims[i + 1], res[i + 1]) for i in reversed(range(levels - 1)))
        self.fuses = nn.ModuleList(nn.Linear(2 * dims[i], dims[i]) for i in reversed(range(levels - 1)))
        self.up_stages = nn.ModuleList(
            SwinStage(dims[i], res[i], DEPTHS[i], HEADS[i], WINDOW, slices[i])
            for i in reversed(range(levels - 1))
        )
        self.norm_up = nn.LayerNorm(EMBED_DIM)
        self.final_expand = PatchExpand(EMBED_DIM, res[0], scale=PATCH, out_dim=EMBED_DIM)
        self.head = nn.Conv2d(EMBED_DIM, num_classes, 1, bias=False)
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.embed_norm(self.embed(x).flatten(2).transpose(1, 2))
        skips = []
        for i, stage in enumerate(self.stages):
            skips.append(x)  # the reference skips each stage's input, not its output
            x = stage(x)
            if i < len(self.merges):
                x = self.merges[i](x)
        x = self.norm(x)
        for expand, fuse, stage, skip in zip(self.expands, self.fuses, self.up_stages, reversed(skips[:-1])):
            x = stage(fuse(torch.cat([expand(x), skip], dim=-1)))
        x = self.final_expand(self.norm_up(x))
        x = x.transpose(1, 2).reshape(b, EMBED_DIM, self.img_size, self.img_size)
        return self.head(x)


@register_model(
    ModelInfo(
        family="transformer",
        ubench_name="SwinUnet",
        ubench_id=13,
        year=2022,
        paper="Swin-Unet: Unet-like Pure Transformer for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=41.380068,
        ref_source="U-Bench models/Transformer/SwinUnet/SwinUnet.py (SwinTransformerSys, Swin-T, "
        "img_size=224, window 7, depths 2-2-6-2 in encoder and decoder), counted layer by layer",
        ref_input_size=224,
        input_sizes=(224,),
        size_multiple=32,
        notes="224x224 only (window/shift masks fixed to the 224 grid, as in U-Bench); U-Bench starts "
        "from ImageNet Swin-T weights, here untrained; in_channels reaches the patch embedding "
        "(U-Bench's wrapper hard-codes 3). U-Bench's wrapper passes depths (2, 2, 6, 2) and its decoder "
        "reuses them (6 blocks at the 384-channel level), hence 41.4M rather than the 27.2M of the "
        "official Swin-Unet config (depths 2-2-2-2).",
    )
)
def swinunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Swin-Unet as U-Bench benchmarks it (Swin-T, 224x224, window 7)."""
    return SwinUnet(in_channels=in_channels, num_classes=num_classes)
