"""CaraNet: a Res2Net encoder, a partial decoder for a coarse map, and reverse-attention refinement
driven by channel-wise feature pyramids and axial attention.

Paper: Lou, Guan, Loew, "CaraNet: Context Axial Reverse Attention Network for Segmentation of Small
Medical Objects", SPIE Medical Imaging 2022.

Configuration: U-Bench's ``caranet(input_channel=3, num_classes=1)``, i.e.
``Caranet(input_channel=3, channel=32, num_classes=1)`` (repo FengheTan9/U-Bench,
models/CNN/CaraNet/CaraNet.py, Res2Net_v1b.py and lib/*.py), id 36, flagged ``deeps_supervision``
in models/model_id.json:
- encoder: Res2Net-101-v1b 26w x 4s (``res2net101_v1b_26w_4s(pretrained=True)``, layers
  3/4/23/3; ops/res2net.py, the same module PraNet uses), untrained here. Its ImageNet classifier
  (2048 -> 1000 linear) is built but never used;
- the stride-8/16/32 maps (512/1024/2048 channels) are each reduced to 32 channels by one 3x3
  conv + BN + PReLU. Throughout, "BN + PReLU" is BatchNorm with eps 1e-3 and a per-channel PReLU;
- a partial decoder (products of x2-upsampled deeper maps with shallower ones, concatenations,
  3x3 fusions, 1x1 head with bias) gives a coarse map at stride 8. Unlike PraNet's, its 3x3 convs
  are bare bias-free convs (no BN);
- three refinement branches (strides 32, 16, 8), each on its reduced encoder map: a channel-wise
  feature pyramid (BN + PReLU, 3x3 conv 32 -> 8; four chains of three grouped 3x3 convs with
  dilation 1, 3, 5, 9 giving 2 + 2 + 4 channels each; the chains' outputs summed cumulatively,
  concatenated, BN + PReLU, 1x1 conv, plus the input), an axial-attention kernel (1x1 conv, 3x3
  conv, two sigmoid-attention passes with a zero-initialised gain), weighted by 1 - sigmoid(the
  previous map, resized), then two 3x3 conv + BN + PReLU and a 3x3 conv + BN + PReLU head whose
  output is a residual on the previous map.
The forward returns four maps upsampled bilinearly to full size in U-Bench's order: [stride 16,
stride 32, coarse, stride 8], the last being the final prediction. Spatial size: any multiple of
32. Parameters at 3 in / 1 class: 46,642,560, of which 45,225,920 in the backbone including its
unused 2,049,000-parameter classifier (counted by instantiating U-Bench's module).
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
CFP_DILATION = 8  # the pyramid's chains use dilations 1, d/4 + 1, d/2 + 1, d + 1
BN_EPS = 1e-3


def bn_prelu(channels: int) -> nn.Sequential:
    """BatchNorm (eps 1e-3) then a per-channel PReLU."""
    return nn.Sequential(nn.BatchNorm2d(channels, eps=BN_EPS), nn.PReLU(channels))


def conv_bn_prelu(cin: int, cout: int, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """Bias-free 3x3 conv ('same' padding) followed by BN + PReLU."""
    conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, groups=groups, bias=False)
    return nn.Sequential(conv, *bn_prelu(cout))


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False)


# ---- refinement: channel-wise feature pyramid ----


class DilatedChain(nn.Module):
    """Three grouped 3x3 convs of one dilation in series (c -> c/4 -> c/4 -> c/2, each + BN +
    PReLU); returns all three outputs concatenated (c channels)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        thin, groups = channels // 4, channels // 4
        self.convs = nn.ModuleList([
            conv_bn_prelu(channels, thin, dilation, groups),
            conv_bn_prelu(thin, thin, dilation, groups),
            conv_bn_prelu(thin, channels // 2, dilation, groups),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for conv in self.convs:
            x = conv(x)
            outs.append(x)
        return torch.cat(outs, 1)


class FeaturePyramid(nn.Module):
    """CaraNet's CFP module: a reduction to c/4 channels, four dilated chains of growing dilation
    whose outputs are summed cumulatively (chain 1, 1+2, 1+2+3, 1+2+3+4), concatenated back to c
    channels, BN + PReLU, 1x1 projection, residual."""

    def __init__(self, channels: int, d: int = CFP_DILATION):
        super().__init__()
        inner = channels // 4
        self.pre = bn_prelu(channels)
        self.reduce = conv_bn_prelu(channels, inner)
        self.chains = nn.ModuleList(DilatedChain(inner, r) for r in (1, int(d / 4 + 1), int(d / 2 + 1), d + 1))
        self.post = bn_prelu(channels)
        self.project = conv1x1(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.pre(x))
        acc, levels = None, []
        for chain in self.chains:
            out = chain(y)
            acc = out if acc is None else acc + out
            levels.append(acc)
        return self.project(self.post(torch.cat(levels, 1))) + x


# ---- refinement: axial attention ----


class SigmoidAttention(nn.Module):
    """Attention between the ``n`` positions of the last axis (n = W, or H for ``axis="h"``):
    each position's vector is its whole column of (reduced) channels x rows; sigmoid instead of
    softmax; the result is scaled by a learned gain that starts at 0 and added to the input.

    The reference's 'h' pass reshapes the map to (B, -1, H) without transposing it, i.e. it
    groups the flattened map in runs of H values: on square maps this is the same width-wise
    attention as the 'w' pass. Kept as the reference computes it."""

    def __init__(self, channels: int, axis: str):
        super().__init__()
        if axis not in ("h", "w"):
            raise ValueError(f"axis must be 'h' or 'w', got {axis!r}")
        self.axis = axis
        self.query = conv1x1(channels, channels // 8)
        self.key = conv1x1(channels, channels // 8)
        self.value = conv1x1(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h if self.axis == "h" else w
        q, k, v = (proj(x).reshape(b, -1, n) for proj in (self.query, self.key, self.value))
        weights = torch.sigmoid(torch.bmm(q.transpose(1, 2), k))  # (B, n, n)
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)
        return self.gamma * out + x


class AxialAttention(nn.Sequential):
    """CaraNet's axial-attention kernel: bare 1x1 and 3x3 convs, then the 'h' and 'w' passes."""

    def __init__(self, channels: int):
        super().__init__(
            conv1x1(channels, channels),
            conv3x3(channels, channels),
            SigmoidAttention(channels, "h"),
            SigmoidAttention(channels, "w"),
        )


class ReverseRefine(nn.Module):
    """One refinement level: pyramid + axial attention on the reduced encoder map, weighted by what
    the previous map has NOT found (1 - sigmoid), two conv + BN + PReLU, a conv + BN + PReLU head
    whose output is a residual on the previous map."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.context = FeaturePyramid(channels)
        self.attention = AxialAttention(channels)
        self.convs = nn.Sequential(conv_bn_prelu(channels, channels), conv_bn_prelu(channels, channels))
        self.head = conv_bn_prelu(channels, num_classes)

    def forward(self, feat: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        reverse = (1 - torch.sigmoid(prior)).mean(1, keepdim=True)  # one map, also for several classes
        x = reverse * self.attention(self.context(feat))
        return self.head(self.convs(x)) + prior


# ---- decoder ----


class DenseAggregation(nn.Module):
    """Partial decoder on the three reduced maps (strides 32, 16, 8) with bare bias-free 3x3
    convs; a 1x1 head with bias gives the coarse map at stride 8."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.up1, self.up2, self.up3, self.up4 = (conv3x3(c, c) for _ in range(4))
        self.up5 = conv3x3(2 * c, 2 * c)
        self.cat2 = conv3x3(2 * c, 2 * c)
        self.cat3 = conv3x3(3 * c, 3 * c)
        self.fuse = conv3x3(3 * c, 3 * c)
        self.head = nn.Conv2d(3 * c, num_classes, 1)

    def forward(self, x32: torch.Tensor, x16: torch.Tensor, x8: torch.Tensor) -> torch.Tensor:
        y16 = self.up1(up2_aligned(x32)) * x16
        y8 = self.up2(up2_aligned(up2_aligned(x32))) * self.up3(up2_aligned(x16)) * x8
        y16 = self.cat2(torch.cat([y16, self.up4(up2_aligned(x32))], 1))
        y8 = self.cat3(torch.cat([y8, self.up5(up2_aligned(y16))], 1))
        return self.head(self.fuse(y8))


class CaraNet(nn.Module):
    """CaraNet: Res2Net features -> 32-channel reductions -> partial decoder (coarse map) ->
    context/axial reverse attention from stride 32 down to stride 8; four full-size maps."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, channel: int = CHANNEL):
        super().__init__()
        self.backbone = Res2NetV1b(in_channels, depths=RES2NET101_DEPTHS)
        self.reduce = nn.ModuleList(conv_bn_prelu(c, channel) for c in (512, 1024, 2048))
        self.decoder = DenseAggregation(channel, num_classes)
        self.refine = nn.ModuleList(ReverseRefine(channel, num_classes) for _ in range(3))  # strides 32, 16, 8

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _, f8, f16, f32 = self.backbone.features(x)
        r8, r16, r32 = (red(f) for red, f in zip(self.reduce, (f8, f16, f32)))
        pred = self.decoder(r32, r16, r8)  # stride 8
        full = {"coarse": F.interpolate(pred, scale_factor=8, mode="bilinear")}
        # from stride 8 to 32 first, then back down by 2 at each level
        for branch, feat, stride, resize in zip(self.refine, (r32, r16, r8), (32, 16, 8), (0.25, 2, 2)):
            pred = branch(feat, F.interpolate(pred, scale_factor=resize, mode="bilinear"))
            full[stride] = F.interpolate(pred, scale_factor=stride, mode="bilinear")
        return [full[16], full[32], full["coarse"], full[8]]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CaraNet",
        ubench_id=36,
        year=2022,
        paper="CaraNet: Context Axial Reverse Attention Network for Segmentation of Small Medical Objects",
        deep_supervision=True,
        ref_params_m=46.642560,
        ref_source="U-Bench models/CNN/CaraNet/CaraNet.py (caranet(input_channel=3, num_classes=1), "
        "channel=32, backbone built with pretrained loading disabled), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Backbone untrained here; U-Bench loads ImageNet weights into it "
        "(res2net101_v1b_26w_4s, see extra['pretrained']). Its ImageNet classifier (backbone.fc, "
        "2,049,000 parameters, 4.4% of the total) is kept for the count and checkpoint loading but "
        "never used. U-Bench ignores input_channel: its stem always takes 3 channels and repeats a "
        "grey input; here the stem takes in_channels (summing a pretrained stem kernel over its input "
        "channels reproduces the repetition for 1 channel). U-Bench fails for num_classes > 1 (the "
        "decoder head always predicts 1 map and a class map is expanded to 32 channels); here the "
        "decoder head predicts num_classes maps and the reverse-attention weight is the mean over "
        "classes of 1 - sigmoid (the same at 1 class). Kept as in the reference: the refinement "
        "heads end in BN + PReLU on the logits; the 'h' attention pass reshapes without transposing "
        "(on square maps it attends along the width like the 'w' pass, on others it mixes rows); "
        "the CFP module's first conv (named conv1x1_1 there) is 3x3. Outputs: [stride 16, stride "
        "32, coarse (stride 8), stride 8], U-Bench's order, bilinear with align_corners=False as in "
        "the reference.",
        extra={
            "unused_params": ["backbone.fc.weight", "backbone.fc.bias"],
            "pretrained": res2net_v1b_record(
                RES2NET101_DEPTHS,
                "Res2Net_v1b.res2net101_v1b_26w_4s(pretrained=True) -> Caranet.resnet "
                "(layers [3, 4, 23, 3], model_zoo.load_url, strict load)",
            ),
        },
    )
)
def caranet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CaraNet (Res2Net-101-v1b backbone, channel 32) as U-Bench benchmarks it."""
    return CaraNet(in_channels=in_channels, num_classes=num_classes)
