"""CFM-UNet: a U-Net whose encoder couples a Res2Net CNN branch and a VMamba branch stage by stage.

Paper: Niu, Han, Cai, "CFM-UNet: coupling local and global feature extraction networks for medical
image segmentation", Scientific Reports 15 (2025), doi 10.1038/s41598-025-92010-y.

Configuration: U-Bench's ``CFM_UNet`` (repo FengheTan9/U-Bench, models/Mamba/CFM_UNet/CFM_UNet.py;
models/__init__.py maps it to ``cfm_unet(input_channel, num_classes)`` = ``CFMUNet``; id 107, no
deep supervision, nothing pretrained):
- CNN branch: Res2Net-v1b 26w x 4s (deep stem 3 -> 32 -> 32 -> 64 at stride 2, BN, ReLU, 3x3/2
  max-pool), depths 3, 4, 6, 3, but with HALF the usual bottleneck widths (32, 64, 128, 256,
  outputs 128 .. 1024) and EVERY stage strided by 2, layer1 included;
- Mamba branch: VMamba's 4x4 patch embedding to 64 channels + LayerNorm, then four VSS stages of
  3 blocks each at widths 64, 128, 256, 512 (d_state 16, LayerNorm eps 1e-5, drop-path 0.1 linear
  over the 12 blocks), every stage, the last included, ending in a patch merging (width x2,
  stride x2);
- coupling ("SEF" blocks): at stride 4 (stems) and after each stage, the two branches' maps are
  concatenated and fused by a 3x3 conv (with bias) + BN + sigmoid + squeeze-excite (reduction 16,
  no biases) into one map of the branch width (64, 128, 256, 512, 1024 at strides 4 .. 64). Each
  branch's next stage then runs on sigmoid(its own output + that fused map);
- decoder: four steps of bilinear x2 upsampling (align_corners=False), concatenation with the
  fused map of that scale, and a double 3x3 conv (bias) + BN + ReLU followed by Dropout2d(0.5)
  (outputs 512, 256, 128, 64); a 1x1 conv head at stride 4 and bilinear x4 upsampling.
Total stride 64. Parameters at 3 in / 1 class: 57,204,356 (Res2Net 8,008,515 of which its unused
ImageNet classifier 2,049,000, Mamba branch 11,334,464, fusions 25,321,792, decoder 12,539,520,
head 65), counted by instantiating U-Bench's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import SqueezeExcite
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.res2net import RES2NET50_DEPTHS, Res2NetV1b
from ubench.models.ops.vss import PatchEmbed2D, VSSStage, vmamba_init_
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (64, 128, 256, 512, 1024)  # fused maps at strides 4, 8, 16, 32, 64
CNN_PLANES = (32, 64, 128, 256)  # Res2Net bottleneck widths (x4 out): half the released ones
CNN_STRIDES = (2, 2, 2, 2)
VSS_DEPTH = 3
DROP_PATH = 0.1
DECODER_DROPOUT = 0.5
STRIDE = 64


class SEFusion(nn.Module):
    """The SEF block: both branches concatenated, 3x3 conv + BN, a sigmoid, squeeze-excite."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.se = SqueezeExcite(channels, reduction=16)

    def forward(self, mamba: torch.Tensor, cnn: torch.Tensor) -> torch.Tensor:
        return self.se(torch.sigmoid(self.bn(self.conv(torch.cat([mamba, cnn], dim=1)))))


def decoder_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """(3x3 conv + BN + ReLU) x 2, then channel dropout (U-Bench's DoubleConv, p = 0.5)."""
    return nn.Sequential(*conv_bn_relu(in_ch, out_ch), *conv_bn_relu(out_ch, out_ch),
                         nn.Dropout2d(DECODER_DROPOUT))


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class CFMUNet(nn.Module):
    """Res2Net and VSS encoders fused at every scale, U-Net decoder over the fused maps."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.cnn = Res2NetV1b(in_channels, depths=RES2NET50_DEPTHS, strides=CNN_STRIDES,
                              planes=CNN_PLANES)
        # U-Bench's classifier is sized for the released widths (512 * 4 inputs), not for the
        # 1024-channel layer4 it follows; it is never called, but it is in U-Bench's count
        self.cnn.fc = nn.Linear(2048, 1000)
        self.embed = PatchEmbed2D(4, in_channels, WIDTHS[0], nn.LayerNorm)
        rates = torch.linspace(0, DROP_PATH, len(CNN_PLANES) * VSS_DEPTH).tolist()
        self.vss = nn.ModuleList(
            VSSStage(dim, VSS_DEPTH, rates[i * VSS_DEPTH:(i + 1) * VSS_DEPTH], downsample=True)
            for i, dim in enumerate(WIDTHS[:-1])
        )
        vmamba_init_(self.embed)
        vmamba_init_(self.vss)
        self.fusions = nn.ModuleList(SEFusion(w) for w in WIDTHS)
        self.decoder = nn.ModuleList(
            decoder_block(WIDTHS[i + 1] + WIDTHS[i], WIDTHS[i]) for i in reversed(range(4))
        )
        self.head = nn.Conv2d(WIDTHS[0], num_classes, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The fused maps at strides 4 .. 64. Each branch's stage reads sigmoid(its previous
        output + the fused map), so both branches see each other at every scale."""
        tokens = self.embed(x)  # channels-last, as the VSS stages work
        c = self.cnn
        feat = c.maxpool(c.relu(c.bn1(c.conv1(x))))
        fused = self.fusions[0](_channels_first(tokens), feat)
        skips = [fused]
        cnn_stages = (c.layer1, c.layer2, c.layer3, c.layer4)
        for vss, cnn_stage, fusion in zip(self.vss, cnn_stages, self.fusions[1:]):
            tokens = vss(torch.sigmoid(_channels_last(fused) + tokens))
            feat = cnn_stage(torch.sigmoid(fused + feat))
            fused = fusion(_channels_first(tokens), feat)
            skips.append(fused)
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self._encode(x)
        y = skips.pop()
        for block, skip in zip(self.decoder, reversed(skips)):
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return F.interpolate(self.head(y), scale_factor=4, mode="bilinear", align_corners=False)


@register_model(
    ModelInfo(
        family="mamba",
        ubench_name="CFM_UNet",
        ubench_id=107,
        year=2025,
        paper="CFM-UNet: coupling local and global feature extraction networks for medical image "
        "segmentation",
        deep_supervision=False,
        ref_params_m=57.204356,
        ref_source="U-Bench models/Mamba/CFM_UNet/CFM_UNet.py (cfm_unet(input_channel=3, "
        "num_classes=1) -> CFMUNet), counted by instantiating it with mamba_ssm stubbed",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Built untrained, as U-Bench builds it (its res2net50() is constructed without "
        "weights and nothing is loaded). U-Bench's Res2Net keeps an ImageNet classifier "
        "Linear(2048, 1000) (2,049,000 params) that does not even fit its 1024-channel layer4; it "
        "is in U-Bench's count and never called: kept as cnn.fc (unused_params). U-Bench's "
        "cfm_unet() ignores input_channel: both stems take 3 channels and a 1-channel input is "
        "repeated to 3 (any other count fails); here the Res2Net stem and the patch embedding take "
        "in_channels (summing a 3-channel kernel over its inputs reproduces the repetition of a "
        "grey image). Total stride 64 (the VSS branch merges patches after its last stage too, "
        "and layer1 of the Res2Net is strided): H and W must be multiples of 64; U-Bench's patch "
        "merging crops odd maps with a warning while the CNN branch rounds up, so other sizes "
        "fail there at the fusion. U-Bench's unused VSSM.forward (which prints) and the unused "
        "Res2Net avgpool are not built. Initialisation as U-Bench's: torchvision ResNet init for "
        "the Res2Net, VMamba's truncated-normal(0.02) linears for the Mamba branch, PyTorch "
        "defaults for the fusions, decoder and head. The decoder's Dropout2d(0.5) is kept.",
        extra={"unused_params": ["cnn.fc.weight", "cnn.fc.bias"]},
    )
)
def cfm_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CFM-UNet as U-Bench benchmarks it (Res2Net-50 at half width + VMamba 3-3-3-3, untrained)."""
    return CFMUNet(in_channels=in_channels, num_classes=num_classes)
