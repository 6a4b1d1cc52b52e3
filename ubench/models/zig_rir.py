"""Zig-RiR: a "RWKV-in-RWKV" pyramid encoder (pixel words inside patch sentences), zigzag scans.

Paper: Chen et al., "Zig-RiR: Zigzag RWKV-in-RWKV for Efficient Medical Image Segmentation",
IEEE TMI 2025.

Configuration: U-Bench's ``zig_rir(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/RWKV/Zig_RiR/Zig_RiR.py): a conv stem makes outer "sentence" tokens at 1/8 scale (64
channels) and, inside each, 4x4 inner "word" tokens of 4 channels (from a 1/2-scale map). Four
stages with depths 2, 4, 9, 2, outer widths 64, 128, 256, 512 and inner widths 4, 8, 16, 32;
between stages a stride-2 3x3 conv merges 2x2 sentences and, for words, the 2x2 sentences' 8x8
words. Each block runs (first block of a stage, and the second of the 9-block stage, also on the
words, whose result is projected into the sentence) a Vision-RWKV spatial mix and channel mix
(hidden 4x, no key norm), each after a LayerNorm with a residual. The spatial mix replaces the
tokens by their quad-directional shift, orders them along a zigzag scan (rows from the top-left
in even blocks, columns from the bottom-right in odd ones), runs Bi-WKV, re-orders by the same
zigzag on the transposed grid and runs a second Bi-WKV (its own decay and bonus) on the values.
Each stage's sentence map goes through ConvTranspose x2 + BN + GELU + 3x3 conv + BN + GELU; a
U-Net decoder (ConvTranspose x2, concatenation, 3x3 conv + BN + ReLU) fuses them from 1/32 to 1/4,
then bilinear x4 (align_corners) and a 1x1 conv give the logits. No deep supervision.

Faithful to U-Bench, quirks included: the spatial mix's output stays in the scan order (it is not
mapped back to row-major before the residual), and the gate ``sigmoid(r)`` is in the first scan's
order while the values are in the second's. Differences, deliberate: (1) WKV is ``ops.wkv.bi_wkv``
in pure torch instead of the CUDA kernel; (2) the zigzag and the stage outputs use the real (H, W)
(U-Bench's vertical zigzag and reshapes assume a square map; identical for square maps); (3) the
total stride is 64, so an input whose sides are multiples of 32 but not 64 is zero-padded on the
bottom/right to the next multiple of 64 and the logits cropped back (U-Bench would fail there;
at 256x256 nothing changes). U-Bench also builds parameters its forward never uses (position
embeddings for 256x256 and a depthwise conv in every spatial mix); we build them too so the
parameter count matches exactly, and list them in ``ModelInfo.extra["unused_params"]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_linear_conv, map_to_tokens, tokens_to_map
from ubench.models.ops.rwkv_blocks import ChannelMix, q_shift_map, q_shift_tokens
from ubench.models.ops.wkv import bi_wkv
from ubench.models.registry import ModelInfo, register_model

OUTER = (64, 128, 256, 512)
INNER = (4, 8, 16, 32)
DEPTHS = (2, 4, 9, 2)
WORDS = 4  # words per sentence side (4 x 4 = 16 words)
REF_SIZE = 256
STRIDE = 64
SIZE_MULTIPLE = 32  # accepted; padded internally to STRIDE
SCHEMES = (("top-left", "horizontal"), ("bottom-right", "vertical"))


def zigzag_order(h: int, w: int, start: str, direction: str) -> list[int]:
    """Row-major indices of an (h, w) grid in boustrophedon order.

    'horizontal': rows from the top ('top-left') or the bottom ('bottom-right'), each row read
    left-to-right when its index is even, right-to-left when odd. 'vertical': columns from the
    left or the right, each read top-down when its index is even, bottom-up when odd.
    """
    order = []
    if direction == "horizontal":
        rows = range(h) if start == "top-left" else range(h - 1, -1, -1)
        for r in rows:
            cols = range(w) if r % 2 == 0 else range(w - 1, -1, -1)
            order += [r * w + c for c in cols]
    else:
        cols = range(w) if start == "top-left" else range(w - 1, -1, -1)
        for c in cols:
            rows_ = range(h) if c % 2 == 0 else range(h - 1, -1, -1)
            order += [r * w + c for r in rows_]
    return order


class ZigzagSpatialMix(nn.Module):
    """Shift, zigzag, Bi-WKV, zigzag again (transposed grid), Bi-WKV, gate, output projection."""

    def __init__(self, dim: int, layer_id: int):
        super().__init__()
        self.scheme = SCHEMES[layer_id % len(SCHEMES)]
        self.unused_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)  # never called
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)
        self.spatial_decay = nn.Parameter(torch.randn(2, dim))
        self.spatial_first = nn.Parameter(torch.randn(2, dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        T = x.shape[1]
        first = torch.tensor(zigzag_order(h, w, *self.scheme), device=x.device)
        x = map_to_tokens(q_shift_map(tokens_to_map(x, *hw)))[:, first]
        k, v = self.key(x), self.value(x)
        gate = torch.sigmoid(self.receptance(x))
        v = bi_wkv(self.spatial_decay[0] / T, self.spatial_first[0] / T, k, v)
        gh, gw = (h, w) if self.scheme[1] == "horizontal" else (w, h)
        second = torch.tensor(zigzag_order(gh, gw, *self.scheme), device=x.device)
        v = bi_wkv(self.spatial_decay[1] / T, self.spatial_first[1] / T, k[:, second], v[:, second])
        return self.output(gate * v)


def _channel_mix(dim: int) -> ChannelMix:
    """Zig-RiR's channel mix: inputs replaced by their quad shift, hidden 4x, no key norm."""
    return ChannelMix(dim, 4, q_shift_tokens, None, key_norm=False)


class RiRBlock(nn.Module):
    """Optional word-level mixes (projected into the sentence), then sentence-level mixes."""

    def __init__(self, outer: int, inner: int, layer_id: int):
        super().__init__()
        self.has_inner = inner > 0
        if self.has_inner:
            flat = WORDS * WORDS * inner
            self.inner_norm1 = nn.LayerNorm(flat)
            self.inner_attn = ZigzagSpatialMix(inner, layer_id)
            self.inner_norm2 = nn.LayerNorm(flat)
            self.inner_ffn = _channel_mix(inner)
            self.proj_norm1 = nn.LayerNorm(flat)
            self.proj = nn.Linear(flat, outer, bias=False)
            self.proj_norm2 = nn.LayerNorm(outer)
        self.outer_norm1 = nn.LayerNorm(outer)
        self.outer_attn = ZigzagSpatialMix(outer, layer_id)
        self.outer_norm2 = nn.LayerNorm(outer)
        self.outer_ffn = _channel_mix(outer)

    def forward(self, words, sentences, hw):
        B, N, _ = sentences.shape
        if self.has_inner:
            inner_hw = (WORDS, WORDS)
            nw = WORDS * WORDS

            def per_sentence(t):  # (B*N, 16, c) -> (B, N, 16*c)
                return t.reshape(B, N, -1)

            words = words + self.inner_attn(self.inner_norm1(per_sentence(words)).reshape(B * N, nw, -1), inner_hw)
            words = words + self.inner_ffn(self.inner_norm2(per_sentence(words)).reshape(B * N, nw, -1), inner_hw)
            sentences = sentences + self.proj_norm2(self.proj(self.proj_norm1(per_sentence(words))))
        sentences = sentences + self.outer_attn(self.outer_norm1(sentences), hw)
        sentences = sentences + self.outer_ffn(self.outer_norm2(sentences), hw)
        return words, sentences


def conv_bn_relu(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]


class Stem(nn.Module):
    """Sentences: three stride-2 convs to 1/8; words: 4x4 patches of a 1/2-scale map."""

    def __init__(self, in_channels: int, outer: int, inner: int):
        super().__init__()
        self.inner = inner
        self.common = nn.Sequential(*conv_bn_relu(in_channels, 2 * inner, 2))
        self.words = nn.Sequential(*conv_bn_relu(2 * inner, inner))
        self.sentences = nn.Sequential(
            *conv_bn_relu(2 * inner, 4 * inner, 2),
            *conv_bn_relu(4 * inner, 8 * inner, 2),
            *conv_bn_relu(8 * inner, outer),
        )

    def forward(self, x):
        B = x.shape[0]
        x = self.common(x)
        patches = F.unfold(self.words(x), kernel_size=WORDS, stride=WORDS)  # (B, inner*16, N)
        n = patches.shape[-1]
        words = patches.transpose(1, 2).reshape(B * n, self.inner, WORDS * WORDS).transpose(1, 2)
        s = self.sentences(x)
        return words, map_to_tokens(s), tuple(s.shape[-2:])


class MergeSentences(nn.Module):
    """LayerNorm, then a stride-2 3x3 conv on the sentence map."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = nn.LayerNorm(cin)
        self.conv = nn.Conv2d(cin, cout, 3, 2, 1)

    def forward(self, x, hw):
        x = self.conv(tokens_to_map(self.norm(x), *hw))
        return map_to_tokens(x), tuple(x.shape[-2:])


class MergeWords(nn.Module):
    """LayerNorm, gather the 8x8 words of each 2x2 group of sentences, stride-2 3x3 conv to 4x4."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cout = cout
        self.norm = nn.LayerNorm(cin)
        self.conv = nn.Conv2d(cin, cout, 3, 2, 1)

    def forward(self, x, hw):
        h, w = hw
        c = x.shape[-1]
        x = self.norm(x).reshape(-1, h, w, WORDS, WORDS, c)
        if h % 2 or w % 2:  # odd sentence grid: pad a row/column of empty sentences
            x = F.pad(x.permute(0, 3, 4, 5, 1, 2), (0, w % 2, 0, h % 2)).permute(0, 4, 5, 1, 2, 3)
        left = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2]], dim=3)
        right = torch.cat([x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=3)
        x = torch.cat([left, right], dim=4).reshape(-1, 2 * WORDS, 2 * WORDS, c).permute(0, 3, 1, 2)
        return self.conv(x).reshape(-1, self.cout, WORDS * WORDS).transpose(1, 2)


class UpsampleBlock(nn.Sequential):
    """ConvTranspose x2 + BN + GELU, 3x3 conv + BN + GELU (same width)."""

    def __init__(self, dim: int):
        super().__init__(
            nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.GELU(),
        )


class RiREncoder(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.stem = Stem(in_channels, OUTER[0], INNER[0])
        n = (REF_SIZE // 8) ** 2
        self.unused_pos_sentence = nn.Parameter(torch.zeros(1, n, OUTER[0]))  # never used by U-Bench
        self.unused_pos_word = nn.Parameter(torch.zeros(1, WORDS * WORDS, INNER[0]))
        self.word_merges = nn.ModuleList(MergeWords(INNER[i - 1], INNER[i]) for i in range(1, 4))
        self.sentence_merges = nn.ModuleList(MergeSentences(OUTER[i - 1], OUTER[i]) for i in range(1, 4))
        self.stages = nn.ModuleList()
        for i, depth in enumerate(DEPTHS):
            blocks = []
            for j in range(depth):
                inner = INNER[i] if j == 0 or (j == 1 and depth > 6) else -1
                blocks.append(RiRBlock(OUTER[i], inner, layer_id=j))
            self.stages.append(nn.ModuleList(blocks))
        self.up = nn.ModuleList(UpsampleBlock(d) for d in OUTER)
        self.apply(init_linear_conv)  # U-Bench's encoder init

    def forward(self, x) -> list[torch.Tensor]:
        words, sentences, hw = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                words = self.word_merges[i - 1](words, hw)
                sentences, hw = self.sentence_merges[i - 1](sentences, hw)
            for block in stage:
                words, sentences = block(words, sentences, hw)
            outs.append(self.up[i](tokens_to_map(sentences, *hw)))
        return outs  # 1/4, 1/8, 1/16, 1/32


class Decoder(nn.Module):
    """ConvTranspose x2, concatenate the skip, 3x3 conv + BN + ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, 2)
        self.fuse = nn.Sequential(*conv_bn_relu(2 * cout, cout))

    def forward(self, x, skip):
        return self.fuse(torch.cat([self.up(x), skip], dim=1))


class ZigRiR(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = RiREncoder(in_channels)
        self.decode4 = Decoder(OUTER[3], OUTER[2])
        self.decode3 = Decoder(OUTER[2], OUTER[1])
        self.decode2 = Decoder(OUTER[1], OUTER[0])
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=4, mode="bilinear", align_corners=True),
            nn.Conv2d(OUTER[0], num_classes, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        x = F.pad(x, (0, -W % STRIDE, 0, -H % STRIDE))
        t1, t2, t3, t4 = self.encoder(x)
        d = self.decode2(self.decode3(self.decode4(t4, t3), t2), t1)
        return self.head(d)[..., :H, :W]


def _unused_parameter_names() -> list[str]:
    names = ["encoder.unused_pos_sentence", "encoder.unused_pos_word"]
    for i, depth in enumerate(DEPTHS):
        for j in range(depth):
            names.append(f"encoder.stages.{i}.{j}.outer_attn.unused_dwconv.weight")
            if j == 0 or (j == 1 and depth > 6):
                names.append(f"encoder.stages.{i}.{j}.inner_attn.unused_dwconv.weight")
    return names


@register_model(
    ModelInfo(
        family="rwkv",
        ubench_name="Zig_RiR",
        ubench_id=111,
        year=2025,
        paper="Zig-RiR: Zigzag RWKV-in-RWKV for Efficient Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=24.371816,
        ref_source="U-Bench models/RWKV/Zig_RiR/Zig_RiR.py (zig_rir(input_channel=3, num_classes=1)), counted "
        "layer by layer, including the parameters it builds but never uses",
        ref_input_size=REF_SIZE,
        size_multiple=SIZE_MULTIPLE,
        notes="pure-torch Bi-WKV instead of the CUDA kernel; total stride 64: inputs that are multiples of 32 "
        "but not 64 are zero-padded to 64 and the logits cropped; zigzag uses the real (H, W); U-Bench's "
        "unused parameters built too (listed in extra) so the count matches",
        extra={"unused_params": _unused_parameter_names()},
    )
)
def zig_rir(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Zig-RiR as U-Bench benchmarks it, WKV in pure torch."""
    return ZigRiR(in_channels=in_channels, num_classes=num_classes)
