"""MSLAU-Net: convolutional local stages, multi-scale linear attention global stages, and a
top-down multi-level aggregation decoder.

Paper: Lan, Li, Liu, Zhou, Zhang, Huang, Zhang, "MSLAU-Net: A Hybrid CNN-Transformer Network for
Medical Image Segmentation", arXiv 2505.18823, 2025 (code: github.com/Monsoon49/MSLAU-Net).

Configuration: U-Bench's ``MSLAU_Net`` (repo FengheTan9/U-Bench, models/Hybrid/MSLAU_Net/
MSLAU_Net.py + msla.py + linear_attention.py; id 81). Its factory ``mslau_net(num_classes,
input_channel)`` builds ``MSLAU_net(img_size=256, mla_channels=64)`` and then loads the encoder
checkpoint MSLAUNet.pth from HuggingFace FengheTan9/U-Stone (built untrained here, see the
``pretrained`` record):
- encoder, widths 64/128/256/512, depths 4/8/11/5, strides 4/8/16/32: each stage starts with a
  non-overlapping patch embedding (k x k conv with stride k, k = 4 then 2, + channel LayerNorm);
  stages 1-2 stack local blocks (UniFormer's conv block: 3x3 depth-wise positional conv residual;
  BN -> 1x1 -> 5x5 depth-wise -> 1x1 residual; BN -> 1x1-conv MLP x4 residual), stages 3-4 global
  blocks (3x3 depth-wise positional conv residual, then on tokens pre-LayerNorm multi-scale linear
  attention and a x4 MLP, each residual);
- multi-scale linear attention (MSLA): the channels are cut into four quarters, each goes through
  its own depth-wise conv (3, 5, 7, 9) with a residual and ReLU, then through ONE shared linear
  attention (softmax of the keys over channels, of the queries over positions, 16-channel heads),
  is scaled by a learned weight, and the quarters are concatenated and mixed by a 1x1 conv;
- decoder (top-down aggregation): lateral chains (1x1 conv + BN + ReLU + bilinear x2, repeated
  down to 64 channels) bring the stride 8/16/32 maps to stride 4; running sums from the stride-4
  map downwards; a 3x3 conv + BN + ReLU on each of the four sums, another per branch, each
  upsampled x2; the four concatenated (256 channels) -> 3x3 conv to the classes -> x2 upsampling.
All upsampling is bilinear with align_corners=True. Fixed input size 256x256 (U-Bench's patch
embeddings assert it). Parameters at 3 in / 1 class: 21,878,338, all trainable (counted by
instantiating U-Bench's module); 1,537 of them (the encoder's final BatchNorm and its 1-class
classifier) are never used by the forward.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import LayerNorm2d, Mlp, init_vit_weights, map_to_tokens, tokens_to_map, up2_aligned
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
WIDTHS = (64, 128, 256, 512)
DEPTHS = (4, 8, 11, 5)
PATCHES = (4, 2, 2, 2)
GLOBAL_STAGES = (2, 3)  # stages built from global (MSLA) blocks; the first two are local
HEAD_DIM = 64  # MSLA gets dim // 64 heads, used on its dim // 4-channel quarters: 16 channels a head
MSLA_KERNELS = (3, 5, 7, 9)
MLP_RATIO = 4
DECODER_WIDTH = 64
CHECKPOINT_URL = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/MSLAUNet.pth"


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: ``patch`` x ``patch`` conv with stride ``patch``, then a
    LayerNorm over the channels (torch's default eps)."""

    def __init__(self, in_ch: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=patch)
        self.norm = LayerNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class ConvMlp(nn.Module):
    """Feed-forward on maps: 1x1 conv, GELU, 1x1 conv (dropout off in U-Bench's build)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LocalBlock(nn.Module):
    """Local feature extraction (the paper's LFE, UniFormer's conv block), three residuals:
    a 3x3 depth-wise positional conv; BN -> 1x1 -> 5x5 depth-wise -> 1x1; BN -> conv MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.mixer = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.Conv2d(dim, dim, 5, padding=2, groups=dim),
            nn.Conv2d(dim, dim, 1),
        )
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, MLP_RATIO * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SharedLinearAttention(nn.Module):
    """Linear attention on a map, ``heads`` heads: softmax of the keys over their channels, of the
    queries over the positions, out = q (k^T v); bias-free qkv, a projection with bias.

    As in U-Bench, the per-head outputs (B, heads, N, d) are flattened straight to (B, N, heads*d)
    without moving the head axis back next to the channels, so the projection sees each position's
    row made of several positions' head outputs (a reshape, not the usual transpose)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(map_to_tokens(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        context = k.softmax(dim=-1).transpose(-2, -1) @ v  # (B, heads, d, d)
        out = (q.softmax(dim=-2) @ context).reshape(b, n, c)
        return tokens_to_map(self.proj(out), h, w)


class MultiScaleLinearAttention(nn.Module):
    """MSLA on (B, N, C) tokens: four channel quarters, each a depth-wise conv (3/5/7/9) with a
    residual and ReLU, the one shared linear attention, a learned scale; concatenated, 1x1 conv.

    U-Bench's quirk, kept: the tokens are read as a (B, C, H, W) map by reinterpreting their
    memory (``view``, no transpose), and the 1x1 conv's (B, C, H, W) output is read back as
    (B, N, C) the same way; the quarters therefore hold scrambled token/channel entries, not a
    channel split of the feature map the paper describes."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        quarter = dim // len(MSLA_KERNELS)
        self.dw = nn.ModuleDict({
            f"k{k}": nn.Conv2d(quarter, quarter, k, padding=k // 2, groups=quarter) for k in MSLA_KERNELS
        })
        self.attend = SharedLinearAttention(quarter, heads)
        self.fuse = nn.Conv2d(dim, dim, 1)
        self.scale = nn.Parameter(torch.ones(len(MSLA_KERNELS)))

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = tokens.shape
        grid = tokens.reshape(b, c, h, w)  # memory reinterpretation, see the class docstring
        quarters = grid.chunk(len(MSLA_KERNELS), dim=1)
        outs = [
            self.attend(torch.relu(q + conv(q))) * self.scale[i]
            for i, (q, conv) in enumerate(zip(quarters, self.dw.values()))
        ]
        return self.fuse(torch.cat(outs, dim=1)).reshape(b, n, c)


class GlobalBlock(nn.Module):
    """Global feature extraction (the paper's GFE): a 3x3 depth-wise positional conv residual on
    the map, then on tokens pre-LayerNorm (eps 1e-6) MSLA and a x4 MLP, each residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleLinearAttention(dim, dim // HEAD_DIM)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, MLP_RATIO * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        h, w = x.shape[-2:]
        t = map_to_tokens(x)
        t = t + self.attn(self.norm1(t), h, w)
        t = t + self.mlp(self.norm2(t))
        return tokens_to_map(t, h, w)


class Stage(nn.Module):
    """Patch embedding, then the stage's blocks."""

    def __init__(self, in_ch: int, dim: int, patch: int, depth: int, block: type[nn.Module]):
        super().__init__()
        self.embed = PatchEmbed(in_ch, dim, patch)
        self.blocks = nn.Sequential(*(block(dim) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.embed(x))


class MSLAEncoder(nn.Module):
    """Four stages (local, local, global, global) returning the stride 4/8/16/32 maps.

    ``norm`` (BatchNorm over the last map) and ``head`` (a 1-class linear classifier) are built as
    U-Bench's encoder builds them, and hold checkpoint tensors, but no forward uses them."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        ins = (in_channels,) + WIDTHS[:-1]
        self.stages = nn.ModuleList(
            Stage(i, d, p, n, GlobalBlock if s in GLOBAL_STAGES else LocalBlock)
            for s, (i, d, p, n) in enumerate(zip(ins, WIDTHS, PATCHES, DEPTHS))
        )
        self.norm = nn.BatchNorm2d(WIDTHS[-1])
        self.head = nn.Linear(WIDTHS[-1], 1)
        self.apply(init_vit_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class LateralPath(nn.Module):
    """From one coarser encoder map to the stride-4 grid: per step a 1x1 conv (no bias) + BN +
    ReLU to the next narrower width, then bilinear x2 (align_corners=True)."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        self.steps = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(a, b, 1, bias=False)) for a, b in zip(widths[:-1], widths[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = up2_aligned(step(x))
        return x


def _smooth(c: int) -> nn.Sequential:
    return nn.Sequential(*conv_bn_relu(c, c, 3, bias=False))


class MultiLevelAggregation(nn.Module):
    """Top-down aggregation: laterals bring the stride 8/16/32 maps to stride 4 and 64 channels;
    running sums start from the stride-4 map (f1, f1 + l2, f1 + l2 + l3, f1 + l2 + l3 + l4);
    each sum gets a 3x3 conv + BN + ReLU, then a second one and x2 upsampling per branch; the four
    branches are concatenated."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, c: int = DECODER_WIDTH):
        super().__init__()
        self.laterals = nn.ModuleList(LateralPath(widths[: k + 1][::-1]) for k in range(1, len(widths)))
        self.smooth = nn.ModuleList(_smooth(c) for _ in widths)
        self.branches = nn.ModuleList(_smooth(c) for _ in widths)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        acc = feats[0]
        sums = [acc]
        for lateral, f in zip(self.laterals, feats[1:]):
            acc = acc + lateral(f)
            sums.append(acc)
        return torch.cat([up2_aligned(br(sm(s))) for s, sm, br in zip(sums, self.smooth, self.branches)], dim=1)


class MSLAUNet(nn.Module):
    """MSLA encoder -> multi-level aggregation (stride 2, 256 channels) -> 3x3 conv to the classes
    -> bilinear x2 (align_corners=True) to the input size."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.encoder = MSLAEncoder(in_channels)
        self.decoder = MultiLevelAggregation()
        self.seg = nn.Conv2d(len(WIDTHS) * DECODER_WIDTH, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return up2_aligned(self.seg(self.decoder(self.encoder(x))))


def _key_map() -> list[list[str]]:
    """MSLAUNet.pth (U-Bench's ``Encoder`` names) -> ubench's ``encoder``."""
    stages = []
    for s in range(len(WIDTHS)):
        stages += [[rf"^patch_embed{s + 1}\.", f"encoder.stages.{s}.embed."],
                   [rf"^blocks{s + 1}\.", f"encoder.stages.{s}.blocks."]]
    return stages + [
        [r"^norm\.", "encoder.norm."],
        # local blocks: conv1 -> 5x5 depth-wise ``attn`` -> conv2
        [r"\.conv1\.", ".mixer.0."],
        [r"\.attn\.(weight|bias)$", r".mixer.1.\1"],
        [r"\.conv2\.", ".mixer.2."],
        # global blocks' MSLA
        [r"\.attn\.dw_conv_(\d)x\d\.depthwise\.", r".attn.dw.k\1."],
        [r"\.attn\.linear_attention\.", ".attn.attend."],
        [r"\.attn\.final_conv\.", ".attn.fuse."],
        [r"\.attn\.scale_weights$", ".attn.scale"],
    ]


PRETRAINED = {
    "backbone": "MSLAU-Net encoder (LFE/GFE, widths 64-512, depths 4/8/11/5)",
    "source": "models/Hybrid/MSLAU_Net/MSLAU_Net.py MSLAU_net.load_from(), called by the factory "
    "mslau_net(): torch.hub.load_state_dict_from_url(<HuggingFace U-Stone MSLAUNet.pth>)['model'], "
    "entries whose name is in MSLAU_net.encoder's state_dict but whose shape differs deleted, the rest "
    "loaded into MSLAU_net.encoder with strict=False (unknown names ignored); the aggregation decoder "
    "and seg conv stay untrained. ubench fills the whole encoder except the unused 1-class classifier "
    "head (dropped: a classification checkpoint's head would not fit it, U-Bench deletes it then).",
    "file": "MSLAUNet.pth",
    "url": CHECKPOINT_URL,
    "modules": ["encoder.stages", "encoder.norm"],
    "key_map": _key_map(),
    "drop": [r"^head\."],
}


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="MSLAU_Net",
        ubench_id=81,
        year=2025,
        paper="MSLAU-Net: A Hybrid CNN-Transformer Network for Medical Image Segmentation",
        ref_params_m=21.878338,
        ref_source="U-Bench models/Hybrid/MSLAU_Net/MSLAU_Net.py + msla.py + linear_attention.py "
        "(mslau_net(num_classes=1, input_channel=3): MSLAU_net(img_size=256, mla_channels=64)), counted "
        "by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="Encoder built untrained (U-Bench's factory loads MSLAUNet.pth from HuggingFace "
        "FengheTan9/U-Stone into its encoder, strict=False after deleting shape mismatches; see the "
        "pretrained record). Fixed 256x256 input: U-Bench's patch embeddings assert the size they were "
        "built for. Quirks of U-Bench's code kept: MSLA reads the (B, N, C) tokens as a (B, C, H, W) "
        "map by reinterpreting memory (view, no transpose) and reads its 1x1 conv output back the same "
        "way, so its four 'channel quarters' are scrambled token/channel entries; the shared linear "
        "attention flattens its (B, heads, N, d) output to (B, N, C) without moving the head axis "
        "back; its keys are softmaxed over channels and queries over positions; the one linear "
        "attention is shared by the four scales. The encoder's final BatchNorm (norm) and its "
        "1-class classifier (head, always 1 class whatever num_classes) are built and counted but "
        "never used (unused_params). U-Bench builds the first patch embedding for input_channel but "
        "repeats a 1-channel input to 3 channels before it, so its build fails for 1-channel input; "
        "here in_channels reaches the first patch embedding directly (with train.pretrained a "
        "1-channel model gets the 3-channel kernel summed). The decoder's upsampling to twice the "
        "branch size and the final resize to img_size are bilinear x2 with align_corners=True (the "
        "same at the fixed 256). Dropout and stochastic depth are 0 in U-Bench's build and omitted. "
        "Init as U-Bench: truncated-normal (0.02) Linear weights, zero biases and unit LayerNorms in "
        "the encoder, PyTorch defaults elsewhere.",
        extra={
            "unused_params": ["encoder.norm.weight", "encoder.norm.bias", "encoder.head.weight", "encoder.head.bias"],
            "pretrained": PRETRAINED,
        },
    )
)
def mslau_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MSLAU-Net as U-Bench benchmarks it (256x256, one output)."""
    return MSLAUNet(in_channels=in_channels, num_classes=num_classes)
