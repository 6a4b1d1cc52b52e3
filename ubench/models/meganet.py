"""MEGANet: a ResNet-34 U-Net whose skips are refined by edge-guided attention at every scale.

Paper: Bui, Hoang, Ngo, Tran, Pham, Ngo, Lam, Nguyen, "MEGANet: Multi-Scale Edge-Guided Attention
Network for Weak Boundary Polyp Segmentation", WACV 2024.

Configuration: U-Bench's ``MEGANet`` = ``eganet(input_channel=3, num_classes=1)`` (repo
FengheTan9/U-Bench, models/CNN/MEGANet_ResNet/EGANet.py and modules.py; the ResNet-34 variant of
the paper), id 53, flagged ``deeps_supervision`` in models/model_id.json:
- encoder: torchvision's ResNet-34 (``resnet34(pretrained=True)`` in U-Bench; here untrained with
  torchvision's init, see ``extra["pretrained"]``): stem (7x7/2 conv, BN, ReLU) -> e1 at H/2, 3x3
  max-pool, layer1..4 -> e2..e5 at H/4 .. H/32 (64, 64, 128, 256, 512 channels); its classifier is
  not part of U-Bench's module;
- edges: the input turned to luminance (0.2989 R + 0.587 G + 0.114 B, torchvision's
  ``rgb_to_grayscale``), and the second level of its Laplacian pyramid (5x5 binomial blur with
  reflect padding, keep every other pixel, then that map minus its blurred zero-stuffed x2
  expansion), a high-pass map at H/2;
- decoder: e5 -> 3x3 conv-BN-ReLU (512) -> bilinear x2 (align_corners) gives d at H/16; then four
  times, deepest first: a head (3x3 conv-BN-ReLU to c/4, 1x1 conv to the classes) predicts a map
  from d; an edge-guided attention (EGA) block refines the encoder map of d's scale (e4, e3, e2, e1)
  with it; [EGA output, d] concatenated -> two 3x3 conv-BN-ReLU (to c/4, then 256, 128, 64, 64) ->
  bilinear x2 (align_corners) is the next d; a fifth head on the last d (full size) is the output;
- EGA(x, pred, edges): p = sigmoid(pred); the map x weighted by 1 - p (reverse attention), by the
  Laplacian of p (boundary attention) and by the edge map resized to x (bilinear, align_corners),
  concatenated, 3x3 conv-BN-ReLU back to c, gated by sigmoid(BN(3x3 conv to 1 channel)), plus x,
  then CBAM (channel gate: bias-ful MLP c -> c/16 -> c on the average- and max-pooled vectors,
  summed, sigmoid; spatial gate: 7x7 conv with bias over [channel max, channel mean], sigmoid).
The forward returns five full-size logits, [H/2, H/4, H/8, H/16 head maps upsampled bilinearly
(align_corners=False), final], the final prediction last, as U-Bench's module returns them.
H and W: multiples of 32, at least 64 (the reflect padding of the blur needs a side of 3 at H/16).
Parameters at 3 in / 1 class: 29,270,861, of which 21,284,672 in the encoder (counted by
instantiating U-Bench's module with a torchvision stand-in of the same layout).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.resnet import ResNet34Encoder, torchvision_resnet_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
MIN_SIDE = 64  # the H/16 map must be at least 3 pixels for the blur's reflect padding of 2
SIZES = tuple(range(MIN_SIDE, 1024 + 1, STRIDE))
LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601 weights, as torchvision's rgb_to_grayscale
DECODER_WIDTHS = (256, 128, 64, 64)  # after the EGA skips of e4, e3, e2, e1
CBAM_REDUCTION = 16


def luminance(x: torch.Tensor) -> torch.Tensor:
    """One grey channel: the luma of an RGB map, a one-channel map unchanged (torchvision)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def _binomial_kernel(x: torch.Tensor) -> torch.Tensor:
    """The 5x5 binomial kernel (outer product of 1 4 6 4 1, sum 1) as a 1-channel conv weight."""
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype)
    return (torch.outer(taps, taps) / 256.0)[None, None]


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), _binomial_kernel(x))


def pyramid_reduce(x: torch.Tensor) -> torch.Tensor:
    """One Laplacian-pyramid step down (Burt & Adelson): binomial blur, every other pixel."""
    return _blur(x)[..., ::2, ::2]


def pyramid_band(x: torch.Tensor) -> torch.Tensor:
    """The Laplacian (band-pass) level of a one-channel map: the map minus the blur (kernel x 4,
    which keeps the mean) of its reduced map put back on the even pixels of a zero map. H and W
    must be even, as they are for every map this model filters."""
    stuffed = torch.zeros_like(x)
    stuffed[..., ::2, ::2] = pyramid_reduce(x)
    return x - 4 * _blur(stuffed)


class ChannelGate(nn.Module):
    """CBAM channel gate: a shared MLP (with biases) on the global average and max vectors."""

    def __init__(self, channels: int, reduction: int = CBAM_REDUCTION):
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial gate: a 7x7 conv (with bias) over the channel max and mean, sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class EdgeGuidedAttention(nn.Module):
    """EGA: an encoder map weighted by the background (1 - p), the boundary (Laplacian of p) of the
    coarser prediction p and by the image's edges; fused, self-gated, residual, then CBAM."""

    def __init__(self, channels: int):
        super().__init__()
        self.fuse = nn.Sequential(*conv_bn_relu(3 * channels, channels))
        self.gate = nn.Sequential(nn.Conv2d(channels, 1, 3, padding=1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.cbam = nn.Sequential(ChannelGate(channels), SpatialGate())

    def forward(self, x: torch.Tensor, pred: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        # one attention map: the mean over classes of the class probabilities (itself at 1 class)
        p = torch.sigmoid(pred).mean(dim=1, keepdim=True)
        edges = F.interpolate(edges, size=x.shape[-2:], mode="bilinear", align_corners=True)
        fused = self.fuse(torch.cat([x * (1 - p), x * pyramid_band(p), x * edges], dim=1))
        return self.cbam(fused * self.gate(fused) + x)


def _up2() -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)


def side_head(channels: int, num_classes: int) -> nn.Sequential:
    """3x3 conv-BN-ReLU to channels / 4, then a 1x1 conv (with bias) to the class logits."""
    return nn.Sequential(*conv_bn_relu(channels, channels // 4), nn.Conv2d(channels // 4, num_classes, 1))


def up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU (to in / 4, then out) and a bilinear x2 (align_corners) upsampling."""
    return nn.Sequential(*conv_bn_relu(in_ch, in_ch // 4), *conv_bn_relu(in_ch // 4, out_ch), _up2())


class MEGANet(nn.Module):
    """ResNet-34 encoder, edge-guided attention on every skip, a head per decoder scale."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(
                f"MEGANet takes 1 (grey) or 3 (RGB) input channels, got {in_channels}: its edge "
                "branch works on the image's luminance, defined for those two only"
            )
        self.encoder = ResNet34Encoder(in_channels)
        skips = ResNet34Encoder.out_channels[3::-1]  # e4, e3, e2, e1: 256, 128, 64, 64
        top = ResNet34Encoder.out_channels[-1]
        self.bottom = nn.Sequential(*conv_bn_relu(top, top), _up2())
        ins = (top,) + DECODER_WIDTHS[:-1]  # decoder width at each skip's scale
        self.ups = nn.ModuleList(up_block(s + d, w) for s, d, w in zip(skips, ins, DECODER_WIDTHS))
        self.egas = nn.ModuleList(EdgeGuidedAttention(s) for s in skips)
        self.heads = nn.ModuleList(side_head(c, num_classes) for c in ins + DECODER_WIDTHS[-1:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        edges = pyramid_band(pyramid_reduce(luminance(x)))  # pyramid level 1, H/2
        feats = self.encoder(x)  # e1 (H/2), e2 .. e5 (H/4 .. H/32)
        d = self.bottom(feats[-1])  # H/16
        side = []
        for skip, ega, up, head in zip(feats[3::-1], self.egas, self.ups, self.heads):
            pred = head(d)
            side.append(pred)
            d = up(torch.cat([ega(skip, pred, edges), d], dim=1))
        size = x.shape[-2:]
        outs = [F.interpolate(p, size=size, mode="bilinear") for p in reversed(side)]
        return outs + [self.heads[-1](d)]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MEGANet",
        ubench_id=53,
        year=2024,
        paper="MEGANet: Multi-Scale Edge-Guided Attention Network for Weak Boundary Polyp Segmentation",
        deep_supervision=True,
        ref_params_m=29.270861,
        ref_source="U-Bench models/CNN/MEGANet_ResNet/EGANet.py (eganet(input_channel=3, num_classes=1), "
        "torchvision resnet34 built without weights by a stand-in of the same layout), counted by "
        "instantiating it",
        ref_input_size=256,
        input_sizes=SIZES,
        size_multiple=STRIDE,
        notes="Encoder untrained here (torchvision's init); U-Bench loads torchvision's ImageNet "
        "ResNet-34 (see extra['pretrained']). Luminance: U-Bench calls torchvision's "
        "rgb_to_grayscale, written out here: 0.2989 R + 0.587 G + 0.114 B for 3 channels, a "
        "1-channel input used as it is (as torchvision does); torchvision refuses any other channel "
        "count (TypeError), so here in_channels other than 1 or 3 is a ValueError when the model is "
        "built. U-Bench ignores input_channel (stored, never used; the ResNet stem is fixed at 3 "
        "channels, so a grey image must be repeated to 3, whose luminance is 0.9999 x the grey); "
        "here the stem takes in_channels (the pretrained loader sums the 3-channel stem kernel for "
        "1 channel, which is what the repetition computes). U-Bench fails for num_classes > 1 (a "
        "class map multiplies the feature map, and its Laplacian is a 1-channel grouped conv); "
        "here the EGA blocks use the mean over classes of sigmoid(pred) (the Laplacian is linear, "
        "so this is the mean of the per-class maps; the same at 1 class). Laplacian pyramid: "
        "U-Bench builds 5 levels of the grey image and uses level 1 only; here only what level 1 "
        "needs is computed (same values); its zero-stuffed x2 expansion is written as an indexed "
        "assignment instead of U-Bench's concatenate/view/permute (same map), and U-Bench's "
        "nearest-resize fallback for odd sizes is dropped (never reached for multiples of 32). "
        "U-Bench's Gaussian kernel is created with .cuda() on every call (the module cannot run "
        "on a CPU); here it is made on the input's device and dtype. H and W must be multiples "
        "of 32 and at least 64: at 32 the H/16 maps are 2 pixels "
        "and U-Bench's reflect padding of 2 fails; here the declared sizes are the square "
        "multiples of 32 from 64 to 1024 (U-Bench also runs non-square ones). Outputs: "
        "[H/2, H/4, H/8, H/16 side maps upsampled bilinearly (align_corners=False), final], the "
        "order U-Bench returns them; U-Bench's loss averages all five, its prediction is the last.",
        extra={
            "pretrained": torchvision_resnet_record(
                "resnet34", "encoder.",
                "torchvision.models.resnet34(pretrained=True) -> EGANet.encoder1_conv, encoder1_bn "
                "(conv1, bn1), encoder2..encoder5 (layer1..layer4); fc not kept",
            ),
        },
    )
)
def meganet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MEGANet (ResNet-34 backbone, untrained) as U-Bench benchmarks it, five full-size outputs."""
    return MEGANet(in_channels=in_channels, num_classes=num_classes)
