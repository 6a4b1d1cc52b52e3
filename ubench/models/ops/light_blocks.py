"""Blocks shared by the light U-Nets (UNeXt and U-KAN; MALUNet and EGE-UNet).

UNeXt and U-KAN share one skeleton (U-Bench models/CNN/UNeXt/UNeXt.py and models/CNN/U_KAN/
U_KAN.py): three convolutional stages (each: conv block -> 2x2 max-pool -> ReLU), two tokenized
stages (3x3 stride-2 overlapping patch embedding + LayerNorm, one token block, LayerNorm), and a
decoder of five steps (conv block -> bilinear x2 upsampling -> ReLU, then add the skip), the two
deepest of which refine their tokens with a token block + LayerNorm before the next step. Only
the conv blocks and the token block differ, so the skeleton takes them as factories.
Total stride 32 (three poolings, two stride-2 embeddings).

MALUNet and EGE-UNet (same authors; U-Bench models/CNN/MALUNet/MALUNet.py and models/CNN/Egeunet/
Egeunet.py) share another skeleton: six levels of widths 8, 16, 24, 32, 48, 64, each level a block
followed by GroupNorm(4) and GELU, with 2x2 max-pooling on the way down and bilinear x2
(align_corners=True) upsampling on the way up, and one weight initialisation
(``init_conv_fan_out``). Their blocks and skip bridges differ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import (
    OverlapPatchEmbed,
    init_vit_conv_weights,
    map_to_tokens,
    tokens_to_map,
)


def init_token_weights(m: nn.Module) -> None:
    """The ViT/SegFormer init both reference models apply to their token modules.

    Linear: truncated normal (std 0.02), zero bias; LayerNorm: ones and zeros; Conv2d: normal with
    std sqrt(2 / fan_out), fan_out counted per group, zero bias. Use with ``module.apply``.
    """
    init_vit_conv_weights(m)


class TokenRefine(nn.Module):
    """One token block (a residual ``block(tokens, H, W)``) then LayerNorm, on a feature map."""

    def __init__(self, dim: int, block: nn.Module):
        super().__init__()
        self.block = block
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        t = self.norm(self.block(map_to_tokens(x), h, w))
        return tokens_to_map(t, h, w)


class TokenStage(nn.Module):
    """Encoder stage that works on tokens: patch embedding (stride 2), block, LayerNorm."""

    def __init__(self, in_ch: int, dim: int, block: nn.Module):
        super().__init__()
        self.embed = OverlapPatchEmbed(in_ch, dim, kernel=3, stride=2)
        self.embed.apply(init_token_weights)  # both references initialise it as it is built
        self.block = block
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = self.embed(x)
        return tokens_to_map(self.norm(self.block(t, h, w)), h, w)


class ConvPoolStage(nn.Module):
    """Encoder stage: a conv block, 2x2 max-pooling, ReLU (that order, as in both references)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.max_pool2d(self.conv(x), 2, 2))


class ConvUpStage(nn.Module):
    """Decoder step: a conv block, bilinear upsampling x2 (align_corners=False), ReLU."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=False))


class TokenizedUNet(nn.Module):
    """The UNeXt / U-KAN skeleton, given its conv blocks and its token block.

    ``conv_dims`` are the three convolutional widths (c1, c2, c3); ``token_dims`` the two token
    widths (t1, t2). ``enc_conv(in, out)`` and ``dec_conv(in, out, last)`` build conv blocks
    (``last`` marks the final full-resolution step); ``token_block(dim)`` builds a residual module
    called as ``block(tokens, H, W)``. The decoder widths mirror the encoder: t2 -> t1 -> c3 -> c2
    -> c1 -> c1, adding skips t1, c3, c2, c1 after the first four steps.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        conv_dims: tuple[int, int, int],
        token_dims: tuple[int, int],
        enc_conv: Callable[[int, int], nn.Module],
        dec_conv: Callable[[int, int, bool], nn.Module],
        token_block: Callable[[int], nn.Module],
    ):
        super().__init__()
        c1, c2, c3 = conv_dims
        t1, t2 = token_dims
        ins = (in_channels, c1, c2)
        self.conv_stages = nn.ModuleList(ConvPoolStage(enc_conv(i, o)) for i, o in zip(ins, conv_dims))
        self.token_stages = nn.ModuleList(
            [TokenStage(c3, t1, token_block(t1)), TokenStage(t1, t2, token_block(t2))]
        )
        dec = ((t2, t1), (t1, c3), (c3, c2), (c2, c1), (c1, c1))
        self.up = nn.ModuleList(
            ConvUpStage(dec_conv(i, o, k == len(dec) - 1)) for k, (i, o) in enumerate(dec)
        )
        self.refine = nn.ModuleList([TokenRefine(t1, token_block(t1)), TokenRefine(c3, token_block(c3))])
        self.head = nn.Conv2d(c1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.conv_stages:
            x = stage(x)
            skips.append(x)
        x = self.token_stages[0](x)
        skips.append(x)
        x = self.token_stages[1](x)
        for k, up in enumerate(self.up):
            x = up(x)
            if skips:
                x = x + skips.pop()
            if k < len(self.refine):
                x = self.refine[k](x)
        return self.head(x)


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """Plain 3x3 convolution with bias, 'same' padding (the shallow levels of MALUNet/EGE-UNet)."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class GnLevel(nn.Module):
    """One MALUNet/EGE-UNet level: block -> GroupNorm(4) -> [pool x0.5 | upsample x2] -> GELU.

    ``resample`` is "down" (2x2 max-pool), "up" (bilinear x2, align_corners=True) or None.
    """

    def __init__(self, block: nn.Module, out_ch: int, resample: str | None):
        super().__init__()
        if resample not in ("down", "up", None):
            raise ValueError(f"resample must be 'down', 'up' or None, got {resample!r}")
        self.block = block
        self.norm = nn.GroupNorm(4, out_ch)
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.block(x))
        if self.resample == "down":
            x = F.max_pool2d(x, 2, 2)
        elif self.resample == "up":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return F.gelu(x)


def gn_encoder(in_channels: int, c, attention: Callable[[int, int], nn.Module]) -> nn.ModuleList:
    """The five MALUNet/EGE-UNet encoder levels (each pooled): 3x3 convs at the three shallow
    widths, ``attention(in, out)`` blocks at the two deep ones; ``c`` the six widths."""
    ins = (in_channels, c[0], c[1], c[2], c[3])
    return nn.ModuleList(
        GnLevel(conv3x3(ins[i], c[i]) if i < 3 else attention(ins[i], c[i]), c[i], "down") for i in range(5)
    )


def gn_decoder(c, attention: Callable[[int, int], nn.Module]) -> nn.ModuleList:
    """The five MALUNet/EGE-UNet decoder levels, deepest first: ``attention(in, out)`` blocks at
    the three deep widths (the first without upsampling), 3x3 convs at the two shallow ones."""
    pairs = ((c[5], c[4]), (c[4], c[3]), (c[3], c[2]), (c[2], c[1]), (c[1], c[0]))
    return nn.ModuleList(
        GnLevel(attention(i, o) if k < 3 else conv3x3(i, o), o, None if k == 0 else "up")
        for k, (i, o) in enumerate(pairs)
    )
