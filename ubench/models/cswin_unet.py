"""CSWin-UNet: a U-shaped transformer of cross-shaped window (stripe) attention blocks, with
content-aware (CARAFE) upsampling in the decoder.

Paper: Liu, Gao, Yu, Wang, Yuan, "CSWin-UNet: Transformer UNet with cross-shaped windows for
medical image segmentation", Information Fusion 113, 102634 (arXiv 2407.18070, 2024; code:
github.com/eatbeanss/CSWin-UNet).

Configuration: U-Bench's ``CSWin_UNet`` (repo FengheTan9/U-Bench, models/Hybrid/CSWin_UNet/
CSWin_UNet.py + vision_transformer.py; models/__init__.py maps it to ``cswin_unet(num_classes,
input_channel)``, which builds ``CSwinUnet(img_size=256)`` -> ``CSWinTransformer`` with embed_dim 64,
depths 1/2/9/1, stripe widths 1/2/8/8, heads 2/4/8/16, MLP ratio 4, qkv bias, stochastic depth 0.1,
and then calls ``load_from`` (which loads nothing, see the notes); id 77, no deep supervision):
- stem: 7x7 conv with stride 4 and padding 2, then LayerNorm over the tokens (64 channels, 64x64);
- encoder: four stages of CSWin blocks at widths 64/128/256/512 (token grids 64/32/16/8), a
  3x3 stride-2 conv + LayerNorm between them, a final LayerNorm on the 8x8 tokens;
- CSWin block (pre-norm): a qkv Linear, whose q, k and v are each split in two channel halves: one
  half attends within vertical stripes (the full height, ``stripe`` columns wide), the other within
  horizontal stripes (``stripe`` rows, the full width), each with half the heads; where the stripe
  covers the grid (the 8x8 bottleneck) one branch attends over the whole grid with all heads.
  Every branch adds a locally-enhanced positional encoding (LePE: a 3x3 depth-wise conv of v inside
  its stripe) to its output; the branches are concatenated and projected; then an MLP (x4, GELU);
- decoder, mirroring the encoder: one full-attention block at 512, then three times a CARAFE x2
  upsampling to half the width, concatenation [skip, upsampled], a Linear (2C -> C) and the
  encoder stage's number of CSWin blocks (9, 2, 1 at widths 256, 128, 64); a LayerNorm, a CARAFE x4
  upsampling (64 -> 64) and a bias-free 1x1 conv head;
- CARAFE (Wang et al., ICCV 2019): a 1x1 conv compresses C to C/4, a 3x3 conv predicts a softmax-
  normalised 3x3 reassembly kernel for every output pixel, each output pixel is the kernel-weighted
  sum of the 3x3 neighbourhood of its source pixel, then a 1x1 conv sets the output width.
Fixed input size 256x256. Parameters at 3 in / 1 class: 23,567,980, all trainable (encoder
12,299,712, decoder 11,268,268 of which the four CARAFE upsamplers 357,484), counted by
instantiating U-Bench's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import (
    Mlp,
    OverlapPatchEmbed,
    init_vit_weights,
    map_to_tokens,
    stochastic_depth,
    tokens_to_map,
)
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256  # U-Bench's img_size: every block is built for its token grid
EMBED_DIM = 64
DEPTHS = (1, 2, 9, 1)
STRIPES = (1, 2, 8, 8)  # stripe width per stage; 8 covers the 8x8 bottleneck: full attention
HEADS = (2, 4, 8, 16)
MLP_RATIO = 4
DROP_PATH = 0.1  # linear ramp over the 13 encoder blocks; each decoder block copies its mirror's
STEM_STRIDE = 4


class StripeAttention(nn.Module):
    """Multi-head attention inside non-overlapping ``stripe_h`` x ``stripe_w`` windows of a map,
    plus LePE: a 3x3 depth-wise conv of v, run per window (zero-padded at the window's border)."""

    def __init__(self, dim: int, heads: int, stripe_h: int, stripe_w: int):
        super().__init__()
        self.heads, self.stripe_h, self.stripe_w = heads, stripe_h, stripe_w
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * windows, C, stripe_h, stripe_w), windows in raster order."""
        b, c, h, w = x.shape
        sh, sw = self.stripe_h, self.stripe_w
        x = x.view(b, c, h // sh, sh, w // sw, sw).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(-1, c, sh, sw)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, sh, sw) windows -> (N, heads, sh*sw, C / heads) token sequences."""
        n, c = x.shape[:2]
        return x.reshape(n, self.heads, c // self.heads, -1).transpose(-1, -2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = q.shape
        v = self._windows(v)
        lepe = self._split_heads(self.lepe(v))
        q, k, v = (self._split_heads(t) for t in (self._windows(q), self._windows(k), v))
        out = F.scaled_dot_product_attention(q, k, v) + lepe  # scale: head_dim ** -0.5
        sh, sw = self.stripe_h, self.stripe_w
        out = out.transpose(-1, -2).reshape(b, h // sh, w // sw, c, sh, sw)
        return out.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


class CSWinBlock(nn.Module):
    """Pre-norm transformer block on the (B, side*side, C) tokens of a fixed grid: cross-shaped
    window attention (vertical + horizontal stripe branches, each on half the channels and heads;
    one full-grid branch where the stripe covers the grid), then the MLP, both residual."""

    def __init__(self, dim: int, side: int, heads: int, stripe: int, drop_path: float = 0.0):
        super().__init__()
        self.side = side
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        shapes = [(side, side)] if stripe >= side else [(side, stripe), (stripe, side)]
        n = len(shapes)
        self.branches = nn.ModuleList(StripeAttention(dim // n, heads // n, *s) for s in shapes)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, MLP_RATIO * dim)
        self.drop_path = stochastic_depth(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = tokens_to_map(self.qkv(self.norm1(x)), self.side, self.side)
        # each branch takes its channel share of q, of k and of v
        shares = zip(*(t.chunk(len(self.branches), dim=1) for t in qkv.chunk(3, dim=1)))
        attn = torch.cat([branch(*s) for branch, s in zip(self.branches, shares)], dim=1)
        x = x + self.drop_path(self.proj(map_to_tokens(attn)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def cswin_stage(dim: int, side: int, stage: int, drop_paths: list[float]) -> nn.Sequential:
    """The CSWin blocks of encoder stage ``stage`` (or of its decoder mirror)."""
    return nn.Sequential(*(CSWinBlock(dim, side, HEADS[stage], STRIPES[stage], p) for p in drop_paths))


class Stem(nn.Module):
    """7x7 conv, stride 4, padding 2 (not 3), then LayerNorm over the tokens; returns the tokens
    and the grid's (H, W), as ``OverlapPatchEmbed`` (the stage merges) does."""

    def __init__(self, in_ch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, 7, stride=STEM_STRIDE, padding=2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(map_to_tokens(x)), h, w


class CARAFE(nn.Module):
    """Content-aware reassembly upsampling by ``scale`` (Wang et al., ICCV 2019) on maps.

    Every output pixel is a weighted sum of the ``kernel`` x ``kernel`` neighbourhood of its source
    pixel, with weights predicted from the input (1x1 conv to C/4, ``kernel`` x ``kernel`` conv to
    scale^2 * kernel^2 channels, pixel shuffle, softmax over the kernel taps); a 1x1 conv then sets
    the output width.
    """

    def __init__(self, dim: int, out_dim: int, scale: int = 2, kernel: int = 3):
        super().__init__()
        self.scale, self.kernel = scale, kernel
        self.compress = nn.Conv2d(dim, dim // 4, 1)
        self.predict = nn.Conv2d(dim // 4, scale**2 * kernel**2, kernel, padding=kernel // 2)
        self.out = nn.Conv2d(dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, taps = self.scale, self.kernel**2
        weights = torch.softmax(F.pixel_shuffle(self.predict(self.compress(x)), s), dim=1)
        weights = weights.view(b, taps, h, s, w, s)  # (tap, source row, sub-row, source col, sub-col)
        patches = F.unfold(x, self.kernel, padding=self.kernel // 2).view(b, c, taps, h, w)
        up = torch.einsum("bckhw,bkhiwj->bchiwj", patches, weights).reshape(b, c, h * s, w * s)
        return self.out(up)


class UpLevel(nn.Module):
    """A decoder level: CARAFE x2 of the coarser tokens, [skip, upsampled] fused by a Linear
    (2C -> C), then CSWin blocks. ``side`` is the level's (finer) grid side."""

    def __init__(self, dim: int, side: int, stage: int, drop_paths: list[float]):
        super().__init__()
        self.side = side
        self.up = CARAFE(2 * dim, dim)
        self.fuse = nn.Linear(2 * dim, dim)
        self.blocks = cswin_stage(dim, side, stage, drop_paths)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        coarse = self.side // 2
        up = map_to_tokens(self.up(tokens_to_map(x, coarse, coarse)))
        return self.blocks(self.fuse(torch.cat([skip, up], dim=-1)))


class CSWinUNet(nn.Module):
    """Stem -> four CSWin stages (conv merges between) -> mirrored decoder with CARAFE upsampling."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        dims = [EMBED_DIM * 2**i for i in range(len(DEPTHS))]
        sides = [IMG_SIZE // STEM_STRIDE // 2**i for i in range(len(DEPTHS))]
        rates = torch.linspace(0, DROP_PATH, sum(DEPTHS)).tolist()
        starts = [sum(DEPTHS[:i]) for i in range(len(DEPTHS))]
        drop_paths = [rates[s:s + d] for s, d in zip(starts, DEPTHS)]
        # built in the reference's order: one seed gives U-Bench's conv weights (its Linears come
        # from timm's trunc_normal_, which samples differently from torch's)
        self.embeds = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i, (dim, side) in enumerate(zip(dims, sides)):
            self.embeds.append(Stem(in_channels, dim) if i == 0 else OverlapPatchEmbed(dims[i - 1], dim, 3, 2))
            self.stages.append(cswin_stage(dim, side, i, drop_paths[i]))
        self.norm = nn.LayerNorm(dims[-1])
        self.bottom = cswin_stage(dims[-1], sides[-1], len(DEPTHS) - 1, drop_paths[-1])
        self.levels = nn.ModuleList(
            UpLevel(dims[i], sides[i], i, drop_paths[i]) for i in reversed(range(len(DEPTHS) - 1))
        )
        self.final_up = CARAFE(EMBED_DIM, EMBED_DIM, scale=STEM_STRIDE)
        self.norm_up = nn.LayerNorm(EMBED_DIM)
        self.head = nn.Conv2d(EMBED_DIM, num_classes, 1, bias=False)
        self.apply(init_vit_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for embed, stage in zip(self.embeds, self.stages):
            tokens, h, w = embed(x)
            skips.append(stage(tokens))
            x = tokens_to_map(skips[-1], h, w)
        x = self.bottom(self.norm(skips.pop()))
        for level in self.levels:
            x = level(x, skips.pop())
        side = IMG_SIZE // STEM_STRIDE
        return self.head(self.final_up(tokens_to_map(self.norm_up(x), side, side)))


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="CSWin_UNet",
        ubench_id=77,
        year=2024,
        paper="CSWin-UNet: Transformer UNet with cross-shaped windows for medical image segmentation",
        deep_supervision=False,
        ref_params_m=23.567980,
        ref_source="U-Bench models/Hybrid/CSWin_UNet/CSWin_UNet.py + vision_transformer.py "
        "(cswin_unet(num_classes=1, input_channel=3) -> CSwinUnet(img_size=256) -> "
        "CSWinTransformer(embed_dim=64, depth=[1, 2, 9, 1], split_size=[1, 2, 8, 8], "
        "num_heads=[2, 4, 8, 16], drop_path_rate=0.1)), counted by instantiating it with the "
        "checkpoint download stubbed",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="Built untrained, as U-Bench effectively trains it: U-Bench's factory calls "
        "load_from(), which prints the CSWin-UNet repository's cswin_tiny_224.pth as its path but "
        "downloads TransAttUnet.pth (HuggingFace FengheTan9/U-Stone, the whole-network checkpoint "
        "of the TransAttUnet model), copies every key containing 'stage' to a 'stage_up' name "
        "(none of that file's keys contains it), drops shape mismatches and calls "
        "load_state_dict(strict=False) on the CSWinTransformer: none of the file's 229 tensor "
        "names (inc/down/up/fuse/pam/pos/outc, see tests/data/pretrained_keys/"
        "TransAttUnet.pth.json) is among its 463 state_dict names, so nothing is loaded; hence no "
        "pretrained record. Fixed size 256: every block is built for its token grid (U-Bench "
        "asserts it). U-Bench's forward repeats a 1-channel input to 3 channels although its stem "
        "takes input_channel channels (so its 1-channel build cannot run); here in_channels sizes "
        "the stem and the input is used as given (the same network at 3 channels). Dropout and "
        "attention dropout 0; stochastic depth ramps 0 -> 0.1 over the 13 encoder blocks and each "
        "decoder block takes its encoder mirror's rate, as in U-Bench. U-Bench keeps the encoder "
        "skips as module attributes (self.x1..x3) between calls; here they are locals. Attention is "
        "torch's scaled_dot_product_attention and CARAFE's reassembly an einsum over the unfolded "
        "neighbourhoods (U-Bench: explicit q k^T softmax and a matmul over unfold views): the same "
        "values up to float rounding.",
    )
)
def cswin_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CSWin-UNet as U-Bench benchmarks it (256x256, CSWin-T-like widths, untrained)."""
    return CSWinUNet(in_channels=in_channels, num_classes=num_classes)
