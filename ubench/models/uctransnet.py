"""UCTransNet: a U-Net whose skip connections pass through a channel-wise transformer.

Paper: Wang, Cao, Wang, Zaiane, "UCTransNet: Rethinking the Skip Connections in U-Net from a
Channel-wise Perspective with Transformer", AAAI 2022.

Configuration: U-Bench's ``UCTransNet`` (repo FengheTan9/U-Bench, models/Hybrid/UCTransNet/
UCTransNet.py, module/CTrans.py, module/Config.py ``get_CTranS_config``), built by U-Bench with its
default ``img_size=256`` (the paper trains at 224). A U-Net encoder of base width 64 (one conv at
full resolution, then four max-pool + double-conv stages of widths 128, 256, 512, 512); the four
shallow skips (64, 128, 256, 512 channels) are patch-embedded with patch sizes 16, 8, 4, 2, so
every level becomes a 16x16 = 256-token sequence with a learned positional embedding (hence the
fixed 256x256 input). The Channel Transformer (CCT, 4 layers, 4 heads, MLP ratio 4) attends from
each level's channels (queries) to the channels of all levels concatenated (960 = keys/values),
with instance-normalised attention scores; the result is upsampled back, passed through a 1x1
conv + BN + ReLU and added to the skip. Each decoder step upsamples x2 (nearest), gates the skip
channels with Channel-wise Cross Attention (CCA, from pooled skip and pooled decoder features),
concatenates and applies a double conv. No deep supervision (U-Bench model_id.json).
Parameters at 3 in / 1 class: 66,488,257, counted by instantiating U-Bench's file.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
BASE = 64
PATCH_SIZES = (16, 8, 4, 2)
NUM_HEADS = 4
NUM_LAYERS = 4
EXPAND = 4


def _n_conv(in_ch: int, out_ch: int, n: int) -> nn.Sequential:
    """``n`` (3x3 conv + BN + ReLU) in a row."""
    layers = conv_bn_relu(in_ch, out_ch)
    for _ in range(n - 1):
        layers += conv_bn_relu(out_ch, out_ch)
    return nn.Sequential(*layers)


class ChannelEmbedding(nn.Module):
    """Non-overlapping patch conv (width kept) plus a learned positional embedding."""

    def __init__(self, channels: int, patch: int, grid: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, grid * grid, channels))
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(map_to_tokens(self.proj(x)) + self.pos)


class ChannelCrossAttention(nn.Module):
    """Each level's channels query the channels of all levels (CCT attention).

    Scores are (C_i x C_all) per head, instance-normalised over that matrix before the softmax;
    heads are averaged rather than concatenated, as in the reference.
    """

    def __init__(self, channels: tuple[int, ...], heads: int = NUM_HEADS):
        super().__init__()
        self.heads = heads
        self.kv_size = sum(channels)
        self.query = nn.ModuleList(nn.Linear(c, c * heads, bias=False) for c in channels)
        self.key = nn.Linear(self.kv_size, self.kv_size * heads, bias=False)
        self.value = nn.Linear(self.kv_size, self.kv_size * heads, bias=False)
        self.out = nn.ModuleList(nn.Linear(c, c, bias=False) for c in channels)
        self.attn_drop = nn.Dropout(0.1)
        self.proj_drop = nn.Dropout(0.1)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """(B, N, heads*D) -> (B, heads, N, D)."""
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, levels: list[torch.Tensor], joint: torch.Tensor) -> list[torch.Tensor]:
        k = self._split(self.key(joint))  # (B, h, N, KV)
        v = self._split(self.value(joint))  # (B, h, N, KV)
        outs = []
        for x, q_proj, o_proj in zip(levels, self.query, self.out):
            q = self._split(q_proj(x)).transpose(-1, -2)  # (B, h, C_i, N)
            scores = q @ k / math.sqrt(self.kv_size)  # (B, h, C_i, KV)
            probs = self.attn_drop(torch.softmax(F.instance_norm(scores), dim=-1))
            ctx = (probs @ v.transpose(-1, -2)).mean(dim=1)  # (B, C_i, N)
            outs.append(self.proj_drop(o_proj(ctx.transpose(1, 2))))
        return outs


class LevelMlp(nn.Module):
    """Per-level feed-forward with the reference's Xavier init (biases ~ N(0, 1e-6))."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class CCTBlock(nn.Module):
    """Pre-norm channel cross-attention and per-level MLP, each with a residual."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.attn_norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in channels)
        self.joint_norm = nn.LayerNorm(sum(channels), eps=1e-6)
        self.attn = ChannelCrossAttention(channels)
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in channels)
        self.ffns = nn.ModuleList(LevelMlp(c, c * EXPAND) for c in channels)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        joint = self.joint_norm(torch.cat(levels, dim=2))
        normed = [norm(x) for norm, x in zip(self.attn_norms, levels)]
        levels = [x + a for x, a in zip(levels, self.attn(normed, joint))]
        return [x + ffn(norm(x)) for x, norm, ffn in zip(levels, self.ffn_norms, self.ffns)]


class ChannelTransformer(nn.Module):
    """CCT on the four skips: embed, transform jointly, reconstruct, add back to each skip."""

    def __init__(self, channels: tuple[int, ...], img_size: int = IMG_SIZE):
        super().__init__()
        self.patches = PATCH_SIZES
        grids = [img_size // (2**i) // p for i, p in enumerate(PATCH_SIZES)]
        self.embed = nn.ModuleList(
            ChannelEmbedding(c, p, g) for c, p, g in zip(channels, PATCH_SIZES, grids)
        )
        self.blocks = nn.ModuleList(CCTBlock(channels) for _ in range(NUM_LAYERS))
        self.norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in channels)
        self.rebuild = nn.ModuleList(nn.Sequential(*conv_bn_relu(c, c, kernel_size=1)) for c in channels)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        tokens = [emb(s) for emb, s in zip(self.embed, skips)]
        for block in self.blocks:
            tokens = block(tokens)
        out = []
        for skip, t, norm, rebuild, p in zip(skips, tokens, self.norms, self.rebuild, self.patches):
            h, w = skip.shape[2] // p, skip.shape[3] // p
            grid = tokens_to_map(norm(t), h, w)
            out.append(skip + rebuild(F.interpolate(grid, scale_factor=p, mode="nearest")))
        return out


class ChannelCrossGate(nn.Module):
    """CCA: sigmoid gate on the skip's channels from pooled skip and decoder features."""

    def __init__(self, g_ch: int, x_ch: int):
        super().__init__()
        self.mlp_x = nn.Linear(x_ch, x_ch)
        self.mlp_g = nn.Linear(g_ch, x_ch)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        att = (self.mlp_x(x.mean(dim=(2, 3))) + self.mlp_g(g.mean(dim=(2, 3)))) / 2
        return F.relu(x * torch.sigmoid(att)[:, :, None, None])


class UpBlock(nn.Module):
    """Upsample x2, gate the skip with CCA, concatenate [skip, up], double conv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.gate = ChannelCrossGate(in_ch // 2, in_ch // 2)
        self.conv = _n_conv(in_ch, out_ch, 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(torch.cat([self.gate(up, skip), up], dim=1))


class UCTransNet(nn.Module):
    """U-Net (base 64) with the Channel Transformer replacing its plain skip connections."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base: int = BASE):
        super().__init__()
        c = base
        self.inc = nn.Sequential(*conv_bn_relu(in_channels, c))
        widths = [(c, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c), (8 * c, 8 * c)]
        self.down = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), _n_conv(i, o, 2)) for i, o in widths)
        self.cct = ChannelTransformer((c, 2 * c, 4 * c, 8 * c))
        self.up = nn.ModuleList(
            [UpBlock(16 * c, 4 * c), UpBlock(8 * c, 2 * c), UpBlock(4 * c, c), UpBlock(2 * c, c)]
        )
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.inc(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        skips = self.cct(feats[:4])
        x = feats[4]
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        return self.head(x)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="UCTransNet",
        ubench_id=7,
        year=2022,
        paper="UCTransNet: Rethinking the Skip Connections in U-Net from a Channel-wise "
        "Perspective with Transformer",
        deep_supervision=False,
        ref_params_m=66.488257,
        ref_source="U-Bench models/Hybrid/UCTransNet/UCTransNet.py (UCTransNet(input_channel=3, "
        "num_classes=1), img_size=256), counted by instantiating it",
        ref_input_size=256,
        input_sizes=(256,),
        notes="positional embeddings of the channel transformer are tied to 256x256 (U-Bench's "
        "img_size default; the paper used 224)",
    )
)
def uctransnet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UCTransNet as U-Bench benchmarks it (base 64, CCT 4 layers x 4 heads, 256x256)."""
    return UCTransNet(in_channels=in_channels, num_classes=num_classes)
