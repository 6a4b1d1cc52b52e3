"""MedFormer: a pre-activation residual U-Net whose deeper stages exchange information with a small
learned "semantic map" through bidirectional attention.

Paper: Gao, Zhou, Liu, Yan, Zhang, Metaxas, "A Data-scalable Transformer for Medical Image
Segmentation: Architecture, Model Efficiency, and Benchmark" (first titled "A Multi-scale
Transformer for Medical Image Segmentation: Architectures, Model Efficiency, and Benchmarks"),
arXiv 2203.00131, 2022 (the 2D variant of github.com/yhygao/CBIM-Medical-Image-Segmentation).

Configuration: U-Bench's ``MedFormer`` (repo FengheTan9/U-Bench, models/Hybrid/MedFormer/
MedFormer.py + medformer_utils.py, conv_layers.py, trans_layers.py; id 80, no deep supervision,
no pretrained weights). Its factory ``medformer(num_classes, input_channel)`` builds the class with
its defaults: base width 32, BasicBlock convs, 8x8 semantic map, depth-wise projections,
expansion 4, BatchNorm + ReLU, no dropout, ``aux_loss=False``:
- every conv unit is pre-activation (BN, ReLU, conv without bias); a residual block is two 3x3
  units plus the identity;
- stem: 3x3 conv to 32 channels + one residual block (stride 1);
- four encoder stages (widths 64, 128, 256, 512, strides 2-16), each opened by a patch merging
  (the 2x2 neighbourhood concatenated in Swin's order, BN, depth-wise 3x3 + pointwise 1x1) and
  followed by 2, 1, 0, 0 residual blocks; stages 2-4 then generate a semantic map (64 codes = an
  8x8 grid, each a softmax-weighted average over all pixels of a 3x3-conv projection) and run 1, 2,
  2 bidirectional attention blocks (heads of 32 channels: 4, 8, 16);
- bidirectional attention block: BN on the feature map and on the semantic map, one set of
  logits between pixel queries (depth-wise separable projection) and map queries (1x1), softmaxed
  over the map codes to update the pixels (map values) and over the pixels to update the map
  (pixel values), each through its own output projection, both residual; then an inverted
  residual feed-forward on the pixels (pre-activation 1x1 expand x4, 3x3 depth-wise,
  squeeze-excite with reduction 4, 1x1 project, plus the input);
- semantic map fusion: the three encoder maps projected (1x1) to 512 channels, their 3 x 64 codes
  through two pre-norm transformer layers (16 heads, MLP 512) jointly, projected back;
- decoder: bilinear upsampling (align_corners=True) to the skip, concatenation [upsampled, skip],
  BN + 1x1 conv to the skip's width; the two deepest steps (256, 128) carry the semantic map
  (concatenated with the fused encoder map of that level, 1x1 conv) through 2 and 1 bidirectional
  blocks, then 0 and 1 residual blocks; the two shallow steps (64, 32) two residual blocks each;
- head: 1x1 conv (bias) to the classes.
Input size: any multiple of 16 (four 2x2 patch mergings; the semantic map is 8x8 whatever the input).
Parameters at 3 in / 1 class: 28,072,897, all trainable, counted by instantiating U-Bench's module;
26,624 of them never reach the output there either (see the notes).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import Mlp, SqueezeExcite, map_to_tokens
from ubench.models.registry import ModelInfo, register_model

BASE = 32
MAP_SIZE = 8  # the semantic map is a MAP_SIZE x MAP_SIZE grid of learned codes
HEAD_DIM = 32  # every attention in the default configuration has 32-channel heads
EXPANSION = 4  # inverted residual feed-forward width
SE_REDUCTION = 4
FUSION_DIM = 512
FUSION_DEPTH = 2
# (width, residual blocks, bidirectional blocks) per stage; encoder finest first, decoder deepest first
ENCODER = ((64, 2, 0), (128, 1, 1), (256, 0, 2), (512, 0, 2))
DECODER = ((256, 0, 2), (128, 1, 1), (64, 2, 0), (32, 2, 0))
STRIDE = 2 ** len(ENCODER)


class PreActConv(nn.Module):
    """BN -> ReLU (optional) -> conv without bias: the unit every MedFormer conv block is made of."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, groups: int = 1, act: bool = True):
        super().__init__()
        # conv registered before norm, as in the reference's ConvNormAct (same state_dict order)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(in_ch)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.norm(x)))


class ResBlock(nn.Sequential):
    """Two pre-activation 3x3 units plus the identity (the width never changes in MedFormer)."""

    def __init__(self, ch: int):
        super().__init__(PreActConv(ch, ch), PreActConv(ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + x


def sep_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Depth-wise 3x3 then pointwise 1x1, no bias: the 'depthwise' projection type."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
    )


class InvertedResidual(nn.Module):
    """Pre-activation MBConv: 1x1 expand, 3x3 depth-wise, squeeze-excite, 1x1 project (no ReLU
    before it), plus the input. The feed-forward of a bidirectional block."""

    def __init__(self, ch: int, expansion: int = EXPANSION):
        super().__init__()
        mid = ch * expansion
        self.expand = PreActConv(ch, mid, 1)
        self.depthwise = PreActConv(mid, mid, 3, groups=mid)
        self.se = SqueezeExcite(mid, reduction=SE_REDUCTION, bias=True)
        self.project = PreActConv(mid, ch, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.depthwise(self.expand(x)))) + x


class PatchMerging(nn.Module):
    """Halve the grid: each 2x2 neighbourhood stacked on the channels (Swin's order), BN, then a
    depth-wise separable conv to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.proj = sep_conv(4 * in_ch, out_ch)
        self.norm = nn.BatchNorm2d(4 * in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (row, col) offsets (0,0), (1,0), (0,1), (1,1), as ops/swin.py's PatchMerging
        x = torch.cat([x[:, :, i::2, j::2] for j in (0, 1) for i in (0, 1)], dim=1)
        return self.proj(self.norm(x))


class MapGenerator(nn.Module):
    """The semantic map: MAP_SIZE^2 codes, each an attention-pooled average of projected pixels."""

    def __init__(self, ch: int, map_size: int = MAP_SIZE):
        super().__init__()
        self.map_size = map_size
        self.value = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.pool_logits = nn.Conv2d(ch, map_size * map_size, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.pool_logits(x).flatten(2), dim=-1)  # (B, codes, HW)
        codes = self.value(x).flatten(2) @ weights.transpose(1, 2)  # (B, C, codes)
        return codes.view(x.shape[0], -1, self.map_size, self.map_size)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, d*heads, H, W) -> (B, heads, H*W, d); channel index = dim * heads + head (the reference's
    ``(dim_head heads)`` layout)."""
    b, c, h, w = t.shape
    return t.reshape(b, c // heads, heads, h * w).permute(0, 2, 3, 1)


def _merge_heads(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of ``_split_heads``."""
    b, heads, _, d = t.shape
    return t.permute(0, 3, 1, 2).reshape(b, d * heads, h, w)


class BidirectionalAttention(nn.Module):
    """Pixels attend to the semantic map codes and the codes to the pixels, from ONE logit table
    (pixel queries x map queries) softmaxed along each axis."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (ch // heads) ** -0.5
        self.feat_qv = sep_conv(ch, 2 * ch)
        self.feat_out = sep_conv(ch, ch)
        self.map_qv = nn.Conv2d(ch, 2 * ch, 1, bias=False)
        self.map_out = nn.Conv2d(ch, ch, 1, bias=False)

    def forward(self, feat: torch.Tensor, smap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = feat.shape[-2:]
        mh, mw = smap.shape[-2:]
        feat_q, feat_v = (_split_heads(t, self.heads) for t in self.feat_qv(feat).chunk(2, dim=1))
        map_q, map_v = (_split_heads(t, self.heads) for t in self.map_qv(smap).chunk(2, dim=1))
        logits = feat_q @ map_q.transpose(-1, -2) * self.scale  # (B, heads, HW, codes)
        feat_out = torch.softmax(logits, dim=-1) @ map_v
        map_out = torch.softmax(logits, dim=-2).transpose(-1, -2) @ feat_v
        return self.feat_out(_merge_heads(feat_out, h, w)), self.map_out(_merge_heads(map_out, mh, mw))


class BidirectionalBlock(nn.Module):
    """Pre-norm bidirectional attention (residual on both streams), then the inverted residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.feat_norm = nn.BatchNorm2d(ch)
        self.map_norm = nn.BatchNorm2d(ch)
        self.attn = BidirectionalAttention(ch, heads=ch // HEAD_DIM)
        self.ffn = InvertedResidual(ch)

    def forward(self, x: torch.Tensor, smap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat_out, map_out = self.attn(self.feat_norm(x), self.map_norm(smap))
        return self.ffn(feat_out + x), map_out + smap


class HeadMixingAttention(nn.Module):
    """Multi-head self-attention on tokens (qkv without bias, output projection with bias).

    As U-Bench's ``Attention`` does, the heads are split from channels head-major
    (``(heads dim_head)``) but merged dim-major (``(dim_head heads)``), so the output projection
    sees the head outputs interleaved; kept for equal outputs (it permutes the projection's inputs).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1) @ v  # (B, heads, N, d)
        return self.proj(out.permute(0, 2, 3, 1).reshape(b, n, c))


class FusionLayer(nn.Module):
    """Pre-LayerNorm transformer layer: attention then MLP, each residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = HeadMixingAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MapFusion(nn.Module):
    """The encoder's semantic maps (one per attention stage) attend to each other as one sequence."""

    def __init__(self, widths, dim: int = FUSION_DIM, depth: int = FUSION_DEPTH):
        super().__init__()
        self.in_proj = nn.ModuleList(nn.Conv2d(c, dim, 1, bias=False) for c in widths)
        self.layers = nn.Sequential(*(FusionLayer(dim, dim // HEAD_DIM) for _ in range(depth)))
        self.out_proj = nn.ModuleList(nn.Conv2d(dim, c, 1, bias=False) for c in widths)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        h, w = maps[0].shape[-2:]
        tokens = torch.cat([map_to_tokens(p(m)) for p, m in zip(self.in_proj, maps)], dim=1)
        fused = self.layers(tokens).chunk(len(maps), dim=1)
        return [p(t.transpose(1, 2).unflatten(2, (h, w))) for p, t in zip(self.out_proj, fused)]


class EncoderStage(nn.Module):
    """Patch merging, residual blocks, then (attention stages) a new semantic map and
    bidirectional blocks; returns the features and the map (None without attention)."""

    def __init__(self, in_ch: int, out_ch: int, convs: int, blocks: int):
        super().__init__()
        self.map_gen = MapGenerator(out_ch) if blocks else None
        self.merge = PatchMerging(in_ch, out_ch)
        self.convs = nn.Sequential(*(ResBlock(out_ch) for _ in range(convs)))
        self.blocks = nn.ModuleList(BidirectionalBlock(out_ch) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.convs(self.merge(x))
        if self.map_gen is None:
            return x, None
        smap = self.map_gen(x)
        for block in self.blocks:
            x, smap = block(x, smap)
        return x, smap


class DecoderStage(nn.Module):
    """Upsample to the skip, fuse [up, skip] (BN + 1x1 conv), then (attention stages) the semantic
    map from below joined with the encoder's fused map of this level through bidirectional blocks,
    then residual blocks.

    Every stage has a ``map_proj``, as in U-Bench; in the two shallow ones (no attention) it maps the
    incoming semantic map to a result nothing reads, so it is built, not run (``unused_params``).
    """

    def __init__(self, in_ch: int, out_ch: int, convs: int, blocks: int):
        super().__init__()
        self.fuse = nn.Conv2d(in_ch + out_ch, out_ch, 1, bias=False)
        self.fuse_norm = nn.BatchNorm2d(in_ch + out_ch)
        self.map_proj = nn.Conv2d(in_ch + out_ch if blocks else in_ch, out_ch, 1, bias=False)
        self.blocks = nn.ModuleList(BidirectionalBlock(out_ch) for _ in range(blocks))
        self.convs = nn.Sequential(*(ResBlock(out_ch) for _ in range(convs)))

    def forward(self, low: torch.Tensor, skip: torch.Tensor, smap: torch.Tensor | None = None,
                enc_map: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        up = F.interpolate(low, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = self.fuse(self.fuse_norm(torch.cat([up, skip], dim=1)))
        if len(self.blocks):
            smap = self.map_proj(torch.cat([smap, enc_map], dim=1))
            for block in self.blocks:
                x, smap = block(x, smap)
        return self.convs(x), smap


class MedFormer(nn.Module):
    """Residual stem, four merging stages (attention in the last three), semantic map fusion, and a
    four-step decoder (attention in the two deepest steps)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, BASE, 3, padding=1, bias=False), ResBlock(BASE))
        widths = [BASE] + [w for w, _, _ in ENCODER]
        self.encoder = nn.ModuleList(
            EncoderStage(i, o, convs, blocks) for i, (o, convs, blocks) in zip(widths, ENCODER)
        )
        self.map_fusion = MapFusion([w for w, _, blocks in ENCODER if blocks])
        ins = [widths[-1]] + [w for w, _, _ in DECODER[:-1]]
        self.decoder = nn.ModuleList(
            DecoderStage(i, o, convs, blocks) for i, (o, convs, blocks) in zip(ins, DECODER)
        )
        self.head = nn.Conv2d(DECODER[-1][0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, maps = [self.stem(x)], []
        for stage in self.encoder:
            x, smap = stage(skips[-1])
            skips.append(x)
            if smap is not None:
                maps.append(smap)
        enc_maps = self.map_fusion(maps)  # finest first
        # the deepest step has no map from below: the deepest fused map takes its place, joined
        # with the next one; each further attention step joins the next finer fused map
        x, smap = skips.pop(), enc_maps.pop()
        for stage in self.decoder:
            enc_map = enc_maps.pop() if len(stage.blocks) else None
            x, smap = stage(x, skips.pop(), smap, enc_map)
        return self.head(x)


def _unused_map_params() -> list[str]:
    """state_dict names of the parameters whose result never reaches the output: the shallow
    decoder steps' map projections (never run) and the map output projection of the last decoder
    attention block (run, as in U-Bench, but the map it updates is read by nothing)."""
    names = [f"decoder.{i}.map_proj.weight" for i, (_, _, blocks) in enumerate(DECODER) if not blocks]
    last = max(i for i, (_, _, blocks) in enumerate(DECODER) if blocks)
    return names + [f"decoder.{last}.blocks.{DECODER[last][2] - 1}.attn.map_out.weight"]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="MedFormer",
        ubench_id=80,
        year=2022,
        paper="A Data-scalable Transformer for Medical Image Segmentation: Architecture, Model "
        "Efficiency, and Benchmark",
        deep_supervision=False,
        ref_params_m=28.072897,
        ref_source="U-Bench models/Hybrid/MedFormer/MedFormer.py + medformer_utils.py, conv_layers.py, "
        "trans_layers.py (medformer(num_classes=1, input_channel=3): MedFormer with its defaults), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="No pretrained weights and no deep supervision in U-Bench's build (aux_loss=False: the "
        "auxiliary head is not built). Any H, W that are multiples of 16 (U-Bench's patch merging "
        "fails on odd grids; the 8x8 semantic map does not depend on the input size). Quirks of "
        "U-Bench's code kept: the fusion transformer's attention splits heads head-major but merges "
        "them dim-major before its output projection; the bidirectional attention computes one logit "
        "table and softmaxes it over the codes (pixel update) and over the pixels (map update). "
        "Parameters that never reach the output (unused_params, 26,624, no gradient in U-Bench "
        "either): the two shallow decoder steps' 1x1 map projections (128->64, 64->32), which "
        "U-Bench runs on a semantic map that nothing reads afterwards (built and counted here, not "
        "run), and the map output projection of the last decoder attention block (128->128), run "
        "here as in U-Bench, whose map only those projections read. Dropout, attention dropout and "
        "the MBConv drop path are 0 in U-Bench's build and omitted. Squeeze-excite uses Linear "
        "layers on the pooled vector (ops/common.py) where U-Bench uses 1x1 convs on the pooled "
        "map: same parameters (reshaped), same init distribution. Init: PyTorch defaults, as "
        "U-Bench (no init code); modules are built in the reference's order, so one seed gives the "
        "same initial weights.",
        extra={"unused_params": _unused_map_params()},
    )
)
def medformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MedFormer as U-Bench benchmarks it (base 32, 8x8 semantic map, one output)."""
    return MedFormer(in_channels=in_channels, num_classes=num_classes)
