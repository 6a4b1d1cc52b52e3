"""DS-TransUNet: two Swin Transformer encoders (4x4 and 8x8 patches) fused scale by scale by a
transformer interactive fusion module, and a U-shaped decoder with Swin blocks.

Paper: Lin, Chen, Xu, Zhang, Lu, Zhang, "DS-TransUNet: Dual Swin Transformer U-Net for Medical
Image Segmentation", IEEE Transactions on Instrumentation and Measurement 71, 2022.

Configuration: U-Bench's ``DS_TransUNet`` (repo FengheTan9/U-Bench, models/Hybrid/DS_TransUNet/
DS_TransUNet.py and module.py; models/__init__.py builds ``ds_transunet(num_classes,
input_channel)`` = ``UNet(num_classes, dim=128, input_channel)``), id 62, flagged
``deeps_supervision`` in models/model_id.json. U-Bench loads two ImageNet Swin checkpoints into the
encoders (see ``extra["pretrained"]``); here both are built untrained, with U-Bench's
initialisation (PyTorch defaults, truncated-normal relative-position tables: its backbones'
``init_weights`` is never called).

- ``encoder_p4``: Swin-B (4x4 patches to 128 channels, depths 2-2-18-2, heads 4-8-16-32, stochastic
  depth up to 0.5) -> maps of 128/256/512/1024 channels at H/4..H/32.
- ``encoder_p8``: Swin-T on 8x8 patches (96 channels, depths 2-2-6-2, heads 3-6-12-24, stochastic
  depth up to 0.2) -> 96/192/384/768 channels at H/8..H/64.
  Both are Swin's detection-style backbone: window 7, every second block shifted by 3, the
  normalised tokens zero-padded at the bottom/right to whole windows (so a grid smaller than a
  window is padded, never given a smaller window), a LayerNorm on each stage's output.
- Fusion at each of the four scales (TIF): each branch is summarised by the mean of its
  LayerNormed tokens, projected to the other branch's width and prepended to the other branch's
  tokens; one pre-norm transformer layer per branch (Swin-T side 3 heads x 32, MLP 128; Swin-B
  side 1 head x 64, MLP 256; bias-free q/k/v), then the extra token is dropped. The Swin-T map is
  upsampled x2 (nearest), concatenated to the Swin-B map and merged by two (3x3 conv, GroupNorm 32,
  ReLU) to 128/256/512/1024 channels.
- Decoder: three Swin up-steps from H/32 to H/4 (nearest x2 + conv-GN-ReLU halving the width, two
  Swin blocks, 1x1 conv + ReLU to a quarter; the skip through its own 1x1 conv + ReLU to a quarter;
  concatenated; 3x3 conv + ReLU) give 512, 256, 128 channels; two conv up-steps (nearest x2 +
  conv-GN-ReLU; concatenated with a shallow CNN path: a 1x1 conv of the input to 32 channels at H,
  max-pool + two conv-GN-ReLU to 64 at H/2; 3x3 conv + ReLU) give 64 at H/2 and 32 at H; a 1x1
  conv makes the logits.
- Deep supervision: ReLU(1x1 conv) of the merged H/32 map upsampled x32 and of the H/4 decoder
  map upsampled x4 (nearest); the forward returns [H/32 aux, H/4 aux, final], final last.

Input: any multiple of 64 (the Swin-T branch's H/64 map is upsampled x2 to meet the Swin-B H/32
map; U-Bench fails on other sizes too, e.g. 224). Parameters at 3 in / 1 class: 171,441,329, as
U-Bench's module (86,745,016 in Swin-B, 27,534,522 in Swin-T), counted by instantiating it.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import Mlp, map_to_tokens, stochastic_depth, tokens_to_map
from ubench.models.ops.swin import PatchMerging, WindowAttention, from_windows, shift_mask, to_windows
from ubench.models.registry import ModelInfo, register_model

WINDOW = 7
DIM = 128  # U-Bench's UNet(dim=128): the decoder widths are multiples of it
GROUPS = 32  # GroupNorm groups of every conv block
STRIDE = 64
# patch, width, depths, heads, top stochastic-depth rate
SWIN_B_P4 = (4, 128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5)
SWIN_T_P8 = (8, 96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2)
DECODER_DROP_PATHS = (0.0, 0.2)  # linspace(0, 0.2, 2) over each decoder Swin stage's two blocks


# --- Swin on grids of any size ---------------------------------------------------------------


def _padded(n: int) -> int:
    return -(-n // WINDOW) * WINDOW


@lru_cache(maxsize=64)
def _region_mask(h: int, w: int) -> torch.Tensor:
    """Shift mask of a padded (h, w) grid (read-only: cached and shared)."""
    return shift_mask(h, w, WINDOW, WINDOW // 2)


class PaddedSwinBlock(nn.Module):
    """Swin block on a grid given at call time: LayerNorm, zero-pad to whole windows, (shifted)
    window attention, crop; then the MLP. Both branches residual with stochastic depth."""

    def __init__(self, dim: int, heads: int, shift: int, drop_path: float):
        super().__init__()
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, WINDOW, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        hp, wp = _padded(h), _padded(w)
        y = F.pad(self.norm1(x).view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(to_windows(y, WINDOW), mask if self.shift else None)
        y = from_windows(y, WINDOW, hp, wp)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w].reshape(b, n, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GridMerge(PatchMerging):
    """``ops.swin.PatchMerging`` on the grid of the current input (2x2 -> LayerNorm -> 4C to 2C)."""

    def __init__(self, dim: int):
        super().__init__(dim, (0, 0))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        self.resolution = (h, w)
        return super().forward(x)


class SwinLevel(nn.Module):
    """``depth`` padded Swin blocks, every second one shifted by half a window; ``downsample`` (a
    patch merging, applied by the caller) when the level hands a halved grid to the next one."""

    def __init__(self, dim: int, depth: int, heads: int, drop_paths, merge: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(
            PaddedSwinBlock(dim, heads, 0 if i % 2 == 0 else WINDOW // 2, drop_paths[i]) for i in range(depth)
        )
        self.downsample = GridMerge(dim) if merge else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        mask = _region_mask(_padded(h), _padded(w)).to(x.device)
        for block in self.blocks:
            x = block(x, h, w, mask)
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch`` x ``patch`` conv, then LayerNorm over the channels of each token."""

    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(map_to_tokens(x)), h, w


class SwinPyramid(nn.Module):
    """Swin backbone returning the LayerNormed output map of each of its four stages."""

    def __init__(self, in_channels: int, patch: int, dim: int, depths, heads, drop_path: float):
        super().__init__()
        self.patch_embed = PatchEmbed(in_channels, dim, patch)
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(
            SwinLevel(dim * 2**i, d, n, rates[s : s + d], merge=i < len(depths) - 1)
            for i, (d, n, s) in enumerate(zip(depths, heads, starts))
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim * 2**i) for i in range(len(depths)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, h, w = self.patch_embed(x)
        maps = []
        for level, norm in zip(self.layers, self.norms):
            x = level(x, h, w)
            maps.append(tokens_to_map(norm(x), h, w))
            if level.downsample is not None:
                x = level.downsample(x, h, w)
                h, w = h // 2, w // 2
        return maps


# --- Transformer interactive fusion ----------------------------------------------------------


class TokenAttention(nn.Module):
    """Multi-head self-attention: bias-free fused q/k/v to ``heads`` x ``head_dim``, output
    projection back to ``dim``."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim ** -0.5
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class TokenTransformer(nn.Module):
    """One pre-norm transformer layer: x + attention(LN x), then x + GELU MLP(LN x)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TokenAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class InteractiveFusion(nn.Module):
    """TIF at one scale: each branch's token sequence gets the other branch's summary (mean of its
    LayerNormed tokens, linearly projected) as a leading token, runs one transformer layer, and
    drops that token again."""

    def __init__(self, dim_p4: int, dim_p8: int):
        super().__init__()
        self.norm_p4 = nn.LayerNorm(dim_p4)
        self.norm_p8 = nn.LayerNorm(dim_p8)
        self.p4_to_p8 = nn.Linear(dim_p4, dim_p8)
        self.p8_to_p4 = nn.Linear(dim_p8, dim_p4)
        self.layer_p8 = TokenTransformer(dim_p8, heads=3, head_dim=32, mlp_dim=128)
        self.layer_p4 = TokenTransformer(dim_p4, heads=1, head_dim=64, mlp_dim=256)

    def forward(self, f4: torch.Tensor, f8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (h4, w4), (h8, w8) = f4.shape[-2:], f8.shape[-2:]
        t4, t8 = map_to_tokens(f4), map_to_tokens(f8)
        s4 = self.p4_to_p8(self.norm_p4(t4).mean(dim=1, keepdim=True))
        s8 = self.p8_to_p4(self.norm_p8(t8).mean(dim=1, keepdim=True))
        t8 = self.layer_p8(torch.cat([s4, t8], dim=1))[:, 1:]
        t4 = self.layer_p4(torch.cat([s8, t4], dim=1))[:, 1:]
        return tokens_to_map(t4, h4, w4), tokens_to_map(t8, h8, w8)


# --- Decoder ---------------------------------------------------------------------------------


def conv_gn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """3x3 conv (bias), GroupNorm(32), ReLU."""
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.GroupNorm(GROUPS, out_ch), nn.ReLU(inplace=True)]


def up_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Nearest x2, then conv-GN-ReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2), *conv_gn_relu(in_ch, out_ch))


class SwinUp(nn.Module):
    """Up-step with Swin blocks: ``in_ch`` at H -> ``in_ch`` / 2 at 2H, joined with a skip of
    ``in_ch`` / 2 channels (each side narrowed to ``in_ch`` / 4 first)."""

    def __init__(self, in_ch: int, heads: int):
        super().__init__()
        half, quarter = in_ch // 2, in_ch // 4
        self.up = up_conv(in_ch, half)
        self.swin = SwinLevel(half, len(DECODER_DROP_PATHS), heads, DECODER_DROP_PATHS)
        self.narrow = nn.Sequential(nn.Conv2d(half, quarter, 1), nn.ReLU())
        self.narrow_skip = nn.Sequential(nn.Conv2d(half, quarter, 1), nn.ReLU())
        self.fuse = nn.Sequential(nn.Conv2d(half, half, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        h, w = x.shape[-2:]
        x = tokens_to_map(self.swin(map_to_tokens(x), h, w), h, w)
        return self.fuse(torch.cat([self.narrow_skip(skip), self.narrow(x)], dim=1))


class ConvUp(nn.Module):
    """Up-step: up_conv ``in_ch`` -> ``out_ch``, concatenated after a skip of ``out_ch`` channels,
    3x3 conv + ReLU to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = up_conv(in_ch, out_ch)
        self.fuse = nn.Sequential(nn.Conv2d(2 * out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([skip, self.up(x)], dim=1))


def aux_head(in_ch: int, num_classes: int, scale: int) -> nn.Sequential:
    """Deep-supervision head: 1x1 conv, ReLU (on the logits, as U-Bench), nearest upsampling."""
    return nn.Sequential(nn.Conv2d(in_ch, num_classes, 1), nn.ReLU(), nn.Upsample(scale_factor=scale))


class DSTransUNet(nn.Module):
    """Dual Swin encoders, per-scale interactive fusion and merge, Swin + conv decoder, three
    outputs (two auxiliary, the final one last)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder_p4 = SwinPyramid(in_channels, *SWIN_B_P4)
        self.encoder_p8 = SwinPyramid(in_channels, *SWIN_T_P8)
        dims_p4 = [SWIN_B_P4[1] * 2**i for i in range(4)]
        dims_p8 = [SWIN_T_P8[1] * 2**i for i in range(4)]
        widths = [DIM * 2**i for i in range(4)]  # 128, 256, 512, 1024
        self.fusion = nn.ModuleList(InteractiveFusion(a, b) for a, b in zip(dims_p4, dims_p8))
        self.merge = nn.ModuleList(
            nn.Sequential(*conv_gn_relu(a + b, c), *conv_gn_relu(c, c)) for a, b, c in zip(dims_p4, dims_p8, widths)
        )
        self.swin_ups = nn.ModuleList(SwinUp(c, heads) for c, heads in zip(widths[:0:-1], (8, 4, 2)))
        self.conv_ups = nn.ModuleList([ConvUp(DIM, DIM // 2), ConvUp(DIM // 2, DIM // 4)])
        self.full_res = nn.Conv2d(in_channels, DIM // 4, 1)
        self.half_res = nn.Sequential(nn.MaxPool2d(2), *conv_gn_relu(DIM // 4, DIM // 2), *conv_gn_relu(DIM // 2, DIM // 2))
        self.head = nn.Conv2d(DIM // 4, num_classes, 1)
        self.aux_deep = aux_head(widths[-1], num_classes, 32)
        self.aux_mid = aux_head(DIM, num_classes, 4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for fuse, merge, f4, f8 in zip(self.fusion, self.merge, self.encoder_p4(x), self.encoder_p8(x)):
            f4, f8 = fuse(f4, f8)
            skips.append(merge(torch.cat([f4, F.interpolate(f8, scale_factor=2, mode="nearest")], dim=1)))
        full = self.full_res(x)
        half = self.half_res(full)
        y = skips[-1]
        for up, skip in zip(self.swin_ups, reversed(skips[:-1])):
            y = up(y, skip)
        mid = self.aux_mid(y)
        for up, skip in zip(self.conv_ups, (half, full)):
            y = up(y, skip)
        return [self.aux_deep(skips[-1]), mid, self.head(y)]


# --- ImageNet Swin checkpoints U-Bench loads ---------------------------------------------------

_SWIN_RELEASE = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"


def _swin_record(backbone: str, file: str, prefix: str, source: str, patch_conv: bool) -> dict:
    """Record of an official Swin classification checkpoint loaded into ``SwinPyramid`` ``prefix``:
    same names except the bias table; the classifier, final norm and the buffers rebuilt here
    (relative_position_index, attn_mask) are dropped. ``patch_conv=False``: its patch conv is
    dropped too and only the patch-embedding LayerNorm and the stages are filled."""
    drop = [r"^head\.", r"^norm\.", r"\.attn_mask$", r"\.relative_position_index$"]
    modules = [f"{prefix}.patch_embed", f"{prefix}.layers"]
    if not patch_conv:
        drop.append(r"^patch_embed\.proj\.")
        modules = [f"{prefix}.patch_embed.norm", f"{prefix}.layers"]
    return {
        "backbone": backbone,
        "source": source,
        "file": file,
        "url": _SWIN_RELEASE + file,
        "modules": modules,
        "key_map": [[r"^", prefix + "."], [r"\.relative_position_bias_table$", ".bias_table"]],
        "drop": drop,
    }


_PRETRAINED = [
    _swin_record(
        "swin_base_patch4_window7_224_22k",
        "swin_base_patch4_window7_224_22k.pth",
        "encoder_p4",
        "U-Bench models/Hybrid/DS_TransUNet/DS_TransUNet.py UNet.__init__: load_state_dict_from_url("
        "...)['model'] loaded with strict=False into self.encoder (Swin-B, 4x4 patches): fills the patch "
        "embedding and all stages; the per-stage output norms (norm0..norm3) stay at init, the file's "
        "final norm, ImageNet-22k head and attn_mask buffers match nothing",
        patch_conv=True,
    ),
    _swin_record(
        "swin_tiny_patch4_window7_224",
        "swin_tiny_patch4_window7_224.pth",
        "encoder_p8",
        "U-Bench models/Hybrid/DS_TransUNet/DS_TransUNet.py UNet.__init__: load_state_dict_from_url("
        "...)['model'], patch_embed.proj.weight popped (a 4x4 kernel; encoder2 has 8x8 patches), loaded "
        "with strict=False into self.encoder2 (Swin-T, 8x8 patches): fills the patch-embedding "
        "LayerNorm and all stages, and the 96 patch-conv biases, which ubench drops (so the record's "
        "modules are filled whole; the 8x8 patch conv starts untrained anyway); norm0..norm3 stay at init",
        patch_conv=False,
    ),
]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="DS_TransUNet",
        ubench_id=62,
        year=2022,
        paper="DS-TransUNet: Dual Swin Transformer U-Net for Medical Image Segmentation",
        deep_supervision=True,
        ref_params_m=171.441329,
        ref_source="U-Bench models/Hybrid/DS_TransUNet/DS_TransUNet.py (ds_transunet(1, 3) = UNet("
        "num_classes=1, dim=128, input_channel=3), checkpoint downloads disabled, .cuda() calls "
        "removed), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Both Swin encoders untrained here; U-Bench loads ImageNet-22k Swin-B into the 4x4-patch "
        "encoder and ImageNet-1k Swin-T (minus its patch kernel) into the 8x8-patch one "
        "(extra['pretrained'], two records); ubench leaves out the 96 Swin-T patch-conv biases U-Bench "
        "also copies. U-Bench never calls the backbones' init_weights: PyTorch defaults everywhere except "
        "truncated-normal (0.02) relative-position tables, as here. Outputs [ReLU(1x1 conv(merged H/32 "
        "map)) nearest x32, ReLU(1x1 conv(H/4 decoder map)) nearest x4, final 1x1 conv]: the two "
        "auxiliary logits pass through a ReLU, as in U-Bench's code (they can never go below 0). "
        "The Swin blocks are the detection-style backbone's: tokens zero-padded to whole 7x7 windows "
        "after norm1 (padded tokens take part in attention as keys), shift 3 and a region mask on "
        "every second block even when the padded grid is a single window (the 4x4 H/64 grid at 256). "
        "Any multiple of 64: the Swin-T branch's H/64 map is upsampled x2 to meet the Swin-B H/32 map "
        "(U-Bench fails on other sizes, e.g. 224). U-Bench ignores input_channel for the encoders "
        "(both patch convs take 3 channels; its loaders give RGB) and uses it only for the 1x1 conv "
        "of the shallow CNN path; here in_channels reaches both patch convs too (summing a 3-channel "
        "pretrained kernel reproduces the grey repetition). U-Bench's Mlp builds its linears with "
        ".cuda(), so its module can only be built on a GPU machine; its nn.Upsample(x4) m2 and classes "
        "PatchRecover, SwinUp, MultiEmbed, CrossAttention are never used (no parameters in the model). "
        "The fusion's attention runs as scaled_dot_product_attention (same computation).",
        extra={"pretrained": _PRETRAINED},
    )
)
def ds_transunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """DS-TransUNet (Swin-B/4 + Swin-T/8, untrained) as U-Bench benchmarks it."""
    return DSTransUNet(in_channels=in_channels, num_classes=num_classes)
