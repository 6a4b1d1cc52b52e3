"""CA-Net: a U-Net with spatial, channel and scale attention (comprehensive attention).

Paper: Gu, Wang, Song, Huang, Aertsen, Deprest, Ourselin, Vercauteren, Zhang, "CA-Net:
Comprehensive Attention Convolutional Neural Networks for Explainable Medical Image Segmentation",
IEEE Transactions on Medical Imaging 40(2), 2021.

Configuration: U-Bench's ``Comprehensive_Atten_Unet`` (repo FengheTan9/U-Bench,
models/CNN/CA_Net/CA_Net.py with layers/ and networks_other.py), built by its ``ca_net(3, 1)``
helper with the class defaults: feature_scale 4, so widths 16, 32, 64, 128, 256; transposed-conv
up-steps; 'concatenation' grid attention without sub-sampling.

- Encoder: five double 3x3 conv (bias) + BN + ReLU stages, 2x2 max-pooling between them;
  channel dropout (p 0.5) after the fourth stage and the bottleneck.
- Decoder, deepest first: a 2x2 transposed conv halves the width, then [skip, upsampled] is
  concatenated. At the deepest step the concatenation passes through an embedded-Gaussian non-local
  block (inter width 64, keys and values max-pooled x2). Each step's concatenation is fused by an
  SE conv block: 3x3 conv -> BN -> ReLU -> 3x3 conv to twice the width -> BN, gated by the sum of
  two sigmoid channel gates (global average and global max through one shared MLP, reduction 4),
  plus a 1x1 conv + BN shortcut, ReLU, then a 3x3 conv back to the width -> BN -> ReLU (dropout
  after the deepest). The skips of the 64- and 32-wide levels are first replaced by a two-headed
  grid attention gate driven by the previous decoder output: per head
  ``BN(conv1x1(x * sigmoid(psi(relu(theta(x) + up(phi(g)))))))``, the two heads concatenated and
  fused by a 1x1 conv + BN + ReLU.
- Scale attention head: each decoder output gets a 1x1 conv to 4 channels, upsampled bilinearly to
  the input size; the 16 channels (4 scales x 4) are weighted by a per-scale channel gate (mean of
  an avg+max MLP over each scale's channels) and a per-scale spatial map (3x3 conv + BN + ReLU,
  1x1 conv + ReLU, sigmoid), added to themselves and to the input, then 3x3 conv to 4 + BN + ReLU
  and a 1x1 conv to the logits.

Parameters at 3 in / 1 class: 2,785,605 (counted by instantiating U-Bench's module). U-Bench's SE
blocks pool with fixed 256/128/64/32-pixel windows and its side outputs upsample to a fixed
(256, 256), so the model takes 256 x 256 inputs only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import contract, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

WIDTHS = (16, 32, 64, 128, 256)  # U-Bench's 64..1024 divided by feature_scale 4
GATED_LEVELS = (1, 2)  # skips (0 = shallowest) that pass a grid attention gate
DROP = 0.5
SIDE_CH = 4  # channels of each side output fed to the scale attention


def init_kaiming(m: nn.Module) -> None:
    """CA-Net's init of its attention blocks (use with ``module.apply``): He-normal (fan-in) conv
    and Linear weights, BatchNorm weights ~ N(1, 0.02) with zero bias; biases otherwise as built."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def encoder_stage(in_ch: int, out_ch: int, drop: bool) -> nn.Sequential:
    """Double 3x3 conv + BN + ReLU, optionally followed by channel dropout."""
    layers = [*conv_bn_relu(in_ch, out_ch), *conv_bn_relu(out_ch, out_ch)]
    return nn.Sequential(*layers, *([nn.Dropout2d(DROP)] if drop else []))


class GridGate(nn.Module):
    """One additive grid-attention head: a [0, 1] map from the skip and the coarser gating signal
    rescales the skip, then a 1x1 conv + BN transforms it."""

    def __init__(self, ch: int, gate_ch: int, inter_ch: int):
        super().__init__()
        self.out = nn.Sequential(nn.Conv2d(ch, ch, 1), nn.BatchNorm2d(ch))
        self.theta = nn.Conv2d(ch, inter_ch, 1)
        self.phi = nn.Conv2d(gate_ch, inter_ch, 1)
        self.psi = nn.Conv2d(inter_ch, 1, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = F.interpolate(self.phi(g), size=x.shape[-2:], mode="bilinear", align_corners=False)
        att = torch.sigmoid(self.psi(F.relu(self.theta(x) + g)))
        return self.out(att * x)


class MultiGridGate(nn.Module):
    """Two grid-attention heads on the same skip, concatenated and fused by 1x1 conv + BN + ReLU."""

    def __init__(self, ch: int, gate_ch: int):
        super().__init__()
        self.heads = nn.ModuleList(GridGate(ch, gate_ch, ch) for _ in range(2))
        self.fuse = nn.Sequential(*conv_bn_relu(2 * ch, ch, kernel_size=1))
        self.apply(init_kaiming)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([head(x, g) for head in self.heads], dim=1))


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al., CVPR 2018): softmax(theta^T phi) attention
    over all positions, keys and values max-pooled x2, output 1x1 conv + BN added to the input."""

    def __init__(self, ch: int, inter_ch: int):
        super().__init__()
        self.value = nn.Sequential(nn.Conv2d(ch, inter_ch, 1), nn.MaxPool2d(2))
        self.out = nn.Sequential(nn.Conv2d(inter_ch, ch, 1), nn.BatchNorm2d(ch))
        self.query = nn.Conv2d(ch, inter_ch, 1)
        self.key = nn.Sequential(nn.Conv2d(ch, inter_ch, 1), nn.MaxPool2d(2))
        self.apply(init_kaiming)  # also overrides the zero init of the output BN, as U-Bench does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)
        attn = torch.softmax(q @ self.key(x).flatten(2), dim=-1)
        y = (attn @ self.value(x).flatten(2).transpose(1, 2)).transpose(1, 2)
        return x + self.out(y.reshape(b, -1, h, w))


class SEConvBlock(nn.Module):
    """Decoder fusion with channel attention: conv to ``ch``, conv to ``2 ch`` gated by average- and
    max-pooled squeeze-excitation (one shared MLP, two sigmoids summed), residual 1x1 shortcut,
    then a conv back to ``ch``."""

    def __init__(self, in_ch: int, ch: int, drop: bool = False):
        super().__init__()
        wide = 2 * ch
        self.conv1 = nn.Conv2d(in_ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, wide, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(wide)
        self.conv3 = nn.Conv2d(wide, ch, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch)
        self.fc1 = nn.Linear(wide, ch // 2)
        self.fc2 = nn.Linear(ch // 2, wide)
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, wide, 1, bias=False), nn.BatchNorm2d(wide))
        self.drop = nn.Dropout2d(DROP) if drop else nn.Identity()

    def excite(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        y = y * self.excite(y.mean(dim=(2, 3))) + y * self.excite(y.amax(dim=(2, 3)))
        y = F.relu(y + self.shortcut(x))
        return self.drop(F.relu(self.bn3(self.conv3(y))))


class ScaleAttention(nn.Module):
    """Weights the concatenated side outputs (``scales`` groups of ``ch // scales`` channels) by a
    per-scale channel gate and a per-scale spatial map, then fuses them by 3x3 conv + BN + ReLU."""

    def __init__(self, ch: int, out_ch: int, scales: int = 4, reduction: int = 4):
        super().__init__()
        if ch // reduction != scales:
            raise ValueError(f"the spatial branch gives {ch // reduction} maps for {scales} scales")
        self.scales = scales
        self.conv = nn.Conv2d(ch, out_ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        hidden = ch // reduction
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(ch, hidden), nn.ReLU(), nn.Linear(hidden, ch))
        self.spatial = nn.Sequential(
            nn.Conv2d(ch, scales, 3, padding=1, bias=False),
            nn.BatchNorm2d(scales, momentum=0.01),
            nn.ReLU(),
            nn.Conv2d(scales, scales, 1, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch = x.shape[:2]
        per_scale = ch // self.scales
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        gate = torch.sigmoid(logits.view(b, self.scales, per_scale).mean(dim=2))
        y = x * gate.repeat_interleave(per_scale, dim=1)[:, :, None, None]
        y = y + y * torch.sigmoid(self.spatial(y)).repeat_interleave(per_scale, dim=1)
        return F.relu(self.bn(self.conv(F.relu(y + x))))


class CANet(nn.Module):
    """U-Net encoder, attention-gated and non-local decoder with SE fusion, scale-attention head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths=WIDTHS):
        super().__init__()
        n = len(widths)
        ins = (in_channels,) + tuple(widths[:-1])
        self.encoder = nn.ModuleList(
            encoder_stage(i, o, drop=k >= n - 2) for k, (i, o) in enumerate(zip(ins, widths))
        )
        self.pool = nn.MaxPool2d(2)
        self.gates = nn.ModuleDict({str(k): MultiGridGate(widths[k], widths[k + 1]) for k in GATED_LEVELS})
        self.context = NonLocal(widths[-1], widths[-1] // 4)
        steps = range(n - 1, 0, -1)  # deepest decoder step first
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in steps)
        self.decoder = nn.ModuleList(SEConvBlock(widths[i], widths[i - 1], drop=i == n - 1) for i in steps)
        self.side = nn.ModuleList(nn.Conv2d(widths[i - 1], SIDE_CH, 1) for i in steps)
        self.scale_att = ScaleAttention(SIDE_CH * (n - 1), SIDE_CH)
        self.head = nn.Conv2d(SIDE_CH, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        skips = contract(x, self.encoder, self.pool)
        x = skips.pop()
        sides = []
        for step, (up, fuse, side) in enumerate(zip(self.ups, self.decoder, self.side)):
            level = len(skips) - 1
            skip = skips.pop()
            if str(level) in self.gates:
                skip = self.gates[str(level)](skip, x)
            y = torch.cat([skip, up(x)], dim=1)
            x = fuse(self.context(y) if step == 0 else y)
            s = side(x)
            sides.append(s if s.shape[-2:] == size else F.interpolate(s, size=size, mode="bilinear"))
        return self.head(self.scale_att(torch.cat(sides[::-1], dim=1)))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="CA_Net",
        ubench_id=21,
        year=2021,
        paper="CA-Net: Comprehensive Attention Convolutional Neural Networks for Explainable "
        "Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=2.785605,
        ref_source="U-Bench models/CNN/CA_Net/CA_Net.py (ca_net(input_channel=3, num_classes=1) = "
        "Comprehensive_Atten_Unet(feature_scale=4)), counted by instantiating it",
        ref_input_size=256,
        input_sizes=(256,),
        notes="Fixed 256x256: U-Bench's SE blocks pool with fixed AvgPool2d/MaxPool2d windows "
        "(256, 128, 64, 32 px) and its side outputs upsample to a fixed (256, 256); ours pools "
        "globally and upsamples to the input size, the same at 256. U-Bench applies its dropouts "
        "(p 0.5 after encoder stage 4, the bottleneck and the deepest SE block) through a "
        "Dropout2d built inside forward, so they stay active in eval mode too (stochastic "
        "validation outputs); ours are modules, active in training only. Only the attention blocks "
        "get CA-Net's He-normal init (BatchNorm weights N(1, 0.02), which also overrides the "
        "non-local block's zero-initialised output BN); the rest keeps PyTorch's defaults. The "
        "attention maps U-Bench computes for explanation are not returned (it discards them). "
        "U-Bench's UpCat pads with random CUDA columns when widths differ; never at 256.",
    )
)
def ca_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CA-Net (feature_scale 4) as U-Bench benchmarks it."""
    return CANet(in_channels=in_channels, num_classes=num_classes)
