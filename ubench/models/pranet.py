"""PraNet: a Res2Net encoder, a partial decoder for a coarse map, and reverse-attention refinement.

Paper: Fan, Ji, Zhou, Chen, Fu, Shen, Shao, "PraNet: Parallel Reverse Attention Network for Polyp
Segmentation", MICCAI 2020.

Configuration: U-Bench's ``PraNet(input_channel=3, num_classes=1)`` with its default channel=32
(repo FengheTan9/U-Bench, models/CNN/PraNet/PraNet.py and Res2Net_v1b.py), id 39, flagged
``deeps_supervision`` in models/model_id.json:
- encoder: Res2Net-v1b 26w x 4s. U-Bench calls ``res2net50_v1b_26w_4s(pretrained=True)``, but that
  function builds layers (3, 4, 23, 3), i.e. Res2Net-101-v1b, and loads the res2net101_v1b_26w_4s
  ImageNet checkpoint; here the same architecture, untrained. Deep stem (3x3 convs 3->32 stride 2,
  32->32, 32->64, BN/ReLU between), BN + ReLU, 3x3 max-pool; bottlenecks whose 3x3 conv is split
  into 4 groups of 26*planes/64 channels processed hierarchically; a stage's first block strides
  all three 3x3 convs, average-pools the fourth group and has an avg-pool + 1x1 conv + BN shortcut.
  The ImageNet classifier (2048 -> 1000 linear) is built but never used;
- RFB-like blocks reduce the stride-8/16/32 maps to 32 channels (a 1x1 branch and three branches
  1x1 -> 1xk -> kx1 -> 3x3 dilated k, k = 3, 5, 7; concatenated, 3x3 conv; plus a 1x1 shortcut;
  ReLU). Every conv is bias-free conv + BN with no activation (the reference's BasicConv2d builds
  a ReLU and never applies it);
- a partial decoder (products of x2-upsampled deeper maps with shallower ones, concatenations,
  3x3 fusions, 1x1 conv with bias) gives a coarse map at stride 8;
- three reverse-attention branches (strides 32, 16, 8), each weighting the encoder map by
  1 - sigmoid(previous map, resized) and predicting a residual on it: 2048 -> 256 (1x1), three
  5x5 convs + ReLU, 1x1 head; 1024 -> 64 and 512 -> 64 (1x1), two 3x3 convs + ReLU, 3x3 head.
The forward returns the four maps upsampled bilinearly to full size: [coarse, stride 32, stride
16, stride 8], the last being the final prediction. Spatial size: any multiple of 32. Parameters
at 3 in / 1 class: 52,054,887, of which 45,225,920 in the backbone including its unused
2,049,000-parameter classifier (counted by instantiating U-Bench's module).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import up2_aligned
from ubench.models.ops.res2net import RES2NET101_DEPTHS, Res2NetV1b, res2net_v1b_record
from ubench.models.registry import ModelInfo, register_model

CHANNEL = 32
STRIDE = 32


def _pair(k) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else tuple(k)


class ConvBN(nn.Module):
    """Bias-free conv + BatchNorm, 'same' padding, no activation (PraNet's BasicConv2d)."""

    def __init__(self, cin: int, cout: int, kernel_size=1, dilation: int = 1):
        super().__init__()
        kh, kw = _pair(kernel_size)
        pad = (dilation * (kh // 2), dilation * (kw // 2))
        self.conv = nn.Conv2d(cin, cout, (kh, kw), padding=pad, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


# ---- PraNet head ----


class RFB(nn.Module):
    """Receptive-field block: a 1x1 branch and branches growing their receptive field with
    separable 1xk / kx1 convs and a dilated 3x3 (k = 3, 5, 7), fused, plus a 1x1 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(ConvBN(cin, cout, 1))])
        for k in (3, 5, 7):
            self.branches.append(nn.Sequential(
                ConvBN(cin, cout, 1),
                ConvBN(cout, cout, (1, k)),
                ConvBN(cout, cout, (k, 1)),
                ConvBN(cout, cout, 3, dilation=k),
            ))
        self.fuse = ConvBN(4 * cout, cout, 3)
        self.shortcut = ConvBN(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([b(x) for b in self.branches], 1))
        return F.relu(y + self.shortcut(x))


class PartialDecoder(nn.Module):
    """Aggregates the three deepest (RFB-reduced) maps into a coarse map at stride 8."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.up1, self.up2, self.up3, self.up4 = (ConvBN(c, c, 3) for _ in range(4))
        self.up5 = ConvBN(2 * c, 2 * c, 3)
        self.cat2 = ConvBN(2 * c, 2 * c, 3)
        self.cat3 = ConvBN(3 * c, 3 * c, 3)
        self.fuse = ConvBN(3 * c, 3 * c, 3)
        self.head = nn.Conv2d(3 * c, num_classes, 1)

    def forward(self, x1, x2, x3):  # strides 32, 16, 8
        x2_1 = self.up1(up2_aligned(x1)) * x2
        x3_1 = self.up2(up2_aligned(up2_aligned(x1))) * self.up3(up2_aligned(x2)) * x3
        x2_2 = self.cat2(torch.cat([x2_1, self.up4(up2_aligned(x1))], 1))
        x3_2 = self.cat3(torch.cat([x3_1, self.up5(up2_aligned(x2_2))], 1))
        return self.head(self.fuse(x3_2))


class ReverseAttention(nn.Module):
    """Refines a map from an encoder level weighted by what the previous map has NOT yet found:
    1x1 reduction, ``n`` convs + ReLU, a conv head; the head's output is a residual."""

    def __init__(self, cin: int, width: int, kernel: int, n: int, head_kernel: int, num_classes: int):
        super().__init__()
        self.reduce = ConvBN(cin, width, 1)
        self.convs = nn.ModuleList(ConvBN(width, width, kernel) for _ in range(n))
        self.head = ConvBN(width, num_classes, head_kernel)

    def forward(self, feat: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        reverse = (1 - torch.sigmoid(prior)).mean(1, keepdim=True)  # one map, also for several classes
        x = self.reduce(reverse * feat)
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.head(x) + prior


class PraNet(nn.Module):
    """PraNet: Res2Net features -> RFB -> partial decoder (coarse map) -> reverse attention from
    stride 32 down to stride 8; all four maps returned at full size, the finest last."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, channel: int = CHANNEL):
        super().__init__()
        self.backbone = Res2NetV1b(in_channels)
        self.rfb = nn.ModuleList(RFB(c, channel) for c in (512, 1024, 2048))
        self.decoder = PartialDecoder(channel, num_classes)
        self.reverse = nn.ModuleList([
            ReverseAttention(2048, 256, 5, 3, 1, num_classes),
            ReverseAttention(1024, 64, 3, 2, 3, num_classes),
            ReverseAttention(512, 64, 3, 2, 3, num_classes),
        ])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _, f8, f16, f32 = self.backbone.features(x)
        r8, r16, r32 = (rfb(f) for rfb, f in zip(self.rfb, (f8, f16, f32)))
        pred = self.decoder(r32, r16, r8)  # stride 8
        outs = [F.interpolate(pred, scale_factor=8, mode="bilinear")]
        # from stride 8 to 32 first, then back down by 2 at each level
        for branch, feat, stride, resize in zip(self.reverse, (f32, f16, f8), (32, 16, 8), (0.25, 2, 2)):
            pred = branch(feat, F.interpolate(pred, scale_factor=resize, mode="bilinear"))
            outs.append(F.interpolate(pred, scale_factor=stride, mode="bilinear"))
        return outs


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="PraNet",
        ubench_id=39,
        year=2020,
        paper="PraNet: Parallel Reverse Attention Network for Polyp Segmentation",
        deep_supervision=True,
        ref_params_m=52.054887,
        ref_source="U-Bench models/CNN/PraNet/PraNet.py (PraNet(input_channel=3, num_classes=1), "
        "channel=32, backbone built with pretrained loading disabled), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Backbone untrained here; U-Bench loads ImageNet weights into it. U-Bench's "
        "res2net50_v1b_26w_4s() actually builds Res2Net-101-v1b (layers 3/4/23/3) and loads the "
        "res2net101_v1b_26w_4s checkpoint, so the backbone is Res2Net-101 despite the name. Its "
        "ImageNet classifier (backbone.fc, 2,049,000 parameters, 3.9% of the total) is kept for the "
        "count and checkpoint loading but never used. BasicConv2d's ReLU is never applied (conv + "
        "BN only), as in the reference. U-Bench ignores input_channel: its stem always takes 3 "
        "channels and repeats a grey input; here the stem takes in_channels (summing a pretrained "
        "stem kernel over its input channels reproduces the repetition for 1 channel). U-Bench "
        "fails for num_classes > 1 (a class map expanded to the feature width); here the decoder "
        "head predicts num_classes maps and the reverse-attention weight is the mean over classes "
        "of 1 - sigmoid (the same at 1 class). Outputs: [coarse (stride 8), stride 32, 16, 8], "
        "bilinear, align_corners=False as in the reference.",
        extra={
            "unused_params": ["backbone.fc.weight", "backbone.fc.bias"],
            "pretrained": res2net_v1b_record(
                RES2NET101_DEPTHS,
                "Res2Net_v1b.res2net50_v1b_26w_4s(pretrained=True): builds layers [3, 4, 23, 3] and "
                "loads the res2net101_v1b_26w_4s release with a strict load_state_dict (classifier "
                "included) into PraNet.resnet",
            ),
        },
    )
)
def pranet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """PraNet (Res2Net-101-v1b backbone, channel 32) as U-Bench benchmarks it."""
    return PraNet(in_channels=in_channels, num_classes=num_classes)
