"""MMUNet, a U-Net whose skips and output are refined by soft morphology (erosion / dilation).

Paper: "MMUNet: Morphological feature enhancement network for colon cancer segmentation in
pathological images", 2024 (code: github.com/Yuanhaojun513/MMUNet, released January 2024, whose
owner is presumably the first author; the author list and venue were not checked).

Configuration: U-Bench's ``mmunet(input_channel=3, num_classes=1)`` helper (repo
FengheTan9/U-Bench, models/CNN/MMUNet/MMUNet.py; models/__init__.py registers it as ``MMUNet`` and
U-Bench's factory passes only ``input_channel`` and ``num_classes``), which builds the ``MMUNet``
class with ``base_channels=64`` (the class default, 96, is not used) and bilinear=True (nearest
upsampling in fact: ``nn.Upsample(scale_factor=2)``).

* Encoder, six stages with widths 64, 128, 128, 256, 512, 512: a 7x7 conv stem, then five 2x2
  stride-2 convs; each stage is conv -> BN -> block -> BN -> block -> GELU. The blocks are
  ``MultiScaleBlock`` (a Res2Net-like cascade of depthwise 3/5/7 convs over three quarters of the
  channels, BN, an inverted x4 MLP, residual) in the first four stages and ``MultiScaleBlock`` +
  ``ExternalAttention`` (64 memory units) in the last two.
* Decoder, four steps (to widths 256, 128, 128, 64): nearest upsampling x2 of the deeper map; the
  skip is gated by a soft morphological filter (channel softmax, erosion and dilation by two 7x7
  stride-1 max-pools, ``sigmoid(conv1x1(erode + skip)) * skip + sigmoid(erode) * tanh(dilate)``);
  concatenation [gated skip, upsampled], 1x1 conv + BN and two blocks (with external attention in
  the two deepest steps, which also add a conv-GELU-conv shortcut of upsampled + raw skip).
* A last nearest upsampling x2 with two blocks back to full resolution, then the edge module:
  morphological gradients (7x7 dilation minus erosion of the channel softmax) of the stem output
  and of the upsampled second-stage map (grouped 3x3 conv + BN + GELU, 128 -> 64) are fused by a
  1x1 conv and added; a 1x1 conv gives the logits.

Total stride 32. Parameters at 3 in / 1 class: 17,726,657 (counted by instantiating U-Bench's
module).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.registry import ModelInfo, register_model

BASE = 64
ENC_WIDTHS = (BASE, 2 * BASE, 2 * BASE, 4 * BASE, 8 * BASE, 8 * BASE)
ATTENTION_STAGES = (False, False, False, False, True, True)
MEMORY_UNITS = 64
MORPH_KERNEL = 7


def _dilate(x: torch.Tensor, times: int) -> torch.Tensor:
    """Grey-scale dilation: ``times`` 7x7 stride-1 max-pools."""
    for _ in range(times):
        x = F.max_pool2d(x, MORPH_KERNEL, stride=1, padding=MORPH_KERNEL // 2)
    return x


def _erode(x: torch.Tensor, times: int) -> torch.Tensor:
    """Grey-scale erosion: ``times`` 7x7 stride-1 min-pools."""
    return -_dilate(-x, times)


class MultiScaleBlock(nn.Module):
    """Hierarchical depthwise convs (3, 5, 7) over the first three channel quarters, each fed the
    previous branch's output, the fourth quarter passed through; BN, then a per-pixel inverted
    MLP (x4, GELU, as Linear layers on channels-last) added to the input (U-Bench's ``Block``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.width = dim // 4
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(self.width, self.width, k, padding=k // 2, groups=self.width),
                nn.BatchNorm2d(self.width),
                nn.GELU(),
            )
            for k in (3, 5, 7)
        )
        self.norm = nn.BatchNorm2d(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(torch.split(x, self.width, dim=1))
        prev = None
        for i, branch in enumerate(self.branches):
            prev = branch(parts[i] if prev is None else parts[i] + prev)
            parts[i] = prev
        y = self.norm(torch.cat(parts, dim=1))
        return x + self.mlp(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ExternalAttention(nn.Module):
    """External attention (Guo et al. 2021): BN, 1x1 conv, two shared memories as 1x1 Conv1d
    (softmax over pixels, then normalised over the memory units), 1x1 conv + BN, residual, GELU."""

    def __init__(self, dim: int, units: int = MEMORY_UNITS):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.memory_key = nn.Conv1d(dim, units, 1, bias=False)
        self.memory_value = nn.Conv1d(units, dim, 1, bias=False)
        self.out = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        attn = torch.softmax(self.memory_key(self.proj(self.norm(x)).flatten(2)), dim=-1)
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        y = self.memory_value(attn).view(b, c, h, w)
        return F.gelu(x + self.out(y))


def block(dim: int, attention: bool) -> nn.Module:
    """U-Bench's ``Block`` (``attention=False``) or ``Block1`` (followed by external attention)."""
    if attention:
        return nn.Sequential(MultiScaleBlock(dim), ExternalAttention(dim))
    return MultiScaleBlock(dim)


class EncoderStage(nn.Sequential):
    """Conv (7x7 stem or 2x2 stride-2 downsampling) -> BN -> block -> BN -> block -> GELU."""

    def __init__(self, in_ch: int, out_ch: int, attention: bool, stem: bool):
        conv = nn.Conv2d(in_ch, out_ch, 7, padding=3) if stem else nn.Conv2d(in_ch, out_ch, 2, stride=2)
        super().__init__(
            conv,
            nn.BatchNorm2d(out_ch),
            block(out_ch, attention),
            nn.BatchNorm2d(out_ch),
            block(out_ch, attention),
            nn.GELU(),
        )


class DecoderStep(nn.Module):
    """Upsample x2, gate the skip with soft morphology, concatenate [skip, upsampled], fuse by a
    1x1 conv + BN and two blocks; ``shortcut`` adds conv-GELU-conv of (upsampled + raw skip)
    (U-Bench's ``Up``; without it ``Up1``)."""

    def __init__(self, in_ch: int, out_ch: int, attention: bool, shortcut: bool):
        super().__init__()
        skip_ch = in_ch // 2
        self.fuse = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1),
            nn.BatchNorm2d(out_ch),
            block(out_ch, attention),
            block(out_ch, attention),
        )
        self.gate = nn.Conv2d(skip_ch, skip_ch, 1)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(skip_ch, skip_ch, 1), nn.GELU(), nn.Conv2d(skip_ch, out_ch, 1))
            if shortcut
            else None
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        soft = torch.softmax(skip, dim=1)
        eroded = _erode(soft, 2)
        dilated = _dilate(soft, 2)
        gated = torch.sigmoid(self.gate(eroded + skip)) * skip + torch.sigmoid(eroded) * torch.tanh(dilated)
        out = self.fuse(torch.cat([gated, x], dim=1))
        if self.shortcut is not None:
            out = out + self.shortcut(x + skip)
        return out


class EdgeFusion(nn.Module):
    """Adds the fused morphological gradients (7x7 dilation - erosion of the channel softmax) of
    the stem features and of the upsampled second-stage features to the decoder output (``EFM``)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(in_ch, out_ch, 3, padding=1, groups=out_ch, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.GELU(),
        )
        self.fuse = nn.Conv2d(2 * out_ch, out_ch, 1)

    @staticmethod
    def _gradient(x: torch.Tensor) -> torch.Tensor:
        soft = torch.softmax(x, dim=1)
        return _dilate(soft, 1) - _erode(soft, 1)

    def forward(self, stem: torch.Tensor, second: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        edges = torch.cat([self._gradient(self.up(second)), self._gradient(stem)], dim=1)
        return x + self.fuse(edges)


class MMUNet(nn.Module):
    """Six encoder stages (five stride-2 convs), four morphology-gated decoder steps, a last
    upsampling step, the edge fusion module and a 1x1 head."""

    stride = 2 ** (len(ENC_WIDTHS) - 1)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=ENC_WIDTHS, attention=ATTENTION_STAGES):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.encoder = nn.ModuleList(
            EncoderStage(i, o, a, stem=k == 0) for k, (i, o, a) in enumerate(zip(ins, widths, attention))
        )
        # decoder step k fuses skip widths[-2 - k] with the upsampled map of the same width; the
        # two deepest steps use external attention and the shortcut (U-Bench's Up, then Up1)
        outs = (widths[-3], widths[-4], widths[-5], widths[0])
        self.decoder = nn.ModuleList(
            DecoderStep(2 * widths[-2 - k], out_ch, attention=k < 2, shortcut=k < 2)
            for k, out_ch in enumerate(outs)
        )
        self.last_up = nn.Sequential(
            nn.Upsample(scale_factor=2), block(widths[0], False), block(widths[0], False)
        )
        self.edges = EdgeFusion(widths[1], widths[0])
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
        for step, skip in zip(self.decoder, reversed(feats[1:-1])):
            x = step(x, skip)
        x = self.edges(feats[0], feats[1], self.last_up(x))
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MMUNet",
        ubench_id=50,
        year=2024,
        paper="MMUNet: Morphological feature enhancement network for colon cancer segmentation in "
        "pathological images",
        deep_supervision=False,
        ref_params_m=17.726657,
        ref_source="U-Bench models/CNN/MMUNet/MMUNet.py (mmunet(input_channel=3, num_classes=1), "
        "base_channels=64), counted by instantiating it",
        ref_input_size=256,
        size_multiple=MMUNet.stride,
        notes="U-Bench builds base_channels=64 through its mmunet helper (the class default is 96). "
        "'bilinear' upsampling in the reference is nearest (nn.Upsample default). U-Bench's F.pad "
        "for odd skip sizes is omitted: at multiples of 32 it pads nothing.",
    )
)
def mmunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MMUNet (base width 64) as U-Bench benchmarks it."""
    return MMUNet(in_channels=in_channels, num_classes=num_classes)
