"""UTANet: a ResNet-34 U-Net whose skip connections come from a task-adaptive mixture of experts.

Paper: "UTANet: Task-Adaptive Mixture of Skip Connections for Enhanced Medical Image Segmentation",
AAAI 2025 (https://ojs.aaai.org/index.php/AAAI/article/view/32627, the reference U-Bench cites).

Configuration: U-Bench's ``UTANet`` = ``utanet(input_channel=3, num_classes=1)`` (repo
FengheTan9/U-Bench, models/CNN/UTANet/UTANet.py and ta_mosc.py), id 97, no deep supervision in
models/model_id.json. The factory passes only the channel and class counts, so the class defaults
hold: ``pretrained=True`` (which in UTANet means "stage 2": the TA-MoSC skip module is built and
used), ``topk=2``, ``img_size=224`` (unused: nothing depends on it).

Architecture:
- encoder: a 3x3 conv + BN + ReLU at full resolution (64 channels, takes ``in_channels``), a 2x2
  max-pool, then layer1..layer4 of torchvision's resnet34 (64, 128, 256, 512 channels at strides
  2, 4, 8, 16). U-Bench builds the whole ``torchvision.models.resnet34(pretrained=True)`` and keeps
  it as a submodule; its 7x7 stem and 1000-way classifier are never run;
- TA-MoSC: the full-resolution map (bilinear x0.5), layer1, layer2 (x2) and layer3 (x4) are
  concatenated at stride 2 (512 channels) and fused to 64 by 1x1 conv + BN + ReLU. Four experts
  (1x1 convs 64 -> 128 -> 128, BN, ReLU, 1x1 -> 64) are shared by four gates; each gate routes
  every image, by softmax(global-average-pool(x) @ gate), to its top 2 experts (weights
  re-normalised by a second softmax over the two) and yields one map. Each map goes through a
  1x1 conv + BN + ReLU to the width of its skip (64, 64, 128, 256) and is resized to that skip's
  stride (x2, x1, x0.5, x0.25) in place of the encoder features;
- decoder: four steps (2x2 transposed conv halving the channels + BN + ReLU, concatenation
  [skip, upsampled], 3x3 conv + BN + ReLU) to 256, 128, 64, 32 channels, back to full resolution;
- head: 1x1 conv 32 -> 16 + BN + ReLU, 1x1 conv to the classes (logits).

Total stride 16. Parameters at 3 in / 1 class: 24,276,969, of which 522,536 are the unused
resnet34 stem (conv1, bn1: 9,536) and classifier (fc: 513,000), counted by instantiating U-Bench's
module.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.resnet import ResNet34Encoder, torchvision_resnet_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 16
STEM_WIDTH = 64
SKIP_WIDTHS = (64, 64, 128, 256)  # full-resolution stem, layer1, layer2, layer3
DECODER_WIDTHS = (256, 128, 64, 32)  # deepest first
MIX_WIDTH = 64
NUM_EXPERTS = 4
TOP_K = 2


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Bilinear rescaling by a power of two (align_corners=False), a no-op for scale 1."""
    return x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bilinear")


class Expert(nn.Sequential):
    """A pointwise MLP on a feature map: 1x1 to twice the width, 1x1, BN, ReLU, 1x1 back."""

    def __init__(self, dim: int, expansion: int = 2):
        hidden = expansion * dim
        super().__init__(
            nn.Conv2d(dim, hidden, 1),
            nn.Conv2d(hidden, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, dim, 1),
        )


def squared_cv(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Squared coefficient of variation (unbiased variance / mean^2): the load-balancing loss."""
    x = x.float()
    return x.var() / (x.mean() ** 2 + eps)


class MixtureOfSkips(nn.Module):
    """Experts shared by several gates; each gate yields its own mixture of the experts' outputs.

    A gate scores the experts from the globally pooled input, keeps the ``top_k`` best per image
    and weights their outputs by a softmax over the kept scores. An expert runs once per gate on
    the images that chose it (its BatchNorm sees that sub-batch). In training, an expert that no
    image chose still runs on one image drawn at random, and its output, weighted as that image's
    slot ``r % top_k`` (``r`` drawn from range(batch)), is added to that image's mixture: U-Bench's
    way of giving every expert a gradient. ``forward`` returns the gates' maps and the summed
    load-balancing loss (squared coefficient of variation of each gate's expert usage).
    """

    def __init__(self, dim: int, num_experts: int, num_gates: int, top_k: int):
        super().__init__()
        if not 0 < top_k <= num_experts:
            raise ValueError(f"top_k must be in 1..{num_experts}, got {top_k}")
        self.top_k = top_k
        self.experts = nn.ModuleList(Expert(dim) for _ in range(num_experts))
        self.gates = nn.ParameterList(nn.Parameter(torch.empty(dim, num_experts)) for _ in range(num_gates))
        for gate in self.gates:
            nn.init.xavier_uniform_(gate)

    def _mix(self, x: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        probs = torch.softmax(x.mean((2, 3)) @ gate, dim=1)  # (B, experts)
        top_p, top_i = probs.topk(self.top_k, dim=1)
        weights = torch.softmax(top_p, dim=1)  # (B, top_k)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            chosen = top_i == e  # (B, top_k); at most one slot per image
            rows = chosen.any(1).nonzero().flatten()
            if rows.numel():
                w = (weights * chosen).sum(1)[rows]
                out = out.index_add(0, rows, expert(x[rows]) * w.view(-1, 1, 1, 1))
            elif self.training:
                slot = torch.randint(0, batch, (1,), device=x.device)
                row, k = slot // self.top_k, slot % self.top_k
                w = weights[row, k]
                out = out.index_add(0, row, expert(x[row]) * w.view(-1, 1, 1, 1))
        return out, squared_cv(probs.sum(0))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps, losses = zip(*(self._mix(x, gate) for gate in self.gates))
        return list(maps), sum(losses)


class TaskAdaptiveSkips(nn.Module):
    """TA-MoSC: builds every skip connection from one fused multi-scale map at stride 2.

    Input: the four shallow encoder maps (strides 1, 2, 4, 8); output: four maps of the same
    widths and strides, each a gate's mixture of experts adapted by a 1x1 conv + BN + ReLU.
    """

    scales = (1, 2, 4, 8)  # stride of each skip

    def __init__(self, widths=SKIP_WIDTHS, dim: int = MIX_WIDTH, num_experts: int = NUM_EXPERTS,
                 top_k: int = TOP_K):
        super().__init__()
        self.fuse = nn.Sequential(*conv_bn_relu(sum(widths), dim, 1))
        self.moe = MixtureOfSkips(dim, num_experts, len(widths), top_k)
        self.adapt = nn.ModuleList(nn.Sequential(*conv_bn_relu(dim, w, 1)) for w in widths)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        common = 2  # every map is brought to stride 2 (layer1's)
        x = self.fuse(torch.cat([_resize(f, s / common) for f, s in zip(feats, self.scales)], 1))
        maps, _balance_loss = self.moe(x)  # U-Bench's UTANet computes the loss and discards it
        return [_resize(adapt(m), common / s) for adapt, m, s in zip(self.adapt, maps, self.scales)]


class UpStep(nn.Module):
    """2x2 transposed conv halving the channels (+ BN + ReLU), concatenation [skip, up], 3x3 conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose2d(in_ch, in_ch // 2, 2, stride=2), nn.BatchNorm2d(in_ch // 2),
                                nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(*conv_bn_relu(in_ch // 2 + skip_ch, out_ch, 3))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([skip, self.up(x)], 1))


class UTANet(nn.Module):
    """Full-resolution stem -> resnet34 layer1..4 -> TA-MoSC skips -> four up steps -> 1x1 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, top_k: int = TOP_K):
        super().__init__()
        # torchvision's resnet34 as U-Bench keeps it: only ``layers`` run; the 7x7 stem (always 3
        # channels) and the ImageNet classifier are built, counted and loaded, never used
        self.encoder = ResNet34Encoder(3)
        self.encoder.fc = nn.Linear(ResNet34Encoder.out_channels[-1], 1000)
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, STEM_WIDTH, 3))
        self.pool = nn.MaxPool2d(2, 2)
        self.skips = TaskAdaptiveSkips(top_k=top_k)
        ins = (ResNet34Encoder.out_channels[-1],) + DECODER_WIDTHS[:-1]
        self.decoder = nn.ModuleList(
            UpStep(i, s, o) for i, s, o in zip(ins, reversed(SKIP_WIDTHS), DECODER_WIDTHS)
        )
        w = DECODER_WIDTHS[-1]
        self.head = nn.Sequential(*conv_bn_relu(w, w // 2, 1), nn.Conv2d(w // 2, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.stem(x)]
        y = self.pool(feats[0])
        for layer in self.encoder.layers:
            y = layer(y)
            feats.append(y)
        skips = self.skips(feats[:-1])
        y = feats[-1]
        for step, skip in zip(self.decoder, reversed(skips)):
            y = step(y, skip)
        return self.head(y)


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="UTANet",
        ubench_id=97,
        year=2025,
        paper="UTANet: Task-Adaptive Mixture of Skip Connections for Enhanced Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=24.276969,
        ref_source="U-Bench models/CNN/UTANet/UTANet.py + ta_mosc.py (utanet(input_channel=3, "
        "num_classes=1) = UTANet(pretrained=True, topk=2, img_size=224), torchvision resnet34 "
        "built without weights), counted by instantiating it",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="ResNet-34 layers untrained by default; U-Bench loads torchvision's ImageNet resnet34 "
        "into its whole resnet submodule (extra['pretrained'] maps every checkpoint tensor, "
        "classifier included, onto encoder.*). U-Bench keeps the full torchvision module but runs "
        "only layer1..4: the 7x7 stem conv1/bn1 (9,536 params) and fc (513,000) are kept here as "
        "encoder.stem / encoder.fc for the count and never run (unused_params). input_channel "
        "reaches U-Bench's own full-resolution 3x3 stem, as here (the unused 7x7 stem stays at 3). "
        "UTANet's pretrained=True flag is not about weights: it selects 'stage 2', the TA-MoSC "
        "skip module, which U-Bench's factory always builds; the 'stage 1' plain-skip variant "
        "(pretrained=False) is not offered. MoE auxiliary loss: ta_mosc's MoE returns a "
        "load-balancing loss (sum over the 4 gates of the squared coefficient of variation of "
        "expert usage); U-Bench's UTANet.forward discards it and returns the logits only (the "
        "`return out, aux_loss` line is commented out), so U-Bench's training (main.py, "
        "BCEDiceLoss on the output) never uses it. Ours likewise returns the logits only; the "
        "loss is still computed by skips.moe (its forward returns (maps, loss)). Routing is the "
        "same computation restructured: each expert runs once per gate on the sub-batch of "
        "images that selected it (the same sub-batch U-Bench's expanded-batch index_add feeds "
        "it, so BatchNorm statistics match); in training an expert nobody selected runs on one "
        "random image as in U-Bench (same torch.randint draw, added to that image's mixture). In "
        "eval mode an expert no image selects gets no gradient (top-2 of 4 routing). Total "
        "stride 16 (max-pool + three stride-2 stages; the x0.25/x0.5 skip rescaling needs exact "
        "sizes). Output at full resolution, logits (U-Bench's sigmoid is built but not applied).",
        extra={
            "unused_params": [
                "encoder.stem.0.weight", "encoder.stem.1.weight", "encoder.stem.1.bias",
                "encoder.fc.weight", "encoder.fc.bias",
            ],
            "pretrained": torchvision_resnet_record(
                "resnet34", "encoder.",
                "torchvision.models.resnet34(pretrained=True) -> UTANet.resnet (its layer1..4 run as "
                "conv2..conv5; conv1, bn1, fc loaded but unused)",
                drop_fc=False,
            ),
        },
    )
)
def utanet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """UTANet as U-Bench benchmarks it (resnet34 layers, TA-MoSC skips with 4 experts, top-2)."""
    return UTANet(in_channels=in_channels, num_classes=num_classes)
