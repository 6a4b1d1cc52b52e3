"""ERDUnet: two U-shaped networks in series, a ResNet-34 one whose output guides a light one.

Paper: Li, Zhai, Xia, "ERDUnet: An Efficient Residual Double-Coding Unet for Medical Image
Segmentation", IEEE Transactions on Circuits and Systems for Video Technology, 2024
(doi 10.1109/TCSVT.2023.3300846).

Configuration: U-Bench's ``ERDUnet`` class with its defaults (repo FengheTan9/U-Bench,
models/CNN/ERDUnet/ERDUnet.py; ``build_model`` passes ``input_channel=3, num_classes=1``, so
``drop_rate=0.2``, ``in_h = in_w = 256``, ``normal_init=True``, ``pretrained=False``: the
torchvision ResNet-34 is built without weights and nothing is loaded). At a 256x256 input:

- Net 1 encoder: ResNet-34's stem (64 @ H/2), layer1 (64 @ H/4), layer2 (128 @ H/8) and layer3
  (256 @ H/16), channel dropout 0.2 after each layer; a context path from the stem: a
  feature-conservation block (7x7 conv, residual 7x7 depthwise, 1x1; ReLU then BN after each) to 32,
  then two context-embedding blocks (CEE) to 64 @ H/4 and 128 @ H/8 (the second with the triple
  gate on its embedding and the pooled-conv branch).
- CEE (stride 2): a 3x3/2 conv + 1x1 conv embedding; its LayerNormed tokens plus a depthwise-3x3 +
  GELU positional term, a 3x3 conv + BN + GELU; then either (a) a 1x1 conv + BN + GELU over
  [that, embedding] followed by a Linear, or (b) a grouped 3x3 + two 1x1 convs over [that, a
  3x3 conv -> max-pool -> 1x1 conv branch of the input], then the 1x1 merge with the embedding;
  the LayerNormed embedding is added back.
- Bottleneck: multi-receptive-field aggregation (the three encoder maps 1x1-projected to 256,
  max-pooled to H/16, fused by a 1x1 conv + BN + GELU, channel dropout, plus the differential
  regional attention of the pooled maps, pairwise), the triple gate (IRE: channel, spatial and
  pointwise gates in series) + BN, the triple gate again on the sum with layer3 + BN, and a
  differential regional attention against layer3 with a residual GELU.
- Net 1 decoder: three steps of 1x1 conv + BN + GELU halving the width, bilinear x2, addition of
  the context map, a triple gate + BN (last step: GELU), a regional attention against the encoder
  map (thresholded class maps for the first two steps) with a residual GELU; a 3x3 conv to 16 and
  bilinear x2 give net 1's output at full resolution.
- Net 2: a feature-conservation block on the image (16 @ H) is gated by the spatial gate of net 1's
  output (x * g + x), three CEEs (b) to 32, 64, 128 with dropout 0.2, the same bottleneck at 128,
  two decoder steps (1x1 conv + BN + GELU, bilinear x2, then twice: concatenate a skip, channel
  gate, 1x1 conv + BN + GELU; skips layer1 then net 2's own map, and the context map then net 2's
  own map), a 3x3 conv to 16 and bilinear x2.
- Head: [net 1, net 2] -> 3x3 conv + BN + GELU to 16 -> 3x3 conv to the classes.

Initialisation as U-Bench's: torchvision's for the ResNet (He-normal fan-out); every other conv
He-normal (fan-in) with a uniform bias, BN weight 1 and bias 0. Parameters at 3 in / 1 class:
10,303,733 (counted by instantiating U-Bench's module with a torchvision-layout ResNet-34).

U-Bench's module builds layers its forward never runs or whose output it discards: two auxiliary
heads (on the bottleneck and on layer3), the class-map convs of the regional attentions in simple
mode, the spatial and pointwise parts of the channel-only gates, the pointwise part of the
spatial-only gate and, per CEE, the unused variant's layers. They are kept under ``unused`` names
(so the count is U-Bench's; ``extra["unused_params"]``) and not run. The class-map convs of the
regional attentions in threshold mode are run but get no gradient (the threshold is a step).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.conv_blocks import FeatureConservation
from ubench.models.ops.resnet import ResNet34Encoder
from ubench.models.registry import ModelInfo, register_model

DROP = 0.2
THRESHOLD = 0.5
INPUT_SIZE = 256


def conv_unit(in_ch: int, out_ch: int, kernel_size: int, bn: bool = True, act: bool = True,
              bias: bool = True) -> nn.Sequential:
    """Conv ('same' padding) -> optional BN -> optional GELU."""
    layers = OrderedDict(conv=nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2, bias=bias))
    if bn:
        layers["bn"] = nn.BatchNorm2d(out_ch)
    if act:
        layers["act"] = nn.GELU()
    return nn.Sequential(layers)


def conv1x1_bn_gelu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.GELU())


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class TripleGate(nn.Module):
    """IRE: a channel gate (squeeze-excitation with 1x1 convs), then a spatial gate (7x7 conv + BN
    over channel max and mean), then a pointwise gate (1x1 bottleneck), each multiplying its input.
    ``mode="channel"`` stops after the first; ``mode="spatial"`` returns the spatial gate map."""

    def __init__(self, ch: int, reduction: int, mode: str = "full"):
        super().__init__()
        if mode not in ("full", "channel", "spatial"):
            raise ValueError(f"mode must be 'full', 'channel' or 'spatial', got {mode!r}")
        self.mode = mode
        hidden = int(ch / reduction)
        self.fc1 = nn.Conv2d(ch, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, ch, 1)
        rest = OrderedDict(
            spatial=conv_unit(2, 1, 7, act=False, bias=False), fc3=nn.Conv2d(ch, hidden, 1), fc4=nn.Conv2d(hidden, ch, 1)
        )
        live = {"full": 3, "channel": 0, "spatial": 1}[mode]
        for name in list(rest)[:live]:
            self.add_module(name, rest.pop(name))
        if rest:
            self.unused = nn.ModuleDict(rest)  # built by the reference, never run in this mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        if self.mode == "channel":
            return x
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        gate = torch.sigmoid(self.spatial(pooled))
        if self.mode == "spatial":
            return gate
        x = gate * x
        return torch.sigmoid(self.fc4(F.relu(self.fc3(x)))) * x


class RegionalAttention(nn.Module):
    """Differential regional attention (DRA): where two maps disagree about exceeding a threshold
    (the maps themselves, or ``thresholded=True``: their 1x1 class maps), weight the first map up
    (x * w + x; with class maps w = sigmoid of a learned 1x1 conv + BN + GELU of the disagreement),
    then a 1x1 conv + BN + GELU."""

    def __init__(self, ch: int, classes: int, thresholded: bool):
        super().__init__()
        self.thresholded = thresholded
        self.refine = conv1x1_bn_gelu(ch, ch)
        maps = OrderedDict(
            score_a=nn.Conv2d(ch, classes, 1),
            score_b=nn.Conv2d(ch, classes, 1),
            region=conv1x1_bn_gelu(classes, 1),
        )
        if thresholded:
            for name, module in maps.items():
                self.add_module(name, module)
        else:
            self.unused = nn.ModuleDict(maps)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if self.thresholded:
            differ = (self.score_a(x1) > THRESHOLD) != (self.score_b(x2) > THRESHOLD)
            x = torch.sigmoid(self.region(differ.to(x1.dtype))) * x1 + x1
        else:
            x = ((x1 > THRESHOLD) != (x2 > THRESHOLD)).to(x1.dtype) * x1 + x1
        return self.refine(x)


class ScaleAggregation(nn.Module):
    """MRA: three encoder maps projected to one width and max-pooled to the coarsest grid, fused by
    a 1x1 conv + BN + GELU (channel dropout), plus regional attention between neighbouring scales
    (one module for both pairs)."""

    def __init__(self, widths, dim: int, classes: int):
        super().__init__()
        self.proj1 = nn.Conv2d(widths[0], dim, 1)
        self.proj2 = nn.Conv2d(widths[1], dim, 1)
        self.fuse = conv1x1_bn_gelu(3 * dim, dim)
        self.drop = nn.Dropout2d(DROP)
        self.edge = RegionalAttention(dim, classes, thresholded=False)

    def forward(self, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor) -> torch.Tensor:
        a = F.max_pool2d(self.proj1(c1), 4)
        b = F.max_pool2d(self.proj2(c2), 2)
        fused = self.fuse(torch.cat([a, b, c3], dim=1))
        return self.drop(fused) + self.edge(b, a) + self.edge(c3, b)


class ContextEmbed(nn.Module):
    """CEE: stride-2 embedding that mixes a token view (LayerNorm + depthwise positional term)
    with convolutions; ``pooled_branch`` picks the variant that also runs a 3x3 conv + max-pool
    branch of the input (else a Linear on the merged tokens); ``gate`` puts a triple gate on the
    embedding. (B, C_in, H, W) -> (B, dim, H/2, W/2)."""

    def __init__(self, in_ch: int, dim: int, pooled_branch: bool, gate: bool = False):
        super().__init__()
        self.pooled_branch = pooled_branch
        parts = OrderedDict(
            gate=TripleGate(dim, 4),
            embed=nn.Sequential(nn.Conv2d(in_ch, dim, 3, stride=2, padding=1), nn.Conv2d(dim, dim, 1)),
            pooled=nn.Sequential(
                nn.Conv2d(in_ch, dim, 3, padding=1), nn.MaxPool2d(2), *conv1x1_bn_gelu(dim, dim)
            ),
            norm=nn.LayerNorm(dim),
            pos=nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU()),
            mix=conv_unit(dim, dim, 3),
            pos_extra=nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU()),
            branch=nn.Sequential(
                nn.Conv2d(2 * dim, dim, 3, padding=1, groups=dim),
                nn.GELU(),
                *conv1x1_bn_gelu(dim, dim),
                *conv1x1_bn_gelu(dim, dim),
            ),
            merge=conv1x1_bn_gelu(2 * dim, dim),
            out=nn.Linear(dim, dim),
        )
        dead = {"pos_extra"} | ({"out"} if pooled_branch else {"pooled", "branch"})
        if not gate:
            dead.add("gate")
        for name in [n for n in parts if n not in dead]:
            self.add_module(name, parts.pop(name))
        self.unused = nn.ModuleDict(parts)  # the reference builds both variants' layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embed(x)
        if hasattr(self, "gate"):
            emb = self.gate(emb)
        h, w = emb.shape[-2:]
        tokens = self.norm(map_to_tokens(emb))
        y = self.mix(tokens_to_map(tokens + map_to_tokens(self.pos(emb)), h, w))
        if self.pooled_branch:
            y = self.branch(torch.cat([y, self.pooled(x)], dim=1))
            out = map_to_tokens(self.merge(torch.cat([y, emb], dim=1)))
        else:
            out = self.out(map_to_tokens(self.merge(torch.cat([y, emb], dim=1))))
        return tokens_to_map(out + tokens, h, w)


class Bottleneck(nn.Module):
    """Scale aggregation of the three encoder maps, two triple gates (+ BN), the second on the sum
    with the deepest map, then regional attention against that map with a residual GELU."""

    def __init__(self, widths, classes: int):
        super().__init__()
        dim = widths[-1]
        self.aggregate = ScaleAggregation(widths, dim, classes)
        self.gate0 = TripleGate(dim, 4)
        self.gate1 = TripleGate(dim, 4)
        self.norm0 = nn.BatchNorm2d(dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.regional = RegionalAttention(dim, classes, thresholded=False)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        deep = feats[-1]
        x = self.norm0(self.gate0(self.aggregate(*feats)))
        x = self.norm1(self.gate1(x + deep))
        return F.gelu(self.regional(x, deep) + x)


class GatedUp(nn.Module):
    """Net 1's decoder step: 1x1 conv + BN + GELU, bilinear x2, add the context map, refine
    (triple gate + BN, or GELU), regional attention against an encoder map, residual GELU."""

    def __init__(self, in_ch: int, out_ch: int, classes: int, gated: bool):
        super().__init__()
        self.reduce = conv1x1_bn_gelu(in_ch, out_ch)
        self.refine = nn.Sequential(TripleGate(out_ch, 4), nn.BatchNorm2d(out_ch)) if gated else nn.GELU()
        self.regional = RegionalAttention(out_ch, classes, thresholded=gated)

    def forward(self, x: torch.Tensor, context: torch.Tensor, encoder: torch.Tensor) -> torch.Tensor:
        x = self.refine(up2(self.reduce(x)) + context)
        return F.gelu(self.regional(x, encoder) + x)


def gated_fuse(ch: int) -> nn.Sequential:
    """Concatenation of two ``ch`` maps -> channel gate -> 1x1 conv + BN + GELU to ``ch``."""
    return nn.Sequential(TripleGate(2 * ch, 8, mode="channel"), conv_unit(2 * ch, ch, 1))


class FuseUp(nn.Module):
    """Net 2's decoder step: 1x1 conv + BN + GELU, bilinear x2, then fuse a net-1 skip and net 2's
    own skip in turn (concatenate, channel gate, 1x1 conv + BN + GELU)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.reduce = conv_unit(in_ch, out_ch, 1)
        self.fuse_other = gated_fuse(out_ch)
        self.fuse_own = gated_fuse(out_ch)

    def forward(self, x: torch.Tensor, other: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        x = self.fuse_other(torch.cat([up2(self.reduce(x)), other], dim=1))
        return self.fuse_own(torch.cat([x, own], dim=1))


def aux_head(in_ch: int, classes: int) -> nn.Sequential:
    """The reference's auxiliary heads (1x1 conv, 3x3 conv, 3x3 conv to classes), whose outputs it
    discards."""
    return nn.Sequential(conv_unit(in_ch, 64, 1), conv_unit(64, 64, 3), conv_unit(64, classes, 3, bn=False, act=False))


def _init_erd(m: nn.Module) -> None:
    """U-Bench's ``init_weights``: He-normal (fan-in) convs with a uniform bias, unit BN."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
            bound = 1 / (m.weight[0].numel() ** 0.5)
            nn.init.uniform_(m.bias, -bound, bound)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class ERDUNet(nn.Module):
    """Net 1 (ResNet-34 + context path, bottleneck, gated decoder) produces a 16-channel map whose
    spatial gate modulates net 2's full-resolution features; net 2 (CEE encoder, bottleneck,
    fusing decoder) reuses net 1's skips; the head reads both nets' outputs."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.pixel_stem = FeatureConservation(in_channels, 16)
        self.resnet = ResNet34Encoder(in_channels)
        del self.resnet.layers[3]  # ERDUnet uses the ResNet up to layer3
        self.drop2d = nn.Dropout2d(DROP)
        self.context = nn.ModuleList(
            [FeatureConservation(64, 32), ContextEmbed(32, 64, pooled_branch=False),
             ContextEmbed(64, 128, pooled_branch=True, gate=True)]
        )
        self.bottleneck1 = Bottleneck((64, 128, 256), num_classes)
        self.decoder1 = nn.ModuleList(
            GatedUp(i, o, num_classes, gated=o != 32) for i, o in ((256, 128), (128, 64), (64, 32))
        )
        self.net1_out = conv_unit(32, 16, 3, bn=False, act=False)
        self.guide = TripleGate(16, 4, mode="spatial")
        self.encoder2 = nn.ModuleList(ContextEmbed(i, o, pooled_branch=True) for i, o in ((16, 32), (32, 64), (64, 128)))
        self.drop = nn.Dropout(DROP)
        self.bottleneck2 = Bottleneck((32, 64, 128), num_classes)
        self.decoder2 = nn.ModuleList([FuseUp(128, 64), FuseUp(64, 32)])
        self.net2_out = conv_unit(32, 16, 3, bn=False, act=False)
        self.head = nn.Sequential(conv_unit(32, 16, 3), conv_unit(16, num_classes, 3, bn=False, act=False))
        self.unused = nn.ModuleDict({"aux_bottleneck": aux_head(256, num_classes), "aux_layer3": aux_head(256, num_classes)})
        for name, child in self.named_children():
            if name != "resnet":
                child.apply(_init_erd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = self.pixel_stem(x)
        stem = self.resnet.stem(x)
        l1 = self.drop2d(self.resnet.layers[0](self.resnet.pool(stem)))
        l2 = self.drop2d(self.resnet.layers[1](l1))
        l3 = self.drop2d(self.resnet.layers[2](l2))
        c0 = self.context[0](stem)
        c1 = self.context[1](c0)
        c2 = self.context[2](c1)

        y = self.bottleneck1([l1, l2, l3])
        for step, context, encoder in zip(self.decoder1, (c2, c1, c0), (l2, l1, c0)):
            y = step(y, context, encoder)
        net1 = up2(self.net1_out(y))

        z = pixels * self.guide(net1) + pixels
        own = []
        for embed in self.encoder2:
            z = self.drop(embed(z))
            own.append(z)
        z = self.bottleneck2(own)
        for step, other, mine in zip(self.decoder2, (l1, c0), (own[1], own[0])):
            z = step(z, other, mine)
        net2 = up2(self.net2_out(z))
        return self.head(torch.cat([net1, net2], dim=1))


# Modules the reference builds but never runs ("prefix.": every parameter under it), plus the
# threshold-mode class-map convs (run, but behind a step function, so never given a gradient).
UNUSED_MODULES = [
    "unused.", "guide.unused.", "context.1.unused.", "context.2.unused.",
    "encoder2.0.unused.", "encoder2.1.unused.", "encoder2.2.unused.",
    "bottleneck1.aggregate.edge.unused.", "bottleneck1.regional.unused.",
    "bottleneck2.aggregate.edge.unused.", "bottleneck2.regional.unused.",
    "decoder1.0.regional.score_a.", "decoder1.0.regional.score_b.",
    "decoder1.1.regional.score_a.", "decoder1.1.regional.score_b.", "decoder1.2.regional.unused.",
    "decoder2.0.fuse_other.0.unused.", "decoder2.0.fuse_own.0.unused.",
    "decoder2.1.fuse_other.0.unused.", "decoder2.1.fuse_own.0.unused.",
]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="ERDUnet",
        ubench_id=43,
        year=2024,
        paper="ERDUnet: An Efficient Residual Double-Coding Unet for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=10.303733,
        ref_source="U-Bench models/CNN/ERDUnet/ERDUnet.py (ERDUnet(input_channel=3, num_classes=1), "
        "defaults in_h=in_w=256, pretrained=False), counted by instantiating it (ResNet-34 in "
        "torchvision's layout)",
        ref_input_size=INPUT_SIZE,
        input_sizes=(INPUT_SIZE,),
        notes="untrained, as U-Bench builds it (pretrained=False at its defaults: torchvision "
        "resnet34() without weights, nothing loaded); fixed 256x256 as U-Bench (in_h=in_w=256 "
        "hard-coded in its reshapes); layers the reference builds but never runs or whose outputs "
        "it discards (two auxiliary heads, simple-mode class-map convs, unused gate parts, each "
        "CEE's other-variant layers; 222,964 parameters) are kept under 'unused' and not run, so "
        "about 0.35 GMac of discarded work per image is skipped; threshold-mode class-map convs "
        "get no gradient (step function); the net-2 bottleneck's regional attention runs in "
        "simple mode although its flags say (1, 1) (the reference checks simple mode first); "
        "U-Bench's ResNet stem is fixed at 3 channels, here in_channels sizes it",
        extra={"unused_params": UNUSED_MODULES},
    )
)
def erdunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """ERDUnet as U-Bench benchmarks it (256x256, untrained ResNet-34)."""
    return ERDUNet(in_channels=in_channels, num_classes=num_classes)
