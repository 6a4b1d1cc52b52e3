"""CFFormer: a ResNet-34 and a Swin-V2-S encoder side by side, exchanging channels at each scale.

Paper: Li, Xu, He, Liu, Zhang, Wang, Qu, Qiu, "CFFormer: Cross CNN-Transformer Channel Attention
and Spatial Feature Fusion for Improved Segmentation of Low Quality Medical Images", arXiv
2501.03629, 2025 (v2 and Expert Systems with Applications: "... of Heterogeneous Medical Images").

Configuration: U-Bench's ``CFFormer`` (repo FengheTan9/U-Bench, models/Hybrid/CFFormer/CFFormer.py
and Attention.py; models/__init__.py imports ``cfformer(input_channel, num_classes)``, which builds
``CDFormer(version='b', ...)``), id 105, no deep supervision. Version 'b' takes torchvision's
``resnet34(ResNet34_Weights.IMAGENET1K_V1)`` and ``swin_v2_s(Swin_V2_S_Weights.IMAGENET1K_V1)``;
here both are built untrained with torchvision's initialisation (``extra["pretrained"]`` says how
to load the two ImageNet files).

* CNN encoder: ResNet-34 (7x7/2 stem + BN + ReLU, 3x3/2 max-pool, BasicBlock stages of depth 3, 4,
  6, 3 and widths 64, 128, 256, 512). Its stem output (64@H/2) is the first skip.
* Transformer encoder: torchvision's Swin-V2-S: 4x4/4 patch embedding + LayerNorm to 96@H/4, then
  stages of 2, 2, 18, 2 blocks (3, 6, 12, 24 heads, widths 96..768, 8x8 windows, every second
  block shifted by 4), V2 patch merging (bias-free linear 4C -> 2C, then LayerNorm) between them,
  stochastic depth rising linearly to 0.3. What makes it V2 (written here, not in ops/swin.py):
  scaled cosine attention (a learned per-head logit scale, clamped at log 100), a relative
  position bias from a small MLP (2 -> 512 -> heads) on log-spaced window offsets, squashed by
  16 * sigmoid, no key bias, and post-norm residuals (x + norm(attn(x)), x + norm(mlp(x))). As in
  torchvision, maps that are not a multiple of the window are zero-padded (the padding is not
  masked) and the window is never shrunk: a map no larger than one window is not shifted.
* Fusion at each of the four scales (H/4 .. H/32), after both encoders' stage i: channel exchange
  (the paper's CFCA): each branch's global average goes through a gate (linear to the other
  branch's width, ReLU, linear back, sigmoid); the outer product of the two gate vectors, softmaxed
  over the Swin channels, mixes the Swin map into CNN channels, and softmaxed over the CNN
  channels mixes the CNN map into Swin channels; each is added to the other branch's map, and
  both sums feed the next stage of their encoder. Spatial fusion (the paper's XFF): CNN + 3x3
  conv(Swin), Swin + 5x5 conv(CNN), concatenated, 3x3 conv to the Swin width: the skip.
* Decoder: from the 768@H/32 skip, five up-steps (3x3 conv + BN + ReLU keeping the width, 3x3
  conv + BN + ReLU to the output width, 2x2/2 transposed conv) to 384, 192, 96, 64, 64, each after
  the first taking [skip, up] concatenated; head: two 3x3 conv + BN + ReLU (64) and a 1x1 conv to
  the classes, at full size.

Parameters at 3 in / 1 class: 120,950,859, the same as U-Bench's module (counted by instantiating
it). That includes the parts of the two ImageNet models U-Bench keeps in its module and never
runs: the ResNet classifier (513,000), the Swin final LayerNorm (1,536) and classifier (769,000),
kept here (``extra["unused_params"]``). Total stride 32: the Swin and CNN maps must agree at every
scale and the decoder doubles exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import Mlp, init_vit_weights, stochastic_depth
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.resnet import ResNet34Encoder, torchvision_resnet_record
from ubench.models.ops.swin import from_windows, relative_position_index, to_windows
from ubench.models.registry import ModelInfo, register_model

CNN_WIDTHS = (64, 64, 128, 256, 512)  # stem, layer1..layer4
# Swin-V2-S (torchvision swin_v2_s)
EMBED_DIM, PATCH, WINDOW = 96, 4, 8
DEPTHS, HEADS = (2, 2, 18, 2), (3, 6, 12, 24)
DROP_PATH = 0.3
SWIN_WIDTHS = tuple(EMBED_DIM * 2**i for i in range(len(DEPTHS)))  # 96, 192, 384, 768
DECODER_WIDTHS = (384, 192, 96, 64, 64)  # up-step outputs, deepest first
CPB_HIDDEN = 512  # continuous position bias MLP
IMAGENET_CLASSES = 1000
STRIDE = 32


def log_spaced_offsets(window: int) -> torch.Tensor:
    """((2w-1)^2, 2) window offsets (dy, dx), scaled to [-8, 8] and log-spaced as in Swin V2:
    sign(t) * log2(1 + |t|) / 3."""
    r = torch.arange(-(window - 1), window, dtype=torch.float32)
    t = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1)
    t = t / (window - 1) * 8
    return (torch.sign(t) * torch.log2(t.abs() + 1.0) / 3.0).view(-1, 2)


def window_region_mask(h: int, w: int, window: int, shift_h: int, shift_w: int,
                       device: torch.device) -> torch.Tensor:
    """(windows, w*w, w*w) additive mask (-100 across regions) for a map rolled by (shift_h,
    shift_w); an axis whose shift is 0 is one region, as in torchvision."""
    regions = torch.zeros(1, h, w, 1, device=device)
    cuts_h = (slice(0, -window), slice(-window, -shift_h), slice(-shift_h, None))
    cuts_w = (slice(0, -window), slice(-window, -shift_w), slice(-shift_w, None))
    label = 0
    for ys in cuts_h:
        for xs in cuts_w:
            regions[:, ys, xs, :] = label
            label += 1
    r = to_windows(regions, window).squeeze(-1)
    diff = r[:, None, :] - r[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class CosineWindowAttention(nn.Module):
    """Swin-V2 attention inside each window: cosine similarity of queries and keys times a learned
    per-head scale, plus 16 * sigmoid of a position bias an MLP computes from log-spaced offsets.
    The key third of the qkv bias exists (as in torchvision) but is held at zero in use."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, CPB_HIDDEN), nn.ReLU(inplace=True), nn.Linear(CPB_HIDDEN, heads, bias=False)
        )
        self.register_buffer("offsets", log_spaced_offsets(window), persistent=False)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> torch.Tensor:
        table = self.cpb_mlp(self.offsets)  # (2w-1)^2, heads
        return 16 * torch.sigmoid(table[self.bias_index].permute(2, 0, 1))  # heads, n, n

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q_bias, k_bias, v_bias = self.qkv.bias.chunk(3)
        bias = torch.cat([q_bias, torch.zeros_like(k_bias), v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).view(bw, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        attn = attn + self.position_bias()
        if mask is not None:  # (windows, n, n)
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinV2Block(nn.Module):
    """Post-norm Swin-V2 block on a (B, H, W, C) map: x + norm1(window attention(x)), then
    x + norm2(mlp(x)). The map is zero-padded to whole windows; the shift applies on an axis only
    if the padded map spans more than one window there."""

    def __init__(self, dim: int, heads: int, shift: int, drop_path: float):
        super().__init__()
        self.shift = shift
        self.attn = CosineWindowAttention(dim, heads, WINDOW)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = stochastic_depth(drop_path)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        x = F.pad(x, (0, 0, 0, (-w) % WINDOW, 0, (-h) % WINDOW))
        ph, pw = x.shape[1:3]
        sh = self.shift if ph > WINDOW else 0
        sw = self.shift if pw > WINDOW else 0
        mask = None
        if sh or sw:
            x = torch.roll(x, (-sh, -sw), dims=(1, 2))
            mask = window_region_mask(ph, pw, WINDOW, sh, sw, x.device)
        y = from_windows(self.attn(to_windows(x, WINDOW), mask), WINDOW, ph, pw)
        if sh or sw:
            y = torch.roll(y, (sh, sw), dims=(1, 2))
        return y[:, :h, :w].contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.norm1(self._windowed_attention(x)))
        return x + self.drop_path(self.norm2(self.mlp(x)))


class PatchMergingV2(nn.Module):
    """Swin-V2 merging on a (B, H, W, C) map: odd sides zero-padded, each 2x2 neighbourhood
    concatenated ((0,0), (1,0), (0,1), (1,1)), a bias-free linear 4C -> 2C, then LayerNorm (V1,
    ops.swin.PatchMerging, normalises before the linear)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, i::2, j::2] for j in (0, 1) for i in (0, 1)], dim=-1)
        return self.norm(self.reduction(x))


class SwinV2Encoder(nn.Module):
    """torchvision's Swin-V2-S run one stage at a time on NCHW maps (``stage(i, x)``): stage 0 is
    the patch embedding + LayerNorm and the first blocks, stage i > 0 a merging and blocks. Its
    final LayerNorm and ImageNet classifier are kept (U-Bench's module holds them) but never run.
    Initialised as torchvision's: truncated-normal (0.02) linears with zero bias, default conv."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, EMBED_DIM, PATCH, stride=PATCH)
        self.embed_norm = nn.LayerNorm(EMBED_DIM)
        last = sum(DEPTHS) - 1
        stages, start = [], 0
        for dim, depth, heads in zip(SWIN_WIDTHS, DEPTHS, HEADS):
            blocks = [SwinV2Block(dim, heads, 0 if j % 2 == 0 else WINDOW // 2, DROP_PATH * (start + j) / last)
                      for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            start += depth
        self.stages = nn.ModuleList(stages)
        self.merges = nn.ModuleList(PatchMergingV2(d) for d in SWIN_WIDTHS[:-1])
        self.norm = nn.LayerNorm(SWIN_WIDTHS[-1])  # unused (U-Bench's module holds it)
        self.head = nn.Linear(SWIN_WIDTHS[-1], IMAGENET_CLASSES)  # unused
        self.apply(init_vit_weights)

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == 0:
            x = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        else:
            x = self.merges[i - 1](x.permute(0, 2, 3, 1))
        return self.stages[i](x).permute(0, 3, 1, 2)


class ResNet34WithClassifier(ResNet34Encoder):
    """ResNet-34 trunk plus torchvision's ImageNet classifier ``fc`` (PyTorch-default init), which
    U-Bench keeps inside its module (in its count and checkpoint) and never runs."""

    def __init__(self, in_channels: int = 3):
        super().__init__(in_channels)
        self.fc = nn.Linear(CNN_WIDTHS[-1], IMAGENET_CLASSES)


class ChannelGate(nn.Module):
    """Global average -> linear to ``hidden`` -> ReLU -> linear back -> sigmoid: (B, C) weights
    (a squeeze-excitation whose gates are returned, not applied)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))


class ChannelExchange(nn.Module):
    """The paper's cross feature channel attention: the outer product of the two branches' channel
    gates is a (CNN channels x Swin channels) affinity; softmaxed over Swin channels it re-expresses
    the Swin map in CNN channels, softmaxed over CNN channels the CNN map in Swin channels.
    Returns (for the CNN branch, for the Swin branch)."""

    def __init__(self, swin_ch: int, cnn_ch: int):
        super().__init__()
        self.swin_gate = ChannelGate(swin_ch, cnn_ch)
        self.cnn_gate = ChannelGate(cnn_ch, swin_ch)

    def forward(self, swin: torch.Tensor, cnn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        affinity = self.cnn_gate(cnn)[:, :, None] * self.swin_gate(swin)[:, None, :]  # B, Cc, Cs
        to_cnn = torch.einsum("bcs,bshw->bchw", affinity.softmax(dim=2), swin)
        to_swin = torch.einsum("bcs,bchw->bshw", affinity.softmax(dim=1), cnn)
        return to_cnn, to_swin


class SpatialFusion(nn.Module):
    """The paper's X-spatial feature fusion: each branch plus a conv of the other (3x3 from Swin to
    CNN width, 5x5 from CNN to Swin width), concatenated [CNN, Swin], 3x3 conv to ``out_ch``."""

    def __init__(self, swin_ch: int, cnn_ch: int, out_ch: int):
        super().__init__()
        self.from_cnn = nn.Conv2d(cnn_ch, swin_ch, 5, padding=2)
        self.from_swin = nn.Conv2d(swin_ch, cnn_ch, 3, padding=1)
        self.out = nn.Conv2d(cnn_ch + swin_ch, out_ch, 3, padding=1)

    def forward(self, swin: torch.Tensor, cnn: torch.Tensor) -> torch.Tensor:
        mixed = [cnn + self.from_swin(swin), swin + self.from_cnn(cnn)]
        return self.out(torch.cat(mixed, dim=1))


def up_step(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv + BN + ReLU at ``in_ch``, 3x3 conv + BN + ReLU to ``out_ch``, 2x2/2 transposed conv."""
    return nn.Sequential(*conv_bn_relu(in_ch, in_ch), *conv_bn_relu(in_ch, out_ch),
                         nn.ConvTranspose2d(out_ch, out_ch, 2, stride=2))


def init_decoder(module: nn.Module) -> None:
    """U-Bench's decoder init: He-normal (fan-out) conv and transposed-conv weights with zero bias,
    BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class CFFormer(nn.Module):
    """ResNet-34 and Swin-V2-S encoders exchanging channels and fused spatially at H/4..H/32,
    a transposed-conv U-decoder over [stem, four fused maps]."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.cnn = ResNet34WithClassifier(in_channels)
        self.swin = SwinV2Encoder(in_channels)
        self.exchange = nn.ModuleList(ChannelExchange(s, c) for s, c in zip(SWIN_WIDTHS, CNN_WIDTHS[1:]))
        self.fuse = nn.ModuleList(SpatialFusion(s, c, s) for s, c in zip(SWIN_WIDTHS, CNN_WIDTHS[1:]))
        skips = (CNN_WIDTHS[0],) + SWIN_WIDTHS  # 64, 96, 192, 384, 768
        ins = (skips[-1],) + tuple(2 * w for w in DECODER_WIDTHS[:-1])  # [skip, up] from the second on
        self.up = nn.ModuleList(up_step(i, o) for i, o in zip(ins, DECODER_WIDTHS))
        self.head = nn.Sequential(*conv_bn_relu(DECODER_WIDTHS[-1], DECODER_WIDTHS[-1]),
                                  *conv_bn_relu(DECODER_WIDTHS[-1], DECODER_WIDTHS[-1]),
                                  nn.Conv2d(DECODER_WIDTHS[-1], num_classes, 1))
        self.exchange.apply(init_vit_weights)
        init_decoder(self.up)
        init_decoder(self.head)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.cnn.stem(x)
        cnn, swin = self.cnn.pool(stem), x
        skips = [stem]
        for i, (layer, exchange, fuse) in enumerate(zip(self.cnn.layers, self.exchange, self.fuse)):
            cnn, swin = layer(cnn), self.swin.stage(i, swin)
            to_cnn, to_swin = exchange(swin, cnn)
            cnn, swin = to_cnn + cnn, to_swin + swin
            skips.append(fuse(swin, cnn))
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encode(x)
        y = self.up[0](skips[-1])
        for up, skip in zip(self.up[1:], reversed(skips[:-1])):
            y = up(torch.cat([skip, y], dim=1))
        return self.head(y)


_RESNET_RECORD = torchvision_resnet_record(
    "resnet34", "cnn.",
    "torchvision.models.resnet34(ResNet34_Weights.IMAGENET1K_V1) -> CDFormer.encoder.cnn, whole "
    "(conv1, bn1, layer1-4 and the unused fc); cnn_layer0..4 are views of its children "
    "(conv1/bn1/relu, maxpool+layer1, layer2, layer3, layer4)",
    drop_fc=False,
)

_SWIN_STAGE_MAP = [[rf"^features\.{2 * i + 1}\.", f"swin.stages.{i}."] for i in range(len(DEPTHS))]
_SWIN_MERGE_MAP = [[rf"^features\.{2 * i + 2}\.", f"swin.merges.{i}."] for i in range(len(DEPTHS) - 1)]

_SWIN_RECORD = {
    "backbone": "swin_v2_s",
    "source": "torchvision.models.swin_v2_s(weights=Swin_V2_S_Weights.IMAGENET1K_V1) -> "
    "CDFormer.encoder.transformer, whole (features 0-7, the unused norm and head; strict load by "
    "torchvision); transformer_layer1..4 are views of features[0:2], [2:4], [4:6], [6:8]. The "
    "file's relative_coords_table / relative_position_index buffers are the constant window "
    "tables, recomputed here",
    "file": "swin_v2_s-637d8ceb.pth",
    "url": "https://download.pytorch.org/models/swin_v2_s-637d8ceb.pth",
    "hash_in_name": True,
    "modules": ["swin"],
    "key_map": [[r"^features\.0\.0\.", "swin.patch_embed."], [r"^features\.0\.2\.", "swin.embed_norm."]]
    + _SWIN_STAGE_MAP + _SWIN_MERGE_MAP
    + [[r"^(norm|head)\.", r"swin.\1."], [r"\.mlp\.0\.", ".mlp.fc1."], [r"\.mlp\.3\.", ".mlp.fc2."]],
    "drop": [r"\.relative_coords_table$", r"\.relative_position_index$"],
}

_UNUSED = ["cnn.fc.weight", "cnn.fc.bias", "swin.norm.weight", "swin.norm.bias", "swin.head.weight",
           "swin.head.bias"]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="CFFormer",
        ubench_id=105,
        year=2025,
        paper="CFFormer: Cross CNN-Transformer Channel Attention and Spatial Feature Fusion for "
        "Improved Segmentation of Low Quality Medical Images",
        deep_supervision=False,
        ref_params_m=120.950859,
        ref_source="U-Bench models/Hybrid/CFFormer/CFFormer.py (cfformer(input_channel=3, "
        "num_classes=1) = CDFormer(version='b'); weight-free stand-ins of torchvision's resnet34 "
        "and swin_v2_s), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="ResNet-34 and Swin-V2-S untrained (U-Bench loads torchvision's ImageNet weights in "
        "its constructor: extra['pretrained'], two records), initialised as torchvision's models "
        "(He-normal fan-out convs and unit BN for the ResNet, default fc; truncated-normal 0.02 "
        "linears with zero bias, logit scale log 10, default patch conv for the Swin); the channel "
        "exchange gets U-Bench's truncated-normal linears, the decoder and head its He-normal "
        "fan-out convs and transposed convs with zero bias, the spatial-fusion convs PyTorch "
        "defaults. U-Bench keeps both whole torchvision models in its module, so the ResNet fc and "
        "the Swin final norm and head (1,283,536 params) are in its count and checkpoint but never "
        "run: kept as cnn.fc, swin.norm, swin.head (unused_params). As in torchvision, the key part "
        "of every qkv bias is a parameter held at zero in use (it gets a zero gradient). The Swin "
        "follows torchvision's handling of sizes: maps are zero-padded to whole 8x8 windows without "
        "masking the padding (at 256 no stage is padded; at 64 the H/16 and H/32 stages are), the "
        "window is never shrunk, and a padded map of one window along an axis is not shifted "
        "along it. U-Bench's cfformer() ignores input_channel (both ImageNet stems take 3 channels; "
        "its loaders read every image as 3-channel with cv2.imread); here the ResNet stem and the "
        "Swin patch embedding take in_channels (summing a pretrained 3-channel kernel over its "
        "inputs reproduces the repetition of a grey image). Its unused classes (DoubleConv, "
        "se_block_without_shorcut, up_channel_selection in CFFormer.py) are not built. The paper's "
        "CFCA/XFF are U-Bench's Channel_Exchange_Attention/X_spatial (Attention.py), built as the "
        "code builds them.",
        extra={"unused_params": _UNUSED, "pretrained": [_RESNET_RECORD, _SWIN_RECORD]},
    )
)
def cfformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CFFormer (ResNet-34 + Swin-V2-S, untrained) as U-Bench benchmarks it."""
    return CFFormer(in_channels=in_channels, num_classes=num_classes)
