"""TA-Net: a CE-Net-like context encoder with channel and spatial attention on concatenated skips.

Paper: Pang et al., "Tumor attention networks: Better feature selection, better tumor
segmentation", Neural Networks, 2021 (TA-Net: tumor attention layers, channel then spatial, on
the decoder's skip fusions).

Configuration: U-Bench's ``TA_Net(input_channel=3, num_classes=1)`` (repo FengheTan9/U-Bench,
models/CNN/TA_Net/TA_Net.py; models/__init__.py imports the class as is), id 40, no deep
supervision in models/model_id.json. It has no other options.

- Encoder: torchvision ResNet-34 (7x7/2 stem + BN + ReLU, 3x3/2 max-pool, layer1..layer4 of
  widths 64, 128, 256, 512), built by U-Bench with ``resnet34(pretrained=True)``; here
  ``ResNet34Encoder`` from ops/resnet.py, untrained with torchvision's initialisation, its keys
  mapped from the torchvision checkpoint in ``extra["pretrained"]``. The classifier is not built.
- Context at stride 32: a dense atrous block (3x3 convs of dilation 1, 3, 5 and one 1x1 conv
  shared by three branches, biases zeroed; the input plus relu(d1 x), relu(m d3 x),
  relu(m d3 d1 x), relu(m d5 d3 d1 x)), then a pooling pyramid: max-pools of size = stride 2, 3,
  5, 6, one shared 1x1 conv to a single channel, bilinear back to the map's size, concatenated
  in front of the 512 channels (516).
- Decoder: upsampling blocks (1x1 conv to in/4, 3x3 transposed conv x2, 1x1 conv; each with bias,
  BN, ReLU) to 256, 128, 64 channels; each output is concatenated with layer3, layer2, layer1
  (so 512, 256, 128 channels) and reweighted by a channel gate (a shared Linear(C, C/2) -> ReLU ->
  Linear(C/2, C) MLP on the spatial mean and on the spatial max, summed, sigmoid) and then a
  spatial gate (7x7 conv without bias over the per-pixel channel mean and max, sigmoid). A fourth
  upsampling block (128 -> 64) brings stride 2.
- Head: 4x4 transposed conv x2 to 32, ReLU, 3x3 conv, ReLU, 3x3 conv to the classes.

Spatial size: square multiples of 32 from 192 (the 6x6 pooling needs layer4 at least 6 x 6).
Parameters at 3 in / 1 class: 29,570,395, of which 21,284,672 in the encoder (counted by
instantiating U-Bench's module with the backbone built without weights).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.linknet import PYRAMID_POOLS, DenseAtrousContext, LinkNetUp, PoolingPyramid
from ubench.models.ops.resnet import ResNet34Encoder, torchvision_resnet_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
SMALLEST = STRIDE * max(PYRAMID_POOLS)  # 192: layer4 must hold one 6x6 window
SIZES = tuple(range(SMALLEST, 1024 + 1, STRIDE))
UP_WIDTHS = (256, 128, 64, 64)  # outputs of the four upsampling blocks
HEAD_WIDTH = 32


class MeanMaxChannelGate(nn.Module):
    """Per-channel sigmoid gates from one MLP (halving its width, with biases) applied to the
    spatial mean and to the spatial max of the map, the two results summed."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(channels, channels // 2), nn.ReLU(inplace=True), nn.Linear(channels // 2, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        logits = self.mlp(flat.mean(dim=2)) + self.mlp(flat.amax(dim=2))
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """Per-pixel sigmoid gates from a bias-free 7x7 conv over the channel mean and channel max."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(stats))


class AttentiveSkipStage(nn.Module):
    """Upsample, concatenate the encoder map of that scale behind it, gate channels, then pixels."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int):
        super().__init__()
        self.up = LinkNetUp(in_ch, out_ch)
        self.channel_gate = MeanMaxChannelGate(out_ch + skip_ch)
        self.spatial_gate = SpatialGate()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.spatial_gate(self.channel_gate(torch.cat([self.up(x), skip], dim=1)))


class TANet(nn.Module):
    """ResNet-34 -> dense atrous context -> pooling pyramid -> three attentive skip stages ->
    one more upsampling block -> transposed-conv head (full-size logits)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = ResNet34Encoder(in_channels)
        widths = ResNet34Encoder.out_channels  # 64 (stem), 64, 128, 256, 512
        self.context = DenseAtrousContext(widths[-1])
        self.pyramid = PoolingPyramid(widths[-1])
        stage_in = widths[-1] + len(PYRAMID_POOLS)
        stages = []
        for out_ch, skip_ch in zip(UP_WIDTHS[:3], widths[3:0:-1]):  # skips: layer3, layer2, layer1
            stages.append(AttentiveSkipStage(stage_in, out_ch, skip_ch))
            stage_in = out_ch + skip_ch
        self.stages = nn.ModuleList(stages)
        self.last_up = LinkNetUp(stage_in, UP_WIDTHS[3])
        self.head = nn.Sequential(
            nn.ConvTranspose2d(UP_WIDTHS[3], HEAD_WIDTH, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_WIDTH, num_classes, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, *skips, top = self.encoder(x)  # the stride-2 stem map is not used as a skip
        y = self.pyramid(self.context(top))
        for stage in self.stages:
            y = stage(y, skips.pop())
        return self.head(self.last_up(y))


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="TA_Net",
        ubench_id=40,
        year=2021,
        paper="Tumor attention networks: Better feature selection, better tumor segmentation",
        deep_supervision=False,
        ref_params_m=29.570395,
        ref_source="U-Bench models/CNN/TA_Net/TA_Net.py (TA_Net(input_channel=3, num_classes=1), "
        "torchvision resnet34 backbone built without loading weights), counted by instantiating it",
        ref_input_size=256,
        input_sizes=SIZES,
        size_multiple=STRIDE,
        notes="ResNet-34 encoder untrained by default with torchvision's init (U-Bench: ImageNet "
        "weights from torchvision resnet34(pretrained=True); loadable via extra['pretrained']). "
        "U-Bench ignores input_channel (the ResNet stem always takes 3 channels; its data loaders "
        "repeat grey images to 3); here the stem takes in_channels (summing a pretrained stem "
        "kernel over its input channels reproduces the repetition for 1 channel). The pooling "
        "pyramid's 6x6 max-pool needs layer4 >= 6x6, so inputs are multiples of 32 from 192; "
        "U-Bench also takes non-square ones, the registry's fixed-size check only square ones. "
        "U-Bench's forward evaluates dilate1(x) three times and dilate2(dilate1(x)) twice; they "
        "are computed once here (same values). U-Bench's unused output_features method and its "
        "unused attention/pyramid variants (DACblock_without_atrous, PSPModule, "
        "ChannelMeanAttention, ...) are not built; torchvision's classifier (fc) is not built "
        "either (U-Bench does not keep it in the model).",
        extra={
            "pretrained": torchvision_resnet_record(
                "resnet34", "encoder.",
                "torchvision.models.resnet34(pretrained=True) -> TA_Net.firstconv/firstbn (conv1/bn1) "
                "and encoder1..encoder4 (layer1..layer4); fc is not kept",
            ),
        },
    )
)
def ta_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """TA-Net as U-Bench benchmarks it (ResNet-34 encoder, untrained unless loaded)."""
    return TANet(in_channels=in_channels, num_classes=num_classes)
