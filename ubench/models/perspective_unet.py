"""Perspective+ Unet: bi-path residual encoder, efficient non-local transformer, cross-scale integrator.

Paper: Hu, Chen, Pan, Zeng, Yang, "Perspective+ Unet: Enhancing Segmentation with Bi-Path Fusion
and Efficient Non-Local Attention for Superior Receptive Fields", arXiv:2406.14052, 2024.

Configuration: U-Bench's ``perspective_unet`` (repo FengheTan9/U-Bench,
models/CNN/Perspective_Unet/Perspective_Unet.py; models/__init__.py registers it as
``Perspective_Unet`` and ``build_model`` calls ``perspective_unet(input_channel=3, num_classes=1)``,
which builds ``PUnet`` with ENLTB, the integrator and the dilated path all on):

- CNN encoder: five bi-path residual blocks of widths 64, 128, 256, 512, 1024 with 2x2 max-pooling
  between them. Each block runs two paths from the input, a 1x1 conv then a plain residual block
  (two 3x3 conv + BN, identity shortcut) and a 1x1 conv then the same with dilation 2, and fuses
  their concatenation with a 1x1 conv + BN + ReLU.
- ENLTB encoder over the three deepest CNN maps (256 @ H/4, 512 @ H/8, 1024 @ H/16): two efficient
  non-local blocks per level (pre-norm; 1x1 convs give L2-normalised query/key maps and a value map,
  Performer-style positive random features through a fixed orthogonal dim x dim projection and
  linear attention; then an MLP x4), stochastic depth, MLP and attention dropout 0.1. Levels 2 and
  3 take the CNN map concatenated with the previous level's output downsampled by a 2x2/2 conv +
  BN + ReLU, reduced by a 1x1 conv.
- Spatial cross-scale integrator: the three ENLTB outputs projected to 256 by 1x1 convs, flattened
  and concatenated (64^2 + 32^2 + 16^2 tokens), six post-norm transformer encoder layers (8 heads,
  FFN 2048, ReLU, dropout 0.1) and a LayerNorm, split back and projected to their widths by 1x1
  convs. Each is concatenated with its CNN map and fused by a 1x1 conv.
- Decoder: two 3x3 conv + BN + ReLU (no bias) from 1024 to 512 at H/16, three steps of bilinear x2
  (align_corners=True), concatenation [upsampled, skip] and two such convs (to 256, 128, 64), a
  final bilinear x2 and two convs at 64, then a 3x3 conv to the classes. The first CNN map (64 at
  full resolution) is never used as a skip.

Quirks of U-Bench's code kept here (recorded in ``notes``): the integrator's
``nn.MultiheadAttention`` gets (B, N, C) tokens without ``batch_first``, so it attends across the
samples of the batch at each token position, not across positions (one sample: softmax over one
key, the layer reduces to its value and output projections); the token grids are hard-coded for
256x256 inputs. U-Bench hard-codes 3 input channels (a 1-channel input is repeated); here
``in_channels`` sizes the first 1x1 convs. Initialisation is torch's default everywhere (U-Bench
has none of its own); the random-feature projections are drawn at build time and kept as buffers.
Parameters at 3 in / 1 class: 112,655,233 (counted by instantiating U-Bench's module).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import Mlp, map_to_tokens, stochastic_depth, tokens_to_map
from ubench.models.ops.conv_blocks import contract, conv_bn_relu
from ubench.models.ops.resnet import BasicBlock
from ubench.models.registry import ModelInfo, register_model

CNN_WIDTHS = (64, 128, 256, 512, 1024)
ENL_LEVELS = 3  # the deepest CNN maps that ENLTB and the integrator refine
ENL_DEPTH = 2
INTEGRATOR_DIM, INTEGRATOR_HEADS, INTEGRATOR_DEPTH, INTEGRATOR_FFN = 256, 8, 6, 2048
DROP = 0.1
INPUT_SIZE = 256


class DilatedBasicBlock(nn.Module):
    """Two dilated 3x3 conv + BN (no bias), identity shortcut, ReLU after the sum."""

    def __init__(self, ch: int, dilation: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + x)


class BiPathBlock(nn.Module):
    """A local path (plain residual block) and a wide one (dilated residual block) from the same
    input, their concatenation fused by a 1x1 conv + BN + ReLU."""

    def __init__(self, in_ch: int, width: int):
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(in_ch, width, 1), BasicBlock(width, width))
        self.wide = nn.Sequential(nn.Conv2d(in_ch, width, 1), DilatedBasicBlock(width))
        self.fuse = nn.Sequential(*conv_bn_relu(2 * width, width, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.local(x), self.wide(x)], dim=1))


def orthogonal_features(dim: int) -> torch.Tensor:
    """A (dim, dim) Gaussian orthogonal random-feature matrix: the rows of a random orthogonal
    matrix (QR of a Gaussian), each scaled by the norm of a Gaussian vector (Performer's FAVOR+)."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim))
    scale = torch.randn(dim, dim).norm(dim=1)
    return scale[:, None] * q.t()


class RandomFeatureAttention(nn.Module):
    """Linear-complexity attention: queries and keys through positive random features
    ``exp(x P^T - |x|^2 / 2)`` (a softmax-kernel estimate), then ``phi(q) (phi(k)^T v)``
    normalised by ``phi(q) . sum phi(k)``; one head over the full width."""

    def __init__(self, dim: int, attn_drop: float = DROP):
        super().__init__()
        self.register_buffer("projection", orthogonal_features(dim))
        self.drop = nn.Dropout(attn_drop)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        proj = self.projection.to(x.dtype)
        scale = proj.shape[0] ** -0.5
        return scale * (torch.exp(x @ proj.t() - x.square().sum(-1, keepdim=True) / 2) + 1e-4)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k = self._features(q), self._features(k)
        context = k.transpose(1, 2) @ v  # (B, features, C)
        norm = q @ k.sum(dim=1, keepdim=True).transpose(1, 2)  # (B, N, 1)
        return self.drop((q @ context) / norm)


class ENLBlock(nn.Module):
    """Efficient non-local transformer block on a (B, C, H, W) map: LayerNorm, 1x1-conv query/key
    (L2-normalised over channels) and value, random-feature linear attention, residual; then
    LayerNorm + MLP x4, residual. Both residual branches carry stochastic depth."""

    def __init__(self, dim: int, drop_path: float = DROP, drop: float = DROP, mlp_ratio: int = 4):
        super().__init__()
        self.query = nn.Conv2d(dim, dim, 1)
        self.key = nn.Conv2d(dim, dim, 1)
        self.value = nn.Conv2d(dim, dim, 1)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RandomFeatureAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio * dim, drop=drop)
        self.drop_path = stochastic_depth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = map_to_tokens(x)
        y = tokens_to_map(self.norm1(tokens), h, w)
        q = map_to_tokens(F.normalize(self.query(y), dim=1, eps=5e-5))
        k = map_to_tokens(F.normalize(self.key(y), dim=1, eps=5e-5))
        tokens = tokens + self.drop_path(self.attn(q, k, map_to_tokens(self.value(y))))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens_to_map(tokens, h, w)


class ENLEncoder(nn.Module):
    """ENLTB stages over the deepest CNN maps; each later level also takes the previous level's
    output, downsampled by a 2x2/2 conv + BN + ReLU, and a 1x1 conv merges the two."""

    def __init__(self, widths, depth: int = ENL_DEPTH):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(*(ENLBlock(w) for _ in range(depth))) for w in widths)
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(a, b, 2, stride=2, bias=False), nn.BatchNorm2d(b), nn.ReLU()
            )
            for a, b in zip(widths[:-1], widths[1:])
        )
        self.merge = nn.ModuleList(nn.Conv2d(2 * w, w, 1) for w in widths[1:])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = [self.stages[0](feats[0])]
        for feat, stage, down, merge in zip(feats[1:], self.stages[1:], self.down, self.merge):
            outs.append(stage(merge(torch.cat([feat, down(outs[-1])], dim=1))))
        return outs


class CrossScaleIntegrator(nn.Module):
    """All levels' tokens, projected to one width, through one post-norm transformer, then split
    and projected back. The attention reads (B, N, C) as (sequence, batch, C), as U-Bench's does:
    it mixes the samples of a batch at each position (see the module docstring)."""

    def __init__(self, widths, dim: int = INTEGRATOR_DIM, heads: int = INTEGRATOR_HEADS,
                 depth: int = INTEGRATOR_DEPTH, ffn: int = INTEGRATOR_FFN):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(w, dim, 1) for w in widths)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ffn, dropout=DROP) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.reproj = nn.ModuleList(nn.Conv2d(dim, w, 1) for w in widths)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        shapes = [f.shape[-2:] for f in feats]
        tokens = torch.cat([map_to_tokens(p(f)) for p, f in zip(self.proj, feats)], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)  # batch_first=False: dim 0 (the batch) is the sequence
        parts = self.norm(tokens).split([h * w for h, w in shapes], dim=1)
        return [r(tokens_to_map(t, h, w)) for r, t, (h, w) in zip(self.reproj, parts, shapes)]


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """(3x3 conv without bias + BN + ReLU) x 2."""
    return nn.Sequential(*conv_bn_relu(in_ch, out_ch, bias=False), *conv_bn_relu(out_ch, out_ch, bias=False))


class PerspectiveUNet(nn.Module):
    """Bi-path CNN encoder; ENLTB + cross-scale integrator over its three deepest maps, fused back
    into those skips; a bilinear-upsampling decoder over the four deepest skips."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=CNN_WIDTHS):
        super().__init__()
        ins = (in_channels,) + tuple(widths[:-1])
        self.cnn = nn.ModuleList(BiPathBlock(i, w) for i, w in zip(ins, widths))
        self.pool = nn.MaxPool2d(2)
        deep = widths[-ENL_LEVELS:]
        self.enl = ENLEncoder(deep)
        self.integrator = CrossScaleIntegrator(deep)
        self.fuse = nn.ModuleList(nn.Conv2d(2 * w, w, 1) for w in deep)
        self.bottom = double_conv(widths[-1], widths[-2])
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.decoder = nn.ModuleList(double_conv(2 * widths[i], widths[i - 1]) for i in range(len(widths) - 2, 0, -1))
        self.last = double_conv(widths[0], widths[0])
        self.head = nn.Conv2d(widths[0], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = contract(x, self.cnn, self.pool)
        deep = feats[-ENL_LEVELS:]
        glob = self.integrator(self.enl(deep))
        skips = feats[1:-ENL_LEVELS] + [f(torch.cat([g, c], dim=1)) for f, g, c in zip(self.fuse, glob, deep)]
        x = self.bottom(skips.pop())
        for step in self.decoder:
            x = step(torch.cat([self.up(x), skips.pop()], dim=1))
        return self.head(self.last(self.up(x)))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="Perspective_Unet",
        ubench_id=28,
        year=2024,
        paper="Perspective+ Unet: Enhancing Segmentation with Bi-Path Fusion and Efficient Non-Local "
        "Attention for Superior Receptive Fields",
        deep_supervision=False,
        ref_params_m=112.655233,
        ref_source="U-Bench models/CNN/Perspective_Unet/Perspective_Unet.py "
        "(perspective_unet(input_channel=3, num_classes=1)), counted by instantiating it",
        ref_input_size=INPUT_SIZE,
        input_sizes=(INPUT_SIZE,),
        notes="as U-Bench's code: the cross-scale integrator's nn.MultiheadAttention is fed (B, N, C) "
        "without batch_first, so it attends across the samples of a batch at each position (outputs "
        "depend on the other samples in the batch; at batch 1 it reduces to value + output "
        "projections); token grids hard-coded for 256x256; the full-resolution CNN map is never a "
        "skip; U-Bench hard-codes 3 input channels (repeats 1-channel input), here in_channels sizes "
        "the first convs; random-feature projections are fixed buffers drawn at build time",
    )
)
def perspective_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Perspective+ Unet as U-Bench benchmarks it (256x256, ENLTB + integrator + dilated path)."""
    return PerspectiveUNet(in_channels=in_channels, num_classes=num_classes)
