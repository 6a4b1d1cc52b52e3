"""CPCANet, a hierarchical CNN U-Net built on channel-prior convolutional attention (CPCA).

Paper: Huang, Chen, Zou, Lu, Chen et al., "Channel prior convolutional attention for medical image
segmentation", Computers in Biology and Medicine, 2024 (arXiv 2306.05196, 2023).

Configuration: U-Bench's ``cpcanet(num_classes, input_channel)`` (repo FengheTan9/U-Bench,
models/CNN/CPCANet/CPCANet.py), i.e. ``CPCANet`` with embedding width 96, encoder depths 3, 3, 12, 3
(widths 96, 192, 384, 768), channel-attention reduction 16, decoder depths 2, 2, 1, stochastic depth
rising linearly from 0 to 0.2 over the 21 encoder blocks. The stem is two steps of [3x3 conv
stride 2 -> GELU -> channel LayerNorm -> 3x3 conv (-> GELU -> LayerNorm on the first step)] to 48
then 96 channels, then a LayerNorm. Each encoder block is ``x + CPCA(BN(x))`` then
``x + FFN(BN(x))`` with the same BatchNorm both times; CPCA is a 1x1 conv + GELU, a channel gate
(sigmoid(MLP(avg)) + sigmoid(MLP(max)), MLP = 1x1 convs with bias), a depthwise 5x5 followed by
three depthwise strip pairs (1x7/7x1, 1x11/11x1, 1x21/21x1) summed with it, and the same 1x1 conv
applied again to make the spatial map and to project ``map * gated input``; the FFN is 1x1 up x4,
depthwise 3x3, GELU, 1x1 down. Between stages: GELU -> LayerNorm -> 3x3 conv stride 2 doubling the
width. Every stage output (before downsampling) is LayerNorm'd into a skip; the deepest is the
bottleneck. Decoder steps: LayerNorm -> 2x2 transposed conv halving the width, add the skip, then
``depth`` 3x3 conv + BN + ReLU; a 4x4 stride-4 transposed conv gives the logits. Total stride 32.
Parameters at 3 in / 1 class: 43,798,905 (counted by instantiating U-Bench's module).

U-Bench's blocks also build a 7x7 depthwise conv and a LayerNorm they never use, and the network
two more heads (on the 192- and 384-wide decoder maps) whose outputs its forward discards; they
are kept here, listed in ``unused_params`` (413,570 parameters), so that the count and the
state_dict are U-Bench's, and not run.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import LayerNorm2d, stochastic_depth
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

EMBED_DIM = 96
DEPTHS = (3, 3, 12, 3)
DECODER_DEPTHS = (1, 2, 2)  # shallowest first (U-Bench lists them [2, 2, 1], deepest first)
REDUCTION = 16
DROP_PATH = 0.2
STRIPS = (7, 11, 21)


def _depthwise(ch: int, kh: int, kw: int) -> nn.Conv2d:
    return nn.Conv2d(ch, ch, (kh, kw), padding=(kh // 2, kw // 2), groups=ch)


class StemStep(nn.Module):
    """3x3 conv stride 2 -> GELU -> LayerNorm -> 3x3 conv, then GELU -> LayerNorm unless ``last``."""

    def __init__(self, in_ch: int, out_ch: int, last: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm1 = LayerNorm2d(out_ch)
        self.tail = nn.Identity() if last else nn.Sequential(nn.GELU(), LayerNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(F.gelu(self.conv1(x)))
        return self.tail(self.conv2(x))


class ChannelPrior(nn.Module):
    """CPCA's channel gate: a shared 1x1-conv MLP on the average- and the max-pooled map, each
    through its own sigmoid, the two gates summed (so the gate lies in (0, 2))."""

    def __init__(self, ch: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(ch, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, ch, 1)

    def _gate(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._gate(F.adaptive_avg_pool2d(x, 1)) + self._gate(F.adaptive_max_pool2d(x, 1))


class CPCA(nn.Module):
    """Channel-prior convolutional attention: channel-gate the input, then weight it by a spatial
    map from multi-scale depthwise strip convolutions; one 1x1 conv is used three times."""

    def __init__(self, ch: int, reduction: int = REDUCTION):
        super().__init__()
        self.channel = ChannelPrior(ch, ch // reduction)
        self.local = _depthwise(ch, 5, 5)
        self.strips = nn.ModuleList(
            nn.Sequential(_depthwise(ch, 1, k), _depthwise(ch, k, 1)) for k in STRIPS
        )
        self.mix = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.mix(x))
        x = self.channel(x) * x
        base = self.local(x)
        spatial = sum(strip(base) for strip in self.strips) + base
        return self.mix(self.mix(spatial) * x)


class ConvFFN(nn.Module):
    """1x1 expansion, depthwise 3x3, GELU, 1x1 projection (registered in U-Bench's order)."""

    def __init__(self, ch: int, expand: int = 4):
        super().__init__()
        self.fc1 = nn.Conv2d(ch, expand * ch, 1)
        self.fc2 = nn.Conv2d(expand * ch, ch, 1)
        self.dw = _depthwise(expand * ch, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.dw(self.fc1(x))))


class CPCABlock(nn.Module):
    """Pre-BatchNorm residual CPCA, then pre-BatchNorm residual FFN, sharing one BatchNorm."""

    def __init__(self, ch: int, drop_path: float):
        super().__init__()
        self.unused_dwconv = nn.Conv2d(ch, ch, 7, padding=3, groups=ch)  # built, never run
        self.bn = nn.BatchNorm2d(ch)
        self.unused_norm = nn.LayerNorm(ch, eps=1e-6)  # built, never run
        self.drop_path = stochastic_depth(drop_path) if drop_path > 0 else nn.Identity()
        self.ffn = ConvFFN(ch)
        self.attn = CPCA(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.bn(x)))
        return x + self.drop_path(self.ffn(self.bn(x)))


class Downsample(nn.Module):
    """GELU -> channel LayerNorm -> 3x3 conv stride 2 that doubles the width."""

    def __init__(self, ch: int):
        super().__init__()
        self.reduction = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.norm = LayerNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(F.gelu(x)))


class EncoderStage(nn.Module):
    """``depth`` CPCA blocks, then (except at the bottom) a downsampling step."""

    def __init__(self, ch: int, drop_paths: list[float], downsample: bool):
        super().__init__()
        self.blocks = nn.Sequential(*(CPCABlock(ch, p) for p in drop_paths))
        self.downsample = Downsample(ch) if downsample else None


class DecoderStage(nn.Module):
    """LayerNorm -> 2x2 transposed conv halving the deeper map, add the skip, then ``depth``
    3x3 conv + BN + ReLU."""

    def __init__(self, ch: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(*(m for _ in range(depth) for m in conv_bn_relu(ch, ch)))
        self.norm = LayerNorm2d(2 * ch)
        self.up = nn.ConvTranspose2d(2 * ch, ch, 2, stride=2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.up(self.norm(x)) + skip)


class CPCANet(nn.Module):
    """Stride-4 stem, four CPCA stages (strides 4..32), three decoder stages, a x4 head."""

    stride = 4 * 2 ** (len(DEPTHS) - 1)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, dim: int = EMBED_DIM,
                 depths=DEPTHS, decoder_depths=DECODER_DEPTHS):
        super().__init__()
        widths = [dim * 2**i for i in range(len(depths))]
        self.stem = nn.Sequential(
            StemStep(in_channels, dim // 2, last=False), StemStep(dim // 2, dim, last=True), LayerNorm2d(dim)
        )
        rates = torch.linspace(0, DROP_PATH, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        last = len(depths) - 1
        self.stages = nn.ModuleList(
            EncoderStage(w, rates[s:s + d], downsample=i < last)
            for i, (w, d, s) in enumerate(zip(widths, depths, starts))
        )
        self.skip_norms = nn.ModuleList(LayerNorm2d(w) for w in widths)
        self.decoder = nn.ModuleList(DecoderStage(w, d) for w, d in zip(widths, decoder_depths))
        self.head = nn.ConvTranspose2d(dim, num_classes, 4, stride=4)
        self.unused_heads = nn.ModuleList(  # U-Bench computes and discards them
            nn.ConvTranspose2d(w, num_classes, 4, stride=4) for w in widths[1:len(decoder_depths)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for stage, norm in zip(self.stages, self.skip_norms):
            x = stage.blocks(x)
            skips.append(norm(x))
            if stage.downsample is not None:
                x = stage.downsample(x)
        x = skips.pop()
        for step in reversed(self.decoder):
            x = step(x, skips.pop())
        return self.head(x)


def _unused_params() -> list[str]:
    """The names of what U-Bench builds but never runs (listed without building the model)."""
    modules = [f"stages.{i}.blocks.{j}.unused_{m}" for i, d in enumerate(DEPTHS) for j in range(d)
               for m in ("dwconv", "norm")]
    modules += [f"unused_heads.{k}" for k in range(len(DECODER_DEPTHS) - 1)]
    return [f"{m}.{p}" for m in modules for p in ("weight", "bias")]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CPCANet",
        ubench_id=27,
        year=2024,
        paper="Channel prior convolutional attention for medical image segmentation",
        deep_supervision=False,
        ref_params_m=43.798905,
        ref_source="U-Bench models/CNN/CPCANet/CPCANet.py (cpcanet(num_classes=1, input_channel=3)), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=CPCANet.stride,
        notes="U-Bench's blocks build a 7x7 depthwise conv and a LayerNorm they never run, and the "
        "network two heads on the 192/384-wide decoder maps whose outputs it discards: kept, unused "
        "(413,570 params), not computed; each block applies its one BatchNorm twice (before the "
        "attention and before the FFN); the CPCA 1x1 conv is used three times; the channel gate sums "
        "two sigmoids; no deep supervision (the decoder's side outputs are not returned)",
        extra={"unused_params": _unused_params()},
    )
)
def cpcanet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CPCANet as U-Bench benchmarks it (width 96, depths 3-3-12-3)."""
    return CPCANet(in_channels=in_channels, num_classes=num_classes)
