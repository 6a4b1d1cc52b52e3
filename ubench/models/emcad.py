"""EMCAD: a PVTv2-B2 encoder with an efficient multi-scale convolutional attention decoder.

Paper: Rahman, Munir, Marculescu, "EMCAD: Efficient Multi-scale Convolutional Attention Decoding
for Medical Image Segmentation", CVPR 2024.

Configuration: U-Bench's ``EMCAD`` (repo FengheTan9/U-Bench, models/Hybrid/EMCAD/networks.py
``EMCADNet`` + decoders.py + pvtv2.py), id 34, flagged ``deeps_supervision`` in
models/model_id.json. Its main.py calls ``build_model(args, input_channel=..., num_classes=...)``,
which forwards both to ``EMCADNet``; every other argument keeps its default: kernel sizes 1/3/5,
expansion factor 2, depth-wise branches in parallel and summed (``add``), 3x3 attention gates,
ReLU, encoder ``pvt_v2_b2``, ``pretrain=True``. The architecture:
- a grey adapter (1x1 conv 1 -> 3, BN, ReLU) run on 1-channel inputs only;
- encoder: PVTv2-B2 (dims 64/128/320/512, depths 3/4/6/3, strides 4-32), untrained here;
- decoder, deepest level first, on widths 512/320/128/64. Each level is a multi-scale
  convolutional attention module (MSCAM): CBAM-style channel gate (avg- and max-pooled, shared
  bias-free C -> C/16 -> C MLP), then a spatial gate (7x7 conv over channel mean and max; ONE
  conv shared by all four levels), then a multi-scale convolution block (1x1 expansion to 2C +
  BN + ReLU; depth-wise 1x1, 3x3 and 5x5 convs, each + BN + ReLU, summed; a channel shuffle in
  C groups; 1x1 projection + BN; residual). Between levels: an efficient up-convolution (nearest
  x2, depth-wise 3x3 + BN + ReLU, 1x1 conv with bias to the next width), and a large-kernel
  grouped attention gate on the encoder skip (grouped 3x3 convs with C/2 groups on the upsampled
  map and the skip, each + BN, summed, ReLU, 1x1 conv + BN + sigmoid, times the skip) whose
  output is added to the upsampled map;
- a 1x1 head on each of the four decoder maps, upsampled bilinearly by 32, 16, 8 and 4.
The forward returns the four full-size logits, coarsest first, the stride-4 one (U-Bench's final
prediction) last. Spatial size: any multiple of 32. Parameters at 3 in / 1 class: 26,764,411
(PVTv2-B2 24,849,856, decoder 1,913,515, heads 1,028, grey adapter 12), counted by instantiating
U-Bench's module; the paper quotes 26.76M.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.pvt import PVTv2Encoder, pvt_v2_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
KERNELS = (1, 3, 5)  # the multi-scale depth-wise branches
EXPANSION = 2
GATE_KERNEL = 3
GATE_RATIO = 16  # channel-gate bottleneck
# U-Bench's networks.py PVT_URLS["pvt_v2_b2"]: the PVT authors' GitHub release
PVT_B2_URL = "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth"


def init_decoder_weights(m: nn.Module) -> None:
    """EMCAD's decoder init ("normal" scheme): conv weights N(0, 0.02), zero conv biases, unit
    BatchNorms. Use with ``module.apply``."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def depthwise_bn_relu(c: int, k: int) -> nn.Sequential:
    """Bias-free depth-wise k x k conv ('same' padding), BN, ReLU."""
    return nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False), nn.BatchNorm2d(c),
                         nn.ReLU(inplace=True))


class ChannelGate(nn.Module):
    """Per-channel weights: sigmoid of a shared bias-free C -> C/r -> C MLP (1x1 convs, ReLU)
    applied to the average- and the max-pooled map, summed (r = min(16, C))."""

    def __init__(self, c: int, ratio: int = GATE_RATIO):
        super().__init__()
        hidden = c // min(ratio, c)
        self.fc1 = nn.Conv2d(c, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, c, 1, bias=False)

    def score(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.score(F.adaptive_avg_pool2d(x, 1)) + self.score(F.adaptive_max_pool2d(x, 1)))


class SpatialGate(nn.Module):
    """Per-pixel weights: sigmoid of a bias-free 7x7 conv over the channel mean and max."""

    def __init__(self, k: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class MultiScaleConvBlock(nn.Module):
    """MSCB at width C (stride 1, in = out): expand to ``EXPANSION`` x C, sum of parallel
    depth-wise branches, channel shuffle, project back, plus the input."""

    def __init__(self, c: int, kernels=KERNELS, expansion: int = EXPANSION):
        super().__init__()
        wide = c * expansion
        self.groups = c  # the reference shuffles in gcd(wide, c) = c groups
        self.expand = nn.Sequential(*conv_bn_relu(c, wide, 1, bias=False))
        self.branches = nn.ModuleList(depthwise_bn_relu(wide, k) for k in kernels)
        self.project = nn.Sequential(nn.Conv2d(wide, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x)
        y = sum(branch(y) for branch in self.branches)
        # ShuffleNet's shuffle: channel (group g, member m) moves to position (m, g)
        y = rearrange(y, "b (g m) h w -> b (m g) h w", g=self.groups)
        return x + self.project(y)


class EfficientUpConv(nn.Module):
    """EUCB: nearest x2, depth-wise 3x3 + BN + ReLU, 1x1 conv (with bias) to the next width. (The
    reference's channel shuffle here uses as many groups as channels, an identity: left out.)"""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.smooth = depthwise_bn_relu(cin, k)
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.smooth(F.interpolate(x, scale_factor=2, mode="nearest")))


class GroupedAttentionGate(nn.Module):
    """LGAG at width C: the skip times sigmoid(BN(1x1(ReLU(BN(gconv(g)) + BN(gconv(skip)))))),
    both grouped k x k convs C -> C/2 with C/2 groups (bias), for the upsampled decoder map g."""

    def __init__(self, c: int, k: int = GATE_KERNEL):
        super().__init__()
        mid = c // 2
        self.from_decoder = nn.Sequential(nn.Conv2d(c, mid, k, padding=k // 2, groups=mid), nn.BatchNorm2d(mid))
        self.from_skip = nn.Sequential(nn.Conv2d(c, mid, k, padding=k // 2, groups=mid), nn.BatchNorm2d(mid))
        self.score = nn.Sequential(nn.Conv2d(mid, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * self.score(F.relu(self.from_decoder(g) + self.from_skip(skip)))


class EMCADDecoder(nn.Module):
    """MSCAM at the deepest map; then per finer level: up-convolution, gated skip added, MSCAM.
    ``widths`` deepest first; returns the four decoder maps, deepest first."""

    def __init__(self, widths=(512, 320, 128, 64)):
        super().__init__()
        self.spatial_gate = SpatialGate()  # one conv for all levels, as in the reference
        self.channel_gates = nn.ModuleList(ChannelGate(c) for c in widths)
        self.blocks = nn.ModuleList(MultiScaleConvBlock(c) for c in widths)
        self.ups = nn.ModuleList(EfficientUpConv(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.skip_gates = nn.ModuleList(GroupedAttentionGate(c) for c in widths[1:])
        self.apply(init_decoder_weights)

    def mscam(self, level: int, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_gates[level](x) * x
        x = self.spatial_gate(x) * x
        return self.blocks[level](x)

    def forward(self, deepest: torch.Tensor, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        d = self.mscam(0, deepest)
        outs = [d]
        for i, skip in enumerate(skips):
            d = self.ups[i](d)
            d = self.mscam(i + 1, d + self.skip_gates[i](d, skip))
            outs.append(d)
        return outs


class EMCADNet(nn.Module):
    """(grey adapter) -> PVTv2-B2 -> EMCAD decoder -> a head per level (deep supervision)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.in_channels = in_channels
        # built whatever the input, as U-Bench does; only a 1-channel model runs it
        self.grey = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(inplace=True))
        self.encoder = PVTv2Encoder(3 if in_channels == 1 else in_channels)
        widths = tuple(reversed(self.encoder.dims))
        self.decoder = EMCADDecoder(widths)
        self.heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in widths)  # deepest first

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"EMCAD was built for {self.in_channels} input channels, got {x.shape[1]}")
        if self.in_channels == 1:
            x = self.grey(x)
        feats = self.encoder(x)
        maps = self.decoder(feats[-1], feats[-2::-1])
        scales = [STRIDE >> i for i in range(len(maps))]
        return [F.interpolate(head(m), scale_factor=s, mode="bilinear")
                for head, m, s in zip(self.heads, maps, scales)]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="EMCAD",
        ubench_id=34,
        year=2024,
        paper="EMCAD: Efficient Multi-scale Convolutional Attention Decoding for Medical Image Segmentation",
        deep_supervision=True,
        ref_params_m=26.764411,
        ref_source="U-Bench models/Hybrid/EMCAD/networks.py + decoders.py + pvtv2.py (EMCADNet("
        "input_channel=3, num_classes=1), other arguments at their defaults: pvt_v2_b2, kernel sizes "
        "1/3/5, expansion 2, add, lgag_ks 3, relu), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="PVTv2-B2 backbone built untrained (train.pretrained loads pvt_v2_b2.pth into encoder). "
        "U-Bench's factory passes input_channel and num_classes; EMCADNet accepts input_channel and "
        "ignores it: the backbone is always 3-channel and the forward sends any 1-channel tensor "
        "through a learned 1x1 conv (1 -> 3) + BN + ReLU adapter that it builds for every model. "
        "Here the adapter is likewise always built (its 12 parameters are unused_params at 3 "
        "channels) and runs when in_channels == 1; other in_channels reach the first patch "
        "embedding (U-Bench crashes on them); an input whose channel count differs from "
        "in_channels is a ValueError (U-Bench decides per tensor). U-Bench's constructor downloads "
        "the PVTv2-B2 ImageNet checkpoint inside a try/except that only prints on failure, so "
        "without network access (or any other load error) its runs silently train the backbone "
        "from PVT's random init; when the download works (torch 2.7 per its requirements, "
        "weights_only=True is accepted) every backbone tensor is filled, only the classifier head.* "
        "is filtered out. Quirks of U-Bench's code kept: one spatial-gate conv is shared by all "
        "four decoder levels; the channel shuffle inside the up-convolution uses as many groups as "
        "channels (an identity, left out); EMCADNet's defaults (expansion 2, ReLU) override "
        "decoders.EMCAD's own (6, ReLU6); forward's mode argument changes nothing. Decoder convs are "
        "initialised N(0, 0.02) with zero biases, unit BatchNorms (U-Bench's 'normal' scheme); the "
        "grey adapter and the heads keep PyTorch's defaults.",
        extra={
            "unused_params": ["grey.0.weight", "grey.0.bias", "grey.1.weight", "grey.1.bias"],
            "pretrained": pvt_v2_record(
                "b2", "encoder.",
                "networks.py EMCADNet.__init__ (pretrain=True): torch.hub.load_state_dict_from_url("
                "PVT_URLS['pvt_v2_b2'], weights_only=True), keys kept only where they are keys of "
                "self.backbone = pvtv2.pvt_v2_b2() (patch_embed{1-4}, block{1-4}, norm{1-4}; head.* "
                "dropped), merged into its state_dict and loaded strictly; the whole load sits in a "
                "try/except that prints and goes on untrained on any failure",
                url=PVT_B2_URL),
        },
    )
)
def emcad(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """EMCAD as U-Bench benchmarks it (PVTv2-B2, kernels 1/3/5, expansion 2, four outputs)."""
    return EMCADNet(in_channels=in_channels, num_classes=num_classes)
