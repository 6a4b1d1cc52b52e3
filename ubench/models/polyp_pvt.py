"""Polyp-PVT: a PVTv2-B2 encoder with cascaded fusion, camouflage identification and similarity
aggregation modules.

Paper: Dong, Wang, Fan, Li, Fu, Shao, "Polyp-PVT: Polyp Segmentation with Pyramid Vision
Transformers", CAAI Artificial Intelligence Research 2023 (arXiv 2108.06932, 2021).

Configuration: U-Bench's ``polyp_pvt`` (repo FengheTan9/U-Bench, models/Transformer/Polyp_PVT/
Polyp_PVT.py, channel=32), flagged ``deeps_supervision`` in U-Bench's models/model_id.json:
- encoder: PVTv2-B2 (dims 64/128/320/512, depths 3/4/6/3), here untrained (U-Bench loads
  ImageNet weights);
- CIM on the stride-4 map: channel attention (avg- and max-pooled, shared 64->4->64 MLP) then
  spatial attention (7x7 conv over channel mean and max);
- CFM on the stride-8/16/32 maps, each first reduced to 32 channels by a 1x1 conv + BN (no ReLU,
  as in the reference's BasicConv2d): products of upsampled deeper maps with shallower ones, then
  concatenations and 3x3 conv + BN fusions, ending at stride 8;
- SAM: a graph-convolution non-local step on the CFM map, guided by the CIM map (reduced to 32
  channels and halved to stride 8), with 4x4 anchor nodes;
- two 1x1 heads (CFM and SAM) upsampled x8 bilinearly.
The forward returns [CFM prediction, SAM prediction], both full size; U-Bench trains on their
mean loss and evaluates the last one. Spatial size: any multiple of 32. Parameters at 3 in /
1 class: 25,107,604 (PVTv2-B2 without head 24,849,856), counted layer by layer from U-Bench's code
(the paper quotes 25.11M).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.pvt import PVTv2Encoder
from ubench.models.registry import ModelInfo, register_model

CHANNEL = 32
STRIDE = 32


class ConvBN(nn.Module):
    """Bias-free conv + BatchNorm, no activation (the reference's BasicConv2d never applies one)."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class CFM(nn.Module):
    """Cascaded fusion of the three deepest maps (strides 32, 16, 8) into one at stride 8."""

    def __init__(self, c: int):
        super().__init__()
        self.up1, self.up2, self.up3, self.up4 = (ConvBN(c, c, 3) for _ in range(4))
        self.up5 = ConvBN(2 * c, 2 * c, 3)
        self.cat2 = ConvBN(2 * c, 2 * c, 3)
        self.cat3 = ConvBN(3 * c, 3 * c, 3)
        self.out = ConvBN(3 * c, c, 3)

    def forward(self, x1, x2, x3):  # strides 32, 16, 8
        x2_1 = self.up1(up2(x1)) * x2
        x3_1 = self.up2(up2(up2(x1))) * self.up3(up2(x2)) * x3
        x2_2 = self.cat2(torch.cat([x2_1, self.up4(up2(x1))], dim=1))
        x3_2 = self.cat3(torch.cat([x3_1, self.up5(up2(x2_2))], dim=1))
        return self.out(x3_2)


class ChannelAttention(nn.Module):
    """Sigmoid of a shared bottleneck MLP over average- and max-pooled channels."""

    def __init__(self, c: int, ratio: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // ratio, 1, bias=False)
        self.fc2 = nn.Conv2d(c // ratio, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mlp = lambda t: self.fc2(F.relu(self.fc1(t)))  # noqa: E731
        return torch.sigmoid(mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
    """Sigmoid of a 7x7 conv over the channel-wise mean and max."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class GCN(nn.Module):
    """One graph convolution: mix nodes (minus identity), then mix states, ReLU."""

    def __init__(self, states: int, nodes: int):
        super().__init__()
        self.node_conv = nn.Conv1d(nodes, nodes, 1)
        self.state_conv = nn.Conv1d(states, states, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, states, nodes)
        h = self.node_conv(x.transpose(1, 2)).transpose(1, 2) - x
        return F.relu(self.state_conv(h))


class SAM(nn.Module):
    """Similarity aggregation: project pixels onto 4x4 anchor nodes taken from the CIM-masked map,
    reason over the nodes with a GCN, project back and add."""

    def __init__(self, c: int = CHANNEL, mid: int = 16, mids: int = 4):
        super().__init__()
        self.mid, self.mids = mid, mids
        self.conv_state = nn.Conv2d(c, mid, 1)
        self.conv_proj = nn.Conv2d(c, mid, 1)
        self.gcn = GCN(mid, mids * mids)
        self.conv_extend = nn.Conv2d(mid, c, 1, bias=False)

    def forward(self, x: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if edge.shape[-2:] != (h, w):
            edge = F.interpolate(edge, size=(h, w), mode="nearest")
        edge = edge.softmax(dim=1)[:, 1:2]  # the reference keeps channel 1 of the softmax
        state = self.conv_state(x).view(n, self.mid, -1)
        proj = self.conv_proj(x)
        anchors = F.adaptive_avg_pool2d(proj * edge, self.mids + 2)[:, :, 1:-1, 1:-1]
        anchors = anchors.reshape(n, self.mid, -1)  # (B, mid, nodes)
        assign = torch.softmax(anchors.transpose(1, 2) @ proj.view(n, self.mid, -1), dim=1)
        nodes = self.gcn(state @ assign.transpose(1, 2))  # (B, mid, nodes)
        back = (nodes @ assign).view(n, self.mid, h, w)
        return x + self.conv_extend(back)


class PolypPVT(nn.Module):
    """PVTv2-B2 features -> CIM (stride 4), CFM (strides 8-32) -> SAM; two heads."""

    def __init__(self, in_channels=3, num_classes=1, c=CHANNEL):
        super().__init__()
        self.backbone = PVTv2Encoder(in_channels)
        d = self.backbone.dims
        self.trans2_0 = ConvBN(d[0], c, 1)
        self.trans2_1 = ConvBN(d[1], c, 1)
        self.trans3_1 = ConvBN(d[2], c, 1)
        self.trans4_1 = ConvBN(d[3], c, 1)
        self.cfm = CFM(c)
        self.ca = ChannelAttention(d[0])
        self.sa = SpatialAttention()
        self.sam = SAM(c)
        self.out_sam = nn.Conv2d(c, num_classes, 1)
        self.out_cfm = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x1, x2, x3, x4 = self.backbone(x)
        x1 = self.ca(x1) * x1
        cim = self.sa(x1) * x1
        cfm = self.cfm(self.trans4_1(x4), self.trans3_1(x3), self.trans2_1(x2))
        guide = F.interpolate(self.trans2_0(cim), scale_factor=0.5, mode="bilinear", align_corners=True)
        sam = self.sam(cfm, guide)
        up8 = lambda t: F.interpolate(t, scale_factor=8, mode="bilinear")  # noqa: E731
        return [up8(self.out_cfm(cfm)), up8(self.out_sam(sam))]


@register_model(
    ModelInfo(
        family="transformer",
        ubench_name="Polyp_PVT",
        ubench_id=83,
        year=2021,
        paper="Polyp-PVT: Polyp Segmentation with Pyramid Vision Transformers",
        deep_supervision=True,
        ref_params_m=25.107604,
        ref_source="U-Bench models/Transformer/Polyp_PVT/Polyp_PVT.py + pvtv2.py (PolypPVT(channel=32) "
        "on pvt_v2_b2), counted layer by layer",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="PVTv2-B2 backbone built untrained (U-Bench loads ImageNet weights); returns "
        "[CFM prediction, SAM prediction], the SAM one (last) is the final output as in U-Bench; "
        "in_channels reaches the first patch embedding (U-Bench's builds it for 3).",
    )
)
def polyp_pvt(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """Polyp-PVT as U-Bench benchmarks it (PVTv2-B2, channel 32, two outputs)."""
    return PolypPVT(in_channels=in_channels, num_classes=num_classes)
