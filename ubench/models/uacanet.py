"""UACANet: a dilated Res2Net encoder, axial-attention context and decoder, and uncertainty-aware
context attention that refines the map from coarse to fine.

Paper: Kim, Lee, Kim, "UACANet: Uncertainty Augmented Context Attention for Polyp Segmentation",
ACM Multimedia 2021.

Configuration: U-Bench's ``UACANet(input_channel=3, num_classes=1)`` with its defaults channels=256,
output_stride=16, pretrained=True (repo FengheTan9/U-Bench, models/CNN/UACANet/UACANet.py,
backbones/Res2Net_v1b.py, modules/*.py), id 49, flagged ``deeps_supervision`` in
models/model_id.json:
- encoder: Res2Net-50-v1b 26w x 4s (layers 3, 4, 6, 3) at output stride 16: layer4 keeps stride 1
  and dilates its 3x3 convs by 2, so layer3 and layer4 are both at stride 16. U-Bench loads the
  ImageNet release res2net50_v1b_26w_4s into it; here the same architecture, untrained
  (ops/res2net.py). Its ImageNet classifier is built but never used;
- parallel axial attention (PAA) context blocks reduce layer2/3/4 (512, 1024, 2048 channels) to
  256: a 1x1 branch and three branches 1x1 -> 1xk -> kx1 -> (height + width self-attention) ->
  3x3 dilated k (k = 3, 5, 7), concatenated, 3x3 fusion, plus a 1x1 shortcut, ReLU;
- a PAA decoder: the stride-16 maps resized to stride 8 (align_corners=True), concatenated with
  the stride-8 one, 3x3 conv, axial attention, three 3x3 convs, a 3x3 head: the coarse map;
- three uncertainty-augmented context attention (UACA) blocks, from layer4 down to layer2, each on
  [context map, resized previous feature]: the previous map splits the image into foreground,
  background and uncertain (0.5 - |sigmoid - 0.5|) weights, which pool the input into three
  context vectors; pixels (two 3x3 conv-BN-ReLU queries) attend over them (two 1x1 conv-BN-ReLU
  keys and values), the result (3x3 conv-BN-ReLU) is concatenated to the input, two 3x3
  conv-BN-ReLU, a 1x1 conv + BN head, added to the previous map as a residual.
Every conv is bias-free and followed by BatchNorm (no activation unless said), except the
decoder's head (no BN). The forward returns the four maps upsampled bilinearly to the input size:
[decoder, layer4, layer3, layer2 stage], the last being the final prediction. Spatial size: any
multiple of 16. Parameters at 3 in / 1 class: 69,157,994, of which 25,718,352 in the backbone
including its unused 2,049,000-parameter classifier (counted by instantiating U-Bench's module).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.res2net import RES2NET50_DEPTHS, Res2NetV1b, res2net_v1b_record
from ubench.models.registry import ModelInfo, register_model

CHANNELS = 256
STRIDE = 16  # output_stride=16: layer4 dilated instead of strided
OS16_STRIDES = (1, 2, 2, 1)
OS16_DILATIONS = (1, 1, 1, 2)
ENCODER_WIDTHS = (512, 1024, 2048)  # layer2, layer3, layer4
PAA_KERNELS = (3, 5, 7)


def _pair(k) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else tuple(k)


class ConvBN(nn.Sequential):
    """Bias-free conv with 'same' padding + BatchNorm, no activation."""

    def __init__(self, cin: int, cout: int, kernel_size=1, dilation: int = 1):
        kh, kw = _pair(kernel_size)
        pad = (dilation * (kh // 2), dilation * (kw // 2))
        super().__init__(
            nn.Conv2d(cin, cout, (kh, kw), padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
        )


def _conv_bn_relu(cin: int, cout: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(*conv_bn_relu(cin, cout, kernel_size, bias=False))


def _init_head(module: nn.Module) -> None:
    """The reference's conv init: He-normal with fan-in (torch's ``kaiming_normal_`` defaults) on
    every conv weight; BatchNorm and the attention gains keep their defaults (1/0, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)


# ---- parallel axial attention ----


class AxialSelfAttention(nn.Module):
    """Self-attention among the positions of one axis ('h' or 'w'), each position described by
    the whole rest of the map; residual with a learnt gain that starts at 0.

    As in the reference, the (B, C, H, W) projections are reshaped (not transposed) to
    (B, -1, L) with L the axis length: for 'w' the positions are the columns, for 'h' they are
    consecutive runs of H values in memory, which for a square map are the columns as well."""

    def __init__(self, channels: int, axis: str):
        super().__init__()
        if axis not in ("h", "w"):
            raise ValueError(f"axis must be 'h' or 'w', got {axis!r}")
        self.axis = axis
        self.query = ConvBN(channels, channels // 8)
        self.key = ConvBN(channels, channels // 8)
        self.value = ConvBN(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        length = h if self.axis == "h" else w
        q = self.query(x).reshape(b, -1, length).transpose(1, 2)
        k = self.key(x).reshape(b, -1, length)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, L, L)
        v = self.value(x).reshape(b, -1, length)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return self.gamma * out + x


class AxialAttention(nn.Module):
    """Height and width self-attention run in parallel on the same map, summed."""

    def __init__(self, channels: int):
        super().__init__()
        self.h = AxialSelfAttention(channels, "h")
        self.w = AxialSelfAttention(channels, "w")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) + self.w(x)


class AxialBranch(nn.Module):
    """One context branch: 1x1 reduction, separable 1xk and kx1 convs, axial attention, 3x3 conv
    dilated by k."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.reduce = nn.Sequential(ConvBN(cin, cout, 1), ConvBN(cout, cout, (1, k)), ConvBN(cout, cout, (k, 1)))
        self.dilated = ConvBN(cout, cout, 3, dilation=k)
        self.attention = AxialAttention(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dilated(self.attention(self.reduce(x)))


class AxialContext(nn.Module):
    """PAA context block: a 1x1 branch and three axial branches of growing receptive field
    (k = 3, 5, 7), fused by a 3x3 conv, plus a 1x1 shortcut, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.branches = nn.ModuleList([ConvBN(cin, cout, 1)])
        self.branches.extend(AxialBranch(cin, cout, k) for k in PAA_KERNELS)
        self.fuse = ConvBN(len(self.branches) * cout, cout, 3)
        self.shortcut = ConvBN(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([branch(x) for branch in self.branches], 1))
        return F.relu(y + self.shortcut(x))


class AxialDecoder(nn.Module):
    """PAA decoder: the three context maps at the finest one's size, fused, axial attention, three
    3x3 convs; returns (feature, coarse map)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.reduce = ConvBN(3 * channels, channels, 3)
        self.convs = nn.Sequential(*(ConvBN(channels, channels, 3) for _ in range(3)))
        self.head = nn.Conv2d(channels, num_classes, 3, padding=1, bias=False)
        self.attention = AxialAttention(channels)

    def forward(self, *feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = feats[-1].shape[-2:]
        x = torch.cat([F.interpolate(f, size=size, mode="bilinear", align_corners=True) for f in feats[:-1]]
                      + [feats[-1]], 1)
        x = self.convs(self.attention(self.reduce(x)))
        return x, self.head(x)


# ---- uncertainty-augmented context attention ----


class UncertaintyContextAttention(nn.Module):
    """UACA: the previous map weights the input into foreground, background and uncertain-region
    context vectors; every pixel attends over them; the attended context is fused with the input
    and a residual on the previous map is predicted. Returns (feature, map)."""

    def __init__(self, cin: int, channels: int, num_classes: int):
        super().__init__()
        self.channels = channels
        self.query = nn.Sequential(_conv_bn_relu(cin, channels, 3), _conv_bn_relu(channels, channels, 3))
        self.key = nn.Sequential(_conv_bn_relu(cin, channels, 1), _conv_bn_relu(channels, channels, 1))
        self.value = nn.Sequential(_conv_bn_relu(cin, channels, 1), _conv_bn_relu(channels, channels, 1))
        self.context = _conv_bn_relu(channels, channels, 3)
        self.fuse = nn.Sequential(_conv_bn_relu(cin + channels, channels, 3), _conv_bn_relu(channels, channels, 3))
        self.head = ConvBN(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        prior = F.interpolate(prior, size=(h, w), mode="bilinear", align_corners=False)
        p = torch.sigmoid(prior) - 0.5
        regions = torch.cat([p.clamp(0, 1), (-p).clamp(0, 1), 0.5 - p.abs()], 1)  # fg, bg, uncertain
        # the reference flattens the input by a reshape, not a transpose, as the UACANet release:
        # the rows pooled here are runs of C consecutive values in memory, not pixels
        pooled = torch.bmm(regions.reshape(b, -1, h * w), x.reshape(b, h * w, -1))
        pooled = pooled.transpose(1, 2).unsqueeze(3)  # (B, C, 3 * classes, 1)
        q = self.query(x).reshape(b, self.channels, -1).transpose(1, 2)  # (B, HW, c)
        k = self.key(pooled).reshape(b, self.channels, -1)  # (B, c, 3 * classes)
        v = self.value(pooled).reshape(b, self.channels, -1).transpose(1, 2)
        sim = torch.softmax(torch.bmm(q, k) * self.channels**-0.5, dim=-1)
        # contiguous: a transposed view would reach the conv in a channels-last layout
        attended = torch.bmm(sim, v).transpose(1, 2).contiguous().view(b, self.channels, h, w)
        x = self.fuse(torch.cat([x, self.context(attended)], 1))
        return x, self.head(x) + prior


class UACANet(nn.Module):
    """UACANet: Res2Net-50 (output stride 16) -> PAA context on layer2..4 -> PAA decoder (coarse
    map) -> UACA from layer4 down to layer2; all four maps at full size, the finest stage last."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, channels: int = CHANNELS):
        super().__init__()
        self.backbone = Res2NetV1b(in_channels, depths=RES2NET50_DEPTHS, strides=OS16_STRIDES,
                                   dilations=OS16_DILATIONS)
        self.context = nn.ModuleList(AxialContext(c, channels) for c in ENCODER_WIDTHS)
        self.decoder = AxialDecoder(channels, num_classes)
        self.attention = nn.ModuleList(
            UncertaintyContextAttention(2 * channels, channels, num_classes) for _ in ENCODER_WIDTHS
        )
        for head in (self.context, self.decoder, self.attention):
            _init_head(head)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        levels = [ctx(f) for ctx, f in zip(self.context, self.backbone.features(x)[1:])]
        feat, pred = self.decoder(levels[2], levels[1], levels[0])
        outs = [pred]
        for attention, level in zip(reversed(self.attention), reversed(levels)):
            feat = F.interpolate(feat, size=level.shape[-2:], mode="bilinear", align_corners=False)
            feat, pred = attention(torch.cat([level, feat], 1), pred)
            outs.append(pred)
        return [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="UACANet",
        ubench_id=49,
        year=2021,
        paper="UACANet: Uncertainty Augmented Context Attention for Polyp Segmentation",
        deep_supervision=True,
        ref_params_m=69.157994,
        ref_source="U-Bench models/CNN/UACANet/UACANet.py (UACANet(input_channel=3, num_classes=1), "
        "channels=256, output_stride=16, built with pretrained=False), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Backbone untrained here; U-Bench loads the ImageNet Res2Net-50-v1b release into it "
        "(see extra['pretrained']; its loader only prints a message when the download fails). Its "
        "ImageNet classifier (backbone.fc, 2,049,000 parameters, 3.0% of the total) is kept for the "
        "count and checkpoint loading but never used. U-Bench's forward builds no loss: its target "
        "is fixed to None, so the bce_iou_loss branch never runs (it holds no parameters), and a "
        "training loss is not part of this model. Two reshapes of the reference are kept as they "
        "are: the 'h' axial attention reshapes (B, C, H, W) to (B, -1, H) without transposing (for "
        "square maps it attends along the width, as the 'w' one does), and UACA pools the input "
        "reshaped, not transposed, to (B, HW, C). U-Bench ignores input_channel: its stem always "
        "takes 3 channels and repeats a grey input; here the stem takes in_channels (summing a "
        "pretrained stem kernel over its input channels reproduces the repetition for 1 channel). "
        "U-Bench's module resizes every map by shape, so it runs at any size; here sizes are "
        "multiples of the output stride, 16. Outputs: [decoder (stride 8), layer4, layer3, "
        "layer2 stage], bilinear with align_corners=False as in the reference. Head convs use the "
        "reference's He-normal (fan-in) init; the backbone torchvision's ResNet init.",
        extra={
            "unused_params": ["backbone.fc.weight", "backbone.fc.bias"],
            "pretrained": res2net_v1b_record(
                RES2NET50_DEPTHS,
                "Res2Net_v1b.res2net50_v1b_26w_4s(pretrained=True, output_stride=16) -> "
                "UACANet.resnet (torch.hub.load_state_dict_from_url, load_state_dict strict)",
            ),
        },
    )
)
def uacanet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UACANet (Res2Net-50-v1b at output stride 16, channels 256) as U-Bench benchmarks it."""
    return UACANet(in_channels=in_channels, num_classes=num_classes)
