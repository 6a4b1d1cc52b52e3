"""CENet (Context Enhancement Network): a PVTv2-B2 encoder, skip maps sharpened by differential
attention and feature edge amplification, and a decoder of multi-scale context blocks.

This is U-Bench's "CENet", the PVT-v2 hybrid of Bozorgpour et al. 2025. ubench's ``cenet`` is a
different model: CE-Net (Gu et al., "CE-Net: Context Encoder Network for 2D Medical Image
Segmentation", IEEE TMI 2019), U-Bench's ``CE_Net``.

Paper: Bozorgpour, Ghorbani Kolahi, Azad, Hacihaliloglu, Merhof, "CENet: Context Enhancement
Network for Medical Image Segmentation", arXiv 2505.18423, 2025.

Configuration: U-Bench's ``CENet`` (repo FengheTan9/U-Bench, models/Hybrid/CENet/CENet.py with
encoder.py, pvtv2.py, decoders.py, out.py, modules/{cfam,dseb,nlb,blocks,unet,
multihead_diffattn,rms_norm}.py; models/__init__.py builds ``cenet(input_channel=3,
num_classes=1)``, i.e. ``CENet(input_channels=3, num_classes=1)`` with its defaults:
pvt_v2_b2, scale factors (0.8, 0.4), two differential-attention heads per skip, skips
concatenated, EUCB up-sampling, output merge by concatenation). model_id.json (id 106) sets no
``deeps_supervision``: one output.
- Encoder: PVTv2-B2 (dims 64/128/320/512, depths 3/4/6/3, strides 4..32, stochastic depth up to
  0.1), untrained here; U-Bench always loads ImageNet weights into it (see the record below).
- Decoder, from the stride-32 map: a context block (CFAM) at 512; then three times: EUCB up-sampling
  (nearest x2, depth-wise 3x3 + BN + LeakyReLU(0.2), 1x1 conv) to the next width, a skip enhancer
  (DSEB) of the encoder map at that level, and a context block on the sum.
- CFAM (MetaFormer-style, BN pre-norms, layer scales 1e-6): a token mixer (style channel gate from
  per-channel max/mean/std; SiLU gate x SiLU of a multi-order context branch: the channels split
  5:5:5:1 into three dilated separable convs and a 7x7-pooled image branch; 1x1 projection; plus
  its input; a non-local block mixed in with a learnable weight) and a conv FFN (1x1, depth-wise
  3x3, GELU, spatial gate from channel max/mean/std, 1x1).
- DSEB: decoder and skip maps concatenated (2C); the sum of [that map plus its amplified edges
  (|difference| of the map's residuals against its x0.8 and x0.4 bilinear round trips, per-channel
  weight)], the map itself, and the map times a differential-attention map; a 1x1 conv to C; plus
  the skip.
- Head: the stride-4 decoder map up-sampled by EUCB to 32 channels, the input through a 5x5
  residual block to 32 channels + 2x2 max-pool, scaled per channel; both concatenated, a 3x3
  residual block, a 1x1 conv to the classes, bilinear x2.
Input size: 256x256 only (the skip enhancers' reshapes are built for 16/32/64-pixel maps).
Parameters at 3 in / 1 class: 33,371,141 (PVTv2-B2 without head 24,849,856), counted by
instantiating U-Bench's module (weight download disabled).
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.pvt import PVTv2Encoder, pvt_v2_record
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
EDGE_SCALES = (0.8, 0.4)
SKIP_HEADS = 2
SKIP_DEPTHS = (4, 3, 2)  # the differential attention's lambda_init depth, coarsest skip first
CONTEXT_RATES = ((1, 2, 2), (1, 2, 3), (1, 2, 4), (2, 3, 5))  # dilations per decoder level, 512 -> 64
CONTEXT_SPLIT = (5, 5, 5, 1)  # channel shares of the three dilated branches and the pooled one
POOL_GRID = 7
LAYER_SCALE = 1e-6
FFN_RATIO = 4
EUCB_SLOPE = 0.2
HEAD_SLOPE = 0.01


def init_normal_002(m: nn.Module) -> None:
    """EUCB / separable-conv init: conv weights normal(0, 0.02), zero biases, unit BatchNorms."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def init_trunc_normal_002(m: nn.Module) -> None:
    """Head residual blocks' init: conv weights truncated normal (std 0.02), zero biases."""
    if isinstance(m, nn.Conv2d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class EfficientUpConv(nn.Module):
    """EUCB: nearest x2, depth-wise k x k (no bias) + BN + LeakyReLU(0.2), 1x1 conv (bias) to
    ``cout``. (The reference's channel shuffle uses one group per channel, an identity: left out.)"""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.smooth = nn.Sequential(
            nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.LeakyReLU(EUCB_SLOPE, inplace=True),
        )
        self.proj = nn.Conv2d(cin, cout, 1)
        self.apply(init_normal_002)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.smooth(F.interpolate(x, scale_factor=2, mode="nearest")))


# --- CFAM: context feature attention module --------------------------------------------------


class StyleChannelGate(nn.Module):
    """Channel gate from each channel's (max, mean, population std): a per-channel 3-tap conv to 3
    hidden units, ReLU, per-channel sum back to one, BN (skipped for a batch of one, as in the
    reference), sigmoid."""

    def __init__(self, c: int, hidden: int = 3):
        super().__init__()
        self.fc1 = nn.Conv1d(c, hidden * c, 3, groups=c, bias=False)
        self.fc2 = nn.Conv1d(hidden * c, c, 1, groups=c, bias=False)
        self.bn = nn.BatchNorm1d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        stats = torch.stack([x.flatten(2).amax(dim=2), x.mean(dim=(2, 3)), x.std(dim=(2, 3), unbiased=False)], dim=-1)
        z = self.fc2(F.relu(self.fc1(stats))).view(b, c)
        if b > 1:
            z = self.bn(z)
        return x * torch.sigmoid(z)[:, :, None, None]


class StyleSpatialGate(nn.Module):
    """Pixel gate from the channel max, mean and (sample) std: 1x1 plus 3x3 conv to one map, GELU,
    BN, sigmoid."""

    def __init__(self):
        super().__init__()
        self.pwc = nn.Conv2d(3, 1, 1, bias=False)
        self.dwc = nn.Conv2d(3, 1, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True), x.std(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(F.gelu(self.pwc(stats) + self.dwc(stats))))


class DilatedSeparableConv(nn.Sequential):
    """Depth-wise dilated 3x3 + BN + ReLU, point-wise 1x1 + BN + ReLU, no biases."""

    def __init__(self, c: int, rate: int):
        super().__init__(
            nn.Conv2d(c, c, 3, padding=rate, dilation=rate, groups=c, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.apply(init_normal_002)


class MultiOrderContext(nn.Module):
    """The channels split 5:5:5:1; the first three parts through dilated separable convs, the last
    average-pooled to 7x7, 1x1 conv + BN + LeakyReLU, stretched x7 (align_corners=True) and resized
    back; concatenated and projected by a 1x1 conv."""

    def __init__(self, c: int, rates: tuple[int, ...]):
        super().__init__()
        total = sum(CONTEXT_SPLIT)
        self.widths = [int(share / total * c) for share in CONTEXT_SPLIT]
        self.branches = nn.ModuleList(DilatedSeparableConv(w, r) for w, r in zip(self.widths, rates))
        pooled = self.widths[-1]
        self.branches.append(nn.Sequential(
            nn.AdaptiveAvgPool2d(POOL_GRID),
            nn.Conv2d(pooled, pooled, 1, bias=False),
            nn.BatchNorm2d(pooled),
            nn.LeakyReLU(inplace=True),
            nn.Upsample(scale_factor=POOL_GRID, mode="bilinear", align_corners=True),
        ))
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = []
        for branch, part in zip(self.branches, torch.split(x, self.widths, dim=1)):
            y = branch(part)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            outs.append(y)
        return self.proj(torch.cat(outs, dim=1))


class NonLocalMix(nn.Module):
    """Embedded-Gaussian non-local block over all pixels (1x1 theta/phi/g, softmax scaled by
    C^-0.5, 1x1 out conv + BN), blended with its input as (1 - w) x + w y, w learnable (0.5)."""

    def __init__(self, c: int):
        super().__init__()
        self.theta = nn.Conv2d(c, c, 1)
        self.phi = nn.Conv2d(c, c, 1)
        self.g = nn.Conv2d(c, c, 1)
        self.out = nn.Conv2d(c, c, 1)
        self.bn = nn.BatchNorm2d(c)
        self.w = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (conv(x).flatten(2).transpose(1, 2) for conv in (self.theta, self.phi, self.g))
        y = F.scaled_dot_product_attention(q, k, v)  # default scale: C^-0.5
        y = self.bn(self.out(y.transpose(1, 2).reshape(b, c, h, w)))
        return (1 - self.w) * x + self.w * y


class ContextMixer(nn.Module):
    """CFAM's token mixer: channel gate; 1x1 proj of SiLU(1x1 gate) x SiLU(multi-order context);
    plus the mixer's input; non-local blend."""

    def __init__(self, c: int, rates: tuple[int, ...]):
        super().__init__()
        self.gate = nn.Conv2d(c, c, 1)
        self.context = MultiOrderContext(c, rates)
        self.proj = nn.Conv2d(c, c, 1)
        self.nonlocal_mix = NonLocalMix(c)
        self.style = StyleChannelGate(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.style(x)
        y = self.proj(F.silu(self.gate(y)) * F.silu(self.context(y)))
        return self.nonlocal_mix(y + x)


class ConvFFN(nn.Module):
    """1x1 expansion, depth-wise 3x3, GELU, spatial style gate, 1x1 back (all with biases)."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, c, 1)
        self.gate = StyleSpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.gate(F.gelu(self.dwconv(self.fc1(x)))))


class ContextBlock(nn.Module):
    """CFAM: x + s1 * mixer(BN(x)), then x + s2 * FFN(BN(x)), layer scales s initialised to 1e-6."""

    def __init__(self, c: int, rates: tuple[int, ...]):
        super().__init__()
        self.scale1 = nn.Parameter(torch.full((1, c, 1, 1), LAYER_SCALE))
        self.scale2 = nn.Parameter(torch.full((1, c, 1, 1), LAYER_SCALE))
        self.norm1 = nn.BatchNorm2d(c)
        self.mixer = ContextMixer(c, rates)
        self.norm2 = nn.BatchNorm2d(c)
        self.ffn = ConvFFN(c, FFN_RATIO * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.mixer(self.norm1(x))
        return x + self.scale2 * self.ffn(self.norm2(x))


# --- DSEB: dual selective enhancement of the skips -------------------------------------------


class EdgeAmplifier(nn.Module):
    """x plus w times its edges: the residual of x against a bilinear down-and-up round trip at each
    scale, and the mean over scale pairs of |residual_i - residual_j| (one pair here)."""

    def __init__(self, c: int, scales: tuple[float, ...] = EDGE_SCALES):
        super().__init__()
        self.scales = scales
        self.w = nn.Parameter(torch.randn(1, c, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        residuals = []
        for s in self.scales:
            low = F.interpolate(x, scale_factor=s, mode="bilinear")
            residuals.append((x - F.interpolate(low, size=size, mode="bilinear")).abs())
        pairs = list(combinations(residuals, 2))
        edge = sum((a - b).abs() for a, b in pairs) / len(pairs)
        return x + self.w * edge


class DifferentialAttention(nn.Module):
    """Multi-head differential attention (Ye et al., "Differential Transformer", 2024), bias-free
    projections, no mask: each head is softmax(q1 k1) v - lambda softmax(q2 k2) v with
    lambda = exp(lq1.lk1) - exp(lq2.lk2) + lambda_init(depth), RMS-normalised (no affine) and scaled
    by 1 - lambda_init."""

    def __init__(self, dim: int, heads: int, depth: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads // 2
        self.lambda_init = 0.8 - 0.6 * math.exp(-0.3 * depth)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.randn(self.head_dim) * 0.1) for _ in range(4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        d = self.head_dim
        # query/key head 2i and 2i + 1 form the pair of attention head i; values are 2d wide
        q = self.q_proj(x).view(b, n, self.heads, 2, d).permute(3, 0, 2, 1, 4)
        k = self.k_proj(x).view(b, n, self.heads, 2, d).permute(3, 0, 2, 1, 4)
        v = self.v_proj(x).view(b, n, self.heads, 2 * d).transpose(1, 2)
        lam = (torch.exp(torch.sum(self.lambda_q1 * self.lambda_k1))
               - torch.exp(torch.sum(self.lambda_q2 * self.lambda_k2)) + self.lambda_init)
        y = F.scaled_dot_product_attention(q[0], k[0], v) - lam * F.scaled_dot_product_attention(q[1], k[1], v)
        y = F.rms_norm(y, (2 * d,), eps=1e-5) * (1 - self.lambda_init)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, self.heads * 2 * d))


class SkipEnhancer(nn.Module):
    """DSEB: y = [decoder map, skip]; 1x1(edges(y) + y + attention_gate(y)) + skip."""

    def __init__(self, c: int, heads: int, depth: int):
        super().__init__()
        self.edges = EdgeAmplifier(2 * c)
        self.attn = DifferentialAttention(2 * c, heads, depth)
        self.mixer = nn.Conv2d(2 * c, c, 1, bias=False)

    def attention_gate(self, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.shape
        # U-Bench reads each sample's (C, H, W) memory as H*W rows of C numbers (a reshape, not a
        # transpose: each "token" mixes channels and pixels) and reads the result back the same way
        return self.attn(y.reshape(b, h * w, c)).reshape(b, c, h, w) * y

    def forward(self, skip: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        y = torch.cat([dec, skip], dim=1)
        return self.mixer(self.edges(y) + y + self.attention_gate(y)) + skip


class Decoder(nn.Module):
    """Context block on the deepest map, then per level: EUCB up, skip enhancer, context block."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.context = nn.ModuleList(ContextBlock(c, r) for c, r in zip(dims, CONTEXT_RATES))
        self.ups = nn.ModuleList(EfficientUpConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.skips = nn.ModuleList(SkipEnhancer(c, SKIP_HEADS, d) for c, d in zip(dims[1:], SKIP_DEPTHS))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = self.context[0](feats[-1])
        for i, skip in enumerate(reversed(feats[:-1])):
            y = self.ups[i](y)
            y = self.context[i + 1](y + self.skips[i](skip, y))
        return y


# --- output head ------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """k x k conv + BN + LeakyReLU(0.01), k x k conv + BN, plus the input (1x1 conv + BN when the
    width changes), LeakyReLU; bias-free convs (MONAI's / nnU-Net's UnetResBlock)."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, k, padding=k // 2, bias=False)
        self.norm1 = nn.BatchNorm2d(cout)
        self.norm2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if cin != cout else nn.Identity()
        )
        self.apply(init_trunc_normal_002)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.norm1(self.conv1(x)), HEAD_SLOPE)
        return F.leaky_relu(self.norm2(self.conv2(y)) + self.shortcut(x), HEAD_SLOPE)


class OutHead(nn.Module):
    """The stride-4 decoder map up by EUCB to c/2, the image through a 5x5 residual block to c/2
    + 2x2 max-pool, scaled per channel (w ~ N(0.75, 1)); concatenated, 3x3 residual block, 1x1 conv
    to the classes, bilinear x2."""

    def __init__(self, c: int, in_channels: int, num_classes: int):
        super().__init__()
        half = c // 2
        self.image_scale = nn.Parameter(torch.randn(1, half, 1, 1) + 0.75)
        self.fuse = ResBlock(2 * half, 2 * half, 3)
        self.classifier = nn.Conv2d(2 * half, num_classes, 1)
        self.up = EfficientUpConv(c, half)
        self.image = ResBlock(in_channels, half, 5)
        init_trunc_normal_002(self.classifier)

    def forward(self, dec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        img = self.image_scale * F.max_pool2d(self.image(x), 2)
        y = self.classifier(self.fuse(torch.cat([self.up(dec), img], dim=1)))
        return F.interpolate(y, scale_factor=2, mode="bilinear")


class CENetPVT(nn.Module):
    """PVTv2-B2 -> CFAM/EUCB/DSEB decoder to stride 4 -> image-guided output head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = PVTv2Encoder(in_channels)
        dims = tuple(reversed(self.encoder.dims))  # 512, 320, 128, 64
        self.decoder = Decoder(dims)
        self.head = OutHead(dims[-1], in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)), x)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="CENet",
        ubench_id=106,
        year=2025,
        paper="CENet: Context Enhancement Network for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=33.371141,
        ref_source="U-Bench models/Hybrid/CENet/CENet.py (+ encoder.py, pvtv2.py, decoders.py, out.py, "
        "modules/): cenet(input_channel=3, num_classes=1), counted by instantiating it with its weight "
        "download disabled",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="U-Bench's 'CENet' (Bozorgpour et al. 2025, PVT-v2 hybrid), NOT ubench's `cenet` (CE-Net, "
        "Gu et al. 2019, U-Bench's CE_Net). PVTv2-B2 built untrained: U-Bench's get_encoder2d loads the "
        "ImageNet pvt_v2_b2.pth from HuggingFace FengheTan9/U-Stone whatever its `pretrain` argument (the "
        "factory passes enc_pretrain=False, never read). Fixed 256x256: the skip enhancers reshape their "
        "tokens with input_size 16/32/64 built in (OutHead's x_in_spatial/dec_in_spatial are unused). "
        "in_channels: U-Bench repeats a 1-channel input to 3 for the backbone (any other count than 1 "
        "or 3 crashes its 3-channel stem) and feeds the raw input to the head's image branch; here the "
        "stem takes in_channels (the loader sums its 3-channel kernel for 1 channel, the same result). "
        "Quirks kept as U-Bench's code builds them: the differential attention reads each (C, H, W) "
        "sample as H*W rows of C values (a view, not a transpose) and reads its output back the same "
        "way; MultiOrderDWConv overrides the configured channel split [1, 3, 4] with [5, 5, 5, 1]; the "
        "style channel gate skips its BatchNorm for a batch of one (train and eval); its std is the "
        "population std while the FFN's spatial gate uses the sample std; DSEB's edge branch adds y "
        "twice (FEA returns y + w*edge and DSEB adds y again); the Nonlocal block's "
        "zero_init_final_norm flag is stored but never applied (BN weight 1); EUCB's LeakyReLU slope is "
        "0.2, the head's residual blocks' 0.01. Left out as no-ops: EUCB's channel shuffle (one group "
        "per channel), the differential attention's nan_to_num on finite logits and its built-but-unused "
        "causal mask, dropout/drop-path 0 in the decoder, the tensorboard writer. Attention runs through "
        "scaled_dot_product_attention (the differential pair as two attentions on the shared values, "
        "the same linear combination).",
        extra={
            "pretrained": pvt_v2_record(
                "b2", "encoder.",
                "models/Hybrid/CENet/encoder.py get_encoder2d: torch.hub.load_state_dict_from_url("
                "'https://huggingface.co/FengheTan9/U-Stone/resolve/main/pvt_v2_b2.pth') filtered to the "
                "keys of pvtv2.pvt_v2_b2() (patch_embed{1-4}, block{1-4}, norm{1-4}; head dropped) and "
                "loaded into CENet.backbone, always (the pretrain flag is not read)",
                url="https://huggingface.co/FengheTan9/U-Stone/resolve/main/pvt_v2_b2.pth",
            ),
        },
    )
)
def cenet_pvt(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """U-Bench's CENet (PVTv2-B2 hybrid, Bozorgpour et al. 2025) as U-Bench benchmarks it."""
    return CENetPVT(in_channels=in_channels, num_classes=num_classes)
