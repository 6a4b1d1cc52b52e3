"""U-Net v2: a PVTv2-B2 encoder whose skip maps are refined by semantics-and-detail infusion.

Paper: Peng, Sonka, Chen, "U-Net v2: Rethinking the Skip Connections of U-Net for Medical Image
Segmentation", arXiv 2311.17791, 2023 (ISBI 2025).

Configuration: U-Bench's ``UNetV2`` (repo FengheTan9/U-Bench, models/CNN/UNet_v2/UNet_v2.py +
pvtv2.py; models/__init__.py builds ``UNetV2(input_channel=3, num_classes=1)``, so channel=32,
deep_supervision=True, and the PVTv2-B2 ImageNet checkpoint downloaded from Google Drive into
``encoder.backbone``; model_id.json flags ``deeps_supervision``):
- encoder: PVTv2-B2 (dims 64/128/320/512, depths 3/4/6/3, strides 4/8/16/32), untrained here;
- each of the four maps: CBAM-style channel attention (avg- and max-pooled, shared bias-free
  C -> C/16 -> C MLP, sigmoid) then spatial attention (7x7 conv over channel mean and max,
  sigmoid), each multiplied in, then a 1x1 conv + BN (no ReLU: the reference's BasicConv2d never
  applies its ReLU) to 32 channels;
- SDI per level: every one of the four 32-channel maps is brought to that level's size (adaptive
  average pooling from finer maps, bilinear align_corners=True from coarser ones), passed through
  its own 3x3 conv (bias), and the four results are multiplied;
- decoder: from the stride-32 SDI map, three steps of a 4x4/2 transposed conv (no bias) plus the
  next finer SDI map; a 1x1 head on each of the four decoder maps, upsampled bilinearly
  (align_corners=False) by 32, 16, 8, 4.
The forward returns the four full-size logits, coarsest first, the stride-4 one (the final output)
last. Spatial size: any multiple of 32. Parameters at 3 in / 1 class: 25,145,036 (PVTv2-B2 without
head 24,849,856), counted by instantiating U-Bench's module; 16,384 of them belong to a fourth
transposed conv (``deconv5``) the reference builds but never runs, kept here as ``ups.3``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.pvt import PVTv2Encoder, pvt_v2_record
from ubench.models.registry import ModelInfo, register_model

CHANNEL = 32
STRIDE = 32


class ChannelAttention(nn.Module):
    """CBAM channel gate: sigmoid of a shared bottleneck MLP (1x1 convs, no bias, C/16) applied to
    the average- and the max-pooled map, summed."""

    def __init__(self, c: int, ratio: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // ratio, 1, bias=False)
        self.fc2 = nn.Conv2d(c // ratio, c, 1, bias=False)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
    """CBAM spatial gate: sigmoid of a 7x7 conv (no bias) over the channel mean and max."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(pooled))


class SkipRefine(nn.Module):
    """One encoder map: channel gate, then spatial gate, then 1x1 conv + BN down to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.ca = ChannelAttention(in_ch)
        self.sa = SpatialAttention()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ca(x) * x
        x = self.sa(x) * x
        return self.bn(self.conv(x))


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """SDI's resampling: average pooling down, bilinear (align_corners=True) up, else unchanged."""
    if tuple(x.shape[-2:]) == size:
        return x
    if x.shape[-1] > size[-1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class SDI(nn.Module):
    """Semantics and detail infusion for one level: the Hadamard product of all levels' maps, each
    resampled to this level's size and smoothed by its own 3x3 conv."""

    def __init__(self, c: int, levels: int = 4):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(levels))

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        out = None
        for conv, f in zip(self.convs, feats):
            y = conv(resize_to(f, size))
            out = y if out is None else out * y
        return out


class UNetV2(nn.Module):
    """PVTv2-B2 -> per-level attention + 1x1 reduction -> SDI per level -> transposed-conv decoder
    with a head at every level (deep supervision, final output last)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, c: int = CHANNEL):
        super().__init__()
        # U-Bench repeats a grey input to 3 channels so the ImageNet backbone applies unchanged
        self.repeat_grey = in_channels == 1
        self.encoder = PVTv2Encoder(3 if self.repeat_grey else in_channels)
        dims = self.encoder.dims
        self.skips = nn.ModuleList(SkipRefine(d, c) for d in dims)
        self.sdi = nn.ModuleList(SDI(c, len(dims)) for _ in dims)
        self.heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for _ in dims)  # coarsest first
        # the last one is built by the reference (deconv5) but never used
        self.ups = nn.ModuleList(nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, bias=False) for _ in dims)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.repeat_grey:
            x = x.expand(-1, 3, -1, -1)
        feats = [skip(f) for skip, f in zip(self.skips, self.encoder(x))]
        fused = [sdi(feats, tuple(f.shape[-2:])) for sdi, f in zip(self.sdi, feats)]
        y = fused[-1]
        outs = [self.heads[0](y)]
        for step, skip in enumerate(reversed(fused[:-1])):
            y = self.ups[step](y) + skip
            outs.append(self.heads[step + 1](y))
        scales = [STRIDE >> i for i in range(len(outs))]
        return [F.interpolate(o, scale_factor=s, mode="bilinear") for o, s in zip(outs, scales)]


# U-Bench's Encoder default pretrain_path (models/CNN/UNet_v2/UNet_v2.py) is a Google Drive link
# with session parameters (file id 1l60Nzd2EQNZWbMHkvItDUUUp6KTlD0vt), which may expire; the PVT
# authors publish pvt_v2_b2.pth as a GitHub release, the record's URL (not checked to be
# byte-identical: ubench records the SHA-256 of what it loads)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="UNetV2",
        ubench_id=47,
        year=2023,
        paper="U-Net v2: Rethinking the Skip Connections of U-Net for Medical Image Segmentation",
        deep_supervision=True,
        ref_params_m=25.145036,
        ref_source="U-Bench models/CNN/UNet_v2/UNet_v2.py + pvtv2.py (UNetV2(input_channel=3, "
        "num_classes=1): channel=32, pvt_v2_b2), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="PVTv2-B2 backbone built untrained (U-Bench downloads the PVTv2-B2 ImageNet "
        "checkpoint pvt_v2_b2.pth from Google Drive into encoder.backbone). Returns four full-size "
        "logits, coarsest first, final (stride-4 head) last. The reference builds a fourth "
        "transposed conv (deconv5) it never runs: kept as ups.3 for an identical count "
        "(unused_params). A 1-channel input is repeated to 3 channels as in U-Bench; other "
        "in_channels reach the first patch embedding (U-Bench builds it for 3 only). SDI resizes "
        "to the level's (H, W) where U-Bench assumes square maps: same result for square inputs.",
        extra={
            "unused_params": ["ups.3.weight"],
            "pretrained": pvt_v2_record(
                "b2", "encoder.",
                "torch.hub.load_state_dict_from_url(<Google Drive URL of pvt_v2_b2.pth>) loaded into "
                "pvtv2.pvt_v2_b2() (keys patch_embed{1-4}, block{1-4}, norm{1-4}; non-matching keys "
                "such as head dropped)"),
        },
    )
)
def unet_v2(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """U-Net v2 as U-Bench benchmarks it (PVTv2-B2, channel 32, four outputs)."""
    return UNetV2(in_channels=in_channels, num_classes=num_classes)
