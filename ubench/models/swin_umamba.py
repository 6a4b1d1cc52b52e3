"""Swin-UMamba: a VMamba encoder with a UNETR-style convolutional decoder.

Paper: Liu, Tian, Zhao, Liu, Liang, Liu, Chen, Shen, "Swin-UMamba: Mamba-based UNet with
ImageNet-based Pretraining", MICCAI 2024 (arXiv 2402.03302).

Configuration: U-Bench's ``SwinUMamba`` (repo FengheTan9/U-Bench, models/Mamba/Swin_umamba/
Swin_umamba.py, built by ``swin_umamba(num_classes, input_channel)``). Facts read from that file:

* stem: 7x7 conv stride 2 to 48 channels + affine InstanceNorm (1/2);
* VMamba-T encoder on the stem output: 2x2 patch embedding (conv + LayerNorm) to 96 at 1/4, stages
  of 2, 2, 9, 2 VSS blocks (LayerNorm + SS2D, d_state 16) at widths 96, 192, 384, 768 with patch
  merging between them, stochastic depth 0..0.2 over the 15 blocks; every stage output is a
  feature (no final norm);
* MONAI UNETR blocks, instance norm, residual: encoder1..5 (UnetrBasicBlock, 3x3) lift the input
  image (-> 48), the stem output (-> 96) and the first three stage outputs (-> 192, 384, 768);
  decoders (UnetrUpBlock: 2x2 transposed conv, concat with the skip, residual block) go
  768 -> 768 -> 384 -> 192 -> 96 -> 48 from the last stage output, then a UnetrBasicBlock 48 -> 48
  and a 1x1 conv head (UnetOutBlock).

U-Bench builds the model with deep supervision off: only the first of its four output heads is
used, so the three others (675 parameters, never trained) are left out. U-Bench initialises the
VMamba encoder from VMamba-T ImageNet weights; nothing is downloaded here, the model is built
untrained. The MONAI blocks are MONAI's own (imported when the model is built).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.mamba_extra import init_vmamba_linear
from ubench.models.ops.vss import PatchEmbed2D, PatchMerging2D, VSSBlock
from ubench.models.registry import ModelInfo, register_model

STEM_WIDTH = 48
WIDTHS = (96, 192, 384, 768)
DEPTHS = (2, 2, 9, 2)
DROP_PATH = 0.2
D_STATE = 16


class VMambaEncoder(nn.Module):
    """Patch embedding + four VSS stages; returns every stage's output as (B, C, H, W)."""

    def __init__(self, in_channels: int, widths=WIDTHS, depths=DEPTHS, patch: int = 2):
        super().__init__()
        total = sum(depths)
        rates = [DROP_PATH * i / (total - 1) for i in range(total)]
        self.embed = PatchEmbed2D(patch, in_channels, widths[0], norm_layer=nn.LayerNorm)
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(VSSBlock(widths[i], drop_path=r, norm_layer=nn.LayerNorm, d_state=D_STATE)
                  for r in rates[sum(depths[:i]) : sum(depths[: i + 1])])
            )
            for i in range(len(widths))
        )
        self.merge = nn.ModuleList(PatchMerging2D(widths[i]) for i in range(len(widths) - 1))
        self.apply(init_vmamba_linear)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.embed(x)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats.append(x.permute(0, 3, 1, 2))
            if i < len(self.merge):
                x = self.merge[i](x)
        return feats


U_STONE_URL = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/vmamba_tiny_e292.pth"
PRETRAINED = {
    "backbone": "VMamba-T (ImageNet-1k classifier, VSSM v0, d_state 16)",
    "source": "models/Mamba/Swin_umamba/Swin_umamba.py load_pretrained_ckpt(), called by the factory "
    "swin_umamba(): torch.hub.load_state_dict_from_url(<HuggingFace U-Stone vmamba_tiny_e292.pth>)"
    "['model'] copied into the VSSMEncoder (layers.i.downsample renamed downsamples.i) except the "
    "keys of its skip list: norm.*, head.*, patch_embed.proj.* and patch_embed.norm.weight. The list "
    "names patch_embed.norm.weight twice and never patch_embed.norm.bias, so that one tensor of the "
    "patch embedding is loaded; loaded here too.",
    "file": "vmamba_tiny_e292.pth",
    "url": U_STONE_URL,
    "modules": ["encoder.stages", "encoder.merge", "encoder.embed.norm.bias"],
    "key_map": [[r"^layers\.(\d+)\.blocks\.", r"encoder.stages.\1."],
                [r"^layers\.(\d+)\.downsample\.", r"encoder.merge.\1."],
                [r"^patch_embed\.norm\.bias$", "encoder.embed.norm.bias"]],
    "drop": [r"^norm\.", r"^head\.", r"^patch_embed\.proj\.", r"^patch_embed\.norm\.weight$"],
}


class SwinUMamba(nn.Module):
    """Conv stem + VMamba encoder, residual conv skips, transposed-conv decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock

        def basic(cin, cout):
            return UnetrBasicBlock(2, cin, cout, kernel_size=3, stride=1, norm_name="instance",
                                   res_block=True)

        def up(cin, cout):
            return UnetrUpBlock(2, cin, cout, kernel_size=3, upsample_kernel_size=2,
                                norm_name="instance", res_block=True)

        feats = (STEM_WIDTH, *WIDTHS)  # 48, 96, 192, 384, 768
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STEM_WIDTH, 7, stride=2, padding=3),
            nn.InstanceNorm2d(STEM_WIDTH, affine=True),
        )
        self.encoder = VMambaEncoder(STEM_WIDTH)
        # skips: the image, the stem output and the first three stage outputs, each lifted
        self.skips = nn.ModuleList(
            [basic(in_channels, feats[0])] + [basic(feats[i], feats[i + 1]) for i in range(4)]
        )
        # decoders: 768 -> 768 (onto the 1/16 skip), then 768 -> 384 -> 192 -> 96 -> 48
        self.ups = nn.ModuleList(
            [up(WIDTHS[-1], feats[4])] + [up(feats[i + 1], feats[i]) for i in reversed(range(4))]
        )
        self.refine = basic(feats[0], feats[0])
        self.head = UnetOutBlock(2, feats[0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        stages = self.encoder(stem)
        inputs = [x, stem] + stages[:3]
        skips = [block(inp) for block, inp in zip(self.skips, inputs)]
        y = stages[3]
        for block in self.ups:
            y = block(y, skips.pop())
        return self.head(self.refine(y))


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="Swin_umamba",
        ubench_id=92,
        year=2024,
        paper="Swin-UMamba: Mamba-based UNet with ImageNet-based Pretraining",
        deep_supervision=False,
        ref_params_m=59.885620,
        ref_source="U-Bench models/Mamba/Swin_umamba/Swin_umamba.py (swin_umamba(num_classes=1, "
        "input_channel=3)), instantiated with MONAI 1.6 blocks and counted",
        ref_input_size=256,
        size_multiple=32,
        notes="Built untrained; U-Bench's factory loads VMamba-T ImageNet weights (vmamba_tiny_e292.pth, "
        "HuggingFace FengheTan9/U-Stone) into the encoder's stages and patch mergings, plus the patch "
        "embedding's LayerNorm bias (its skip list names the LayerNorm weight twice): the pretrained "
        "record, with train.pretrained. The 3 unused deep-supervision heads (675 parameters) are left out.",
        extra={"pretrained": PRETRAINED},
    )
)
def swin_umamba(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Swin-UMamba as U-Bench benchmarks it (VMamba-T encoder, UNETR decoder, untrained)."""
    return SwinUMamba(in_channels=in_channels, num_classes=num_classes)
