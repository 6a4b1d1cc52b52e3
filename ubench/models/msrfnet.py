"""MSRF-Net: a four-scale encoder whose features are exchanged by dual-scale dense fusion blocks,
with a gated shape stream and a deeply supervised attention decoder.

Paper: Srivastava, Jha, Chanda, Pal, Johansen, Johansen, Riegler, Ali, Halvorsen, "MSRF-Net: A
Multi-Scale Residual Fusion Network for Biomedical Image Segmentation", IEEE Journal of Biomedical
and Health Informatics 26(5), 2022.

Configuration: U-Bench's ``msrfnet(num_classes=1, input_channel=3)`` (repo FengheTan9/U-Bench,
models/CNN/MSRFNet/MSRFNet.py, class ``MSRF`` with init_feat 32; models/__init__.py imports the
factory as ``MSRFNet``).

* Encoder: four stages of widths 32, 64, 128, 256 (2x2 max-pooling and dropout 0.2 before stages
  2-4), each two 3x3 conv + ReLU, then BatchNorm, then (stages 1-3) squeeze-excitation with biased
  linears and a hidden width of channels / 16.
* MSRF sub-network: ten dual-scale dense fusion (DSDF) blocks on the scale pairs (1,2), (3,4),
  (1,2), (3,4), (2,3), (1,2), (3,4), (2,3), (1,2), (3,4), each replacing its two maps. A DSDF block
  grows both maps densely for five rounds (3x3 conv + LeakyReLU 0.25, growth = width / 2 of the
  finer map), exchanging features between the scales before rounds 2-5 (4x4 stride-2 conv down,
  4x4 stride-2 transposed conv up, each + LeakyReLU; what round 3 receives is computed from round
  1's outputs, not round 2's, as in the reference code); the fifth round returns to the input
  widths and is added to the input scaled by 0.4. Each fused map is scaled by 0.4 and added to its encoder map.
* Shape stream (Gated-SCNN): the four fused maps brought to full size (1x1 convs to one channel
  for scales 2-4, bilinear, align_corners=True) gate three ResNet basic blocks + 1x1 convs
  (32 -> 32 -> 16 -> 8); a 1x1 conv + sigmoid gives the edge map, and a 1x1 conv + sigmoid of
  [edge map, input image] (U-Bench feeds the raw image where the paper uses its Canny edges) a
  one-channel feature for the last decoder stage.
* Decoder: two stages at strides 4 and 2, each concatenating [2x2 transposed-conv upsampling of
  the deeper map, attention-gated skip (attention gate with a transposed conv after the sigmoid,
  then BN), dual attention (transposed-conv up + BN + ReLU, concatenated with the skip, 3x3 conv +
  BN + ReLU, SE times (1 + spatial gate))], a 1x1 conv and a pre-activation residual double conv;
  a 1x1 head upsampled bilinearly (x4, x2) gives a side output. Last stage: 4x4 stride-2
  transposed conv, concatenated with the fused scale-1 map and the shape-stream feature, 1x1 conv
  + ReLU, residual 3x3 conv + ReLU + BN, head 3x3 conv + ReLU + 1x1 conv.

U-Bench trains it with ``deeps_supervision: 1`` (models/model_id.json, id 75); the model returns
[edge map, stride-4 side output, stride-2 side output, final], all at full size; the edge map is
already a sigmoid (see ``notes``). Parameters at 3 in / 1 class: 22,506,074 (counted by
instantiating U-Bench's module). Needs H, W divisible by 8.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import SqueezeExcite
from ubench.models.ops.resnet import BasicBlock
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 128, 256)
STRIDE = 2 ** (len(WIDTHS) - 1)
# the scale pairs the ten DSDF blocks fuse, in order (0 = full size)
FUSION_PAIRS = ((0, 1), (2, 3), (0, 1), (2, 3), (1, 2), (0, 1), (2, 3), (1, 2), (0, 1), (2, 3))
FUSION_SCALE = 0.4
SHAPE_WIDTHS = (32, 16, 8)
SE_REDUCTION = 16


def encoder_stage(in_ch: int, out_ch: int, first: bool, se: bool) -> nn.Sequential:
    """[2x2 max-pool, dropout 0.2], two 3x3 conv + ReLU, BatchNorm, [squeeze-excitation]."""
    layers: list[nn.Module] = [] if first else [nn.MaxPool2d(2), nn.Dropout(0.2)]
    layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(), nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU()]
    layers.append(nn.BatchNorm2d(out_ch))
    if se:
        layers.append(SqueezeExcite(out_ch, SE_REDUCTION, bias=True))
    return nn.Sequential(*layers)


def lrelu(conv: nn.Module) -> nn.Sequential:
    return nn.Sequential(conv, nn.LeakyReLU(0.25))


class FusionRound(nn.Module):
    """One DSDF round: a 3x3 conv per scale on its dense input, and (rounds 1-4) the stride-2 conv
    and transposed conv that pass features to the other scale for the next round."""

    def __init__(self, in_x: int, in_y: int, out_x: int, out_y: int, src_x: int, src_y: int, growth: int,
                 exchange: bool):
        super().__init__()
        self.x = lrelu(nn.Conv2d(in_x, out_x, 3, padding=1))
        self.y = lrelu(nn.Conv2d(in_y, out_y, 3, padding=1))
        if exchange:
            self.down = lrelu(nn.Conv2d(src_x, growth, 4, stride=2, padding=1))
            self.up = lrelu(nn.ConvTranspose2d(src_y, growth, 4, stride=2, padding=1))


class DualScaleDenseFusion(nn.Module):
    """DSDF block: dense growth of a fine map x and a coarse map y (half the size) over five rounds,
    exchanging features before rounds 2-5; the last round (back to the input widths) is scaled by
    0.4 and added to the inputs."""

    # what the exchange after rounds 1-4 passes to the other scale, as an index into [input, round 1
    # output, round 2 output, ...]: after round 2 it is round 1's output again (reference code)
    EXCHANGE_FROM = (0, 1, 3, 4)

    def __init__(self, cx: int, cy: int, growth: int):
        super().__init__()
        rounds = []
        for r in range(5):
            dense = (r + 1) * growth if r else 0  # earlier rounds' outputs + the exchanged map
            out_x, out_y = (cx, cy) if r == 4 else (growth, growth)
            src_x, src_y = (cx, cy) if r == 0 else (growth, growth)
            rounds.append(FusionRound(cx + dense, cy + dense, out_x, out_y, src_x, src_y, growth, exchange=r < 4))
        self.rounds = nn.ModuleList(rounds)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [x], [y]
        to_x = to_y = None
        for r, rnd in enumerate(self.rounds):
            xs_in = xs if to_x is None else [*xs, to_x]
            ys_in = ys if to_y is None else [*ys, to_y]
            xs.append(rnd.x(torch.cat(xs_in, dim=1)))
            ys.append(rnd.y(torch.cat(ys_in, dim=1)))
            if r < 4:
                src = self.EXCHANGE_FROM[r]
                to_y, to_x = rnd.down(xs[src]), rnd.up(ys[src])
        return xs[-1] * FUSION_SCALE + x, ys[-1] * FUSION_SCALE + y


class GatedConv(nn.Module):
    """Gated-SCNN's gated conv: an attention map from [features, gate] (BN, 1x1, ReLU, 1x1, BN,
    sigmoid) scales the features by (1 + attention) before a bias-free 1x1 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 1, bias=False)
        self.attention = nn.Sequential(
            nn.BatchNorm2d(ch + 1),
            nn.Conv2d(ch + 1, ch + 1, 1),
            nn.ReLU(),
            nn.Conv2d(ch + 1, 1, 1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )

    def forward(self, feat: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.conv(feat * (self.attention(torch.cat([feat, gate], dim=1)) + 1))


def full_size(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size, mode="bilinear", align_corners=True)


class ShapeStream(nn.Module):
    """Gated shape stream: basic block + 1x1 conv steps on the scale-1 map, each gated by a deeper
    scale; returns the edge map (sigmoid) and its fusion with the image (sigmoid)."""

    def __init__(self, widths, in_channels: int, num_classes: int):
        super().__init__()
        self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in widths[1:])
        ins = (widths[0], *SHAPE_WIDTHS[:-1])
        self.res = nn.ModuleList(BasicBlock(c, c) for c in ins)
        self.pre = nn.ModuleList(nn.Conv2d(i, o, 1) for i, o in zip(ins, SHAPE_WIDTHS))
        self.gates = nn.ModuleList(GatedConv(c) for c in SHAPE_WIDTHS)
        self.edge = nn.Conv2d(SHAPE_WIDTHS[-1], num_classes, 1, bias=False)
        self.fuse = nn.Conv2d(num_classes + in_channels, 1, 1, bias=False)

    def forward(self, feats: list[torch.Tensor], image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = image.shape[-2:]
        x = full_size(feats[0], size)
        for res, pre, gate, conv, deeper in zip(self.res, self.pre, self.gates, self.side, feats[1:]):
            x = gate(pre(res(x)), full_size(conv(deeper), size))
        edge = torch.sigmoid(self.edge(x))
        return edge, torch.sigmoid(self.fuse(torch.cat([edge, image], dim=1)))


class AttentionGate(nn.Module):
    """Additive attention gate: 2x2 stride-2 conv of the skip + 1x1 conv of the deeper map, ReLU,
    1x1 conv, sigmoid, 2x2 transposed conv back to the skip's size; times the skip, then BN."""

    def __init__(self, skip_ch: int, deep_ch: int, mid: int):
        super().__init__()
        self.theta = nn.Conv2d(skip_ch, mid, 2, stride=2)
        self.phi = nn.Conv2d(deep_ch, mid, 1)
        self.psi = nn.Sequential(nn.ReLU(), nn.Conv2d(mid, 1, 1), nn.Sigmoid(), nn.ConvTranspose2d(1, 1, 2, stride=2))
        self.norm = nn.BatchNorm2d(skip_ch)

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        return self.norm(self.psi(self.theta(skip) + self.phi(deep)) * skip)


class DualAttention(nn.Module):
    """Upsample the deeper map (2x2 transposed conv + BN + ReLU), concatenate [skip, it], 3x3 conv +
    BN + ReLU; output SE(x) * (1 + spatial gate(x))."""

    def __init__(self, skip_ch: int, deep_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose2d(deep_ch, out_ch, 2, stride=2), nn.BatchNorm2d(out_ch), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(skip_ch + out_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU())
        self.se = SqueezeExcite(out_ch, SE_REDUCTION, bias=True)
        self.spatial = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.ReLU(), nn.Conv2d(out_ch, 1, 1), nn.Sigmoid()
        )

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        x = self.conv(torch.cat([skip, self.up(deep)], dim=1))
        return (self.spatial(x) + 1) * self.se(x)


class DecoderStage(nn.Module):
    """[upsampled deeper map, attention-gated skip, dual attention] -> 1x1 conv -> pre-activation
    residual double conv; plus a side output (1x1 conv, bilinear upsampling to full size)."""

    def __init__(self, skip_ch: int, deep_ch: int, att_mid: int, num_classes: int, scale: int):
        super().__init__()
        self.att = AttentionGate(skip_ch, deep_ch, att_mid)
        self.up = nn.ConvTranspose2d(deep_ch, skip_ch, 2, stride=2)
        self.dual = DualAttention(skip_ch, deep_ch, skip_ch)
        self.merge = nn.Conv2d(3 * skip_ch, skip_ch, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(skip_ch), nn.ReLU(), nn.Conv2d(skip_ch, skip_ch, 3, padding=1),
            nn.BatchNorm2d(skip_ch), nn.ReLU(), nn.Conv2d(skip_ch, skip_ch, 3, padding=1),
        )
        self.head = nn.Sequential(
            nn.Conv2d(skip_ch, num_classes, 1), nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=True)
        )

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.merge(torch.cat([self.up(deep), self.att(skip, deep), self.dual(skip, deep)], dim=1))
        x = self.body(x) + x
        return x, self.head(x)


class MSRFNet(nn.Module):
    """Encoder, ten DSDF fusions, shape stream, two attention decoder stages and a last stage."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        c = widths
        ins = (in_channels, *c[:-1])
        self.encoder = nn.ModuleList(
            encoder_stage(i, o, first=k == 0, se=k < len(c) - 1) for k, (i, o) in enumerate(zip(ins, c))
        )
        self.fusion = nn.ModuleList(DualScaleDenseFusion(c[i], c[j], c[i] // 2) for i, j in FUSION_PAIRS)
        self.shape = ShapeStream(c, in_channels, num_classes)
        self.stage1 = DecoderStage(c[2], c[3], c[3], num_classes, scale=4)
        self.stage2 = DecoderStage(c[1], c[2], c[1], num_classes, scale=2)
        self.up = nn.ConvTranspose2d(c[1], c[0], 4, stride=2, padding=1)
        self.merge = nn.Sequential(nn.Conv2d(2 * c[0] + 1, c[0], 1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(c[0], c[0], 3, padding=1), nn.ReLU(), nn.BatchNorm2d(c[0]))
        self.head = nn.Sequential(nn.Conv2d(c[0], c[0], 3, padding=1), nn.ReLU(), nn.Conv2d(c[0], num_classes, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        enc, feat = [], x
        for stage in self.encoder:
            feat = stage(feat)
            enc.append(feat)
        fused = list(enc)
        for (i, j), block in zip(FUSION_PAIRS, self.fusion):
            fused[i], fused[j] = block(fused[i], fused[j])
        fused = [f * FUSION_SCALE + e for f, e in zip(fused, enc)]
        edge, edge_feat = self.shape(fused, x)
        d3, side1 = self.stage1(fused[2], fused[3])
        d2, side2 = self.stage2(fused[1], d3)
        d1 = self.merge(torch.cat([self.up(d2), fused[0], edge_feat], dim=1))
        d1 = self.body(d1) + d1
        return [edge, side1, side2, self.head(d1)]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MSRFNet",
        ubench_id=75,
        year=2022,
        paper="MSRF-Net: A Multi-Scale Residual Fusion Network for Biomedical Image Segmentation",
        deep_supervision=True,
        ref_params_m=22.506074,
        ref_source="U-Bench models/CNN/MSRFNet/MSRFNet.py (msrfnet(num_classes=1, input_channel=3), "
        "i.e. MSRF(init_feat=32)), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="U-Bench's quirks kept: the shape stream's 'canny' input is the raw image (no edge "
        "detection); the first deep-supervision output is the edge map after a sigmoid, which the "
        "trainer's BCE-with-logits loss squashes again; the attention gates apply a transposed conv "
        "after their sigmoid. in_channels also sets the shape stream's fuse conv (U-Bench hard-codes "
        "3 image channels there). Torch default init throughout, as U-Bench.",
    )
)
def msrfnet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MSRF-Net as U-Bench benchmarks it (init_feat 32, deep supervision)."""
    return MSRFNet(in_channels=in_channels, num_classes=num_classes)
