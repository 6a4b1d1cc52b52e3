"""CFPNet-M, a light encoder-decoder built on channel-wise feature-pyramid (CFP) modules.

Paper: Lou, Guan, Loew, "CFPNet-M: A Light-Weight Encoder-Decoder Based Network for Multimodal
Biomedical Image Real-Time Segmentation", Computers in Biology and Medicine 2023 (arXiv 2021).

Configuration: U-Bench's ``CFPNet_M`` (repo FengheTan9/U-Bench, models/CNN/CFPNet_M/CFPNet_M.py;
models/__init__.py exposes the helper ``cfpnet_m(input_channel, num_classes)``, which builds
``CFPNetM(input_channel, classes)`` with its defaults ``block_1=2, block_2=6``). Every conv has no
bias; every BatchNorm has eps 1e-3 and is followed by a ReLU (U-Bench's "BNPReLU" is
``nn.ReLU(nIn)``, i.e. an in-place ReLU, not the PReLU of the original CFPNet).

* Stem: 3x3 conv stride 2 (3 -> 32), two 3x3 convs (32 -> 32), each + BN + ReLU; output H/2.
* Input injection: the image average-pooled (3x3, stride 2, pad 1) once, twice and three times is
  concatenated at H/2, H/4 and H/8, and each concatenation goes through BN + ReLU.
* Level 1 (H/4): down-sampling block 35 -> 64 (3x3 stride-2 conv to 29 channels, concatenated with
  the 2x2 max-pooled input, BN + ReLU), two CFP modules (d = 2, 2), then [CFP out, block in, image]
  = 131 channels, BN + ReLU.
* Level 2 (H/8): down-sampling block 131 -> 128 (conv only, its max-pool unused since 131 > 128),
  six CFP modules (d = 4, 4, 8, 8, 16, 16), then [CFP out, block in, image] = 259 channels.
* CFP module (width C): BN + ReLU, a 3x3 conv to C/4 (+ BN + ReLU; U-Bench calls it ``conv1x1_1``
  but builds it 3x3), four branches with dilations 1, d//4+1, d//2+1, d+1, each three grouped 3x3
  convs (C/4 -> C/16 -> C/16 -> C/8 channels, C/16 groups, each + BN + ReLU) whose three outputs
  are concatenated (C/4); the branch outputs are summed cumulatively (b1, b1+b2, b1+b2+b3, ...),
  concatenated (C), BN + ReLU, a 1x1 conv, plus the module's input.
* Decoder: 2x2 stride-2 transposed convs + BN + ReLU, 259 -> 128 (concat level-1 output: 259),
  259 -> 64 (concat stem output: 99), 99 -> 32, then a 1x1 conv (no bias) to the logits.

Parameters at 3 in / 1 class: 758,881 (counted by instantiating U-Bench's module; the paper
quotes 0.65M). Total stride 8.
"""

from __future__ import annotations

from itertools import accumulate

import torch
import torch.nn as nn

from ubench.models.registry import ModelInfo, register_model

STEM = 32
WIDTHS = (64, 128)
DILATIONS = ((2, 2), (4, 4, 8, 8, 16, 16))  # one CFP module per entry
BN_EPS = 1e-3


def bn_relu(ch: int) -> list[nn.Module]:
    """BatchNorm (eps 1e-3) -> in-place ReLU, the normalisation after every CFPNet conv."""
    return [nn.BatchNorm2d(ch, eps=BN_EPS), nn.ReLU(inplace=True)]


def conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """3x3 conv (no bias, 'same' padding for its dilation) -> BN -> ReLU."""
    conv = nn.Conv2d(in_ch, out_ch, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)
    return nn.Sequential(conv, *bn_relu(out_ch))


class DilatedBranch(nn.ModuleList):
    """Three grouped dilated 3x3 convs in a chain; their three outputs concatenated (C/4 -> C/4)."""

    def __init__(self, ch: int, dilation: int):
        q, s = ch // 4, ch // 16
        super().__init__(conv_bn_relu(i, o, dilation=dilation, groups=s) for i, o in ((q, s), (s, s), (s, ch // 8)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for conv in self:
            x = conv(x)
            outs.append(x)
        return torch.cat(outs, 1)


class CFPModule(nn.Module):
    """Channel-wise feature pyramid: four dilated branches on a C/4 reduction, summed
    hierarchically to avoid gridding, projected back to C with a residual connection."""

    def __init__(self, ch: int, d: int):
        super().__init__()
        self.pre = nn.Sequential(*bn_relu(ch))
        self.reduce = conv_bn_relu(ch, ch // 4)
        self.branches = nn.ModuleList(DilatedBranch(ch, r) for r in (1, d // 4 + 1, d // 2 + 1, d + 1))
        self.post = nn.Sequential(*bn_relu(ch))
        self.project = nn.Conv2d(ch, ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.pre(x))
        pyramid = accumulate(branch(y) for branch in self.branches)
        return self.project(self.post(torch.cat(list(pyramid), 1))) + x


class Downsample(nn.Module):
    """Stride-2 3x3 conv; when widening, its output is concatenated with the max-pooled input
    (the conv supplies only the missing channels). Then BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.widen = in_ch < out_ch
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch if self.widen else out_ch, 3, 2, 1, bias=False)
        self.pool = nn.MaxPool2d(2, 2)
        self.norm = nn.Sequential(*bn_relu(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.widen:
            y = torch.cat([y, self.pool(x)], 1)
        return self.norm(y)


class EncoderLevel(nn.Module):
    """Down-sample, CFP modules, then [modules' output, their input, injected image] + BN + ReLU."""

    def __init__(self, in_ch: int, width: int, dilations, in_channels: int):
        super().__init__()
        self.down = Downsample(in_ch, width)
        self.blocks = nn.Sequential(*(CFPModule(width, d) for d in dilations))
        self.norm = nn.Sequential(*bn_relu(2 * width + in_channels))

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        return self.norm(torch.cat([self.blocks(y), y, image], 1))


class UpStep(nn.Sequential):
    """2x2 stride-2 transposed conv (no bias) -> BN -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.ConvTranspose2d(in_ch, out_ch, 2, 2, bias=False), *bn_relu(out_ch))


class CFPNetM(nn.Module):
    """Stem at H/2, two CFP levels (H/4, H/8) with image injection, three transposed-conv steps
    back to full resolution, concatenating each level's output on the way."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        c = in_channels
        self.stem = nn.Sequential(conv_bn_relu(c, STEM, stride=2), conv_bn_relu(STEM, STEM), conv_bn_relu(STEM, STEM))
        self.inject = nn.AvgPool2d(3, stride=2, padding=1)
        self.stem_norm = nn.Sequential(*bn_relu(STEM + c))
        level_in = (STEM + c,) + tuple(2 * w + c for w in WIDTHS[:-1])
        self.levels = nn.ModuleList(EncoderLevel(i, w, d, c) for i, w, d in zip(level_in, WIDTHS, DILATIONS))
        # decoder: from the deepest concatenation down, each step's output joined to the next skip
        skips = (STEM + c,) + tuple(2 * w + c for w in WIDTHS)  # 35, 131, 259
        outs = tuple(reversed((STEM,) + WIDTHS))  # 128, 64, 32
        ins = (skips[-1],) + tuple(o + s for o, s in zip(outs, reversed(skips[:-1])))
        self.ups = nn.ModuleList(UpStep(i, o) for i, o in zip(ins, outs))
        self.head = nn.Conv2d(STEM, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = self.inject(x)
        feats = [self.stem_norm(torch.cat([self.stem(x), image], 1))]
        for level in self.levels:
            image = self.inject(image)
            feats.append(level(feats[-1], image))
        y = feats.pop()
        for up in self.ups:
            y = up(y)
            if feats:
                y = torch.cat([y, feats.pop()], 1)
        return self.head(y)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CFPNet_M",
        ubench_id=33,
        year=2023,
        paper="CFPNet-M: A Light-Weight Encoder-Decoder Based Network for Multimodal Biomedical Image Real-Time Segmentation",
        deep_supervision=False,
        ref_params_m=0.758881,
        ref_source="U-Bench models/CNN/CFPNet_M/CFPNet_M.py (cfpnet_m(input_channel=3, num_classes=1) "
        "= CFPNetM(3, 1, block_1=2, block_2=6)), counted by instantiating it",
        ref_input_size=256,
        size_multiple=8,
        notes="Total stride 8. As U-Bench's code, not the paper: ReLU (U-Bench's "
        "BNPReLU is nn.ReLU(nIn), an in-place ReLU) instead of PReLU; the CFP module's first "
        "reduction ('conv1x1_1') is a 3x3 conv; no bias anywhere, the head included; BN eps 1e-3. "
        "U-Bench hard-codes the injected image as 3 channels (35/131/259/99-channel layers), so its "
        "model only builds for input_channel=3; here those widths follow in_channels (identical at 3).",
    )
)
def cfpnet_m(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CFPNet-M as U-Bench benchmarks it (2 + 6 CFP modules)."""
    return CFPNetM(in_channels=in_channels, num_classes=num_classes)
