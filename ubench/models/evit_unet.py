"""EViT-UNet: an EfficientFormerV2-L encoder whose stages are mirrored into the decoder.

Paper: Li, Zhu, Dong, Dumitrascu, Wang, "EViT-UNet: U-Net Like Efficient Vision Transformer for
Medical Image Segmentation on Mobile and Edge Devices", ISBI 2025 (arXiv 2410.15036, 2024).

Configuration: U-Bench's ``EViT_UNet`` (repo FengheTan9/U-Bench, models/Hybrid/EViT_UNet/
EViT_UNet.py; models/__init__.py imports its ``evit_unet(num_classes, input_channel)``, which builds
``Eff_Unet(input_channel=..., num_classes=...)`` with every other default, then ``load_from``
copies the EfficientFormerV2-L ImageNet checkpoint into it; unet_model.py / unet_parts.py in that
folder hold a plain U-Net the factory never builds). Widths 40/80/192/384, depths 5/5/15/10 at
strides 4/8/16/32, GELU everywhere, stochastic depth up to 0.1, layer scale 1e-5, resolution 256:
- stem: two 3x3 stride-2 convs (in -> 20 -> 40), each + BN + GELU;
- a block is a residual conv-FFN (1x1 expand + BN + GELU, 3x3 depth-wise + BN + GELU, 1x1 + BN,
  per-channel layer scale), the last six blocks of the stride-16 and stride-32 stages first add a
  residual attention: 8 heads of 32-d queries/keys and 128-d values from 1x1 conv + BN, a learned
  relative-offset bias per head, "talking heads" 1x1 convs over the heads before and after the
  softmax, a depth-wise 3x3 conv + BN of the values added to the result, GELU, 1x1 conv + BN. At
  stride 16 it runs on a grid halved by a depth-wise stride-2 conv + BN and is upsampled back
  (bilinear);
- between encoder stages a 3x3 stride-2 conv + BN; the 192 -> 384 one adds a down-sampling
  attention (queries from a depth-wise stride-2 conv plus the stride-2 subsampled map, 16-d
  queries/keys, 64-d values, relative-offset bias, no talking heads);
- the four stage outputs, each through its own BN, are the skips; the decoder starts from the raw
  last stage output and mirrors the encoder: at each level concatenate the skip, 3x3 conv back to
  the level width, then a stage identical to the encoder's (same blocks, ratios, drop rates);
  between levels a 3x3 stride-2 transposed conv + BN, the two coarser ones plus an up-sampling
  attention (queries from a depth-wise transposed conv plus aligned bilinear x2, no bias table);
- head: two 3x3 stride-2 transposed convs (40 -> 20 -> 40), each + BN + GELU, 1x1 conv (no bias).
With more than one class, each skip first passes a channel gate (U-Bench's CCA: sigmoid of the
mean of two linear maps of the pooled skip and decoder map, times the skip, ReLU); with one class
the skip is concatenated as it is (U-Bench's branch on ``num_classes``).

U-Bench fills the stem, the encoder and, mirrored, the decoder stages from the EfficientFormerV2-L
ImageNet checkpoint; here the model is built untrained and ``extra["pretrained"]`` says how that
file maps (two records of the one file: encoder, decoder copy). Fixed input size 256x256: attention
grids and bias tables are built for it. Parameters at 3 in / 1 class: 55,209,900, all trainable
(counted by instantiating U-Bench's module), 386,032 of them in the channel gates that a 1-class
model never runs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import stochastic_depth, up2_aligned
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
WIDTHS = (40, 80, 192, 384)
DEPTHS = (5, 5, 15, 10)
MLP_RATIOS = (  # EfficientFormerV2-L's per-block expansion ratios
    (4, 4, 4, 4, 4),
    (4, 4, 4, 4, 4),
    (4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4),
    (4, 4, 4, 3, 3, 3, 3, 4, 4, 4),
)
ATTN_LEVELS = (2, 3)  # levels whose last ATTN_BLOCKS blocks attend
ATTN_BLOCKS = 6
REDUCED_LEVEL = 2  # its attention runs on a grid halved by a strided depth-wise conv
HEADS = 8
DROP_PATH = 0.1
LAYER_SCALE = 1e-5


def level_size(level: int) -> int:
    """Side of the feature map at ``level`` (stride 4 * 2**level) for a 256 input."""
    return -(-IMG_SIZE // (4 << level))


def conv_bn(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1,
            transposed: bool = False) -> nn.Sequential:
    """Conv (bias) + BN; 'same' padding, a stride-2 transposed conv doubles the size exactly."""
    if transposed:
        conv = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, kernel // 2, output_padding=stride - 1,
                                  groups=groups)
    else:
        conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, heads * c, H, W) with head-major channels -> (B, heads, H * W, c)."""
    b, _, h, w = x.shape
    return x.reshape(b, heads, -1, h * w).transpose(-2, -1)


def offset_index(q_side: int, k_side: int, step: int) -> torch.Tensor:
    """(q_side**2, k_side**2) index into a bias table of k_side**2 entries per head: the entry of
    the absolute row/column offset between query cell ``step * (i, j)`` and key cell (m, n)."""
    qi, qj = torch.meshgrid(torch.arange(q_side) * step, torch.arange(q_side) * step, indexing="ij")
    ki, kj = torch.meshgrid(torch.arange(k_side), torch.arange(k_side), indexing="ij")
    di = (qi.reshape(-1, 1) - ki.reshape(1, -1)).abs()
    dj = (qj.reshape(-1, 1) - kj.reshape(1, -1)).abs()
    return di * k_side + dj


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch, shaped (C, 1, 1) as the checkpoint's."""

    def __init__(self, dim: int, init: float = LAYER_SCALE):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x


class ConvFFN(nn.Module):
    """1x1 expand + BN + GELU, 3x3 depth-wise + BN + GELU, 1x1 project + BN. The two 1x1 convs
    start truncated-normal (std 0.02, zero bias), the depth-wise one at PyTorch's default."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.bn_dw = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.bn2 = nn.BatchNorm2d(dim)
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(self.fc1(x)))
        x = F.gelu(self.bn_dw(self.dw(x)))
        return self.bn2(self.fc2(x))


class GridAttention(nn.Module):
    """Multi-head attention over all cells of a fixed grid, with a per-head bias for each
    (|row offset|, |column offset|), talking-heads mixing before and after the softmax and a
    depth-wise conv of the values as a local term. ``reduce``: attend on the grid halved by a
    strided depth-wise conv + BN, then upsample the result bilinearly."""

    def __init__(self, dim: int, side: int, reduce: bool, key_dim: int = 32, ratio: int = 4, heads: int = HEADS):
        super().__init__()
        self.heads, self.scale = heads, key_dim**-0.5
        values = heads * ratio * key_dim
        self.reduce = conv_bn(dim, dim, 3, stride=2, groups=dim) if reduce else None
        side = -(-side // 2) if reduce else side
        self.q = conv_bn(dim, heads * key_dim)
        self.k = conv_bn(dim, heads * key_dim)
        self.v = conv_bn(dim, values)
        self.v_local = conv_bn(values, values, 3, groups=values)
        self.talk1 = nn.Conv2d(heads, heads, 1)
        self.talk2 = nn.Conv2d(heads, heads, 1)
        self.proj = nn.Sequential(nn.GELU(), nn.Conv2d(values, dim, 1), nn.BatchNorm2d(dim))
        self.rel_bias = nn.Parameter(torch.zeros(heads, side * side))
        self.register_buffer("rel_index", offset_index(side, side, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduce is not None:
            x = self.reduce(x)
        q, k = split_heads(self.q(x), self.heads), split_heads(self.k(x), self.heads)
        v_map = self.v(x)
        local = self.v_local(v_map)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.rel_bias[:, self.rel_index]
        attn = self.talk2(self.talk1(attn).softmax(dim=-1))
        out = (attn @ split_heads(v_map, self.heads)).transpose(-2, -1).reshape(local.shape) + local
        if self.reduce is not None:
            out = F.interpolate(out, scale_factor=2, mode="bilinear")
        return self.proj(out)


class ResampledQuery(nn.Module):
    """Queries on the grid halved (``up=False``) or doubled (``up=True``): a depth-wise stride-2
    conv (transposed when up) plus the map subsampled by 2 (aligned bilinear x2 when up), then a
    1x1 conv + BN."""

    def __init__(self, dim: int, out_dim: int, up: bool):
        super().__init__()
        self.up = up
        conv = nn.ConvTranspose2d if up else nn.Conv2d
        extra = {"output_padding": 1} if up else {}
        self.local = conv(dim, dim, 3, 2, 1, groups=dim, **extra)
        self.proj = conv_bn(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = up2_aligned(x) if self.up else x[..., ::2, ::2]
        return self.proj(self.local(x) + pooled)


class ResampleAttention(nn.Module):
    """Attention whose queries live on the grid of the next level (half or double the side),
    keys and values on the input grid; the values' depth-wise stride-2 conv (transposed when up)
    + BN is the local term. Going down it has a relative-offset bias table, going up none."""

    def __init__(self, dim: int, out_dim: int, side: int, up: bool, key_dim: int = 16, ratio: int = 4,
                 heads: int = HEADS):
        super().__init__()
        self.heads, self.scale = heads, key_dim**-0.5
        values = heads * ratio * key_dim
        self.q = ResampledQuery(dim, heads * key_dim, up)
        self.k = conv_bn(dim, heads * key_dim)
        self.v = conv_bn(dim, values)
        self.v_local = conv_bn(values, values, 3, stride=2, groups=values, transposed=up)
        self.proj = nn.Sequential(nn.GELU(), nn.Conv2d(values, out_dim, 1), nn.BatchNorm2d(out_dim))
        if up:
            self.rel_bias = None
        else:
            self.rel_bias = nn.Parameter(torch.zeros(heads, side * side))
            self.register_buffer("rel_index", offset_index(-(-side // 2), side, 2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k = split_heads(self.q(x), self.heads), split_heads(self.k(x), self.heads)
        v_map = self.v(x)
        local = self.v_local(v_map)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if self.rel_bias is not None:
            attn = attn + self.rel_bias[:, self.rel_index]
        out = (attn.softmax(dim=-1) @ split_heads(v_map, self.heads)).transpose(-2, -1).reshape(local.shape)
        return self.proj(out + local)


class Resample(nn.Module):
    """Between levels: 3x3 stride-2 conv (transposed when up) + BN, plus a ResampleAttention of
    the input when ``attend``."""

    def __init__(self, in_ch: int, out_ch: int, side: int, up: bool, attend: bool):
        super().__init__()
        self.attn = ResampleAttention(in_ch, out_ch, side, up) if attend else None
        if up:
            self.conv = nn.ConvTranspose2d(in_ch, out_ch, 3, 2, 1, output_padding=1)
        else:
            self.conv = nn.Conv2d(in_ch, out_ch, 3, 2, 1)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if self.attn is None else self.attn(x) + y


class FormerBlock(nn.Module):
    """x + drop(scale * attention(x)) when it attends, then x + drop(scale * FFN(x))."""

    def __init__(self, dim: int, mlp_ratio: int, drop_path: float, attention: nn.Module | None):
        super().__init__()
        self.attn = attention
        self.ls_attn = LayerScale(dim) if attention is not None else None
        self.mlp = ConvFFN(dim, dim * mlp_ratio)
        self.ls_mlp = LayerScale(dim)
        self.drop = stochastic_depth(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.drop(self.ls_attn(self.attn(x)))
        return x + self.drop(self.ls_mlp(self.mlp(x)))


def former_stage(level: int) -> nn.Sequential:
    """The blocks of one level (the encoder's and the decoder's are alike): stochastic depth
    rising over the 35 blocks of the encoder, the last six blocks of levels 2 and 3 attending."""
    depth, dim, first = DEPTHS[level], WIDTHS[level], sum(DEPTHS[:level])
    attends = depth - ATTN_BLOCKS if level in ATTN_LEVELS else depth
    return nn.Sequential(*(
        FormerBlock(dim, MLP_RATIOS[level][j], DROP_PATH * (first + j) / (sum(DEPTHS) - 1),
                    GridAttention(dim, level_size(level), level == REDUCED_LEVEL) if j >= attends else None)
        for j in range(depth)
    ))


class SkipGate(nn.Module):
    """U-Bench's CCA: sigmoid of the mean of two linear maps of the pooled skip and decoder map,
    times the skip, ReLU."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc_skip = nn.Linear(dim, dim)
        self.fc_dec = nn.Linear(dim, dim)

    def forward(self, dec: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        logits = (self.fc_skip(skip.mean(dim=(2, 3))) + self.fc_dec(dec.mean(dim=(2, 3)))) / 2.0
        return F.relu(skip * torch.sigmoid(logits)[..., None, None])


def transposed_conv_bn_gelu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(in_ch, out_ch, 3, 2, 1, output_padding=1), nn.BatchNorm2d(out_ch), nn.GELU()]


class EViTUNet(nn.Module):
    """Stem -> four EfficientFormerV2-L stages (BN'd skips) -> mirrored decoder -> x4 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        w = WIDTHS
        levels = range(len(w))
        self.gated_skips = num_classes != 1
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w[0] // 2, 3, 2, 1), nn.BatchNorm2d(w[0] // 2), nn.GELU(),
            nn.Conv2d(w[0] // 2, w[0], 3, 2, 1), nn.BatchNorm2d(w[0]), nn.GELU(),
        )
        self.enc_stages = nn.ModuleList(former_stage(i) for i in levels)
        self.enc_downs = nn.ModuleList(
            Resample(w[i], w[i + 1], level_size(i), up=False, attend=i >= 2) for i in levels[:-1])
        self.skip_norms = nn.ModuleList(nn.BatchNorm2d(w[i]) for i in levels)
        self.gates = nn.ModuleList(SkipGate(w[i]) for i in levels)
        self.fuse = nn.ModuleList(nn.Conv2d(2 * w[i], w[i], 3, padding=1) for i in levels)
        self.dec_ups = nn.ModuleList(  # dec_ups[i]: level i + 1 -> level i
            Resample(w[i + 1], w[i], level_size(i + 1), up=True, attend=i >= 1) for i in levels[:-1])
        self.dec_stages = nn.ModuleList(former_stage(i) for i in levels)
        self.head = nn.Sequential(*transposed_conv_bn_gelu(w[0], w[0] // 2), *transposed_conv_bn_gelu(w[0] // 2, w[0]))
        self.out = nn.Conv2d(w[0], num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for i, stage in enumerate(self.enc_stages):
            x = stage(x)
            skips.append(self.skip_norms[i](x))
            if i < len(self.enc_downs):
                x = self.enc_downs[i](x)
        for i in reversed(range(len(self.dec_stages))):
            if i < len(self.dec_ups):
                x = self.dec_ups[i](x)
            skip = self.gates[i](x, skips[i]) if self.gated_skips else skips[i]
            x = self.dec_stages[i](self.fuse[i](torch.cat([x, skip], dim=1)))
        return self.out(self.head(x))


# ---- the EfficientFormerV2-L checkpoint U-Bench loads (load_from in EViT_UNet.py) ---------------
# U-Bench renames the file's network.<n> to network_down_layers.<n> AND copies it to
# network_up_layers.<6 - n>, then drops every tensor whose shape differs from the model's and
# loads the rest with strict=False. Here: one record for the encoder and one for the decoder copy
# (the same file). The relative-offset bias tables never load (trained for 224 inputs: 7x7 and
# 14x14 grids, not 8x8 and 16x16), so the attention blocks are listed part by part.

CHECKPOINT = "eformer_l_450.pth"
CHECKPOINT_URL = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/eformer_l_450.pth"
_INNER_NAMES = [
    [r"\.token_mixer\.", ".attn."],
    [r"\.talking_head([12])\.", r".talk\1."],
    [r"\.stride_conv\.", ".reduce."],
    [r"\.q\.local\.0\.", ".q.local."],
    [r"\.layer_scale_1$", ".ls_attn.gamma"],
    [r"\.layer_scale_2$", ".ls_mlp.gamma"],
    [r"\.mlp\.norm1\.", ".mlp.bn1."],
    [r"\.mlp\.mid\.", ".mlp.dw."],
    [r"\.mlp\.mid_norm\.", ".mlp.bn_dw."],
    [r"\.mlp\.norm2\.", ".mlp.bn2."],
]
_NOT_LOADED = [r"^(norm|head|dist_head)\.", r"\.attention_bias(es|_idxs)$"]
_ATTN_PARTS = ("attn.q", "attn.k", "attn.v", "attn.v_local", "attn.talk1", "attn.talk2", "attn.proj",
               "mlp", "ls_attn", "ls_mlp")


def _stage_parts(prefix: str, level: int) -> list[str]:
    """Module prefixes of one stage that the checkpoint fills: whole blocks, attention blocks
    without their bias tables."""
    depth = DEPTHS[level]
    attends = depth - ATTN_BLOCKS if level in ATTN_LEVELS else depth
    if attends == depth:
        return [prefix]
    parts = _ATTN_PARTS + (("attn.reduce",) if level == REDUCED_LEVEL else ())
    return [f"{prefix}.{j}" for j in range(attends)] + [f"{prefix}.{j}.{p}" for j in range(attends, depth) for p in parts]


def _encoder_record() -> dict:
    levels = range(len(WIDTHS))
    return {
        "backbone": "efficientformerv2_l (encoder)",
        "source": "EViT_UNet.py load_from(): torch.hub.load_state_dict_from_url(<url>)['model']; "
        "patch_embed.* and network.<n>.* (renamed network_down_layers.<n>) into the stem and the "
        "encoder of Eff_Unet, tensors of another shape dropped, strict=False",
        "file": CHECKPOINT,
        "url": CHECKPOINT_URL,
        "modules": ["stem", "enc_downs.0", "enc_downs.1"]
        + [p for i in levels for p in _stage_parts(f"enc_stages.{i}", i)]
        + [f"enc_downs.2.{p}" for p in ("attn.q", "attn.k", "attn.v", "attn.v_local", "attn.proj", "conv", "bn")],
        "key_map": [[r"^patch_embed\.", "stem."]]
        + [[rf"^network\.{2 * i}\.", f"enc_stages.{i}."] for i in levels]
        + [[rf"^network\.{2 * i + 1}\.", f"enc_downs.{i}."] for i in levels[:-1]]
        + [[r"^(enc_downs\.\d)\.proj\.", r"\1.conv."], [r"^(enc_downs\.\d)\.norm\.", r"\1.bn."]]
        + _INNER_NAMES,
        "drop": _NOT_LOADED,
    }


def _decoder_record() -> dict:
    levels = range(len(WIDTHS))
    return {
        "backbone": "efficientformerv2_l (mirrored into the decoder)",
        "source": "EViT_UNet.py load_from(): the same file's network.<n>.* copied to "
        "network_up_layers.<6 - n> (the decoder stage of the same width, and network.5, the "
        "192 -> 384 down-sampling, onto the 384 -> 192 up-sampling), tensors of another shape "
        "dropped, strict=False",
        "file": CHECKPOINT,
        "url": CHECKPOINT_URL,
        "modules": [p for i in levels for p in _stage_parts(f"dec_stages.{i}", i)]
        + [f"dec_ups.2.attn.{p}" for p in ("q.proj.1", "k.1", "v.1", "v_local")],
        "key_map": [[rf"^network\.{2 * i}\.", f"dec_stages.{i}."] for i in levels]
        + [[r"^network\.5\.", "dec_ups.2."]]
        + _INNER_NAMES,
        "drop": _NOT_LOADED + [
            r"^patch_embed\.", r"^network\.[13]\.",
            r"^network\.5\.(conv|bn)\.", r"^network\.5\.attn\.(q\.local|proj)\.",
            r"^network\.5\.attn\.(q\.proj|k|v)\.0\.",
        ],
    }


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="EViT_UNet",
        ubench_id=79,
        year=2024,
        paper="EViT-UNet: U-Net Like Efficient Vision Transformer for Medical Image Segmentation on "
        "Mobile and Edge Devices",
        deep_supervision=False,
        ref_params_m=55.209900,
        ref_source="U-Bench models/Hybrid/EViT_UNet/EViT_UNet.py (evit_unet(num_classes=1, "
        "input_channel=3) -> Eff_Unet defaults: EfficientFormerV2-L widths/depths, resolution 256), "
        "counted by instantiating it (checkpoint download disabled)",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="Built untrained; with train.pretrained the EfficientFormerV2-L ImageNet checkpoint "
        "fills the stem, the encoder and (as in U-Bench) the mirrored decoder stages, except the "
        "relative-offset bias tables (trained at 224, shapes differ at 256: U-Bench drops them too). "
        "U-Bench also copies, by shape coincidence, the 192->384 down-sampling's tensors onto the "
        "384->192 up-sampling where shapes happen to agree; ubench loads the whole BN and depth-wise "
        "modules among them but not four lone tensors (the q/k/v 1x1 conv biases and the transposed "
        "conv kernel of dec_ups.2) nor the 40->80 conv kernel U-Bench copies onto the 80->40 "
        "transposed conv (dec_ups.0.conv.weight): a record fills whole modules. A 1-channel stem is "
        "loaded summed over the 3 input channels (U-Bench leaves it untrained: shape differs). "
        "The skip channel gates (CCA) are built always but run only when num_classes != 1 (U-Bench "
        "branches on the class count): unused_params at 1 class. U-Bench caches the bias tables at "
        ".eval() (the table indexed at each call here: same values). The factory's img_size=256 "
        "is swallowed by **kwargs (the default resolution=256 applies). Attention index tables are "
        "non-persistent buffers here (persistent in U-Bench, not parameters). input_channel sizes "
        "the stem as in U-Bench.",
        extra={
            "unused_params": [f"gates.{i}.{fc}.{t}" for i in range(4) for fc in ("fc_skip", "fc_dec")
                              for t in ("weight", "bias")],
            "pretrained": [_encoder_record(), _decoder_record()],
        },
    )
)
def evit_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """EViT-UNet as U-Bench benchmarks it (EfficientFormerV2-L widths, 256x256)."""
    return EViTUNet(in_channels=in_channels, num_classes=num_classes)
