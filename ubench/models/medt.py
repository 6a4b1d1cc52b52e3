"""MedT: Medical Transformer with gated axial attention and local-global (LoGo) training.

Paper: Valanarasu, Oza, Hacihaliloglu, Patel, "Medical Transformer: Gated Axial-Attention for
Medical Image Segmentation", MICCAI 2021.

Configuration: U-Bench's ``medt`` (repo FengheTan9/U-Bench, models/Transformer/MedT/MedT.py ->
axialnet.py ``MedT`` = ``medt_net(AxialBlock_dynamic, AxialBlock_wopos, [1, 2, 4, 1], s=0.125)``
with img_size=256). Two branches on the same image:

- global: 7x7/2 stem conv (8 ch) -> 3x3 conv to 128 -> 3x3 conv to 8, then two stages of gated
  axial-attention bottleneck blocks (1 block of width 16 -> 32 ch; 2 blocks of width 32 -> 64 ch,
  stride 2), attention along H then along W with 8 heads and learned relative positions for
  queries, keys and values; a two-step conv + bilinear x2 decoder back to full size (16 ch).
- local: the same kind of stem (to 64 channels) and four stages of axial blocks *without*
  positional terms (widths 16, 32, 64, 128; 1, 2, 4, 1 blocks; strides 1, 2, 2, 2) applied to
  each of 4x4 patches of 32x32 pixels, each decoded back to 32x32 and pasted into a copy of the
  global map; the two maps are added, a 3x3 conv + ReLU and a 1x1 conv give the logits.

Facts kept from the reference on purpose: the gates (f_qr, f_kr, f_sv, f_sve) are frozen
parameters fixed at 0.1, 0.1, 1.0, 0.1; each local patch goes through BatchNorm as its own batch;
the patch grid is 4 x 32 pixels whatever the input size, so at U-Bench's 256x256 it covers only the
top-left 128x128 quadrant and elsewhere the global map is added to itself (at 128x128, the paper's
size, it covers the whole image); the local blocks carry an unused 1x1 conv and the local branch an
unused 1x1 head (``adjust_p``): kept, listed in ``unused_params``, so the parameter count is
U-Bench's. Relative-position tables are sized for 256x256 (spans 128 and 64 on the global path);
a smaller input uses their central part, so 128x128 also works (used by the quick tests: at 256
a batch of 2 takes about 30 s forward + backward on one CPU core, at 128 about 4 s).
Parameters at 3 in / 1 class: 1,564,202 (24 of them the frozen gates), counted layer by layer from
U-Bench's axialnet.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256  # what U-Bench builds; sets the relative-position spans of the global branch
PATCH = 32  # local patch side, fixed in the reference
GRID = 4  # patches per side, fixed in the reference
GROUPS = 8
STEM_MID = 128
S = 0.125  # width scale of the reference (64 * s = 8 stem channels)
LOCAL_DEPTHS = (1, 2, 4, 1)
EXPANSION = 2
SIZES = (128, 256)


class AxialAttention(nn.Module):
    """Multi-head attention along one axis (H, or W with ``along_width``), BatchNorm'd like MedT.

    With ``span`` set it adds the gated relative-position terms (query-, key- and value-side) of
    the paper; without it, plain axial attention as in the local branch.
    """

    def __init__(self, channels: int, groups: int = GROUPS, span: int | None = None,
                 stride: int = 1, along_width: bool = False):
        super().__init__()
        self.channels, self.groups = channels, groups
        self.gp = channels // groups
        self.span = span
        self.along_width = along_width
        self.qkv = nn.Conv1d(channels, 2 * channels, 1, bias=False)
        self.bn_qkv = nn.BatchNorm1d(2 * channels)
        terms = 3 if span else 1
        self.bn_similarity = nn.BatchNorm2d(terms * groups)
        self.bn_output = nn.BatchNorm1d((2 if span else 1) * channels)
        if span:
            self.relative = nn.Parameter(torch.empty(2 * self.gp, 2 * span - 1))
            nn.init.normal_(self.relative, 0.0, math.sqrt(1.0 / self.gp))
            for name, value in (("f_qr", 0.1), ("f_kr", 0.1), ("f_sve", 0.1), ("f_sv", 1.0)):
                self.register_parameter(name, nn.Parameter(torch.tensor(value), requires_grad=False))
        self.pool = nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()
        nn.init.normal_(self.qkv.weight, 0.0, math.sqrt(1.0 / channels))

    def _embeddings(self, length: int) -> torch.Tensor:
        """(2*gp, L, L) with [c, i, j] = relative[c, i - j + span - 1] (central part if L < span)."""
        i = torch.arange(length, device=self.relative.device)
        index = (i[:, None] - i[None, :] + self.span - 1).reshape(-1)
        return self.relative[:, index].view(2 * self.gp, length, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # put the attended axis last, the other one into the batch: (N, other, C, L)
        x = x.permute(0, 2, 1, 3) if self.along_width else x.permute(0, 3, 1, 2)
        n, other, c, length = x.shape
        b = n * other
        qkv = self.bn_qkv(self.qkv(x.reshape(b, c, length)))
        q, k, v = qkv.view(b, self.groups, 2 * self.gp, length).split(
            [self.gp // 2, self.gp // 2, self.gp], dim=2
        )
        qk = torch.einsum("bgci,bgcj->bgij", q, k)
        if self.span:
            q_emb, k_emb, v_emb = self._embeddings(length).split([self.gp // 2, self.gp // 2, self.gp])
            qr = torch.einsum("bgci,cij->bgij", q, q_emb) * self.f_qr
            kr = torch.einsum("bgci,cij->bgij", k, k_emb).transpose(2, 3) * self.f_kr
            sim = self.bn_similarity(torch.cat([qk, qr, kr], dim=1))
            sim = sim.view(b, 3, self.groups, length, length).sum(dim=1)
        else:
            sim = self.bn_similarity(qk)
        sim = sim.softmax(dim=3)
        sv = torch.einsum("bgij,bgcj->bgci", sim, v)
        if self.span:
            sve = torch.einsum("bgij,cij->bgci", sim, v_emb) * self.f_sve
            # channel 2k holds sv, 2k+1 holds sve (the reference's cat-then-view interleaving)
            out = torch.stack([sv * self.f_sv, sve], dim=3).reshape(b, 2 * c, length)
            out = self.bn_output(out).view(n, other, c, 2, length).sum(dim=3)
        else:
            out = self.bn_output(sv.reshape(b, c, length)).view(n, other, c, length)
        out = out.permute(0, 2, 1, 3) if self.along_width else out.permute(0, 2, 3, 1)
        return self.pool(out)


class AxialBlock(nn.Module):
    """Bottleneck: 1x1 down, axial attention along H then W (stride on W), 1x1 up, residual."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, span: int | None = None,
                 unused_conv: bool = False):
        super().__init__()
        out_ch = planes * EXPANSION
        self.conv_down = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if unused_conv:  # present (and never called) in the reference's position-free block
            self.conv1 = nn.Conv2d(planes, planes, 1)
        self.height_block = AxialAttention(planes, span=span)
        self.width_block = AxialAttention(planes, span=span, stride=stride, along_width=True)
        self.conv_up = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv_down(x)))
        out = F.relu(self.width_block(self.height_block(out)))
        return F.relu(self.bn2(self.conv_up(out)) + self.shortcut(x))


def axial_stage(in_ch, planes, depth, stride, span, positional):
    """``depth`` blocks; the first may stride (halving the span of the ones after it)."""
    blocks = []
    for i in range(depth):
        blocks.append(AxialBlock(in_ch, planes, stride if i == 0 else 1, span if positional else None,
                                 unused_conv=not positional))
        in_ch = planes * EXPANSION
        if i == 0 and stride > 1 and span:
            span //= 2
    return nn.Sequential(*blocks)


class Stem(nn.Module):
    """7x7/2 conv to ``out_ch``, 3x3 conv to 128, 3x3 conv back to ``out_ch``, each BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        chans = [(in_ch, out_ch, 7, 2, 3), (out_ch, STEM_MID, 3, 1, 1), (STEM_MID, out_ch, 3, 1, 1)]
        layers = []
        for cin, cout, k, s, p in chans:
            layers += [nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def up_add(conv: nn.Conv2d, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
    """conv, bilinear x2, ReLU, then add the skip (MedT's decoder step)."""
    y = F.relu(F.interpolate(conv(x), scale_factor=2, mode="bilinear"))
    return y if skip is None else y + skip


class MedT(nn.Module):
    """Global gated-axial branch on the whole image plus a local branch on 32x32 patches."""

    def __init__(self, in_channels=3, num_classes=1, img_size=IMG_SIZE):
        super().__init__()
        c = [int(v * S) for v in (64, 128, 256, 512, 1024)]  # 8, 16, 32, 64, 128
        # global branch: stages of widths 16 and 32 (outputs 32, 64), spans img/2 then img/4
        self.stem = Stem(in_channels, c[0])
        self.layer1 = axial_stage(c[0], c[1], 1, 1, img_size // 2, positional=True)
        self.layer2 = axial_stage(c[1] * 2, c[2], 2, 2, img_size // 2, positional=True)
        self.decoder4 = nn.Conv2d(c[3], c[2], 3, padding=1)
        self.decoder5 = nn.Conv2d(c[2], c[1], 3, padding=1)
        # local branch: its stem ends at 64 channels (the reference reuses the running width)
        self.stem_p = Stem(in_channels, c[3])
        ins = [c[3], c[1] * 2, c[2] * 2, c[3] * 2]
        planes = c[1:]
        self.layers_p = nn.ModuleList(
            axial_stage(ins[i], planes[i], LOCAL_DEPTHS[i], 1 if i == 0 else 2, None, positional=False)
            for i in range(4)
        )
        top = planes[-1] * 2  # 256
        self.decoder1_p = nn.Conv2d(top, top, 3, stride=2, padding=1)
        self.decoders_p = nn.ModuleList(
            nn.Conv2d(cin, cout, 3, padding=1)
            for cin, cout in ((top, c[4]), (c[4], c[3]), (c[3], c[2]), (c[2], c[1]))
        )
        self.adjust_p = nn.Conv2d(c[1], num_classes, 1)  # unused in the reference's forward
        self.decoderf = nn.Conv2d(c[1], c[1], 3, padding=1)
        self.adjust = nn.Conv2d(c[1], num_classes, 1)
        self.img_size = img_size

    def _local(self, patch: torch.Tensor) -> torch.Tensor:
        feats = [self.stem_p(patch)]
        for layer in self.layers_p:
            feats.append(layer(feats[-1]))
        skips = feats[1:]  # 32@16, 64@8, 128@4, 256@2 for a 32x32 patch
        y = up_add(self.decoder1_p, skips[3], skips[3])
        for conv, skip in zip(self.decoders_p, [skips[2], skips[1], skips[0], None]):
            y = up_add(conv, y, skip)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.layer1(self.stem(x))
        x2 = self.layer2(x1)
        g = up_add(self.decoder4, x2, x1)
        g = up_add(self.decoder5, g)
        merged = g.clone()
        for i in range(GRID):
            for j in range(GRID):
                rows, cols = slice(PATCH * i, PATCH * (i + 1)), slice(PATCH * j, PATCH * (j + 1))
                merged[:, :, rows, cols] = self._local(x[:, :, rows, cols])
        y = F.relu(self.decoderf(g + merged))
        return self.adjust(F.relu(y))


def _unused_params() -> list[str]:
    names = ["adjust_p.weight", "adjust_p.bias"]
    for i, depth in enumerate(LOCAL_DEPTHS):
        for j in range(depth):
            names += [f"layers_p.{i}.{j}.conv1.weight", f"layers_p.{i}.{j}.conv1.bias"]
    return names


@register_model(
    ModelInfo(
        family="transformer",
        ubench_name="MedT",
        ubench_id=11,
        year=2021,
        paper="Medical Transformer: Gated Axial-Attention for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=1.564202,
        ref_source="U-Bench models/Transformer/MedT/axialnet.py (medt_net with AxialBlock_dynamic, "
        "AxialBlock_wopos, layers [1, 2, 4, 1], s=0.125, img_size=256), counted layer by layer",
        ref_input_size=256,
        input_sizes=SIZES,
        notes="Built for 256x256 as U-Bench does; 128x128 also runs (central part of the "
        "relative-position tables; the 4x4 grid of 32-pixel patches then covers the whole image, as "
        "in the paper, while at 256 it covers the top-left quadrant only, as in U-Bench). Slow: "
        "~30 s forward+backward for 2 images at 256 on one CPU core.",
        extra={"unused_params": _unused_params()},
    )
)
def medt(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MedT as U-Bench benchmarks it (gated axial attention, LoGo, built for 256x256)."""
    return MedT(in_channels=in_channels, num_classes=num_classes)
