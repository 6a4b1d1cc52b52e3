"""MCA-UNet: residual U-Net with dense multi-scale skips gated by parallel channel / spatial attention.

Paper: Wang, Cao, Yang, Zaiane, "MCA-UNet: multi-scale cross co-attentional U-Net for automatic
medical image segmentation", Health Information Science and Systems 11, 2023.

Configuration: U-Bench's ``CAUNet`` (repo FengheTan9/U-Bench, models/CNN/MCA_UNet/MCA_UNet.py and
layers.py; U-Bench builds ``mca_unet(input_channel, num_classes)``, which passes both on). Every
normalisation is a Switchable Normalization (instance, layer and batch statistics mixed by learned
softmax weights; ``SwitchNorm2d`` below). Encoder widths 24, 32, 64, 128, 256: a stem of two
3x3 conv + SN + ReLU at full resolution, then 2x2 max-pooling and 2, 2, 3, 4 residual blocks
(3x3 conv + SN + ReLU, 3x3 conv + SN, 1x1 conv + SN shortcut when the width changes, ReLU after
the sum). Decoder, four levels at strides 8, 4, 2, 1 (widths 128, 64, 32, 24): the deeper map goes
up twice, by a 2x2 transposed conv + SN + ReLU and by a valid 3x3 conv + SN + ReLU then nearest
resizing; their sum ``g`` gates each of the four shallower encoder maps (stem, 32, 64, 128),
each brought to the level's resolution first (max-pooling from above; from below a transposed conv
+ SN + ReLU to the next-narrower width); the gate is relu(x * spatial + x * channel), where the
channel weights are sigmoid(MLP(avg x) + MLP(avg g)) (reduction 2) and the spatial map is
sigmoid(SN(1x1 conv(relu(SN(1x1 g) + SN(1x1 x))))) (both 1x1 convs to g's width). The level
concatenates [upsampled, transposed, four gated maps] and fuses them with 2 residual blocks
(3 at stride 1: 48 then 24 channels). Head: 1x1 conv to 2 channels + SN + ReLU, 1x1 conv to the
classes. Deep supervision (U-Bench model_id.json: deeps_supervision 1): transposed convs (kernel =
stride = 8, 4, 2) from the three deeper levels to full-resolution logits, returned before the
final output.

Parameters at 3 in / 1 class: 8,691,496 (counted by instantiating U-Bench's module), including the
15,708 of an output block U-Bench builds but never calls (kept, listed in ``unused_params``).
U-Bench hard-codes the resize targets for 256 x 256 inputs, so the model takes 256 only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import contract
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
WIDTHS = (24, 32, 64, 128, 256)
DEPTHS = (2, 2, 3, 4)  # residual blocks per encoder stage after the stem
FUSE_WIDTHS = ((128, 128), (64, 64), (32, 32), (48, 24, 24))  # decoder levels, deepest first
LEVELS = (3, 2, 1, 0)  # decoder level = log2 of its stride
PLAIN_MOMENTUM = 0.2  # SwitchNorm momentum of the plain conv layers (0.9, the default, elsewhere)


class SwitchNorm2d(nn.Module):
    """Switchable Normalization (Luo et al., ICLR 2019): instance, layer and batch mean / variance
    mixed by softmax weights, then a per-channel affine. As U-Bench's: instance variance unbiased,
    running statistics start at zero and are updated as ``m * running + (1 - m) * batch``."""

    def __init__(self, channels: int, momentum: float = 0.9, eps: float = 1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.mean_weight = nn.Parameter(torch.ones(3))
        self.var_weight = nn.Parameter(torch.ones(3))
        self.register_buffer("running_mean", torch.zeros(1, channels, 1))
        self.register_buffer("running_var", torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, c, -1)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True)
        second = var_in + mean_in**2
        mean_ln = mean_in.mean(1, keepdim=True)
        var_ln = second.mean(1, keepdim=True) - mean_ln**2
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)
            var_bn = second.mean(0, keepdim=True) - mean_bn**2
            with torch.no_grad():
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean_bn)
                self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var_bn)
        else:
            mean_bn, var_bn = self.running_mean, self.running_var
        mw = torch.softmax(self.mean_weight, 0)
        vw = torch.softmax(self.var_weight, 0)
        mean = mw[0] * mean_in + mw[1] * mean_ln + mw[2] * mean_bn
        var = vw[0] * var_in + vw[1] * var_ln + vw[2] * var_bn
        x = (x - mean) / (var + self.eps).sqrt()
        return x.reshape(n, c, h, w) * self.weight + self.bias


def conv_sn_relu(conv: nn.Module, momentum: float = PLAIN_MOMENTUM) -> list[nn.Module]:
    """``conv`` -> SwitchNorm -> ReLU."""
    return [conv, SwitchNorm2d(conv.out_channels, momentum), nn.ReLU(inplace=True)]


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 conv + SN + ReLU (the stem; also the output block U-Bench never calls)."""
    return nn.Sequential(*conv_sn_relu(nn.Conv2d(in_ch, out_ch, 3, padding=1)),
                         *conv_sn_relu(nn.Conv2d(out_ch, out_ch, 3, padding=1)))


def up_sn_relu(in_ch: int, out_ch: int, scale: int) -> nn.Sequential:
    """Transposed conv (kernel = stride = ``scale``) + SN + ReLU."""
    return nn.Sequential(*conv_sn_relu(nn.ConvTranspose2d(in_ch, out_ch, scale, stride=scale)))


class SNResBlock(nn.Module):
    """Two 3x3 conv + SN (ReLU between) plus the input (1x1 conv + SN when the width changes), ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.bn1 = SwitchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = SwitchNorm2d(out_ch)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), SwitchNorm2d(out_ch)) if in_ch != out_ch else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + residual)


def res_chain(in_ch: int, widths) -> nn.Sequential:
    """Residual blocks in a row, from ``in_ch`` through ``widths``."""
    ins = (in_ch, *widths[:-1])
    return nn.Sequential(*(SNResBlock(i, o) for i, o in zip(ins, widths)))


class CoAttentionGate(nn.Module):
    """Parallel channel and spatial attention on a skip ``x`` guided by the decoder map ``g``:
    relu(x * spatial + x * channel)."""

    def __init__(self, g_ch: int, x_ch: int):
        super().__init__()
        self.chan_x = nn.Sequential(nn.Linear(x_ch, x_ch // 2), nn.ReLU(), nn.Linear(x_ch // 2, x_ch))
        self.chan_g = nn.Sequential(nn.Linear(g_ch, g_ch // 2), nn.ReLU(), nn.Linear(g_ch // 2, x_ch))
        self.proj_g = nn.Sequential(nn.Conv2d(g_ch, g_ch, 1), SwitchNorm2d(g_ch))
        self.proj_x = nn.Sequential(nn.Conv2d(x_ch, g_ch, 1), SwitchNorm2d(g_ch))
        self.psi = nn.Sequential(nn.Conv2d(g_ch, 1, 1), SwitchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(self.chan_x(x.mean((2, 3))) + self.chan_g(g.mean((2, 3))))
        spatial = self.psi(F.relu(self.proj_g(g) + self.proj_x(x)))
        return F.relu(x * spatial + x * channel[:, :, None, None])


def resampler(src: int, level: int) -> nn.Module:
    """Brings encoder map ``src`` (stride 2**src) to stride 2**level: max-pooling from above,
    transposed conv + SN + ReLU to the next-narrower width from below."""
    if src < level:
        return nn.MaxPool2d(2 ** (level - src))
    if src == level:
        return nn.Identity()
    return up_sn_relu(WIDTHS[src], WIDTHS[src - 1], 2 ** (src - level))


def gated_width(src: int, level: int) -> int:
    return WIDTHS[src] if src <= level else WIDTHS[src - 1]


class DecoderLevel(nn.Module):
    """Up twice (transposed conv; valid conv + nearest resize), gate the four resampled encoder
    maps with their sum, concatenate, fuse with residual blocks. U-Bench's deepest level
    concatenates the sum where the others concatenate the conv path (``cat_sum``)."""

    def __init__(self, level: int, fuse_widths, cat_sum: bool):
        super().__init__()
        in_ch, out_ch = WIDTHS[level + 1], WIDTHS[level]
        self.cat_sum = cat_sum
        self.up = nn.Sequential(*conv_sn_relu(nn.Conv2d(in_ch, out_ch, 3)))
        self.deconv = up_sn_relu(in_ch, out_ch, 2)
        srcs = range(len(WIDTHS) - 1)
        self.resample = nn.ModuleList(resampler(s, level) for s in srcs)
        self.gates = nn.ModuleList(CoAttentionGate(out_ch, gated_width(s, level)) for s in srcs)
        cat_ch = 2 * out_ch + sum(gated_width(s, level) for s in srcs)
        self.fuse = res_chain(cat_ch, fuse_widths)

    def forward(self, y: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        dec = self.deconv(y)
        up = F.interpolate(self.up(y), size=dec.shape[-2:], mode="nearest")
        g = up + dec
        gated = [gate(g, r(s)) for gate, r, s in zip(self.gates, self.resample, skips)]
        return self.fuse(torch.cat([g if self.cat_sum else up, dec, *gated], dim=1))


class MCAUNet(nn.Module):
    """Residual SN encoder, four co-attention decoder levels, deep-supervision heads."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.stem = double_conv(in_channels, WIDTHS[0])
        self.out_block = double_conv(2 * WIDTHS[0], WIDTHS[0])  # built by U-Bench, never called
        self.pred = nn.Sequential(*conv_sn_relu(nn.Conv2d(WIDTHS[0], 2, 1)), nn.Conv2d(2, num_classes, 1))
        self.down = nn.ModuleList(
            res_chain(WIDTHS[i], (WIDTHS[i + 1],) * d) for i, d in enumerate(DEPTHS)
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.levels = nn.ModuleList(
            DecoderLevel(lv, fw, cat_sum=lv == LEVELS[0]) for lv, fw in zip(LEVELS, FUSE_WIDTHS)
        )
        self.aux_heads = nn.ModuleList(
            nn.ConvTranspose2d(fw[-1], num_classes, 2**lv, stride=2**lv)
            for lv, fw in zip(LEVELS[:-1], FUSE_WIDTHS[:-1])
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = contract(x, (self.stem, *self.down), self.pool)
        y, skips = feats[-1], feats[:-1]
        outs = []
        for level in self.levels:
            y = level(y, skips)
            outs.append(y)
        aux = [head(o) for head, o in zip(self.aux_heads, outs)]
        return [*aux, self.pred(outs[-1])]


def _unused_params() -> list[str]:
    return [f"out_block.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")] + [
        f"out_block.{i}.{p}" for i in (1, 4) for p in ("weight", "bias", "mean_weight", "var_weight")
    ]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="MCA_UNet",
        ubench_id=99,
        year=2023,
        paper="MCA-UNet: multi-scale cross co-attentional U-Net for automatic medical image "
        "segmentation",
        deep_supervision=True,
        ref_params_m=8.691496,
        ref_source="U-Bench models/CNN/MCA_UNet/MCA_UNet.py (mca_unet(input_channel=3, "
        "num_classes=1), CAUNet with layers.py), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="256 only (U-Bench resizes the valid-conv up path to sizes fixed for 256). "
        "Returns [stride-8, stride-4, stride-2 auxiliary logits, final logits]. Quirks kept: an "
        "unused output block (15,708 parameters, see unused_params); the deepest level "
        "concatenates the sum of its two up paths, the others the conv path; the gates' F_int "
        "argument is ignored (1x1 convs to g's width); the head squeezes to 2 channels + SN + ReLU "
        "before the class conv; SwitchNorm running statistics start at zero (momentum 0.2 in the "
        "plain conv layers, 0.9 in residual blocks and gates, U-Bench's convention).",
        extra={"unused_params": _unused_params()},
    )
)
def mca_unet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MCA-UNet as U-Bench benchmarks it (SwitchNorm residual U-Net, co-attention dense skips)."""
    return MCAUNet(in_channels=in_channels, num_classes=num_classes)
