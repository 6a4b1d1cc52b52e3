"""Rolling-Unet, a U-Net with rolled-feature MLP blocks at its two deepest levels.

Paper: Liu, Zhu, Liu, Yu, Chen, Gao, "Rolling-Unet: Revitalizing MLP's Ability to Efficiently
Extract Long-Distance Dependencies for Medical Image Segmentation", AAAI 2024.

Configuration: U-Bench's ``RollingUnet``, which models/__init__.py binds to ``Rolling_Unet_M``
(repo FengheTan9/U-Bench, models/CNN/RollingUnet/RollingUnet.py), built by U-Bench's factory as
``Rolling_Unet_M(input_channel=3, num_classes=1)`` with its defaults: widths 32, 64, 128, 256, 512,
one Lo2 block per level (``mlp_ratio=1``), dropout 0 except 0.2 in the bottleneck block, no
stochastic depth.

* Three U-Net double-conv stages (3x3 conv + BN + ReLU, twice; widths 32, 64, 128) with 2x2
  max-pooling after each.
* Level 4 (H/8): a "feature incentive" embedding (3x3 conv to 256, tokens, GELU, LayerNorm), one
  Lo2 block, LayerNorm -> skip t4; max-pool; bottleneck (H/16): embedding to 512, Lo2 block,
  LayerNorm, embedding back to 256; bilinear upsampling x2, + t4, Lo2 block, LayerNorm.
* The Lo2 block (Long-Local): two orthogonal rolled MLPs (channel c is rolled by c pixels along
  H, a Linear + GELU, rolled along W, a Linear; and the same with -W first), each added to the
  input, concatenated, LayerNorm'd, a Linear and a residual; in parallel a depthwise-separable
  3x3 conv -> ReLU -> BN; the two branches are concatenated and projected by a Linear.
* Decoder: 3x3 conv 256 -> 128 + BN + ReLU, then three times: bilinear upsampling x2 (align_corners
  False), add the skip, "D-double-conv" (3x3 conv keeping the width, 3x3 conv to the next width,
  each + BN + ReLU; widths 64, 32, 16); a 1x1 conv gives the logits.

Total stride 16. Parameters at 3 in / 1 class: 7,098,401 (counted by instantiating U-Bench's
module), of which 2,048 are never used: each Lo2 block's outer LayerNorm (``norm2``, built but not
called in forward) is kept for an identical count and state_dict and listed in ``unused_params``.
Initialisation as the reference: ViT-style (truncated-normal Linear, fan-out He convs) in the
embeddings and Lo2 blocks, torch defaults elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_vit_conv_weights, map_to_tokens, tokens_to_map
from ubench.models.ops.conv_blocks import DoubleConv, contract, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 128, 256, 512)
HEAD_WIDTH = 16
BOTTLENECK_DROP = 0.2


def roll_channels(x: torch.Tensor, dim: int, sign: int = 1) -> torch.Tensor:
    """``torch.roll`` of channel ``c`` of a (B, C, H, W) map by ``sign * c`` along ``dim`` (2 or
    3), all channels in one gather instead of C rolls."""
    c, n = x.shape[1], x.shape[dim]
    pos = torch.arange(n, device=x.device)
    shift = sign * torch.arange(c, device=x.device)
    idx = (pos[None, :] - shift[:, None]).remainder(n)  # out[i] = in[(i - shift) mod n]
    shape = [1, c, 1, 1]
    shape[dim] = n
    return x.gather(dim, idx.view(shape).expand_as(x))


class RolledMLP(nn.Module):
    """Roll along ``first`` then Linear + GELU (+dropout), roll along ``second`` then Linear
    (+dropout): an OR-MLP, channel c shifted by c pixels at each roll (``sign`` for the first)."""

    def __init__(self, dim: int, first: int, second: int, sign: int, drop: nn.Module):
        super().__init__()
        self.fc_first = nn.Linear(dim, dim)
        self.fc_second = nn.Linear(dim, dim)
        self.first, self.second, self.sign = first, second, sign
        self.drop = drop

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = map_to_tokens(roll_channels(tokens_to_map(x, h, w), self.first, self.sign))
        y = self.drop(F.gelu(self.fc_first(y)))
        y = map_to_tokens(roll_channels(tokens_to_map(y, h, w), self.second))
        return self.drop(self.fc_second(y))


class Lo2Block(nn.Module):
    """Long-distance (two orthogonal rolled MLPs, LayerNorm, Linear, residual) and local
    (depthwise-separable 3x3 conv, ReLU, BN) branches on tokens, concatenated, then a Linear.

    ``unused_norm`` is the reference's block-level LayerNorm, built but never called."""

    def __init__(self, dim: int, drop: float = 0.0):
        super().__init__()
        self.unused_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(drop)
        self.rows_first = RolledMLP(dim, first=2, second=3, sign=1, drop=self.drop)  # fc1, fc2
        self.cols_first = RolledMLP(dim, first=3, second=2, sign=-1, drop=self.drop)  # fc3, fc4
        self.fuse = nn.Linear(2 * dim, dim)
        self.proj = nn.Linear(2 * dim, dim)
        self.local = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, dim, 1), nn.ReLU()
        )
        self.norm = nn.LayerNorm(2 * dim)
        self.local_norm = nn.BatchNorm2d(dim)
        self.apply(init_vit_conv_weights)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        both = torch.cat([self.rows_first(x, h, w) + x, self.cols_first(x, h, w) + x], dim=2)
        long_range = self.drop(self.fuse(self.norm(both))) + x
        local = map_to_tokens(self.local_norm(self.local(tokens_to_map(x, h, w))))
        return self.drop(self.proj(torch.cat([long_range, local], dim=2)))


class IncentiveEmbed(nn.Module):
    """3x3 conv (stride 1) to tokens, GELU, LayerNorm ("feature incentive block")."""

    def __init__(self, in_ch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, 3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.apply(init_vit_conv_weights)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(F.gelu(map_to_tokens(x))), h, w


class NarrowingDoubleConv(nn.Sequential):
    """3x3 conv + BN + ReLU keeping the width, then one to ``out_ch`` (the reference's
    ``D_DoubleConv``)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(*conv_bn_relu(in_ch, in_ch), *conv_bn_relu(in_ch, out_ch))


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class RollingUNet(nn.Module):
    """Three conv stages, Lo2 blocks at H/8 and H/16 (down, bottleneck, up), three conv decoder
    steps with additive skips, a 1x1 head."""

    stride = 2 ** (len(WIDTHS) - 1)

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS, head_width: int = HEAD_WIDTH):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:2])
        self.encoder = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, widths[:3]))
        self.pool = nn.MaxPool2d(2)
        mid, deep = widths[3], widths[4]
        self.embed = nn.ModuleList(
            [IncentiveEmbed(widths[2], mid), IncentiveEmbed(mid, deep), IncentiveEmbed(deep, mid)]
        )
        self.blocks = nn.ModuleList([Lo2Block(mid), Lo2Block(deep, BOTTLENECK_DROP), Lo2Block(mid)])
        self.norms = nn.ModuleList([nn.LayerNorm(mid), nn.LayerNorm(deep), nn.LayerNorm(mid)])
        self.reduce = nn.Sequential(*conv_bn_relu(mid, widths[2]))
        outs = tuple(widths[:2][::-1]) + (head_width,)
        self.decoder = nn.ModuleList(
            NarrowingDoubleConv(i, o) for i, o in zip(widths[2::-1], outs)
        )
        self.head = nn.Conv2d(head_width, num_classes, 1)

    def _tokens_stage(self, k: int, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Lo2 block ``k`` and its LayerNorm, back to a map."""
        return tokens_to_map(self.norms[k](self.blocks[k](tokens, h, w)), h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = contract(x, self.encoder, self.pool)
        skip4 = self._tokens_stage(0, *self.embed[0](self.pool(skips[-1])))
        x = self._tokens_stage(1, *self.embed[1](self.pool(skip4)))
        tokens, h, w = self.embed[2](x)
        x = _up2(tokens_to_map(tokens, h, w)) + skip4
        x = self._tokens_stage(2, map_to_tokens(x), 2 * h, 2 * w)
        x = self.reduce(x)
        for dec in self.decoder:
            x = dec(_up2(x) + skips.pop())
        return self.head(x)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="RollingUnet",
        ubench_id=46,
        year=2024,
        paper="Rolling-Unet: Revitalizing MLP's Ability to Efficiently Extract Long-Distance "
        "Dependencies for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=7.098401,
        ref_source="U-Bench models/CNN/RollingUnet/RollingUnet.py (Rolling_Unet_M(input_channel=3, "
        "num_classes=1), its defaults), counted by instantiating it",
        ref_input_size=256,
        size_multiple=RollingUNet.stride,
        notes="U-Bench's RollingUnet is the M variant (widths 32..512). Each Lo2 block's outer "
        "LayerNorm is built but never used in the reference: kept (2,048 parameters) for the same "
        "count and state_dict, listed in unused_params. The per-channel torch.roll loops are one "
        "gather (same values). Dropout 0.2 inside the bottleneck block as in the reference.",
        extra={
            "unused_params": [
                f"blocks.{k}.unused_norm.{p}" for k in range(3) for p in ("weight", "bias")
            ]
        },
    )
)
def rolling_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Rolling-Unet (M) as U-Bench benchmarks it."""
    return RollingUNet(in_channels=in_channels, num_classes=num_classes)
