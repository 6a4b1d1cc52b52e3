"""DDANet: one residual encoder, two decoders, the second gating the first.

Paper: Tomar, Jha, Ali, Johansen, Johansen, Riegler, Halvorsen, "DDANet: Dual Decoder Attention
Network for Automatic Polyp Segmentation", ICPR 2020 International Workshops and Challenges
(LNCS 12668), 2021 (arXiv 2012.15245, 2020).

Configuration: U-Bench's ``ddanet(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/CNN/DDANet/DDANet.py, class ``CompNet``; models/__init__.py imports the factory as
``DDANet``). Shared encoder: four stages of widths 32, 64, 128, 256, each two residual blocks
followed by 2x2 max-pooling (total stride 16); a residual block is 3x3 conv + BN + ReLU + 3x3 conv
+ BN, plus a 1x1 conv + BN shortcut gated by squeeze-excitation (bias-free linears, reduction 16),
summed and ReLU'd (all convs with bias). Two decoders of four steps each, widths 128, 64, 32, 16,
both starting from the pooled bottleneck: a step is a 4x4 transposed conv (stride 2, padding 1),
concatenation [upsampled, skip] and two residual blocks. After each step, a 1x1 conv + sigmoid of
the second ("autoencoder") decoder's map multiplies the first ("segmentation") decoder's map,
which feeds the next segmentation step. Heads: a 1x1 conv on each decoder's last map. U-Bench
returns (autoencoder head, segmentation head) and trains with ``deeps_supervision: 1``
(model_id.json, id 37), so both are supervised by the mask. Parameters at 3 in / 1 class:
6,835,638 (counted by instantiating U-Bench's module).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.conv_blocks import ResidualDoubleConv
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 128, 256)
DECODER_WIDTHS = (128, 64, 32, 16)
STRIDE = 2 ** len(WIDTHS)


def residual_pair(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two residual SE blocks, the first changing the width."""
    return nn.Sequential(ResidualDoubleConv(in_ch, out_ch, se=True), ResidualDoubleConv(out_ch, out_ch, se=True))


class DecoderStep(nn.Module):
    """4x4 transposed conv x2, concatenation [upsampled, skip], two residual SE blocks."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1)
        self.blocks = residual_pair(in_ch + out_ch, out_ch)  # the skip has in_ch channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(torch.cat([self.up(x), skip], dim=1))


class DDANet(nn.Module):
    """Shared encoder; segmentation decoder gated step by step by the autoencoder decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS, dec_widths=DECODER_WIDTHS):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.encoder = nn.ModuleList(residual_pair(i, o) for i, o in zip(ins, widths))
        self.pool = nn.MaxPool2d(2, stride=2)
        steps = list(zip((widths[-1],) + tuple(dec_widths[:-1]), dec_widths))
        self.seg_decoder = nn.ModuleList(DecoderStep(i, o) for i, o in steps)
        self.ae_decoder = nn.ModuleList(DecoderStep(i, o) for i, o in steps)
        self.gates = nn.ModuleList(nn.Sequential(nn.Conv2d(o, 1, 1), nn.Sigmoid()) for o in dec_widths)
        self.seg_head = nn.Conv2d(dec_widths[-1], num_classes, 1)
        self.ae_head = nn.Conv2d(dec_widths[-1], num_classes, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        seg = ae = x
        for seg_step, ae_step, gate in zip(self.seg_decoder, self.ae_decoder, self.gates):
            skip = skips.pop()
            ae = ae_step(ae, skip)
            seg = seg_step(seg, skip) * gate(ae)
        return [self.ae_head(ae), self.seg_head(seg)]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="DDANet",
        ubench_id=37,
        year=2021,
        paper="DDANet: Dual Decoder Attention Network for Automatic Polyp Segmentation",
        deep_supervision=True,
        ref_params_m=6.835638,
        ref_source="U-Bench models/CNN/DDANet/DDANet.py (ddanet(input_channel=3, num_classes=1)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="deep supervision returns [autoencoder-decoder logits, segmentation logits] (final "
        "last), both full size, as U-Bench does: its second decoder, which reconstructs the "
        "grayscale input in the paper, is trained on the mask like the segmentation output",
    )
)
def ddanet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """DDANet as U-Bench benchmarks it (widths 32..256, two decoders, deep supervision)."""
    return DDANet(in_channels=in_channels, num_classes=num_classes)
