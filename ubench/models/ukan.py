"""U-KAN, UNeXt's tokenized U-Net with Kolmogorov-Arnold layers in place of the MLPs.

Paper: Li, Liu, Hu, Li, Zhang, Zhu, Chen, Li, Shen, Wang, Chen, Guo, "U-KAN Makes Strong
Backbone for Medical Image Segmentation and Generation", AAAI 2025.

Configuration: U-Bench's ``u_kan(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/CNN/U_KAN/U_KAN.py), i.e. ``UKAN`` with its defaults: embed_dims 256, 320, 512 (the
paper's larger setting, not the 128/160/256 one that gives its ~6.3M), conv widths 32, 64, 256
(each a double 3x3 conv + BN + ReLU, then max-pool and ReLU), token widths 320, 512, one KAN block
per tokenized stage, no dropout or drop-path. A KAN block is pre-LayerNorm residual; inside,
three times: KANLinear (grid 5, cubic B-splines on [-1, 1], SiLU base; ops/kan.py), then a 3x3
depthwise conv + BN + ReLU on the token map. Decoder steps 512->320->256->64->32->32 are
(3x3 conv keeping the width + BN + ReLU, 3x3 conv to the new width + BN + ReLU), bilinear x2 and
ReLU, skips added (skeleton in ops/light_blocks.py). Parameters at 3 in / 1 class: 25,359,265
(counted by instantiating U-Bench's module). Needs H, W divisible by 32.
"""

from __future__ import annotations

import torch.nn as nn

from ubench.models.ops.conv_blocks import DoubleConv, conv_bn_relu
from ubench.models.ops.kan import KANBlock
from ubench.models.ops.light_blocks import TokenizedUNet
from ubench.models.registry import ModelInfo, register_model

EMBED_DIMS = (256, 320, 512)
CONV_DIMS = (EMBED_DIMS[0] // 8, EMBED_DIMS[0] // 4, EMBED_DIMS[0])
TOKEN_DIMS = (EMBED_DIMS[1], EMBED_DIMS[2])


def _dec_conv(in_ch: int, out_ch: int, last: bool) -> nn.Module:
    return nn.Sequential(*conv_bn_relu(in_ch, in_ch), *conv_bn_relu(in_ch, out_ch))


class UKAN(TokenizedUNet):
    """U-KAN: the tokenized U-Net skeleton with double-conv blocks and KAN blocks."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__(in_channels, num_classes, CONV_DIMS, TOKEN_DIMS, DoubleConv, _dec_conv, KANBlock)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="U_KAN",
        ubench_id=101,
        year=2025,
        paper="U-KAN Makes Strong Backbone for Medical Image Segmentation and Generation",
        deep_supervision=False,
        ref_params_m=25.359265,
        ref_source="U-Bench models/CNN/U_KAN/U_KAN.py (u_kan(3, 1): UKAN embed_dims 256/320/512), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=32,
        notes="U-Bench benchmarks the 256/320/512 configuration (25.4M), not the paper's "
        "128/160/256 one (~6.3M). KAN grids are never updated, as in U-Bench.",
    )
)
def ukan(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """U-KAN as U-Bench benchmarks it."""
    return UKAN(in_channels=in_channels, num_classes=num_classes)
