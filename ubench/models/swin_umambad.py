"""Swin-UMamba-D (Swin-UMamba†): a VMamba encoder with a Mamba-based (VSS block) decoder.

Paper: Liu, Tian, Zhao, Liu, Liang, Liu, Chen, Shen, "Swin-UMamba: Mamba-based UNet with
ImageNet-based Pretraining", MICCAI 2024 (arXiv 2402.03302); the "†" variant, whose decoder is
built from VSS blocks instead of convolutions.

Configuration: U-Bench's ``Swin_umambaD`` (repo FengheTan9/U-Bench, models/Mamba/Swin_umambaD/
Swin_umambaD.py; id 93 in models/model_id.json, no deep supervision; built by
``swin_umambad(num_classes, input_channel)`` = ``SwinUMambaD`` followed by its ImageNet weights).
Facts read from that file:

* encoder (``VSSMEncoder``): VMamba-T on the image itself, no conv stem: 4x4 patch embedding
  (conv + LayerNorm) to 96 channels at 1/4, stages of 2, 2, 9, 2 VSS blocks (LayerNorm + SS2D,
  d_state 16, no MLP) at widths 96, 192, 384, 768 with patch merging between them; stochastic
  depth 0 -> 0.2 over the 15 blocks; every stage's output (before merging, no final norm) is a
  feature;
* decoder (``UNetResDecoder``), from the 1/32 map up, three steps at widths 384, 192, 96: patch
  expand (Linear C -> 2C, to 2x2 pixels of C/2, LayerNorm), concatenate [expanded, skip],
  Linear 2C' -> C', two VSS blocks (d_state 16); stochastic depth 0.2 -> 0 over its six blocks
  (the first step gets 0.2 and 0.16);
* a final x4 patch expand of the 1/4 map (Linear 96 -> 1536, to 4x4 pixels of 96, LayerNorm) and
  a 1x1 conv (with bias) to the classes.

Parameters (3 in, 1 class): 27,490,756, all trainable, counted by instantiating U-Bench's module;
the same here. U-Bench builds a 1x1 conv head per decoder step for deep supervision (384, 192 and
96 channels to the classes) but runs with ``deep_supervision=False``, so only the full-resolution
head is used; the three others are built and counted but never run (``unused_params``), as there.

U-Bench initialises the encoder from VMamba-T ImageNet weights (vmamba_tiny_e292.pth, HuggingFace
FengheTan9/U-Stone): the model is built untrained and ``train.pretrained`` loads that file from
the weights directory (``extra["pretrained"]``). Init otherwise as U-Bench: VMamba's
truncated-normal (0.02) Linear weights, zero biases and unit LayerNorms in the encoder, PyTorch's
defaults in the decoder. SS2D and the patch layers are ``ubench.models.ops.vss``'s (selective scan
from ``ops/selective_scan.py``), the x4 expand is ``ops/mamba_extra.py``'s.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.mamba_extra import PatchExpandX4
from ubench.models.ops.vss import PatchExpand2D, VSSBlock, VSSEncoder, vmamba_init_
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (96, 192, 384, 768)
DEPTHS = (2, 2, 9, 2)
DECODER_DEPTH = 2
DROP_PATH = 0.2
D_STATE = 16
STRIDE = 32  # 4x4 patches, then three 2x2 merges; the decoder concatenates at each scale

U_STONE_URL = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/vmamba_tiny_e292.pth"

PRETRAINED = {
    "backbone": "VMamba-T (ImageNet-1k classifier, VSSM v0, d_state 16)",
    "source": "models/Mamba/Swin_umambaD/Swin_umambaD.py load_pretrained_ckpt(), called by the "
    "factory swin_umambad(): torch.hub.load_state_dict_from_url(<HuggingFace U-Stone "
    "vmamba_tiny_e292.pth>)['model'], every tensor but norm.* and head.* copied into the "
    "VSSMEncoder (layers.i.downsample renamed downsamples.i), patch embedding included; the decoder "
    "stays untrained. ubench's encoder keeps VMamba's own names, so the map only adds its prefix.",
    "file": "vmamba_tiny_e292.pth",
    "url": U_STONE_URL,
    "modules": ["encoder"],
    "key_map": [[r"^", "encoder."]],
    "drop": [r"^norm\.", r"^head\."],
}


class VMambaFeatures(VSSEncoder):
    """VMamba's encoder returning every stage's output before its patch merging (B, H, W, C).

    ``VSSEncoder`` hands on stage inputs, as VM-UNet needs; Swin-UMamba's skips are the stage
    outputs, so only the order of reading them differs. Its names are those of VMamba's checkpoint.
    """

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        feats = []
        for stage in self.layers:
            for block in stage.blocks:
                x = block(x)
            feats.append(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return feats


class VSSUpStage(nn.Module):
    """One decoder step: x2 patch expand, concat the skip, Linear back to its width, VSS blocks."""

    def __init__(self, dim: int, rates: list[float]):
        super().__init__()
        self.expand = PatchExpand2D(dim)  # (B, H, W, 2 dim) -> (B, 2H, 2W, dim)
        self.fuse = nn.Linear(2 * dim, dim)
        self.blocks = nn.Sequential(
            *(VSSBlock(dim, drop_path=r, norm_layer=nn.LayerNorm, d_state=D_STATE) for r in rates)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.fuse(torch.cat([self.expand(x), skip], dim=-1))
        return self.blocks(x)


class SwinUMambaD(nn.Module):
    """VMamba-T encoder, VSS decoder with concatenated skips, x4 expand and 1x1 conv head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = VMambaFeatures(in_channels, WIDTHS, DEPTHS, DROP_PATH, D_STATE)
        vmamba_init_(self.encoder)  # the decoder keeps PyTorch's defaults, as in U-Bench
        up_widths = WIDTHS[-2::-1]  # 384, 192, 96
        rates = torch.linspace(DROP_PATH, 0, DECODER_DEPTH * len(up_widths)).tolist()
        self.decoder = nn.ModuleList(
            VSSUpStage(w, rates[i * DECODER_DEPTH : (i + 1) * DECODER_DEPTH])
            for i, w in enumerate(up_widths)
        )
        self.final_expand = PatchExpandX4(WIDTHS[0])
        self.head = nn.Conv2d(WIDTHS[0], num_classes, 1)
        # U-Bench's per-step deep-supervision heads: built (and counted) there, never run
        self.ds_heads = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in up_widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = feats[-1]
        for stage, skip in zip(self.decoder, reversed(feats[:-1])):
            y = stage(y, skip)
        return self.head(self.final_expand(y).permute(0, 3, 1, 2))


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="Swin_umambaD",
        ubench_id=93,
        year=2024,
        paper="Swin-UMamba: Mamba-based UNet with ImageNet-based Pretraining",
        deep_supervision=False,
        ref_params_m=27.490756,
        ref_source="U-Bench models/Mamba/Swin_umambaD/Swin_umambaD.py (swin_umambad(num_classes=1, "
        "input_channel=3) -> SwinUMambaD), counted by instantiating it with the checkpoint "
        "download stubbed",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Encoder built untrained: U-Bench's factory always downloads vmamba_tiny_e292.pth "
        "(HuggingFace FengheTan9/U-Stone, VMamba-T ImageNet) into its VMamba encoder, patch "
        "embedding included; `train.pretrained: true` loads the same file here (extra['pretrained']). "
        "U-Bench calls its loader without input_channel, so it compares the checkpoint's 3-channel "
        "kernel with 3 and then asserts the shapes equal: its build fails for input_channel != 3; "
        "here any in_channels builds (with train.pretrained a 1-channel model gets the 3-channel "
        "patch kernel summed). U-Bench's decoder builds four 1x1 conv heads and runs with "
        "deep_supervision=False, so only the full-resolution one is used; the three per-step heads "
        "(384/192/96 -> classes) are kept, counted and never run (unused_params). U-Bench's encoder "
        "also hands on the input image as a 'skip' the decoder never reads (no parameters). "
        "Sizes: H and W must be multiples of 32; U-Bench's patch merging crops odd maps with a "
        "warning, after which its decoder's concatenation fails. Stochastic depth: MONAI's DropPath "
        "(per sample, rescaled) for timm's, the same rates (encoder 0 -> 0.2, decoder 0.2 -> 0). "
        "U-Bench's VSSLayer re-initialises a clone of out_proj (no effect); not reproduced.",
        extra={
            "unused_params": [f"ds_heads.{i}.{p}" for i in range(3) for p in ("weight", "bias")],
            "pretrained": PRETRAINED,
        },
    )
)
def swin_umambad(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Swin-UMamba-D as U-Bench benchmarks it (VMamba-T encoder, VSS decoder, one output)."""
    return SwinUMambaD(in_channels=in_channels, num_classes=num_classes)
