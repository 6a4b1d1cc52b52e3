"""ConvFormer: a SETR-style segmenter whose transformer is built from CNN-style layers.

Paper: Lin, Yan, Deng, Zheng, Yu, "ConvFormer: Plug-and-Play CNN-Style Transformers for Improving
Medical Image Segmentation", MICCAI 2023 (arXiv 2309.05674).

Configuration: U-Bench's ``ConvFormer`` (repo FengheTan9/U-Bench, models/Hybrid/ConvFormer/
ConvFormer.py -> SETR.py ``Setr_ConvFormer(n_channels=input_channel, n_classes=num_classes,
imgsize=256)`` with its defaults: patch_num 32, dim 512, depth 12, heads 8, dim_head 64, mlp_dim
2048; the convolutional tokenizer is components/transformer2d_parts.py ``CNNEncoder2``).

Architecture, all on 2D maps (no token sequence, no LayerNorm, no positional embedding):

- tokenizer: 3x3 conv + BN + ReLU to 64 channels, then three times 2x2 max-pool and 3x3 conv + BN
  + ReLU (128, 256, 512 channels): a 512-channel map at 1/8 of the input (32x32 at 256x256);
- 12 ConvFormer layers, each ``x + CSA(x)`` then ``x + CFFN(x)``. CSA (CNN-style self-attention):
  q, k, v from one 3x3 convolution (no bias), 8 heads of 64; the attention matrix is the cosine
  similarity of q and k (smoothed by 1e-4) times a row-normalised Gaussian of the squared
  distance between token positions (in units of the grid side), with a learnable width per head,
  sigma = 0.003 + 0.397 * sigmoid(theta); no softmax; then a 1x1 conv + BN + ReLU. CFFN: 1x1
  conv + BN + ReLU to 2048 and back to 512, both without bias;
- decoder: 3x3 conv + BN + ReLU to 128, bilinear x2 (align_corners), 3x3 conv + BN + ReLU,
  bilinear x2, a 1x1 conv to the classes, bilinear x2 on the logits.

Parameters at 3 in / 1 class: 115,609,889 (all trainable), counted by instantiating U-Bench's
module; ours is the same, and the same seed gives the same initial weights as U-Bench's module. No
pretrained weights: U-Bench trains it from scratch.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256  # U-Bench's factory passes imgsize=256; the distance prior is sized for it
STRIDE = 8  # three max-pools in the tokenizer
GRID = IMG_SIZE // STRIDE  # 32x32 tokens
STEM_WIDTHS = (64, 128, 256)
DIM = 512
DEPTH = 12
HEADS = 8
HEAD_DIM = 64
FFN_DIM = 4 * DIM
DECODER_DIM = DIM // 4
SIGMA_MIN, SIGMA_MAX = 0.003, 0.4  # range of the per-head Gaussian width
COS_EPS = 1e-4  # smoothing of the norms in the cosine similarity


def grid_sq_distances(side: int) -> torch.Tensor:
    """(side**2, side**2) squared distances between the cells of a side x side grid (row-major),
    each offset measured in units of ``side``."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    cells = torch.stack([ys.flatten(), xs.flatten()], dim=-1)
    offsets = (cells[:, None, :] - cells[None, :, :]).float() / side
    return offsets.square().sum(-1)


class CNNStyleAttention(nn.Module):
    """CSA: cosine-similarity attention over a 2D map, weighted by a learnable Gaussian distance
    prior per head (no softmax), with convolutional q/k/v and output projection."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.qkv = nn.Conv2d(dim, 3 * inner, 3, padding=1, bias=False)
        self.width_logit = nn.Parameter(torch.randn(heads))  # theta of sigma = f(sigmoid(theta))
        self.proj = nn.Sequential(*conv_bn_relu(inner, dim, kernel_size=1, bias=False))

    def distance_prior(self, sq_dist: torch.Tensor) -> torch.Tensor:
        """(heads, N, N) Gaussian of the squared token distances, each row summing to 1."""
        sigma = torch.sigmoid(self.width_logit) * (SIGMA_MAX - SIGMA_MIN) + SIGMA_MIN
        sharpness = 1 / (2 * sigma.square())
        prior = torch.exp(-sharpness[:, None, None] * sq_dist[None])
        return prior / prior.sum(-1, keepdim=True)

    def forward(self, x: torch.Tensor, sq_dist: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        q, k, v = (rearrange(t, "b (g d) h w -> b g (h w) d", g=self.heads) for t in self.qkv(x).chunk(3, dim=1))
        q_norm = (q.square().sum(-1) + COS_EPS).sqrt()
        k_norm = (k.square().sum(-1) + COS_EPS).sqrt()
        cosine = (q @ k.transpose(-1, -2)) / (q_norm[..., :, None] * k_norm[..., None, :] + COS_EPS)
        out = (cosine * self.distance_prior(sq_dist)) @ v
        return self.proj(rearrange(out, "b g (h w) d -> b (g d) h w", h=h))


class ConvFormerLayer(nn.Module):
    """One ConvFormer layer: residual CSA, then a residual convolutional feed-forward (CFFN)."""

    def __init__(self, dim: int, heads: int, head_dim: int, ffn_dim: int):
        super().__init__()
        self.attn = CNNStyleAttention(dim, heads, head_dim)
        self.ffn = nn.Sequential(
            *conv_bn_relu(dim, ffn_dim, kernel_size=1, bias=False),
            *conv_bn_relu(ffn_dim, dim, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor, sq_dist: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x, sq_dist)
        return x + self.ffn(x)


def _upsample() -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)


class ConvFormer(nn.Module):
    """Convolutional tokenizer (stride 8), ConvFormer layers, progressive-upsampling decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        widths = (*STEM_WIDTHS, DIM)
        stages = [nn.Sequential(*conv_bn_relu(in_channels, widths[0], bias=False))]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(c_in, c_out, bias=False)))
        self.tokenizer = nn.Sequential(*stages)
        self.layers = nn.ModuleList(ConvFormerLayer(DIM, HEADS, HEAD_DIM, FFN_DIM) for _ in range(DEPTH))
        self.decoder = nn.Sequential(
            *conv_bn_relu(DIM, DECODER_DIM, bias=False),
            _upsample(),
            *conv_bn_relu(DECODER_DIM, DECODER_DIM, bias=False),
            _upsample(),
            nn.Conv2d(DECODER_DIM, num_classes, 1),
            _upsample(),
        )
        # the fixed 32x32 token grid's squared distances, shared by every layer (not a weight)
        self.register_buffer("sq_dist", grid_sq_distances(GRID), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokenizer(x)
        for layer in self.layers:
            x = layer(x, self.sq_dist)
        return self.decoder(x)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="ConvFormer",
        ubench_id=59,
        year=2023,
        paper="ConvFormer: Plug-and-Play CNN-Style Transformers for Improving Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=115.609889,
        ref_source="U-Bench models/Hybrid/ConvFormer/SETR.py (Setr_ConvFormer, imgsize=256, defaults "
        "dim 512, depth 12, heads 8, dim_head 64, mlp_dim 2048), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        size_multiple=STRIDE,
        notes="Fixed 256x256 input: U-Bench's factory hard-codes imgsize=256 and each attention layer "
        "multiplies its 1024x1024 attention matrix by a distance table built once for a 32x32 token "
        "grid (256 / 8), so any other size fails in U-Bench (here the registry refuses it). U-Bench "
        "builds that table with .cuda() in the constructor (its module cannot even be built without "
        "a GPU) and keeps it as a plain attribute, one copy per layer; here it is one non-persistent "
        "buffer shared by the 12 layers (not in the state_dict, as in U-Bench). Built from U-Bench's "
        "code: the ConvFormer wrapper is its SETR variant (conv tokenizer, 12 CSA/CFFN layers on the "
        "1/8 map, SETR-style progressive-upsampling head without skips); the attention has no "
        "softmax (cosine similarity times the row-normalised Gaussian prior) and sigma is limited to "
        "[0.003, 0.4]; no LayerNorm anywhere. dropout=0.1 and emb_dropout=0.1 are passed by "
        "Setr_ConvFormer but no layer uses them (no dropout at all); CNNEncoder2's patch size "
        "arguments are unused. The last bilinear x2 runs on the logits. input_channel goes straight "
        "to the first conv. Initialisation: PyTorch defaults, per-head width logits ~ N(0, 1), as in "
        "U-Bench (the same seed gives the same weights). With U-Bench's weights copied in, the output "
        "equals U-Bench's exactly (max |diff| 0, float32 and float64). Slow on CPU: ~50 s forward + "
        "backward for 2 images at 256 on one core.",
    )
)
def convformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """ConvFormer (SETR variant with CNN-style attention) at 256x256 as U-Bench benchmarks it."""
    return ConvFormer(in_channels=in_channels, num_classes=num_classes)
