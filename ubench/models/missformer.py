"""MISSFormer: a pure-transformer U-shape with an enhanced transformer context bridge.

Paper: Huang, Deng, Li, Yuan, Wang, "MISSFormer: An Effective Transformer for 2D Medical Image
Segmentation", IEEE TMI 2022 (arXiv 2109.07162).

Configuration: U-Bench's ``Missformer`` (repo FengheTan9/U-Bench, models/Hybrid/MissFormer/
MissFormer.py and segformer.py), token MLP mode ``mix_skip``. Encoder: a MiT-B1-like hierarchy
(overlapping patch embeddings 7/4, 3/2, 3/2, 3/2; widths 64, 128, 320, 512; two blocks per stage;
1, 2, 5, 8 heads; spatial-reduction ratios 8, 4, 2, 1) whose blocks use the enhanced Mix-FFN
(fc1, depthwise 3x3 conv added to its own input, LayerNorm, GELU, fc2). Bridge: the four feature
maps are cut into 64-wide tokens (a C-channel pixel gives C/64 tokens), concatenated, and passed
through four layers of one-head attention whose keys/values come from each level reduced to the
H/32 grid (strided convs 8, 4, 2 and the raw deepest level), then a per-level Mix-FFN on the
level's own layout. Decoder: from the deepest level up, concatenate with the bridged skip, a
linear fuse, two transformer blocks, then a linear 2x patch expansion (4x for the last), and a
1x1 conv to the classes. No deep supervision (U-Bench model_id.json).

Deviations, all without effect on the output: (1) the reference's deepest decoder stage also
builds a fuse layer and two transformer blocks that its forward never calls; they are kept
(listed in ``unused_params``) so the parameter count is U-Bench's; (2) the reference's Mix-FFN
builds two further LayerNorms it never uses; these are left out (131,072 parameters, 0.3%);
(3) the reference hard-codes the token counts of a 224x224 input (3136, 1568, ...) and repeats a
one-channel input to three; here the counts follow the feature shapes (identical at 224, valid for
any multiple of 32) and ``in_channels`` sizes the first patch embedding.
Parameters at 3 in / 1 class: reference 42,462,017 (counted by instantiating U-Bench's file), here
42,330,945. U-Bench benchmarks it at 224x224, the size its file is written for.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import OverlapPatchEmbed, map_to_tokens, tokens_to_map
from ubench.models.ops.pvt import SRAttention
from ubench.models.registry import ModelInfo, register_model

DIMS = (64, 128, 320, 512)
HEADS = (1, 2, 5, 8)
REDUCTION = (8, 4, 2, 1)
DEPTHS = (2, 2, 2, 2)
BRIDGE_LAYERS = 4
# decoder stages, deepest first: (concatenated width / 2, output width, heads, reduction ratio)
DECODER = ((512, 512, 8, 1), (288, 320, 5, 2), (144, 128, 2, 4), (32, 64, 1, 8))


class MixFFNSkip(nn.Module):
    """Enhanced Mix-FFN: fc1, depthwise 3x3 conv plus skip, LayerNorm, GELU, fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.norm = nn.LayerNorm(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = self.fc1(x)
        y = y + map_to_tokens(self.dwconv(tokens_to_map(y, h, w)))
        return self.fc2(self.act(self.norm(y)))


class TransformerBlock(nn.Module):
    """Pre-norm efficient attention and Mix-FFN, each with a residual."""

    def __init__(self, dim: int, heads: int, sr: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SRAttention(dim, heads, sr, pvt_order=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFNSkip(dim, 4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MiTEncoder(nn.Module):
    """Four stages of (overlapping patch embedding, transformer blocks, LayerNorm)."""

    def __init__(self, in_channels: int):
        super().__init__()
        ins = (in_channels,) + DIMS[:-1]
        self.embeds = nn.ModuleList(
            OverlapPatchEmbed(i, d, 7 if k == 0 else 3, 4 if k == 0 else 2)
            for k, (i, d) in enumerate(zip(ins, DIMS))
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(TransformerBlock(d, hd, r) for _ in range(n))
            for d, hd, r, n in zip(DIMS, HEADS, REDUCTION, DEPTHS)
        )
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


def _split_levels(tokens: torch.Tensor, shapes: list[tuple[int, int, int]], unit: int) -> list[torch.Tensor]:
    """Cut the bridge sequence back into per-level (B, H*W, C) token maps (C = k * unit)."""
    b = tokens.shape[0]
    sizes = [h * w * c // unit for c, h, w in shapes]
    parts = torch.split(tokens, sizes, dim=1)
    return [p.reshape(b, h * w, c) for p, (c, h, w) in zip(parts, shapes)]


class BridgeLayer(nn.Module):
    """One layer of the enhanced transformer context bridge over all four levels at once."""

    def __init__(self, dims: tuple[int, ...] = DIMS, unit: int = DIMS[0]):
        super().__init__()
        self.unit = unit
        self.norm1 = nn.LayerNorm(unit)
        self.attn = SRAttention(unit, 1, 1, pvt_order=False)
        # keys/values: every level but the deepest shrunk to the deepest grid (ratios 8, 4, 2)
        ratios = [2 ** (len(dims) - 1 - i) for i in range(len(dims) - 1)]
        self.reducers = nn.ModuleList(nn.Conv2d(d, d, r, r) for d, r in zip(dims[:-1], ratios))
        self.kv_norm = nn.LayerNorm(unit)
        self.norm2 = nn.LayerNorm(unit)
        self.ffns = nn.ModuleList(MixFFNSkip(d, 4 * d) for d in dims)

    def _keys(self, x: torch.Tensor, shapes: list[tuple[int, int, int]]) -> torch.Tensor:
        levels = _split_levels(x, shapes, self.unit)
        b = x.shape[0]
        reduced = [
            # the reference flattens the reduced map channel-major into 64-wide tokens
            red(tokens_to_map(t, h, w)).reshape(b, self.unit, -1).transpose(1, 2)
            for red, t, (c, h, w) in zip(self.reducers, levels, shapes)
        ]
        deepest = levels[-1].reshape(b, -1, self.unit)
        return self.kv_norm(torch.cat(reduced + [deepest], dim=1))

    def forward(self, x: torch.Tensor, shapes: list[tuple[int, int, int]]) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn.attend(y, self._keys(y, shapes))
        levels = _split_levels(self.norm2(x), shapes, self.unit)
        b = x.shape[0]
        mixed = [
            ffn(t, h, w).reshape(b, -1, self.unit) for ffn, t, (c, h, w) in zip(self.ffns, levels, shapes)
        ]
        return x + torch.cat(mixed, dim=1)


class ContextBridge(nn.Module):
    """Tokenise the four skips into one 64-wide sequence, run the bridge layers, cut back."""

    def __init__(self, layers: int = BRIDGE_LAYERS):
        super().__init__()
        self.unit = DIMS[0]
        self.layers = nn.ModuleList(BridgeLayer() for _ in range(layers))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        b = feats[0].shape[0]
        shapes = [(f.shape[1], f.shape[2], f.shape[3]) for f in feats]
        x = torch.cat([f.permute(0, 2, 3, 1).reshape(b, -1, self.unit) for f in feats], dim=1)
        for layer in self.layers:
            x = layer(x, shapes)
        return [tokens_to_map(t, h, w) for t, (c, h, w) in zip(_split_levels(x, shapes, self.unit), shapes)]


class PatchExpand(nn.Module):
    """Linear expansion then pixel rearrangement: (H, W, C) -> (rH, rW, C*r*r/expand/...)."""

    def __init__(self, dim: int, scale: int):
        super().__init__()
        self.scale = scale
        out_dim = dim // 2 if scale == 2 else dim
        self.expand = nn.Linear(dim, out_dim * scale * scale, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, r = x.shape[0], self.scale
        x = self.expand(x).reshape(b, h, w, r, r, -1).permute(0, 1, 3, 2, 4, 5)
        return self.norm(x.reshape(b, h * r * w * r, -1))


class DecoderStage(nn.Module):
    """Concatenate with the bridged skip, linear fuse, two transformer blocks, patch expansion."""

    def __init__(self, half_in: int, dim: int, heads: int, sr: int, last: bool, num_classes: int):
        super().__init__()
        self.fuse = nn.Linear(half_in * (4 if last else 2), dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, sr) for _ in range(2))
        self.up = PatchExpand(dim, 4 if last else 2)
        self.head = nn.Conv2d(dim, num_classes, 1) if last else None
        for m in self.modules():  # the reference initialises its decoder layers this way
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        _, _, h, w = skip.shape
        x = self.fuse(torch.cat([x, map_to_tokens(skip)], dim=-1))
        for block in self.blocks:
            x = block(x, h, w)
        x = self.up(x, h, w)
        if self.head is None:
            return x
        r = self.up.scale
        return self.head(tokens_to_map(x, h * r, w * r))


class MISSFormer(nn.Module):
    """MiT encoder, context bridge over the four levels, transformer decoder with patch expansion."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = MiTEncoder(in_channels)
        self.bridge = ContextBridge()
        self.decoders = nn.ModuleList(
            DecoderStage(*cfg, last=i == len(DECODER) - 1, num_classes=num_classes)
            for i, cfg in enumerate(DECODER)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.bridge(self.encoder(x))
        deepest = skips[-1]
        # the deepest stage only expands (its fuse and blocks are unused, as in the reference)
        out = self.decoders[0].up(map_to_tokens(deepest), deepest.shape[2], deepest.shape[3])
        for stage, skip in zip(self.decoders[1:], reversed(skips[:-1])):
            out = stage(out, skip)
        return out


# the deepest decoder stage's fuse and blocks, built and never called ("prefix.": every parameter
# under the module)
UNUSED_MODULES = ["decoders.0.blocks.", "decoders.0.fuse."]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="MissFormer",
        ubench_id=9,
        year=2022,
        paper="MISSFormer: An Effective Transformer for 2D Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=42.462017,
        ref_source="U-Bench models/Hybrid/MissFormer/MissFormer.py (Missformer(input_channel=3, "
        "num_classes=1)), counted by instantiating it",
        ref_input_size=224,
        size_multiple=32,
        notes="U-Bench's file is hard-wired to 224x224; here token counts follow the input, so any "
        "multiple of 32 works (identical at 224). Two never-used LayerNorms per Mix-FFN are left "
        "out (-0.3% parameters); the deepest decoder stage's unused fuse/blocks are kept.",
        extra={"unused_params": UNUSED_MODULES},
    )
)
def missformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MISSFormer as U-Bench benchmarks it (MiT-B1 widths, 4 bridge layers, mix_skip FFN)."""
    return MISSFormer(in_channels=in_channels, num_classes=num_classes)
