"""DAE-Former: a pure-transformer U-shape whose blocks pair spatial efficient attention with channel
(transpose) attention, and whose skips are fused by cross-attention.

Paper: Azad, Arimond, Aghdam, Kazerouni, Merhof, "DAE-Former: Dual Attention-guided Efficient
Transformer for Medical Image Segmentation", PRIME workshop at MICCAI 2023 (arXiv 2212.13504).

Configuration: U-Bench's ``DAEFormer`` (repo FengheTan9/U-Bench, models/Hybrid/DAEFormer/
DAEFormer.py with segformer.py; models/__init__.py imports its ``daeformer(num_classes,
input_channel)``, which builds ``DAEFormer(num_classes, input_channel=...)`` with its defaults: one
head, token MLP mode ``mix_skip``), id 61, no deep supervision, no pretrained weights.

* Encoder: three stages at strides 4, 8, 16 (overlapping patch embeddings 7/4, 3/2, 3/2; widths
  128, 320, 512; two dual blocks each; a LayerNorm closing each stage).
* Dual block (pre-norm, four residual steps): efficient attention over the map (1x1-conv keys,
  queries, values; keys softmaxed over positions, queries over channels, one head; 1x1 output
  conv), an enhanced Mix-FFN (fc1, depthwise 3x3 conv added to its input, LayerNorm, GELU, fc2,
  hidden 4x), channel attention (XCiT-style: L2-normalised queries and keys over positions, a
  learned temperature per head, 8 heads, no q/k/v bias), and a second Mix-FFN.
* Decoder: the 16x16 map is expanded x2 (linear to 2C, 2x2 pixel spread, LayerNorm). Then twice
  (at 32x32 with the 320 skip, at 64x64 with the 128 skip): a linear brings the decoder tokens to
  the skip's width, skip cross-attention (both inputs LayerNormed by one norm; the skip gives keys
  and queries, unprojected, the decoder tokens give the values, efficient attention as above; a 1x1
  conv to twice the width, LayerNorm; added to the concatenation of both raw inputs, then a
  Mix-FFN), a linear back to the width, two dual blocks, and a patch expansion: x2 to 160 channels
  at 64x64, then x4 (128 channels, 256x256) and a 1x1 conv to the classes.

Parameters at 3 in / 1 class: 48,072,033, the same as U-Bench's module (counted by instantiating
it; the paper reports 48.1M). 18,382,864 of them never run (``extra["unused_params"]``): U-Bench's
deepest decoder layer builds a skip projection, a cross-attention block, a fuse linear and two
512-wide dual blocks that its forward skips (only its patch expansion runs), and every Mix-FFN
builds two LayerNorms it never calls. Both are kept, not run, so the count is U-Bench's.
Input 256x256 only: U-Bench's decoder is written for the token grids of a 256 input
(``d_base_feat_size = 8``: 16x16, 32x32, 64x64 hard-coded in its patch expansions and in the
cross-attention's reshape).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import OverlapPatchEmbed, map_to_tokens, tokens_to_map
from ubench.models.ops.swin import PatchExpand
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
DIMS = (128, 320, 512)  # encoder widths at strides 4, 8, 16
DEPTHS = (2, 2, 2)
MLP_RATIO = 4
CHANNEL_HEADS = 8
# decoder stages, deepest first: (width = the skip's width, width of the incoming decoder tokens)
DECODER = ((512, 512), (320, 256), (128, 160))


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Efficient attention (Shen et al., WACV 2021), one head, linear in the number of positions.

    q, k: (B, Dk, N); v: (B, Dv, N) -> (B, Dv, N). Keys are softmaxed over positions and summarise
    the values into a Dk x Dv context; each query, softmaxed over its channels, reads that context.
    """
    context = k.softmax(dim=2) @ v.transpose(1, 2)
    return context.transpose(1, 2) @ q.softmax(dim=1)


class SpatialAttention(nn.Module):
    """Efficient attention over a (B, C, H, W) map: 1x1-conv keys, queries and values, 1x1 output."""

    def __init__(self, dim: int):
        super().__init__()
        self.key = nn.Conv2d(dim, dim, 1)
        self.query = nn.Conv2d(dim, dim, 1)
        self.value = nn.Conv2d(dim, dim, 1)
        self.out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (conv(x).flatten(2) for conv in (self.query, self.key, self.value))
        return self.out(linear_attention(q, k, v).reshape(x.shape))


class ChannelAttention(nn.Module):
    """Transposed (cross-covariance) attention on (B, N, C) tokens: per head, a d x d attention
    between channels from L2-normalised queries and keys (over positions) scaled by a learned
    temperature."""

    def __init__(self, dim: int, heads: int = CHANNEL_HEADS):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # (3, B, heads, d, N): every head's channels as rows over the positions
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).permute(0, 3, 1, 2).reshape(b, n, c))


class MixFFNSkip(nn.Module):
    """Enhanced Mix-FFN: fc1, depthwise 3x3 conv plus skip, LayerNorm, GELU, fc2.

    ``idle_norms``: two more LayerNorms the reference builds and never calls (kept for its count).
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.norm = nn.LayerNorm(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.idle_norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(2))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = self.fc1(x)
        y = y + map_to_tokens(self.dwconv(tokens_to_map(y, h, w)))
        return self.fc2(self.act(self.norm(y)))


class DualBlock(nn.Module):
    """Spatial efficient attention, Mix-FFN, channel attention, Mix-FFN: pre-norm, each residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.spatial = SpatialAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp1 = MixFFNSkip(dim, MLP_RATIO * dim)
        self.norm3 = nn.LayerNorm(dim)
        self.channel = ChannelAttention(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.mlp2 = MixFFNSkip(dim, MLP_RATIO * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + map_to_tokens(self.spatial(tokens_to_map(self.norm1(x), h, w)))
        x = x + self.mlp1(self.norm2(x), h, w)
        x = x + self.channel(self.norm3(x))
        return x + self.mlp2(self.norm4(x), h, w)


class Encoder(nn.Module):
    """Three stages of (overlapping patch embedding, dual blocks, LayerNorm): maps at H/4, H/8, H/16."""

    def __init__(self, in_channels: int):
        super().__init__()
        ins = (in_channels,) + DIMS[:-1]
        self.embeds = nn.ModuleList(
            OverlapPatchEmbed(i, d, 7 if k == 0 else 3, 4 if k == 0 else 2) for k, (i, d) in enumerate(zip(ins, DIMS))
        )
        self.stages = nn.ModuleList(nn.ModuleList(DualBlock(d) for _ in range(n)) for d, n in zip(DIMS, DEPTHS))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in DIMS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for embed, blocks, norm in zip(self.embeds, self.stages, self.norms):
            t, h, w = embed(x)
            for block in blocks:
                t = block(t, h, w)
            x = tokens_to_map(norm(t), h, w)
            feats.append(x)
        return feats


class SkipCrossAttention(nn.Module):
    """Fuse decoder tokens with the encoder skip (both (B, N, C)) into (B, N, 2C).

    One LayerNorm normalises both; the normalised skip serves, unprojected, as keys and queries and
    the normalised decoder tokens as values of an efficient attention, whose map a 1x1 conv widens
    to 2C before a LayerNorm. That is added to [decoder, skip] (raw), then a Mix-FFN, with residual.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.widen = nn.Conv2d(dim, 2 * dim, 1)
        self.attn_norm = nn.LayerNorm(2 * dim)
        self.norm2 = nn.LayerNorm(2 * dim)
        self.mlp = MixFFNSkip(2 * dim, MLP_RATIO * dim)  # hidden 4C: twice its 2C width, as in the reference

    def forward(self, x: torch.Tensor, skip: torch.Tensor, h: int, w: int) -> torch.Tensor:
        s = self.norm(skip).transpose(1, 2)
        fused = linear_attention(s, s, self.norm(x).transpose(1, 2))
        attn = self.attn_norm(map_to_tokens(self.widen(fused.reshape(x.shape[0], -1, h, w))))
        y = torch.cat([x, skip], dim=2) + attn
        return y + self.mlp(self.norm2(y), h, w)


def init_decoder_weights(m: nn.Module) -> None:
    """The reference's decoder init: Xavier-uniform Linear and Conv2d weights with zero biases, unit
    LayerNorms (the encoder keeps PyTorch's defaults). Use with ``module.apply``."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class DecoderStage(nn.Module):
    """Linear to the skip's width, skip cross-attention, linear fuse, two dual blocks, patch
    expansion (x2 to half the width; x4 at full width then a 1x1 conv to the classes when last)."""

    def __init__(self, dim: int, in_dim: int, grid: int, num_classes: int | None = None):
        super().__init__()
        last = num_classes is not None
        self.embed = nn.Linear(in_dim, dim)
        self.cross = SkipCrossAttention(dim)
        self.fuse = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList(DualBlock(dim) for _ in range(2))
        self.expand = PatchExpand(dim, (grid, grid), scale=4 if last else 2, out_dim=dim if last else dim // 2)
        self.head = nn.Conv2d(dim, num_classes, 1) if last else None
        self.apply(init_decoder_weights)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        _, _, h, w = skip.shape
        x = self.fuse(self.cross(self.embed(x), map_to_tokens(skip), h, w))
        for block in self.blocks:
            x = block(x, h, w)
        x = self.expand(x)
        if self.head is None:
            return x
        s = self.expand.scale
        return self.head(tokens_to_map(x, h * s, w * s))


class DAEFormer(nn.Module):
    """Dual-attention encoder, cross-attention skip fusion, dual-attention decoder (256x256 input)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = Encoder(in_channels)
        deepest = IMG_SIZE // 16
        self.decoders = nn.ModuleList(
            DecoderStage(dim, in_dim, deepest * 2**i, num_classes if i == len(DECODER) - 1 else None)
            for i, (dim, in_dim) in enumerate(DECODER)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        # the deepest stage only expands (its other layers are unused, as in the reference)
        out = self.decoders[0].expand(map_to_tokens(feats[-1]))
        for stage, skip in zip(self.decoders[1:], reversed(feats[:-1])):
            out = stage(out, skip)
        return out


def _unused_params() -> list[str]:
    """Modules the reference builds but never runs ("prefix." entries: every parameter under it):
    the deepest decoder layer's idle parts and the two idle LayerNorms of every MixFFN."""
    mixffns = [f"encoder.stages.{s}.{b}.mlp{m}" for s in range(len(DEPTHS)) for b in range(DEPTHS[s])
               for m in (1, 2)]
    mixffns += [f"decoders.{d}.blocks.{b}.mlp{m}" for d in (1, 2) for b in range(2) for m in (1, 2)]
    mixffns += [f"decoders.{d}.cross.mlp" for d in (1, 2)]
    deepest_idle = ["decoders.0.embed.", "decoders.0.cross.", "decoders.0.fuse.", "decoders.0.blocks."]
    return deepest_idle + [f"{m}.idle_norms.{i}." for m in mixffns for i in range(2)]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="DAEFormer",
        ubench_id=61,
        year=2023,
        paper="DAE-Former: Dual Attention-guided Efficient Transformer for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=48.072033,
        ref_source="U-Bench models/Hybrid/DAEFormer/DAEFormer.py (daeformer(1, input_channel=3): "
        "DAEFormer(head_count=1, token_mlp_mode='mix_skip')), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="256x256 only: U-Bench's decoder hard-codes the token grids of a 256 input "
        "(d_base_feat_size = 8, so 16/32/64 in its PatchExpand / FinalPatchExpand_X4 resolutions, "
        "whose asserts fail otherwise, and in Cross_Attention's reshape); its MiT(image_size=256) "
        "argument only sets an unused attribute. U-Bench's factory passes input_channel, which "
        "DAEFormer ignores: its first patch embedding takes a hard-coded 3 channels and its forward "
        "repeats a 1-channel input to 3 (any other count fails); here in_channels sizes the first "
        "patch embedding (for 1 channel, repeating to 3 computes what a 1-channel stem does whose "
        "kernel is the 3-channel one summed over its inputs). Built as U-Bench's code builds it: "
        "head_count=1 (EfficientAttention is always one head, DualTransformerBlock hard-codes it), "
        "ChannelAttention 8 heads without q/k/v bias, dropouts 0; the skip cross-attention has no "
        "q/k/v projections (skip = keys and queries, decoder tokens = values). Unused parameters "
        "kept, not run (unused_params, 18,382,864 of 48,072,033): the deepest decoder layer "
        "(decoder_2) builds x1_linear, cross_attn, concat_linear and two 512-wide "
        "DualTransformerBlocks but its forward (no skip) only runs its PatchExpand; every "
        "MixFFN_skip builds norm2/norm3 and never calls them. U-Bench's MixFFN_skip runs fc1 twice "
        "on the same input (dwconv(fc1(x)) + fc1(x)); here once, same result. Initialisation as "
        "U-Bench: encoder PyTorch defaults; each decoder layer Xavier-uniform Linear/Conv2d with "
        "zero bias and unit LayerNorms (its init_weights); channel-attention temperatures ones. "
        "No pretrained weights (U-Bench loads none).",
        extra={"unused_params": _unused_params()},
    )
)
def daeformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """DAE-Former as U-Bench benchmarks it (widths 128/320/512, mix_skip FFN, 256x256 input)."""
    return DAEFormer(in_channels=in_channels, num_classes=num_classes)
