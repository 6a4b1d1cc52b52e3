"""H2Former: a hierarchical hybrid of ResNet-34 stages and Swin stages with multi-scale embeddings.

Paper: He, Gao, Wang, Xu, Fang, Zhou, Xu, Chen, "H2Former: An Efficient Hierarchical Hybrid
Transformer for Medical Image Segmentation", IEEE TMI 2023.

Configuration: U-Bench's ``h2former`` (repo FengheTan9/U-Bench, models/Hybrid/H2Former/H2Former.py
``Res34_Swin_MS`` and basic_module.py) with ``image_size=256``:
- A ResNet-34 (BasicBlocks, depths 3, 4, 6, 3, widths 64..512) whose 7x7 stem has stride 1, so
  with the max-pool the four stages run at H/2, H/4, H/8, H/16.
- After each ResNet stage a Swin stage of the same width (2 blocks; heads 2, 4, 8, 16; window
  H/16 = 16, which covers the whole 16x16 grid of the last stage, so it is not shifted there;
  MLP ratio 4; stochastic depth up to 0.1). Their MLP ends in an ECA channel attention
  (global average pool, 1D conv k=3, sigmoid, x*w + x).
- Multi-scale embeddings: before stage 1, four strided convs (kernels 2, 4, 8, 16; 32+16+8+8
  channels) on the image, ECA and LayerNorm, added to the stage-1 tokens; between stages, a
  LayerNorm and two strided convs (kernels 2 and 4, C each) with ECA, added to the next ResNet
  stage's output.
- Decoder: three steps of 2x2 transposed conv, concatenation with the skip, 3x3 conv + BN + ReLU;
  then bilinear x2 and a 1x1 conv (no bias) to the classes. No deep supervision.
The reference's Swin MLP reshapes its (B, N, C) tokens to (B, C, H, W) with a plain ``view``
(not a transpose) around the ECA, and back with ``flatten(2).transpose(1, 2)``; this reorders
the tokens, and it is reproduced as is, since it is what U-Bench trains.
The ResNet-34 is built untrained, as in U-Bench (it never loads weights for this model).
Fixed input size 256 (Swin windows and masks are built for that grid).
Parameters at 3 in / 1 class: 33,692,576, counted by instantiating U-Bench's file.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.resnet import BasicBlock
from ubench.models.ops.swin import swin_stage
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
WIDTHS = (64, 128, 256, 512)
RES_DEPTHS = (3, 4, 6, 3)
SWIN_DEPTHS = (2, 2, 2, 2)
SWIN_HEADS = (2, 4, 8, 16)


class ECA(nn.Module):
    """Efficient channel attention with a residual: x * sigmoid(conv1d(avgpool(x))) + x."""

    def __init__(self, k: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv(x.mean(dim=(2, 3))[:, None, :])  # (B, 1, C)
        return x * torch.sigmoid(w)[:, 0, :, None, None] + x


class EcaMlp(nn.Module):
    """fc1, GELU, fc2, then ECA on the tokens viewed (not transposed) as a (C, H, W) map."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.eca = ECA()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        side = int(round(n**0.5))
        y = self.fc2(self.act(self.fc1(x))).reshape(b, c, side, side)  # the reference's raw view
        return self.eca(y).flatten(2).transpose(1, 2)


class MultiScaleEmbed(nn.Module):
    """Strided convs of several kernel sizes on the image, concatenated, ECA, LayerNorm (tokens)."""

    def __init__(self, in_channels: int, dim: int = WIDTHS[0], kernels=(2, 4, 8, 16)):
        super().__init__()
        outs = [dim // 2 ** (i + 1) for i in range(len(kernels) - 1)] + [dim // 2 ** (len(kernels) - 1)]
        self.projs = nn.ModuleList(
            nn.Conv2d(in_channels, o, k, stride=2, padding=(k - 2) // 2) for o, k in zip(outs, kernels)
        )
        self.eca = ECA()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.eca(torch.cat([p(x) for p in self.projs], dim=1))
        return self.norm(map_to_tokens(x))


class MultiScaleMerge(nn.Module):
    """LayerNorm on tokens, then 2x2/2 and 4x4/2 convs (C each, concatenated to 2C) and ECA (a map)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.reductions = nn.ModuleList(
            nn.Conv2d(dim, dim, k, stride=2, padding=(k - 2) // 2) for k in (2, 4)
        )
        self.eca = ECA()

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = tokens_to_map(self.norm(x), h, w)
        return self.eca(torch.cat([r(y) for r in self.reductions], dim=1))


class DecoderStep(nn.Module):
    """2x2 transposed conv up, concatenate [up, skip], 3x3 conv + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * out_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.up(x), skip], dim=1))


def _res_stage(in_ch: int, out_ch: int, depth: int, stride: int) -> nn.Sequential:
    blocks = [BasicBlock(in_ch, out_ch, stride)] + [BasicBlock(out_ch, out_ch) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class H2Former(nn.Module):
    """ResNet-34 stages interleaved with ECA-Swin stages, multi-scale embeddings, U-Net decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, img_size: int = IMG_SIZE):
        super().__init__()
        self.img_size = img_size
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=1, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        ins = (64,) + WIDTHS[:-1]
        self.res = nn.ModuleList(
            _res_stage(i, o, d, 1 if k == 0 else 2)
            for k, (i, o, d) in enumerate(zip(ins, WIDTHS, RES_DEPTHS))
        )
        window = img_size // 16
        dpr = torch.linspace(0, 0.1, sum(SWIN_DEPTHS)).tolist()
        self.swin = nn.ModuleList()
        for k, (dim, depth, heads) in enumerate(zip(WIDTHS, SWIN_DEPTHS, SWIN_HEADS)):
            r = img_size // 2 // 2**k
            start = sum(SWIN_DEPTHS[:k])
            self.swin.append(
                swin_stage(
                    dim, (r, r), depth, heads, window, dpr[start : start + depth],
                    mlp_factory=lambda dim=dim: EcaMlp(dim, 4 * dim),
                )
            )
        self.embed = MultiScaleEmbed(in_channels)
        self.merges = nn.ModuleList(MultiScaleMerge(d) for d in WIDTHS[:-1])
        self.decoders = nn.ModuleList(DecoderStep(WIDTHS[k], WIDTHS[k - 1]) for k in range(3, 0, -1))
        self.head = nn.Conv2d(WIDTHS[0], num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = self.embed(x)  # tokens for stage 1
        y = self.stem(x)
        skips = []
        for k, (res, swin) in enumerate(zip(self.res, self.swin)):
            y = res(y)
            if k == 0:
                t = map_to_tokens(y) + extra
            else:
                t = map_to_tokens(y + extra)
            h, w = y.shape[2], y.shape[3]
            t = swin(t)
            if k < len(self.merges):
                extra = self.merges[k](t, h, w)
            y = tokens_to_map(t, h, w)
            skips.append(y)
        out = skips[-1]
        for dec, skip in zip(self.decoders, reversed(skips[:-1])):
            out = dec(out, skip)
        out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
        return self.head(out)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="H2Former",
        ubench_id=108,
        year=2023,
        paper="H2Former: An Efficient Hierarchical Hybrid Transformer for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=33.692576,
        ref_source="U-Bench models/Hybrid/H2Former/H2Former.py (h2former(input_channel=3, "
        "num_classes=1), image_size=256), counted by instantiating it",
        ref_input_size=256,
        input_sizes=(256,),
        notes="Swin window = image_size/16 and shift masks are built for 256x256",
    )
)
def h2former(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """H2Former as U-Bench benchmarks it (ResNet-34 + ECA-Swin, 256x256)."""
    return H2Former(in_channels=in_channels, num_classes=num_classes)
