"""G-CASCADE: a PVTv2-B2 encoder with a graph-convolutional cascaded decoder, a head per level.

Paper: Rahman & Marculescu, "G-CASCADE: Efficient Cascaded Graph Convolutional Decoding for 2D
Medical Image Segmentation", WACV 2024 (arXiv 2310.16175).

Configuration: U-Bench's ``G_CASCADE`` (repo FengheTan9/U-Bench, models/Hybrid/G_CASCADE/
G_CASCADE.py + decoders.py + gcn_lib/ + pvtv2.py; models/__init__.py maps it to
``g_cascade(num_classes, input_channel)``, which builds ``PVT_GCASCADE`` with its defaults:
img_size 256, k 11, conv 'mr', gcb_act 'gelu', activation 'relu', skip_aggregation 'additive';
id 58, flagged ``deeps_supervision`` in models/model_id.json):
- a learned grey stem (1x1 conv 1 -> 3 + BN + ReLU), applied only to 1-channel inputs;
- encoder: PVTv2-B2 (dims 64/128/320/512, strides 4/8/16/32; ops/pvt.py), untrained here
  (U-Bench loads the ImageNet checkpoint from HuggingFace, FengheTan9/U-Stone);
- decoder (GCASCADE, additive): on the stride-32 map a graph block, then the spatial gate
  (ops/cascade.py ``SpatialGate``, one shared by the four levels); per finer level an up-block
  (nearest x2, 3x3 depth-wise conv + BN + ReLU, 1x1 conv to the level's width) plus the encoder
  skip, a graph block and the spatial gate;
- graph block (Vision GNN's "Grapher"): 1x1 conv + BN, a dynamic max-relative graph conv, 1x1 conv
  (2C -> C) + BN, plus the input. The graph conv links every pixel to its k = 11 nearest nodes
  (squared distance between L2-normalised features plus a fixed relative-position term); the nodes
  are the pixels, average-pooled by 1, 1, 4, 2 (deepest level first); it concatenates each feature
  with the max over its neighbours of (neighbour - itself), interleaved channel by channel, and
  mixes them with a 1x1 conv in 4 groups (C -> 2C) + BN + GELU;
- heads: a 1x1 conv per decoder map (512, 320, 128, 64 channels), upsampled bilinearly
  (align_corners=False) by 32, 16, 8, 4.
The forward returns the four full-size logits, coarsest first; the stride-4 one, which U-Bench
evaluates (``output[-1]``), is last. Spatial size: any multiple of 32. Parameters at 3 in /
1 class: 30,957,874 (PVTv2-B2 without head 24,849,856, decoder 6,106,978, heads 1,028, grey stem
12), of which 4,329,472 are the four frozen relative-position tables: 26,628,402 trainable (the
number U-Bench's main.py logs); counted by instantiating U-Bench's module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.cascade import CascadeHeads, SpatialGate, grey_stem
from ubench.models.ops.pvt import PVTv2Encoder, pvt_v2_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
REF_SIZE = 256  # U-Bench's img_size: the relative-position tables are built for this input
NEIGHBOURS = 11
POOLING = (1, 1, 4, 2)  # how much each level's graph pools its neighbour nodes, deepest first
U_STONE_PVT_V2_B2 = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/pvt_v2_b2.pth"


def sincos_grid_embedding(dim: int, side: int) -> torch.Tensor:
    """MAE's fixed 2-D sine-cosine embedding of a ``side`` x ``side`` grid, (side**2, dim), in
    float64: the first half of the channels encodes the column, the second the row, each as
    [sin, cos] at dim/4 frequencies 10000**(-i / (dim/4))."""
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    coords = torch.arange(side, dtype=torch.float64)
    row, col = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * freqs
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(col), encode(row)], dim=1)


def relative_position_bias(dim: int, nodes: int, pooling: int) -> torch.Tensor:
    """ViG's relative-position term added to the kNN distances, (1, nodes, nodes // pooling**2):
    minus the scaled similarity 2 <e_i, e_j> / dim of the grid embeddings, resized bicubically to
    the pooled neighbour count (float32 before resizing, as the reference)."""
    emb = sincos_grid_embedding(dim, int(nodes**0.5))
    sim = (2 * (emb @ emb.T) / dim).float()[None, None]
    sim = F.interpolate(sim, size=(nodes, nodes // pooling**2), mode="bicubic", align_corners=False)
    return -sim[0]


def knn_indices(nodes: torch.Tensor, keys: torch.Tensor, k: int, bias: torch.Tensor) -> torch.Tensor:
    """For nodes (B, C, N) and candidate neighbours (B, C, M), the indices (B, N, k) of the k
    neighbours nearest each node: squared distance between L2-normalised features, plus ``bias``
    (1, N, M). No gradient flows through the graph."""
    with torch.no_grad():
        q = F.normalize(nodes, dim=1).transpose(1, 2)
        c = q if keys is nodes else F.normalize(keys, dim=1).transpose(1, 2)
        cross = -2 * torch.matmul(q, c.transpose(1, 2))
        dist = q.square().sum(-1, keepdim=True) + cross + c.square().sum(-1).unsqueeze(1)
        return (-(dist + bias)).topk(k, dim=-1).indices


def neighbour_max(keys: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per node, the channel-wise max over its neighbours: keys (B, C, M), idx (B, N, k) ->
    (B, C, N). Gathered from a (B*M, C) table, so the backward scatters into that table only."""
    b, c, m = keys.shape
    n, k = idx.shape[1:]
    table = keys.transpose(1, 2).reshape(b * m, c)
    flat = (idx + torch.arange(b, device=idx.device).view(b, 1, 1) * m).reshape(-1)
    return table[flat].view(b, n, k, c).max(dim=2).values.transpose(1, 2)


class MaxRelativeGraphConv(nn.Module):
    """Dynamic max-relative graph convolution (Li et al., DeepGCNs; ViG's "mr" conv) on a map.

    Every pixel is a node; its candidate neighbours are the pixels average-pooled by ``pooling``.
    The k nearest ones (``knn_indices``) give max_j(x_j) - x_i, which is interleaved channel by
    channel with x_i ([x_0, r_0, x_1, r_1, ...]) and mixed by a 1x1 conv in 4 groups (C -> 2C,
    He-normal weights, zero bias) + BN + GELU. Where a map has fewer candidates than k (inputs under
    128 pixels), every candidate is a neighbour.
    """

    def __init__(self, channels: int, k: int, pooling: int):
        super().__init__()
        self.k = k
        self.pooling = pooling
        self.mix = nn.Sequential(nn.Conv2d(2 * channels, 2 * channels, 1, groups=4), nn.BatchNorm2d(2 * channels),
                                 nn.GELU())
        nn.init.kaiming_normal_(self.mix[0].weight)
        nn.init.zeros_(self.mix[0].bias)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        nodes = x.flatten(2)
        keys = F.avg_pool2d(x, self.pooling).flatten(2) if self.pooling > 1 else nodes
        idx = knn_indices(nodes, keys, min(self.k, keys.shape[-1]), bias)
        relative = neighbour_max(keys, idx) - nodes
        return self.mix(torch.stack([nodes, relative], dim=2).reshape(b, 2 * c, h, w))


class GraphBlock(nn.Module):
    """ViG's Grapher: x + BN(1x1(graph_conv(BN(1x1 x)))), the graph conv widening C to 2C and the
    second 1x1 conv narrowing back.

    ``relative_pos`` (1, nodes, nodes // pooling**2) is built for ``nodes`` pixels (the level's
    count at U-Bench's 256 input) and kept as a frozen parameter, as the reference does; for another
    pixel count it is resized bicubically on every forward.
    """

    def __init__(self, channels: int, nodes: int, pooling: int, k: int = NEIGHBOURS):
        super().__init__()
        self.nodes = nodes
        self.pooling = pooling
        self.fc1 = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        self.graph = MaxRelativeGraphConv(channels, k, pooling)
        self.fc2 = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.BatchNorm2d(channels))
        self.relative_pos = nn.Parameter(relative_position_bias(channels, nodes, pooling), requires_grad=False)

    def position_bias(self, h: int, w: int) -> torch.Tensor:
        n = h * w
        if n == self.nodes:
            return self.relative_pos
        size = (n, n // self.pooling**2)
        return F.interpolate(self.relative_pos[None], size=size, mode="bicubic", align_corners=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(x)
        return x + self.fc2(self.graph(y, self.position_bias(*y.shape[-2:])))


class DepthwiseUp(nn.Sequential):
    """G-CASCADE's up-convolution block: nearest x2, 3x3 depth-wise conv + BN + ReLU, 1x1 conv
    (bias) to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch),
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, out_ch, 1),
        )


class GraphCascadeDecoder(nn.Module):
    """G-CASCADE's decoder with additive skips over four encoder maps.

    ``widths``: encoder widths, deepest first; ``strides``: their strides; ``ref_size``: the input
    size the relative-position tables are built for. ``forward`` takes the encoder maps shallowest
    first and returns the four decoder maps deepest first, each gated by the shared spatial gate.
    """

    def __init__(self, widths: Sequence[int] = (512, 320, 128, 64), strides: Sequence[int] = (32, 16, 8, 4),
                 ref_size: int = REF_SIZE, pooling: Sequence[int] = POOLING):
        super().__init__()
        self.graphs = nn.ModuleList(
            GraphBlock(w, (ref_size // s) ** 2, p) for w, s, p in zip(widths, strides, pooling)
        )
        self.ups = nn.ModuleList(DepthwiseUp(widths[i - 1], widths[i]) for i in range(1, len(widths)))
        self.spatial = SpatialGate()

    def _refine(self, level: int, x: torch.Tensor) -> torch.Tensor:
        x = self.graphs[level](x)
        return self.spatial(x) * x

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        *skips, deepest = feats
        x = self._refine(0, deepest)
        outs = [x]
        for level, (up, skip) in enumerate(zip(self.ups, reversed(skips)), start=1):
            x = self._refine(level, up(x) + skip)
            outs.append(x)
        return outs


class PVTGraphCascade(nn.Module):
    """(grey stem) -> PVTv2-B2 -> graph cascaded decoder -> a head per level."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        # as CASCADE: a learned 1 -> 3 channel stem built whatever the input, used for grey images
        self.from_grey = in_channels == 1
        self.grey = grey_stem()
        self.encoder = PVTv2Encoder(3 if self.from_grey else in_channels)
        widths = tuple(reversed(self.encoder.dims))  # deepest first
        self.decoder = GraphCascadeDecoder(widths)
        self.heads = CascadeHeads(widths, num_classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.from_grey:
            x = self.grey(x)
        return self.heads(self.decoder(self.encoder(x)))


_FROZEN = [f"decoder.graphs.{i}.relative_pos" for i in range(4)]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="G_CASCADE",
        ubench_id=58,
        year=2024,
        paper="G-CASCADE: Efficient Cascaded Graph Convolutional Decoding for 2D Medical Image Segmentation",
        deep_supervision=True,
        ref_params_m=30.957874,
        ref_source="U-Bench models/Hybrid/G_CASCADE/G_CASCADE.py + decoders.py + gcn_lib/ + pvtv2.py "
        "(g_cascade(num_classes=1, input_channel=3) -> PVT_GCASCADE(img_size=256, k=11, conv='mr', "
        "gcb_act='gelu', activation='relu', skip_aggregation='additive'), pvt_v2_b2 backbone, "
        "GCASCADE(channels=[512, 320, 128, 64])), counted by instantiating it with the checkpoint "
        "download disabled; total count, frozen relative-position tables included",
        ref_input_size=REF_SIZE,
        size_multiple=STRIDE,
        notes="Parameters: 30,957,874 in all, as U-Bench's module; 4,329,472 of them are the four "
        "relative-position tables of the graph blocks (64x64, 256x256, 1024x64, 4096x1024), which "
        "U-Bench builds as nn.Parameter(requires_grad=False) and never trains: 26,628,402 "
        "trainable, the number U-Bench's main.py logs. The tables are sized for U-Bench's img_size "
        "256; at other sizes they are resized bicubically on every forward, as U-Bench does. "
        "PVTv2-B2 backbone built untrained (U-Bench downloads pvt_v2_b2.pth from HuggingFace "
        "FengheTan9/U-Stone into PVT_GCASCADE.backbone, keeping the keys its pvt_v2_b2 has). Returns "
        "four full-size logits, coarsest (stride 32) first, the stride-4 head last: U-Bench averages "
        "the loss over the four and evaluates output[-1]. U-Bench's factory passes input_channel, "
        "which PVT_GCASCADE ignores: it always builds a learned 1x1 conv + BN + ReLU stem from 1 to "
        "3 channels and applies it when the input has 1 channel; the same here for in_channels=1 "
        "(stem 'grey', 12 parameters, unused at 3 channels: unused_params). Other in_channels (U-Bench "
        "fails on them) reach the first patch embedding directly. Deviation: with k = 11 neighbours "
        "U-Bench fails (torch.topk) on inputs under 128 pixels, whose stride-32 map has fewer than "
        "11 nodes; here k is clamped to the number of candidate nodes (identical at 128 and above). "
        "Quirks of U-Bench's code kept: the dilated kNN's dilation is min(level rule, 18 // k) = 1 at "
        "every level, so plain kNN; stochastic neighbours off; drop-path 0. MRConv2d takes "
        "kernel_size=11, padding=5 and groups=C from the decoder but ignores them: its conv is 1x1 "
        "in 4 groups. The graph conv's max over neighbours of (x_j - x_i) is computed as "
        "max_j(x_j) - x_i (the same floats). The chunked distance (graphs over 10,000 nodes, inputs "
        "over 1600 pixels) is not reproduced: the same distances, computed at once.",
        extra={
            "unused_params": ["grey.0.weight", "grey.0.bias", "grey.1.weight", "grey.1.bias"],
            "frozen_params": _FROZEN,
            "trainable_params": 26_628_402,
            "pretrained": pvt_v2_record(
                "b2", "encoder.",
                "models/Hybrid/G_CASCADE/G_CASCADE.py PVT_GCASCADE.__init__: "
                "torch.hub.load_state_dict_from_url(<HuggingFace U-Stone pvt_v2_b2.pth>) filtered "
                "to the keys of pvtv2.pvt_v2_b2() (patch_embed{1-4}, block{1-4}, norm{1-4}; the "
                "classifier head dropped), merged into its state_dict and loaded into "
                "PVT_GCASCADE.backbone",
                url=U_STONE_PVT_V2_B2,
            ),
        },
    )
)
def g_cascade(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """G-CASCADE (PVTv2-B2 + graph cascaded decoder, four outputs) as U-Bench benchmarks it."""
    return PVTGraphCascade(in_channels=in_channels, num_classes=num_classes)
