"""TransFuse-S: a ResNet-34 branch and a DeiT-small branch run in parallel and fused (BiFusion).

Paper: Zhang, Liu, Hu, "TransFuse: Fusing Transformers and CNNs for Medical Image Segmentation",
MICCAI 2021.

Configuration: U-Bench's ``TransFuse`` = ``TransFuse_S`` (repo FengheTan9/U-Bench,
models/Hybrid/TransFuse/TransFuse.py and module/DeiT.py), drop_rate 0.2:

* CNN branch: ResNet-34 without layer4 (stem+pool, layer1 64@H/4, layer2 128@H/8, layer3 256@H/16).
* Transformer branch: 16x16 patch embedding to 384, 8 DeiT blocks (6 heads, MLP 1536, LayerNorm
  eps 1e-6), final LayerNorm. U-Bench's DeiT does not add its positional embedding (the line is
  commented out), so the branch has no positional information and no size constraint; the class
  token and (unused) positional table are left out here. Its tokens are reshaped to H/16 x W/16
  (U-Bench hard-codes 16x16, i.e. 256x256 inputs) and upsampled twice (Up: bilinear x2 + residual
  double conv) to 128@H/8 and 64@H/4.
* Three BiFusion blocks fuse the branches at H/16 (256+384 -> 256), H/8 (128) and H/4 (64):
  spatial attention (channel max/mean -> 7x7 conv-BN -> sigmoid) on the CNN feature, squeeze-
  excitation on the transformer feature, a Hadamard "bilinear" term (1x1 conv-BN each, product,
  3x3 conv-BN-ReLU), concatenated and passed through a bottleneck residual unit; dropout 0.1.
* The fused maps are merged top-down with attention-gated Up blocks (256 -> 128 -> 64).
* Three heads (deep supervision, as U-Bench's train loop uses with ``deeps_supervision: 1`` in
  models/model_id.json): the H/16 fusion map (x16), the transformer branch at H/4 (x4) and the
  final joint map at H/4 (x4), bilinear with align_corners. Returned in U-Bench's order
  [fusion H/16, transformer, joint]; the joint map, last, is the prediction.

Parameters at 3 in / 1 class: U-Bench's code instantiates to 26,248,725, of which 74,112 (class
token and the 192x384 interpolated positional table) never reach the output; ours: 26,174,613.
U-Bench loads ImageNet ResNet-34 and DeiT-S weights; nothing is downloaded here.
Decoder convs use Kaiming-normal (fan_in) init as the reference's ``init_weights``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import ResidualDoubleConv
from ubench.models.ops.resnet import ResNet34Encoder
from ubench.models.ops.vit_hybrid import ViTEncoder
from ubench.models.registry import ModelInfo, register_model

EMBED_DIM, DEPTH, HEADS, PATCH = 384, 8, 6, 16
DROP_RATE = 0.2


class ConvBN(nn.Sequential):
    """k x k conv ('same' padding, bias by default), optional BatchNorm and ReLU."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 3, bn: bool = False, relu: bool = True, bias: bool = True):
        layers = [nn.Conv2d(in_ch, out_ch, k, padding=(k - 1) // 2, bias=bias)]
        if bn:
            layers.append(nn.BatchNorm2d(out_ch))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BottleneckResidual(nn.Module):
    """Pre-activation bottleneck (BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1) + 1x1 projection shortcut."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        mid = out_ch // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_ch, 1),
        )
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class BiFusion(nn.Module):
    """Fuse a CNN map ``g`` (spatial attention) and a transformer map ``t`` (channel attention)."""

    def __init__(self, cnn_ch: int, vit_ch: int, reduction: int, mid_ch: int, out_ch: int, drop: float):
        super().__init__()
        self.se = nn.Sequential(
            nn.Conv2d(vit_ch, vit_ch // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(vit_ch // reduction, vit_ch, 1),
            nn.Sigmoid(),
        )
        self.spatial = ConvBN(2, 1, 7, bn=True, relu=False, bias=False)
        self.proj_g = ConvBN(cnn_ch, mid_ch, 1, bn=True, relu=False)
        self.proj_t = ConvBN(vit_ch, mid_ch, 1, bn=True, relu=False)
        self.bilinear = ConvBN(mid_ch, mid_ch, 3, bn=True, relu=True)
        self.residual = BottleneckResidual(cnn_ch + vit_ch + mid_ch, out_ch)
        self.drop = nn.Dropout2d(drop)

    def forward(self, g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        bp = self.bilinear(self.proj_g(g) * self.proj_t(t))
        pooled = torch.cat([g.amax(dim=1, keepdim=True), g.mean(dim=1, keepdim=True)], dim=1)
        g = torch.sigmoid(self.spatial(pooled)) * g
        t = self.se(t.mean((2, 3), keepdim=True)) * t
        return self.drop(self.residual(torch.cat([g, t, bp], dim=1)))


class AttentionGate(nn.Module):
    """Attention U-Net gate: weight the skip ``x`` by sigmoid(psi(relu(Wg g + Wx x)))."""

    def __init__(self, g_ch: int, x_ch: int, mid_ch: int):
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(g_ch, mid_ch, 1), nn.BatchNorm2d(mid_ch))
        self.w_x = nn.Sequential(nn.Conv2d(x_ch, mid_ch, 1), nn.BatchNorm2d(mid_ch))
        self.psi = nn.Sequential(nn.Conv2d(mid_ch, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.psi(F.relu(self.w_g(g) + self.w_x(x)))


class Up(nn.Module):
    """Bilinear x2 (align_corners); with a skip: gate it, concat [skip, up]; residual double conv."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int = 0):
        super().__init__()
        self.gate = AttentionGate(in_ch, skip_ch, out_ch) if skip_ch else None
        self.conv = ResidualDoubleConv(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([self.gate(x, skip), x], dim=1)
        return self.conv(x)


def _head(in_ch: int, num_classes: int, squeeze: int | None = None) -> nn.Sequential:
    layers = [ConvBN(in_ch, squeeze, 1, bn=True)] if squeeze else []
    width = squeeze or in_ch
    layers += [ConvBN(width, width, 3, bn=True), ConvBN(width, num_classes, 3, relu=False)]
    return nn.Sequential(*layers)


def _kaiming_init(m: nn.Module) -> None:
    """Reference ``init_weights``: Kaiming-normal (fan_in) convs, PyTorch-default bias, BN 1/0."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
            fan_in = m.weight[0].numel()
            nn.init.uniform_(m.bias, -(fan_in**-0.5), fan_in**-0.5)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class TransFuseS(nn.Module):
    """Parallel ResNet-34 (no layer4) and DeiT-S branches, BiFusion at three scales, 3 heads."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, drop_rate: float = DROP_RATE):
        super().__init__()
        self.cnn = ResNet34Encoder(in_channels)
        del self.cnn.layers[3]  # TransFuse drops layer4 (and the classifier)
        self.patch_embed = nn.Conv2d(in_channels, EMBED_DIM, PATCH, stride=PATCH)
        self.vit = ViTEncoder(EMBED_DIM, DEPTH, HEADS, 4 * EMBED_DIM, dropout=0.0, init="deit")
        self.vit_up1 = Up(EMBED_DIM, 128)
        self.vit_up2 = Up(128, 64)
        self.fuse0 = BiFusion(256, EMBED_DIM, 4, 256, 256, drop_rate / 2)
        self.fuse1 = BiFusion(128, 128, 2, 128, 128, drop_rate / 2)
        self.fuse2 = BiFusion(64, 64, 1, 64, 64, drop_rate / 2)
        self.merge1 = Up(256, 128, skip_ch=128)
        self.merge2 = Up(128, 64, skip_ch=64)
        self.head_fuse = _head(256, num_classes, squeeze=64)
        self.head_vit = _head(64, num_classes)
        self.head_joint = _head(64, num_classes)
        self.drop = nn.Dropout2d(drop_rate)
        for name, child in self.named_children():
            if name not in ("cnn", "patch_embed", "vit", "drop"):
                child.apply(_kaiming_init)

    def _transformer(self, x: torch.Tensor) -> list[torch.Tensor]:
        grid = self.patch_embed(x)
        b, d, h, w = grid.shape
        t0 = self.vit(grid.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, d, h, w)
        t0 = self.drop(t0)
        t1 = self.drop(self.vit_up1(t0))
        t2 = self.drop(self.vit_up2(t1))
        return [t0, t1, t2]

    def _cnn(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.cnn.pool(self.cnn.stem(x))
        c2 = self.drop(self.cnn.layers[0](x))
        c1 = self.drop(self.cnn.layers[1](c2))
        c0 = self.drop(self.cnn.layers[2](c1))
        return [c0, c1, c2]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        t0, t1, t2 = self._transformer(x)
        c0, c1, c2 = self._cnn(x)
        f0 = self.fuse0(c0, t0)
        f1 = self.merge1(f0, self.fuse1(c1, t1))
        f2 = self.merge2(f1, self.fuse2(c2, t2))

        def up(y: torch.Tensor, s: int) -> torch.Tensor:
            return F.interpolate(y, scale_factor=s, mode="bilinear", align_corners=True)

        return [up(self.head_fuse(f0), 16), up(self.head_vit(t2), 4), up(self.head_joint(f2), 4)]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="TransFuse",
        ubench_id=69,
        year=2021,
        paper="TransFuse: Fusing Transformers and CNNs for Medical Image Segmentation",
        deep_supervision=True,
        ref_params_m=26.248725,
        ref_source="U-Bench models/Hybrid/TransFuse/TransFuse.py (TransFuse_S, drop_rate 0.2), "
        "counted by instantiating it",
        ref_input_size=256,
        size_multiple=16,
        notes="three outputs [fusion@H/16, transformer@H/4, joint@H/4], joint last; untrained "
        "(U-Bench loads ImageNet ResNet-34 + DeiT-S); DeiT class token and positional table are "
        "unused in U-Bench's forward and left out (-74,112 params); token grid H/16 x W/16 "
        "instead of U-Bench's hard-coded 16x16 (identical at 256)",
    )
)
def transfuse(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """TransFuse-S with deep supervision, as U-Bench benchmarks it."""
    return TransFuseS(in_channels=in_channels, num_classes=num_classes)
