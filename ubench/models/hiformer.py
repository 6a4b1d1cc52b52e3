"""HiFormer-B: ResNet-50 and Swin Transformer pyramids fused by a double-level fusion module.

Paper: Heidari, Kazerouni, Soltany, Azad, Aghdam, Cohen-Adad, Merhof, "HiFormer: Hierarchical
Multi-scale Representations Using Transformers for Medical Image Segmentation", WACV 2023.

Configuration: U-Bench's ``hiformer`` (repo FengheTan9/U-Bench, models/Hybrid/HiFormer/HiFormer.py,
module/Encoder.py, module/utils.py, module/configs.py), which builds HiFormer-B
(``get_hiformer_b_configs``) at its default 224x224:
- CNN: the first three stages of a ResNet-50 (feature widths 256, 512, 1024 at strides 4, 8, 16);
  U-Bench loads ImageNet weights, here it is built untrained (nothing is downloaded).
- Swin: three stages (widths 96, 192, 384; depths 2, 2, 6; heads 3, 6, 12; window 7; MLP ratio 4;
  stochastic depth up to 0.1), without Swin's own patch embedding. Level 1: ResNet stage-1
  features, 1x1-projected to 96, plus Swin stage 1 over them; patch merging to 192, Swin stage 2,
  added to projected ResNet stage 2; patch merging to 384, Swin stage 3, added to projected ResNet
  stage 3. A CLS token (the mean of the LayerNormed tokens) heads the fine (56x56, 96) and coarse
  (14x14, 384) sequences.
- DLF (one multi-scale block, depth [1, 2, 0], heads (6, 12), MLP ratios (2, 2, 1), q/k/v biases):
  learned positional embeddings, then each branch's CLS token is projected to the other branch's
  width, attends over that branch's tokens (cross-attention, no MLP) and is projected back.
- Decoder: the coarse map goes through two (3x3 conv, GroupNorm(32), ReLU, bilinear x2), the fine
  map through one (3x3 conv, GroupNorm, ReLU), both to 128 channels; their sum goes through a 1x1
  conv to 16, ReLU, bilinear x4, and a 3x3 conv to the classes. No deep supervision.

The multi-scale block also builds per-branch ViT blocks whose outputs its forward discards
(``outs_b`` is never returned); they are kept here, unused (``unused_params``), so that the
parameter count is U-Bench's, and not run. U-Bench ignores ``input_channel`` (torchvision's
3-channel stem); here ``in_channels`` sizes the ResNet stem. Fixed input size 224: positional
embeddings and Swin windows/masks are built for that grid.
Parameters at 3 in / 1 class: 25,510,955, counted from U-Bench's file (16,967,659 instantiated
with the torchvision trunk stubbed, plus 8,543,296 for ResNet-50 conv1..layer3 = torchvision's
25,557,032 minus fc 2,049,000 minus layer4 14,964,736); the paper reports 25.51M for HiFormer-B.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import Mlp, map_to_tokens, tokens_to_map
from ubench.models.ops.resnet import Bottleneck, init_resnet_weights, res_stage
from ubench.models.ops.swin import swin_init, swin_stage
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 224
SWIN_DIMS = (96, 192, 384)
SWIN_DEPTHS = (2, 2, 6)
SWIN_HEADS = (3, 6, 12)
CNN_DIMS = (256, 512, 1024)
BRANCH_DIMS = (96, 384)
DLF_HEADS = (6, 12)
DLF_DEPTHS = (1, 2)
DLF_MLP = (2.0, 2.0)


# --- ResNet-50 trunk (conv1 .. layer3), torchvision layout, untrained -------------------------


class ResNet50Trunk(nn.Module):
    """Stem + layer1..layer3 of ResNet-50, torchvision's initialisation (Kaiming fan_out)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.layer1 = res_stage(Bottleneck, 64, 64, 3, 1)
        self.layer2 = res_stage(Bottleneck, 256, 128, 4, 2)
        self.layer3 = res_stage(Bottleneck, 512, 256, 6, 2)
        init_resnet_weights(self)


# --- Swin + CNN pyramid -------------------------------------------------------------------------


class PatchMerging(nn.Module):
    """Swin patch merging: concatenate 2x2 neighbours (4C), LayerNorm, linear to 2C."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        r = self.resolution
        x = x.reshape(b, r, r, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class PyramidFeatures(nn.Module):
    """ResNet-50 stages with Swin stages riding on them; returns [CLS+fine tokens, CLS+coarse tokens]."""

    def __init__(self, in_channels: int, img_size: int = IMG_SIZE):
        super().__init__()
        self.cnn = ResNet50Trunk(in_channels)
        res = [img_size // 4 // 2**i for i in range(3)]  # 56, 28, 14
        dpr = torch.linspace(0, 0.1, sum(SWIN_DEPTHS)).tolist()
        starts = [sum(SWIN_DEPTHS[:i]) for i in range(3)]
        self.swin = nn.ModuleList(
            swin_stage(d, (r, r), n, h, 7, dpr[s : s + n])
            for d, r, n, h, s in zip(SWIN_DIMS, res, SWIN_DEPTHS, SWIN_HEADS, starts)
        )
        self.proj = nn.ModuleList(nn.Conv2d(c, d, 1) for c, d in zip(CNN_DIMS, SWIN_DIMS))
        self.merge = nn.ModuleList(PatchMerging(SWIN_DIMS[i], res[i]) for i in range(2))
        self.norm_fine = nn.LayerNorm(SWIN_DIMS[0])
        self.norm_coarse = nn.LayerNorm(SWIN_DIMS[2])

    @staticmethod
    def _with_cls(tokens: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return torch.cat([norm(tokens).mean(dim=1, keepdim=True), tokens], dim=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.cnn.layer1(self.cnn.stem(x))
        t1 = map_to_tokens(self.proj[0](f1))
        fine = t1 + self.swin[0](t1)
        f2 = self.cnn.layer2(f1)
        t2 = map_to_tokens(self.proj[1](f2)) + self.swin[1](self.merge[0](fine))
        f3 = self.cnn.layer3(f2)
        coarse = map_to_tokens(self.proj[2](f3)) + self.swin[2](self.merge[1](t2))
        return [self._with_cls(fine, self.norm_fine), self._with_cls(coarse, self.norm_coarse)]


# --- Double-level fusion (DLF) ------------------------------------------------------------------


class CrossAttention(nn.Module):
    """The CLS token (first token) queries all tokens of the sequence."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.wq = nn.Linear(dim, dim)
        self.wk = nn.Linear(dim, dim)
        self.wv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.wq(x[:, :1]).reshape(b, 1, self.heads, d).transpose(1, 2)
        k = self.wk(x).reshape(b, n, self.heads, d).transpose(1, 2)
        v = self.wv(x).reshape(b, n, self.heads, d).transpose(1, 2)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, 1, c))


class CrossAttentionBlock(nn.Module):
    """CLS + cross-attention(LayerNorm(sequence)); returns the updated CLS token only."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.attn(self.norm1(x))


class ViTAttention(nn.Module):
    """Parameter layout of timm's ViT attention (fused qkv with bias, output projection)."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class ViTBlock(nn.Module):
    """Parameter layout of timm's ViT ``Block``; only ever held, never run (see module docstring)."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ViTAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))


def _proj(src: int, dst: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(src), nn.GELU(), nn.Linear(src, dst))


class MultiScaleBlock(nn.Module):
    """CLS-token exchange between the two branches (each CLS visits the other branch)."""

    def __init__(self, dims=BRANCH_DIMS):
        super().__init__()
        other = (dims[1], dims[0])
        self.unused_blocks = nn.ModuleList(
            nn.Sequential(*(ViTBlock(d, r) for _ in range(n))) for d, r, n in zip(dims, DLF_MLP, DLF_DEPTHS)
        )
        self.projs = nn.ModuleList(_proj(d, o) for d, o in zip(dims, other))
        # branch i's CLS visits branch 1-i: width and heads of that other branch
        self.fusion = nn.ModuleList(CrossAttentionBlock(o, h) for o, h in zip(other, DLF_HEADS[::-1]))
        self.revert_projs = nn.ModuleList(_proj(o, d) for d, o in zip(dims, other))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for i in range(2):
            j = 1 - i
            cls = self.projs[i](xs[i][:, :1])
            cls = self.fusion[i](torch.cat([cls, xs[j][:, 1:]], dim=1))
            outs.append(torch.cat([self.revert_projs[i](cls), xs[i][:, 1:]], dim=1))
        return outs


class All2Cross(nn.Module):
    """Pyramid features + positional embeddings + the multi-scale block + per-branch LayerNorm."""

    def __init__(self, in_channels: int, img_size: int = IMG_SIZE):
        super().__init__()
        self.pyramid = PyramidFeatures(in_channels, img_size)
        n_tokens = ((img_size // 4) ** 2, (img_size // 16) ** 2)
        self.pos_embed = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1 + n, d)) for n, d in zip(n_tokens, BRANCH_DIMS)
        )
        self.block = MultiScaleBlock()
        self.norm = nn.ModuleList(nn.LayerNorm(d) for d in BRANCH_DIMS)
        for p in self.pos_embed:
            nn.init.trunc_normal_(p, std=0.02)
        swin_init(self)  # the reference applies this to the whole module, pyramid included

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs = [t + p for t, p in zip(self.pyramid(x), self.pos_embed)]
        xs = self.block(xs)
        return [norm(t) for norm, t in zip(self.norm, xs)]


def _conv_gn_relu(in_ch: int, out_ch: int, upsample: bool) -> list[nn.Module]:
    layers = [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(32, out_ch), nn.ReLU()]
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return layers


class HiFormer(nn.Module):
    """Encoder (All2Cross) and the light convolutional decoder of HiFormer."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, img_size: int = IMG_SIZE):
        super().__init__()
        self.img_size = img_size
        self.encoder = All2Cross(in_channels, img_size)
        self.up_coarse = nn.Sequential(*_conv_gn_relu(384, 128, True), *_conv_gn_relu(128, 128, True))
        self.up_fine = nn.Sequential(*_conv_gn_relu(96, 128, False))
        self.pred = nn.Sequential(
            nn.Conv2d(128, 16, 1),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False),
        )
        self.head = nn.Conv2d(16, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine, coarse = self.encoder(x)
        s1, s2 = self.img_size // 4, self.img_size // 16
        y = self.up_fine(tokens_to_map(fine[:, 1:], s1, s1)) + self.up_coarse(tokens_to_map(coarse[:, 1:], s2, s2))
        return self.head(self.pred(y))


# built and counted, never run ("prefix.": every parameter under the module)
UNUSED_MODULES = ["encoder.block.unused_blocks."]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="HiFormer",
        ubench_id=65,
        year=2023,
        paper="HiFormer: Hierarchical Multi-scale Representations Using Transformers for Medical "
        "Image Segmentation",
        deep_supervision=False,
        ref_params_m=25.510955,
        ref_source="U-Bench models/Hybrid/HiFormer/HiFormer.py (hiformer(num_classes=1), HiFormer-B "
        "config, img_size=224), counted from the file (ResNet-50 trunk counted from torchvision's "
        "layout)",
        ref_input_size=224,
        input_sizes=(224,),
        notes="HiFormer-B; ResNet-50 untrained (U-Bench loads ImageNet weights, and Swin-T weights "
        "for the patch-merging layers); the multi-scale block's discarded ViT blocks are kept unused",
        extra={"unused_params": UNUSED_MODULES},
    )
)
def hiformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """HiFormer-B as U-Bench benchmarks it (224x224)."""
    return HiFormer(in_channels=in_channels, num_classes=num_classes)
