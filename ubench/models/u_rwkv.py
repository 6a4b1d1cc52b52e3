"""U-RWKV: a light convolutional U-Net with a four-scan Vision-RWKV block at the bottleneck.

Paper: Ye et al., "U-RWKV: Lightweight medical image segmentation with direction-adaptive RWKV",
MICCAI 2025.

Configuration: U-Bench's ``u_rwkv(num_classes, input_channel=3)`` (repo FengheTan9/U-Bench,
models/RWKV/U_RWKV/U_RWKV.py), widths 16, 32, 128, 160, 256: a 3x3 conv stem, four light encoder
blocks (depthwise 3x3 + GELU + BN with a residual, then a 1x1 conv, residual again when the width
is kept) each followed by 2x2 max-pooling, a fifth "multi-SE" block (1x1 conv to 32 channels,
channel halves, a chain of seven 3x3 depthwise convs, 1x1 conv to 256) at 1/16, then one
direction-adaptive RWKV block applied twice, to the map and to its transpose, the two results
summed. That block runs one shared Vision-RWKV spatial mix (with a LayerNorm and a learnable
per-channel scale, residual) along four scans of the map (rows left-right and right-left,
columns top-down and bottom-up), maps each back, averages them, then adds a scaled Vision-RWKV
channel mix (hidden 4x). The decoder is four steps of nearest x2 + 3x3 conv + BN + GELU,
concatenation with the skip, and a fusion block (grouped 3x3 conv, 1x1 to 4x, 1x1 back; each
followed by GELU and BN); a 1x1 conv gives the logits. No deep supervision.

Faithful to what U-Bench runs, quirks included: the token "shift" of both mixes is not the
Vision-RWKV quad shift but (the later of two ``q_shift`` definitions in that file wins) a
re-ordering of the tokens: rows of the top half in order, rows of the bottom half reversed, read
column by column; the second pass (on the transpose) is not transposed back before the sum; the
spatial mix starts from RWKV's "fancy" initialisation for layer 0 of 8. Differences, deliberate:
WKV is ``ops.wkv.bi_wkv`` in pure torch instead of the CUDA kernel, and the scans use the real
(H, W) where U-Bench assumes a square map (identical for square inputs). U-Bench also builds
parameters its forward never uses (an expanded pair of 1x1 convs in each of the first four encoder
blocks, a second output conv, a LayerNorm and a scale inside the scan block: 177,153 in all, 5.9%
of its count); we build them too, so the parameter count matches U-Bench's exactly, and list them
in ``ModelInfo.extra["unused_params"]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.rwkv_blocks import ChannelMix, SpatialMix
from ubench.models.registry import ModelInfo, register_model

DIMS = (16, 32, 128, 160, 256)
STRIDE = 16


def conv_bn(cin: int, cout: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm2d(cout))


def half_reversed_columns(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """U-RWKV's token "shift": rows of the top half, then the bottom half's rows reversed, read
    column by column. ``hw`` is the (rows, columns) of the row-major token order ``x`` is in."""
    h, w = hw
    mid = h // 2
    rows = torch.cat([torch.arange(mid), torch.arange(h - 1, mid - 1, -1)]).to(x.device)
    m = tokens_to_map(x, *hw)[:, :, rows, :]  # (B, C, h, w)
    return m.permute(0, 3, 2, 1).reshape(x.shape[0], h * w, x.shape[2])


def _fancy_init(dim: int) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """RWKV 'fancy' initial values for layer 0 of 8 (spatial/channel blends, decay, bonus)."""
    ramp = torch.arange(dim, dtype=torch.float32) / dim
    spatial_mix = {"k": ramp.clone(), "v": ramp.clone(), "r": ramp.sqrt()}
    channel_mix = {"k": ramp.clone(), "r": ramp.clone()}
    decay = (-5 + 8 * (torch.arange(dim, dtype=torch.float64) / (dim - 1)) ** 0.7).float()
    zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(dim)], dtype=torch.float32) * 0.5
    first = torch.full((dim,), math.log(0.3)) + zigzag
    return spatial_mix, channel_mix, decay, first


def _scan(x: torch.Tensor, kind: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Tokens of a (B, C, H, W) map along scan ``kind`` and the (rows, cols) of that order:
    0 rows left to right, 1 rows right to left, 2 columns top-down, 3 columns bottom-up."""
    if kind == 1:
        x = x.flip(-1)
    elif kind == 3:
        x = x.flip(-2)
    if kind >= 2:
        x = x.transpose(2, 3)
    return map_to_tokens(x), tuple(x.shape[-2:])


def _unscan(t: torch.Tensor, hw: tuple[int, int], kind: int) -> torch.Tensor:
    x = tokens_to_map(t, *hw)
    if kind >= 2:
        x = x.transpose(2, 3)
    if kind == 1:
        x = x.flip(-1)
    elif kind == 3:
        x = x.flip(-2)
    return x


class DirectionalRWKV(nn.Module):
    """One spatial mix shared by four scans (averaged), then a channel mix; both residual."""

    def __init__(self, dim: int):
        super().__init__()
        smix, cmix, decay, first = _fancy_init(dim)
        self.att_norm = nn.LayerNorm(dim)
        self.att = SpatialMix(dim, half_reversed_columns, smix, decay, first, key_norm=True)
        self.att_scale = nn.Parameter(torch.ones(dim))
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = ChannelMix(dim, 4, half_reversed_columns, cmix, key_norm=True)
        self.ffn_scale = nn.Parameter(torch.ones(dim))
        # built (and counted) by U-Bench, never called in its forward
        self.unused_norm = nn.LayerNorm(dim)
        self.unused_scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = []
        for kind in range(4):
            t, hw = _scan(x, kind)
            t = t + self.att_scale * self.att(self.att_norm(t), hw)
            views.append(_unscan(t, hw, kind))
        hw = tuple(x.shape[-2:])
        t = map_to_tokens(torch.stack(views).mean(0))
        t = t + self.ffn_scale * self.ffn(self.ffn_norm(t), hw)
        return tokens_to_map(t, *hw)


class TwoPassRWKV(nn.Module):
    """``f(x) + f(x^T)``, the second pass laid out as U-Bench does (memory of the transpose read
    as an (H, W) map, i.e. not transposed back for square maps)."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = DirectionalRWKV(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.block(x.transpose(2, 3).reshape(x.shape))


class LightEncoderBlock(nn.Module):
    """depthwise 3x3 + GELU + BN (residual), 1x1 conv + BN (residual if the width is kept)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin)
        self.bn = nn.BatchNorm2d(cin)
        self.pw = conv_bn(cin, cout)
        self.residual = cin == cout
        # built (and counted) by U-Bench, never called in its forward
        self.unused_in4 = conv_bn(cin, 4 * cin)
        self.unused_out = conv_bn(4 * cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(x + self.bn(nn.functional.gelu(self.dw(x))))
        return x + y if self.residual else y


class ChainedDepthwiseBlock(nn.Module):
    """1x1 conv to out/8 channels, split into even/odd halves, seven chained depthwise 3x3 convs
    from the odd half, [even + odd, chain outputs...] concatenated, 1x1 conv to ``cout``."""

    def __init__(self, cin: int, cout: int, reduction: int = 8):
        super().__init__()
        red = cout // reduction
        self.reduce = conv_bn(cin, red)
        half = red // 2
        self.chain = nn.ModuleList(nn.Conv2d(half, half, 3, padding=1, groups=half) for _ in range(reduction - 1))
        self.expand = conv_bn(cout // 2, cout)
        self.residual = cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduce(x)
        even, odd = r[:, 0::2], r[:, 1::2]
        parts = [even + odd]
        last = odd
        for conv in self.chain:
            last = conv(last)
            parts.append(last)
        y = self.expand(torch.cat(parts, dim=1))
        return x + y if self.residual else y


class UpConvGELU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU()
        )


class FusionBlock(nn.Sequential):
    """Grouped 3x3 conv, 1x1 to 4x the output width, 1x1 to the output; each + GELU + BN."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=2),
            nn.GELU(),
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, 4 * cout, 1),
            nn.GELU(),
            nn.BatchNorm2d(4 * cout),
            nn.Conv2d(4 * cout, cout, 1),
            nn.GELU(),
            nn.BatchNorm2d(cout),
        )


class URWKV(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 1, dims=DIMS):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 3, padding=1), nn.BatchNorm2d(dims[0]), nn.GELU())
        self.encoder = nn.ModuleList(
            [LightEncoderBlock(dims[0], dims[0])] + [LightEncoderBlock(dims[i - 1], dims[i]) for i in range(1, 4)]
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ChainedDepthwiseBlock(dims[3], dims[4])
        self.rwkv = TwoPassRWKV(dims[4])
        self.up = nn.ModuleList(UpConvGELU(dims[i], dims[i - 1]) for i in range(4, 0, -1))
        self.fuse = nn.ModuleList(FusionBlock(2 * dims[i - 1], dims[i - 1]) for i in range(4, 0, -1))
        self.head = nn.Conv2d(dims[0], num_classes, 1)
        self.unused_head = nn.Conv2d(dims[0], num_classes, 1)  # U-Bench's never-used ``outconv``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.rwkv(self.bottleneck(self.pool(x)))
        for up, fuse in zip(self.up, self.fuse):
            x = fuse(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def _unused_parameter_names() -> list[str]:
    names = ["unused_head.weight", "unused_head.bias", "rwkv.block.unused_scale"]
    names += [f"rwkv.block.unused_norm.{p}" for p in ("weight", "bias")]
    for i in range(4):
        for mod in ("unused_in4", "unused_out"):
            names += [f"encoder.{i}.{mod}.{j}.{p}" for j in (0, 1) for p in ("weight", "bias")]
    return names


@register_model(
    ModelInfo(
        family="rwkv",
        ubench_name="U_RWKV",
        ubench_id=113,
        year=2025,
        paper="U-RWKV: Lightweight medical image segmentation with direction-adaptive RWKV",
        deep_supervision=False,
        ref_params_m=3.004450,
        ref_source="U-Bench models/RWKV/U_RWKV/U_RWKV.py (u_rwkv(num_classes=1, input_channel=3)), counted "
        "layer by layer, including the 177,153 parameters it builds but never uses",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="pure-torch Bi-WKV instead of the CUDA kernel; scans use the real (H, W) (U-Bench needs a square "
        "map); U-Bench's unused layers built too (listed in extra) so the count matches",
        extra={"unused_params": _unused_parameter_names()},
    )
)
def u_rwkv(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """U-RWKV as U-Bench benchmarks it, WKV in pure torch."""
    return URWKV(in_channels=in_channels, num_classes=num_classes)
