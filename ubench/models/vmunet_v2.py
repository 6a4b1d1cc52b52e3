"""VM-UNet v2: VMamba encoder with a semantics-and-detail-infusion (SDI) decoder.

Paper: Zhang, Xu, Lin, Li et al., "VM-UNET-V2: Rethinking Vision Mamba UNet for Medical Image
Segmentation", arXiv 2403.09157, 2024.

Configuration: U-Bench's ``VMUNetV2`` (repo FengheTan9/U-Bench, models/Mamba/VMUNetV2/VMUNetV2.py
and vmamba.py, built by ``vmunetv2(num_classes, input_channel=3)``, so mid_channel 48 and
deep_supervision=True). Encoder: VMamba as in VM-UNet (4x4 patch embed to 96, stages of depths
2, 2, 9, 2 at 96..768 with merging, d_state 16, drop-path 0.2); the decoder takes the four stage
*inputs* (96 @ H/4, 192 @ H/8, 384 @ H/16, 768 @ H/32). Each goes through channel attention
(avg+max, ratio 16, no bias), spatial attention (7x7), and a 1x1 conv + BatchNorm to 48
channels. Four SDI modules resize all four maps to one level (average pooling down, bilinear
align_corners=True up), apply a 3x3 conv each, and multiply. Decoding adds stride-2 4x4
transposed convs level by level; 1x1 heads give per-level logits upsampled 4x (bilinear). With
deep_supervision=True U-Bench returns one tensor: the finest head plus a 2x transposed conv of
the second finest, so this model has a single output.

Quirks kept for parameter parity (U-Bench counts them): the last encoder stage (2 VSS blocks at
768) runs but its output is never used; ``deconv5`` is built but never called; the two coarsest
heads run but do not reach the output. Those parameters get no gradient and are listed in
``extra["unused_params"]``. SDI resizes by H and W separately (U-Bench compares widths only;
identical for square inputs). Untrained: U-Bench loads VMamba-S ImageNet weights for the encoder.
Parameters (3 in, 1 class): 22,770,934, counted from U-Bench's files layer by layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.vss import VSSEncoder, vmamba_init_
from ubench.models.registry import ModelInfo, register_model

DIMS = (96, 192, 384, 768)
DEPTHS = (2, 2, 9, 2)
MID = 48


class ChannelAttention(nn.Module):
    """CBAM channel gate: shared bottleneck MLP on average- and max-pooled descriptors."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // ratio, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // ratio, channels, 1, bias=False)

    def _mlp(self, x):
        return self.fc2(F.relu(self.fc1(x)))

    def forward(self, x):
        gate = self._mlp(F.adaptive_avg_pool2d(x, 1)) + self._mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(gate)


class SpatialAttention(nn.Module):
    """CBAM spatial gate: a 7x7 conv over the channel mean and max."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(stats))


class Translayer(nn.Module):
    """1x1 conv + BatchNorm (no activation, as in U-Bench's BasicConv2d forward)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class SDI(nn.Module):
    """Semantics and detail infusion: every level resized to the anchor's, conv'd, multiplied."""

    def __init__(self, channels: int, levels: int = 4):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1)
                                   for _ in range(levels))

    def forward(self, xs, anchor):
        size = anchor.shape[-2:]
        out = torch.ones_like(anchor)
        for conv, x in zip(self.convs, xs):
            if x.shape[-1] > size[-1]:
                x = F.adaptive_avg_pool2d(x, size)
            elif x.shape[-1] < size[-1]:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
            out = out * conv(x)
        return out


class VMUNetV2(nn.Module):
    """VMamba encoder, CBAM-gated 48-channel maps, SDI fusion, additive transposed-conv decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, mid: int = MID):
        super().__init__()
        self.encoder = VSSEncoder(in_channels, DIMS, DEPTHS, drop_path_rate=0.2, d_state=16)
        vmamba_init_(self.encoder)
        self.ca = nn.ModuleList(ChannelAttention(c) for c in DIMS)
        self.sa = nn.ModuleList(SpatialAttention() for _ in DIMS)
        self.trans = nn.ModuleList(Translayer(c, mid) for c in DIMS)
        self.sdi = nn.ModuleList(SDI(mid) for _ in DIMS)
        self.seg_outs = nn.ModuleList(nn.Conv2d(mid, num_classes, 1) for _ in DIMS)
        self.deconv = nn.ModuleList(  # deconv[3] is U-Bench's unused deconv5
            nn.ConvTranspose2d(mid, mid, 4, stride=2, padding=1, bias=False) for _ in range(4))
        self.deconv6 = nn.ConvTranspose2d(num_classes, num_classes, 3, stride=2, padding=1,
                                          output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, skips = self.encoder(x)  # the last stage's output is unused, as in U-Bench
        feats = []
        for f, ca, sa, trans in zip(skips, self.ca, self.sa, self.trans):
            f = f.permute(0, 3, 1, 2)
            f = ca(f) * f
            f = sa(f) * f
            feats.append(trans(f))
        fused = [sdi(feats, anchor) for sdi, anchor in zip(self.sdi, feats)]
        y = fused[3]
        logits = [self.seg_outs[0](y)]
        for k in range(3):  # 1/32 -> 1/16 -> 1/8 -> 1/4
            y = self.deconv[k](y) + fused[2 - k]
            logits.append(self.seg_outs[k + 1](y))
        logits = [F.interpolate(o, scale_factor=4, mode="bilinear") for o in logits]
        return logits[3] + self.deconv6(logits[2])


def _unused_params() -> list[str]:
    stage = [f"encoder.layers.3.{n}" for n in _STAGE3_NAMES]
    return stage + ["deconv.3.weight", "seg_outs.0.weight", "seg_outs.0.bias",
                    "seg_outs.1.weight", "seg_outs.1.bias"]


# parameter names of one encoder stage of 2 VSS blocks without merging (the unused last stage)
_BLOCK_NAMES = [
    "ln_1.weight", "ln_1.bias", "self_attention.x_proj_weight", "self_attention.dt_projs_weight",
    "self_attention.dt_projs_bias", "self_attention.A_logs", "self_attention.Ds",
    "self_attention.in_proj.weight", "self_attention.conv2d.weight", "self_attention.conv2d.bias",
    "self_attention.out_norm.weight", "self_attention.out_norm.bias",
    "self_attention.out_proj.weight",
]
_STAGE3_NAMES = [f"blocks.{i}.{n}" for i in range(DEPTHS[3]) for n in _BLOCK_NAMES]


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="VMUNetV2",
        ubench_id=96,
        year=2024,
        paper="VM-UNET-V2: Rethinking Vision Mamba UNet for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=22.770934,
        ref_source="U-Bench models/Mamba/VMUNetV2/VMUNetV2.py + vmamba.py "
        "(vmunetv2(1, input_channel=3)), counted layer by layer",
        ref_input_size=256,
        size_multiple=32,
        notes="untrained (U-Bench loads VMamba-S ImageNet weights into the encoder); U-Bench's "
        "deep_supervision=True merges two heads into one output, so a single tensor is returned",
        extra={"unused_params": _unused_params()},
    )
)
def vmunet_v2(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """VM-UNet v2 as U-Bench benchmarks it (mid_channel 48, d_state 16, drop-path 0.2)."""
    return VMUNetV2(in_channels=in_channels, num_classes=num_classes)
