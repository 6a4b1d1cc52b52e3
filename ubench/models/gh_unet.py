"""GH-UNet: a convolutional U-Net fed, stage by stage, by a MobileViT encoder, with group-wise gates.

Paper: Wang, Li, Gao, Zhuo, Liu, Ma, Zhao, Fu, "GH-UNet: group-wise hybrid convolution-VIT for
robust medical image segmentation", npj Digital Medicine 8, 2025.

Configuration: U-Bench's ``gh_unet(num_classes=1, input_channel=3)`` (repo FengheTan9/U-Bench,
models/CNN/GH_UNet/GH_UNet.py with module/HWD.py, dp.py, dy.py; models/__init__.py imports the
factory as ``GH_UNet``), i.e. ``GH_UNet(img_size=256)`` with embed_dims 32, 64, 96, 128, 640.

* MobileViT branch: transformers' ``MobileViTModel`` built from a ``MobileViTConfig`` whose real
  fields are MobileViT-S's defaults (channels 16, 32, 64, 96, 128, 160 -> 640, transformer widths
  144, 192, 240 with depths 2, 4, 3, MLP ratio 2, SiLU) except 12 heads, patch size 16, LayerNorm
  eps 1e-6 and dropout 0.1 on attention and hidden states (its ``hidden_size=640``,
  ``num_hidden_layers=12`` etc. are not MobileViT fields and change nothing). Its stage outputs at
  strides 2, 4, 8, 16 (32, 64, 96, 128 channels) and the expanded stride-32 map (640) are each
  upsampled x2 by a DySample.
* Convolutional encoder (strides 1, 2, 4): multi-scale blocks (three PGAM-gated GSConv branches
  with kernels 1, 5, 7 -> BN -> ReLU6, concatenated, PGAM, 3x3 dilation-2 conv, plus a 1x1 conv +
  BN + ReLU6 shortcut) of widths 32, 64, 96; stride 8: a 3x3 conv token embedding (GELU, LayerNorm)
  to 128 and a "Lo2" token mixer (two per-channel-shifted MLP paths plus a depthwise-separable conv
  path, fused by a linear layer), LayerNorm. After each of these four stages the upsampled MobileViT
  map of the same stride is added, a group-wise gate (GDG: grouped 3x3 conv, one sigmoid weight per
  group) makes the skip, and a Haar-wavelet downsampling (HWD: LL, and the three detail bands,
  1x1 conv + BN + ReLU) halves the size. Bottleneck (stride 16): embedding to 640, Lo2 mixer
  (dropout 0.2), LayerNorm, plus the upsampled MobileViT output, embedding back to 128.
* Decoder: DySample x2 + skip, Lo2 mixer, LayerNorm (stride 8); 3x3 conv + BN + ReLU to 96,
  DySample + skip, multi-scale block to 64 (stride 4); DySample + skip, block to 32 (stride 2);
  DySample + skip, block to 16, 1x1 conv (stride 1). Side outputs after the stride-8, -4 and -2
  stages: a group gate, DySample x8 / x4 / x2 and a 1x1 conv; the final logits are the main head
  plus all three side outputs.

U-Bench trains it with ``deeps_supervision: 1`` (models/model_id.json, id 74) and the model
returns [side stride 8, side stride 4, side stride 8 again, final]: its forward appends the
stride-8 side output twice and never the stride-2 one (kept: see ``notes``). Parameters at 3 in /
1 class: 12,814,037 (counted by instantiating U-Bench's module with transformers 4.57 in place of
its pinned 4.34.1; the MobileViT code is the same), 2,400 of them in layers U-Bench builds but
never applies (``extra["unused_params"]``). Needs H, W divisible by 32 (MobileViT's stride).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_vit_conv_weights, map_to_tokens, tokens_to_map
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (32, 64, 96, 128, 640)
DECODER_OUT = 16
STRIDE = 32
# MobileViT as U-Bench's MobileViTConfig builds it (MobileViT-S channels and widths)
VIT_CHANNELS = (16, 32, 64, 96, 128, 160, 640)
VIT_DIMS = (144, 192, 240)
VIT_DEPTHS = (2, 4, 3)
VIT_HEADS = 12
VIT_PATCH = 16
VIT_EPS = 1e-6
VIT_DROP = 0.1
VIT_INIT_STD = 0.02


# --- MobileViT (Mehta & Rastegari, ICLR 2022), laid out as transformers' MobileViTModel ---------


def conv_bn(in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    """Bias-free conv ('same' padding) + BatchNorm (+ SiLU): MobileViT's and GSConv's conv unit."""
    layers = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion x4, 3x3 depthwise (maybe strided), linear 1x1 projection;
    identity shortcut when shape is kept. (MobileViT rounds the expansion to a multiple of 8; every
    width here already is one.)"""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expand: int = 4):
        super().__init__()
        hidden = in_ch * expand
        self.residual = stride == 1 and in_ch == out_ch
        self.expand = conv_bn(in_ch, hidden)
        self.depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = conv_bn(hidden, out_ch, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: multi-head self-attention (biased q, k, v), then a SiLU MLP of
    twice the width; dropout on the attention weights and after each residual branch."""

    def __init__(self, dim: int, heads: int = VIT_HEADS, drop: float = VIT_DROP):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=VIT_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=VIT_EPS)
        self.attn_drop = nn.Dropout(drop)
        self.drop = nn.Dropout(drop)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (f(x).view(b, n, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        weights = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(c // self.heads)
        out = torch.matmul(self.attn_drop(weights.softmax(dim=-1)), v)
        return out.transpose(1, 2).reshape(b, n, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.proj(self.attention(self.norm1(x))))
        return x + self.drop(self.fc2(F.silu(self.fc1(self.norm2(x)))))


class MobileViTBlock(nn.Module):
    """A stride-2 inverted residual, then MobileViT's local-global block: 3x3 conv, 1x1 to the
    transformer width, transformer over patches (tokens = the pixels at one position of every
    ``patch`` x ``patch`` patch; the map is bilinearly resized to a multiple of the patch size and
    back), LayerNorm, 1x1 conv back, and a 3x3 conv fusing it with the block's input."""

    def __init__(self, in_ch: int, out_ch: int, dim: int, depth: int, patch: int = VIT_PATCH):
        super().__init__()
        self.patch = patch
        self.down = InvertedResidual(in_ch, out_ch, stride=2)
        self.local = conv_bn(out_ch, out_ch, 3)
        self.to_dim = nn.Conv2d(out_ch, dim, 1, bias=False)
        self.layers = nn.ModuleList(TransformerLayer(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=VIT_EPS)
        self.from_dim = conv_bn(dim, out_ch)
        self.fuse = conv_bn(2 * out_ch, out_ch, 3)

    def global_mix(self, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.shape
        p = self.patch
        hp, wp = -(-h // p) * p, -(-w // p) * p
        resized = (hp, wp) != (h, w)
        if resized:
            y = F.interpolate(y, size=(hp, wp), mode="bilinear", align_corners=False)
        nh, nw = hp // p, wp // p
        tokens = y.reshape(b, c, nh, p, nw, p).permute(0, 3, 5, 2, 4, 1).reshape(b * p * p, nh * nw, c)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.norm(tokens)
        y = tokens.reshape(b, p, p, nh, nw, c).permute(0, 5, 3, 1, 4, 2).reshape(b, c, hp, wp)
        if resized:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        y = self.global_mix(self.to_dim(self.local(x)))
        return self.fuse(torch.cat([x, self.from_dim(y)], dim=1))


def init_mobilevit(m: nn.Module) -> None:
    """transformers' MobileViT init (v4.34): normal(0, 0.02) Linear/Conv2d weights, zero biases."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.normal_(m.weight, 0.0, VIT_INIT_STD)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class MobileViTEncoder(nn.Module):
    """Stem (3x3/2), two MobileNetV2 stages, three MobileViT stages, 1x1 expansion to 640.

    Returns the outputs of the first four stages (strides 2..16) and the expanded stride-32 map.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        ch = VIT_CHANNELS
        self.stem = conv_bn(in_channels, ch[0], 3, stride=2)
        self.stages = nn.ModuleList([
            nn.Sequential(InvertedResidual(ch[0], ch[1])),
            nn.Sequential(InvertedResidual(ch[1], ch[2], 2), InvertedResidual(ch[2], ch[2]),
                          InvertedResidual(ch[2], ch[2])),
            *(MobileViTBlock(ch[i + 2], ch[i + 3], d, n) for i, (d, n) in enumerate(zip(VIT_DIMS, VIT_DEPTHS))),
        ])
        self.expand = conv_bn(ch[5], ch[6])
        self.apply(init_mobilevit)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[:4], self.expand(x)


# --- GH-UNet's convolutional blocks --------------------------------------------------------------


def haar_bands(x: torch.Tensor) -> torch.Tensor:
    """One level of the orthonormal 2-D Haar transform on even sizes, bands stacked on channels as
    pytorch_wavelets' ``DWTForward(J=1, wave='haar')`` orders them: LL, then the three details."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return torch.cat([a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d], dim=1) / 2


class WaveletDown(nn.Module):
    """Haar wavelet downsampling (HWD, Xu et al., Pattern Recognition 2023): the four Haar bands
    (lossless x2 downsampling) mixed by a 1x1 conv + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(4 * in_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(haar_bands(x))


class GSConv(nn.Module):
    """GSConv (Li et al., slim-neck, 2022): a dense conv to half the width and a 5x5 depthwise conv of
    its result (both conv + BN + SiLU), concatenated and shuffled (even channels, then odd)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1):
        super().__init__()
        half = out_ch // 2
        self.dense = conv_bn(in_ch, half, kernel_size)
        self.cheap = conv_bn(half, half, 5, groups=half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x)
        y = torch.cat([y, self.cheap(y)], dim=1)
        return torch.cat([y[:, 0::2], y[:, 1::2]], dim=1)


class PGAM(nn.Module):
    """Parallel gates: the input times a channel gate (global average -> 1x1 conv -> sigmoid) and a
    spatial gate (1x1 conv to one map -> sigmoid)."""

    def __init__(self, ch: int):
        super().__init__()
        self.channel = nn.Conv2d(ch, ch, 1)
        self.spatial = nn.Conv2d(ch, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(self.channel(x.mean(dim=(2, 3), keepdim=True)))
        return x * channel * torch.sigmoid(self.spatial(x))


class MultiScaleBlock(nn.Module):
    """Three PGAM-gated GSConv branches (kernels 1, 5, 7) to ``mid`` channels, each BN + ReLU6,
    concatenated, PGAM-gated and fused by a 3x3 dilation-2 conv, plus a 1x1 conv + BN + ReLU6
    shortcut. The encoder uses mid = out (U-Bench's ``DoubleConv``), the decoder mid = in
    (``D_DoubleConv``)."""

    def __init__(self, in_ch: int, out_ch: int, mid: int):
        super().__init__()
        self.branches = nn.ModuleList(GSConv(in_ch, mid, k) for k in (1, 5, 7))
        self.gates = nn.ModuleList(PGAM(in_ch) for _ in range(3))
        self.mix_gate = PGAM(3 * mid)
        self.norms = nn.ModuleList(nn.BatchNorm2d(mid) for _ in range(3))
        self.fuse = nn.Conv2d(3 * mid, out_ch, 3, padding=2, dilation=2)
        self.unused_norm = nn.BatchNorm2d(out_ch)  # built by U-Bench after ``fuse``, never applied
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([F.relu6(n(c(g(x)))) for g, c, n in zip(self.gates, self.branches, self.norms)], dim=1)
        return self.fuse(self.mix_gate(y)) + self.shortcut(x)


class GroupGate(nn.Module):
    """Group-wise dynamic gating (GDG): a 3x3 conv per channel group (one grouped conv), then one
    sigmoid weight per group from the global average (1x1 -> SiLU -> 1x1, no biases)."""

    def __init__(self, ch: int, groups: int, reduction: int):
        super().__init__()
        self.groups = groups
        self.conv = nn.Conv2d(ch, ch, 3, padding=1, groups=groups, bias=False)
        self.gate = nn.Sequential(
            nn.Conv2d(ch, ch // reduction, 1, bias=False),
            nn.SiLU(),
            nn.Conv2d(ch // reduction, groups, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        weights = self.gate(y.mean(dim=(2, 3), keepdim=True))
        return y * weights.repeat_interleave(y.shape[1] // self.groups, dim=1)


class TokenEmbed(nn.Module):
    """3x3 conv (stride 1) to tokens, GELU, LayerNorm (U-Bench's ``Feature_Incentive_Block``);
    returns the tokens and the map size."""

    def __init__(self, in_ch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, 3, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(F.gelu(map_to_tokens(x))), h, w


def roll_each_channel(x: torch.Tensor, dim: int, sign: int) -> torch.Tensor:
    """``torch.roll`` of channel c of a (B, C, H, W) map by ``sign * c`` along ``dim`` (2 or 3)."""
    c, n = x.shape[1], x.shape[dim]
    shifts = sign * torch.arange(c, device=x.device)[:, None]
    src = (torch.arange(n, device=x.device)[None, :] - shifts) % n
    shape = [1, c, 1, 1]
    shape[dim] = n
    return x.gather(dim, src.view(shape).expand_as(x))


class Lo2Mixer(nn.Module):
    """GH-UNet's "Lo2" token mixer (no residual around it). Two orthogonal shifted MLPs (channel c
    rolled by c along rows, linear + GELU, rolled along columns, linear; and columns-by--c then
    rows), each plus the input, concatenated, LayerNorm, linear, plus the input; in parallel a
    depthwise 3x3 + pointwise conv with identity, ReLU, BatchNorm; both fused by a linear layer."""

    def __init__(self, dim: int, drop: float = 0.0):
        super().__init__()
        self.unused_norm = nn.LayerNorm(dim)  # U-Bench's Lo2Block.norm2, never applied
        self.row_in = nn.Linear(dim, dim)
        self.col_out = nn.Linear(dim, dim)
        self.col_in = nn.Linear(dim, dim)
        self.row_out = nn.Linear(dim, dim)
        self.merge = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(2 * dim, dim)
        self.drop = nn.Dropout(drop)
        self.depthwise = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.pointwise = nn.Conv2d(dim, dim, 1)
        self.norm_mlp = nn.LayerNorm(2 * dim)
        self.norm_conv = nn.BatchNorm2d(dim)

    def shifted_mlp(self, x, h, w, first_dim, first_sign, fc_in, second_dim, fc_out):
        y = map_to_tokens(roll_each_channel(tokens_to_map(x, h, w), first_dim, first_sign))
        y = self.drop(F.gelu(fc_in(y)))
        y = map_to_tokens(roll_each_channel(tokens_to_map(y, h, w), second_dim, 1))
        return self.drop(fc_out(y))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        rows_cols = self.shifted_mlp(x, h, w, 2, 1, self.row_in, 3, self.col_out)
        cols_rows = self.shifted_mlp(x, h, w, 3, -1, self.col_in, 2, self.row_out)
        mlp = torch.cat([rows_cols + x, cols_rows + x], dim=2)
        mlp = self.drop(self.merge(self.norm_mlp(mlp))) + x
        conv = tokens_to_map(x, h, w)
        conv = self.norm_conv(F.relu(self.pointwise(self.depthwise(conv)) + conv))
        return self.drop(self.out(torch.cat([mlp, map_to_tokens(conv)], dim=2)))


class DySample(nn.Module):
    """DySample (Liu et al., ICCV 2023), 'pl' style without dynamic scope: offsets from the
    pixel-shuffled input (1x1 conv, x0.25, plus the sub-pixel grid) say where each output pixel
    bilinearly samples the input (border padding), in 8 channel groups."""

    def __init__(self, ch: int, scale: int = 2, groups: int = 8):
        super().__init__()
        if ch % (scale * scale) or ch % groups:
            raise ValueError(f"DySample: {ch} channels must divide by scale**2={scale * scale} and groups={groups}")
        self.scale, self.groups = scale, groups
        self.offset = nn.Conv2d(ch // (scale * scale), 2 * groups, 1)
        nn.init.normal_(self.offset.weight, 0.0, 0.001)
        nn.init.zeros_(self.offset.bias)
        pos = (torch.arange(scale) - (scale - 1) / 2) / scale
        grid = torch.stack([pos.expand(scale, scale), pos[:, None].expand(scale, scale)])  # x, y
        self.register_buffer("init_pos", grid[:, None].expand(2, groups, scale, scale).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, g = self.scale, self.groups
        offset = F.pixel_unshuffle(self.offset(F.pixel_shuffle(x, s)), s) * 0.25 + self.init_pos
        ys, xs = torch.meshgrid(torch.arange(h, device=x.device) + 0.5, torch.arange(w, device=x.device) + 0.5,
                                indexing="ij")
        centres = torch.stack([xs, ys]).to(x.dtype)[None, :, None]
        size = torch.tensor([w, h], dtype=x.dtype, device=x.device).view(1, 2, 1, 1, 1)
        grid = 2 * (centres + offset.reshape(b, 2, -1, h, w)) / size - 1
        grid = F.pixel_shuffle(grid.reshape(b, -1, h, w), s).reshape(b, 2, g, s * h, s * w)
        grid = grid.permute(0, 2, 3, 4, 1).reshape(b * g, s * h, s * w, 2)
        out = F.grid_sample(x.reshape(b * g, -1, h, w), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        return out.reshape(b, c, s * h, s * w)


class GHUNet(nn.Module):
    """Convolutional/Lo2 U-Net with a MobileViT added at every stride, GDG skips, DySample decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        w = widths
        self.encoder = nn.ModuleList(MultiScaleBlock(i, o, o) for i, o in zip((in_channels, *w[:2]), w[:3]))
        self.down = nn.ModuleList(WaveletDown(c, c) for c in w[:4])
        self.vit = MobileViTEncoder(in_channels)
        self.embed = nn.ModuleList([TokenEmbed(w[2], w[3]), TokenEmbed(w[3], w[4]), TokenEmbed(w[4], w[3])])
        self.mixers = nn.ModuleList([Lo2Mixer(w[3]), Lo2Mixer(w[4], drop=0.2), Lo2Mixer(w[3])])
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in (w[3], w[4], w[3]))
        self.reduce = nn.Sequential(nn.Conv2d(w[3], w[2], 3, padding=1), nn.BatchNorm2d(w[2]), nn.ReLU())
        self.decoder = nn.ModuleList(
            MultiScaleBlock(i, o, i) for i, o in ((w[2], w[1]), (w[1], w[0]), (w[0], DECODER_OUT))
        )
        self.final = nn.Conv2d(DECODER_OUT, num_classes, 1)
        side = (w[3], w[1], w[0])
        self.side_gates = nn.ModuleList(GroupGate(c, g, r) for c, g, r in zip(side, (2, 4, 8), (16, 8, 8)))
        self.side_heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in side)
        self.vit_up = nn.ModuleList(DySample(c) for c in w[:4])
        self.dec_up = nn.ModuleList(DySample(c) for c in (w[3], w[2], w[1], w[0]))
        self.vit_out_up = DySample(w[4])
        self.side_up = nn.ModuleList(DySample(c, s) for c, s in zip(side, (8, 4, 2)))
        self.skip_gates = nn.ModuleList(GroupGate(c, g, r) for c, g, r in zip(w[:4], (8, 4, 2, 2), (8, 8, 16, 16)))
        for m in (*self.embed, *self.mixers):
            m.apply(init_vit_conv_weights)

    def mix(self, k: int, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Lo2 mixer ``k`` and its LayerNorm, back to a (B, C, h, w) map."""
        return tokens_to_map(self.norms[k](self.mixers[k](tokens, h, w)), h, w)

    def side(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return self.side_heads[k](self.side_up[k](self.side_gates[k](x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        vit_feats, vit_out = self.vit(x)
        vit_feats = [up(f) for up, f in zip(self.vit_up, vit_feats)]  # strides 1, 2, 4, 8
        skips, out = [], x
        for i, v in enumerate(vit_feats):
            out = self.encoder[i](out) if i < 3 else self.mix(0, *self.embed[0](out))
            # U-Bench adds the MobileViT map twice (``out += v; t += v`` on one tensor)
            out = out + v + v
            skips.append(self.skip_gates[i](out))
            out = self.down[i](out)
        out = self.mix(1, *self.embed[1](out)) + self.vit_out_up(vit_out)
        tokens, h, w = self.embed[2](out)
        out = self.dec_up[0](tokens_to_map(tokens, h, w)) + skips[3]
        out = self.mix(2, map_to_tokens(out), 2 * h, 2 * w)
        sides = [self.side(0, out)]
        out = self.dec_up[1](self.reduce(out))
        for i, block in enumerate(self.decoder):
            out = block(out + skips[2 - i])
            if i < 2:
                sides.append(self.side(i + 1, out))
                out = self.dec_up[i + 2](out)
        s8, s4, s2 = sides
        return [s8, s4, s8, self.final(out) + s2 + s4 + s8]


def _unused_params() -> list[str]:
    names = [f"{part}.{i}.unused_norm.{p}" for part in ("encoder", "decoder") for i in range(3) for p in ("weight", "bias")]
    return names + [f"mixers.{i}.unused_norm.{p}" for i in range(3) for p in ("weight", "bias")]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="GH_UNet",
        ubench_id=74,
        year=2025,
        paper="GH-UNet: group-wise hybrid convolution-VIT for robust medical image segmentation",
        deep_supervision=True,
        ref_params_m=12.814037,
        ref_source="U-Bench models/CNN/GH_UNet/GH_UNet.py (gh_unet(num_classes=1, input_channel=3), "
        "i.e. GH_UNet(img_size=256) with transformers' MobileViTModel), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="U-Bench's quirks kept: the deep-supervision list is [side x8, side x4, side x8, final] "
        "(the stride-8 side output twice, the stride-2 one only inside the final sum); each MobileViT "
        "map is added twice to the encoder feature (in-place adds on one tensor); MobileViT with patch "
        "size 16, so its transformers attend over at most 4 tokens at 256 (maps smaller than 16 are "
        "resized to 16 and back); six BatchNorms and three LayerNorms are built but never applied "
        "(kept, unused_params). in_channels also sets MobileViT's stem (U-Bench's is fixed to 3). "
        "Init as U-Bench: MobileViT per transformers 4.34 (normal 0.02), Lo2 mixers and token "
        "embeddings ViT-style, DySample offsets normal 0.001, the rest torch defaults.",
        extra={"unused_params": _unused_params()},
    )
)
def gh_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """GH-UNet as U-Bench benchmarks it (MobileViT-S branch, widths 32..640, deep supervision)."""
    return GHUNet(in_channels=in_channels, num_classes=num_classes)
