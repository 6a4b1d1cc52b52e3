"""SCUNet++: Swin-Unet with a CNN bottleneck and UNet++-style dense skip connections.

Paper: Chen, Zou, Guo, Huang, Huang, Qin, Li, Wang, "SCUNet++: Swin-UNet and CNN Bottleneck Hybrid
Architecture with Multi-Fusion Dense Skip Connection for Pulmonary Embolism CT Image
Segmentation", WACV 2024 (arXiv 2312.14705).

Configuration: U-Bench's ``SCUNet_plus_plus`` (repo FengheTan9/U-Bench,
models/Transformer/SCUNet_plus_plus/SCUNet_plus_plus.py ->
swin_transformer_unet_skip_expand_decoder_sys.py; ``scunet_plus_plus(num_classes, input_channel)``
builds ``SwinUnet(img_size=224)`` and loads ImageNet Swin-T weights; id 84, no deep supervision).
Swin-T sized, 224x224 only:
- encoder: 4x4 patch embedding to 96 channels + LayerNorm; Swin stages of depths 2, 2, 6 (3, 6,
  12 heads, window 7, MLP ratio 4, qkv bias, stochastic depth rising linearly to 0.1 over the 12
  blocks of depths 2-2-6-2), each followed by 2x2 patch merging (56 -> 28 -> 14 -> 7 tokens a
  side, widths 96, 192, 384, 768);
- bottleneck: at 7x7x768 a CNN block (1x1, 3x3, 1x1 convs with bias, each + BN + ReLU, all 768
  wide) replaces the fourth Swin stage, whose two 24-head blocks U-Bench builds but never runs;
  then a LayerNorm on its tokens;
- dense skips (UNet++ nesting, on (B, C, H, W) maps): row i holds the input of encoder stage i
  (i = 0, 1, 2) and, for row 3, the CNN bottleneck's output (not the fourth stage's input). Node
  X(i, j) = VGG block(concat[X(i, 0..j-1), bilinear x2 (align_corners) of X(i+1, j-1)]): two 3x3
  convs with bias + BN + ReLU, output width that of row i, middle width that of row i too except
  X(0,1), whose middle is 192 wide (as U-Bench builds it). The decoder takes X(0,3), X(1,2), X(2,1);
- decoder: Swin-Unet's: patch expanding x2, concatenation with the dense skip, a linear 2C -> C,
  Swin blocks of the encoder stage's depth (6, 2, 2) and the same drop-path rates, a LayerNorm, a
  final x4 patch expanding to 224x224 at 96 channels and a bias-free 1x1 conv to the classes.
Parameters at 3 in / 1 class: 77,236,932, counted by instantiating U-Bench's module. 33,668,784
of them never run (``extra["unused_params"]``), kept so the count is U-Bench's: the fourth
stage's two Swin blocks (14,183,856) and the CNN bottleneck block that every one of U-Bench's
first three encoder stages also builds (3 x 6,494,976).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.swin import PatchExpand, PatchMerging, SwinStage, init_transformer_weights
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 224
PATCH = 4
EMBED_DIM = 96
DEPTHS = (2, 2, 6, 2)
HEADS = (3, 6, 12, 24)
WINDOW = 7
DROP_PATH = 0.1
LEVELS = len(DEPTHS)
DIMS = tuple(EMBED_DIM * 2**i for i in range(LEVELS))
GRIDS = tuple(IMG_SIZE // PATCH // 2**i for i in range(LEVELS))  # 56, 28, 14, 7 tokens a side
NEST = LEVELS - 1  # dense-skip columns; rows 0..2 are encoder stage inputs, row 3 the bottleneck


def vgg_block(in_ch: int, mid_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 conv (bias) + BN + ReLU: one node of the dense skip grid."""
    return nn.Sequential(*conv_bn_relu(in_ch, mid_ch), *conv_bn_relu(mid_ch, out_ch))


def conv_bottleneck(dim: int) -> nn.Sequential:
    """1x1, 3x3, 1x1 conv (bias) + BN + ReLU at constant width: the CNN bottleneck."""
    return nn.Sequential(*conv_bn_relu(dim, dim, 1), *conv_bn_relu(dim, dim, 3), *conv_bn_relu(dim, dim, 1))


def _node_mid(i: int, j: int) -> int:
    """Middle width of node X(i, j): its row's width, except X(0, 1) (192 in U-Bench's code)."""
    return DIMS[1] if (i, j) == (0, 1) else DIMS[i]


class SCUNetPlusPlus(nn.Module):
    """Swin encoder, CNN bottleneck, nested dense conv skips, Swin-Unet decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        res = [(g, g) for g in GRIDS]
        rates = torch.linspace(0, DROP_PATH, sum(DEPTHS)).tolist()
        slices = [rates[sum(DEPTHS[:i]) : sum(DEPTHS[: i + 1])] for i in range(LEVELS)]
        used = range(LEVELS - 1)  # the Swin stages that run; the deepest is replaced by the CNN block

        self.embed = nn.Conv2d(in_channels, EMBED_DIM, PATCH, stride=PATCH)
        self.embed_norm = nn.LayerNorm(EMBED_DIM)
        self.stages = nn.ModuleList(SwinStage(DIMS[i], res[i], DEPTHS[i], HEADS[i], WINDOW, slices[i]) for i in used)
        self.merges = nn.ModuleList(PatchMerging(DIMS[i], res[i]) for i in used)
        self.bottleneck = conv_bottleneck(DIMS[-1])
        self.norm = nn.LayerNorm(DIMS[-1])

        nodes = {}
        for j in range(1, NEST + 1):
            for i in range(NEST + 1 - j):
                in_ch = j * DIMS[i] + DIMS[i + 1]
                nodes[f"x{i}_{j}"] = vgg_block(in_ch, _node_mid(i, j), DIMS[i])
        self.nodes = nn.ModuleDict(nodes)

        # decoder levels, deepest first: expand from level i+1 into level i, fuse, Swin blocks
        self.expands = nn.ModuleList(PatchExpand(DIMS[i + 1], res[i + 1]) for i in reversed(used))
        self.fuses = nn.ModuleList(nn.Linear(2 * DIMS[i], DIMS[i]) for i in reversed(used))
        self.up_stages = nn.ModuleList(
            SwinStage(DIMS[i], res[i], DEPTHS[i], HEADS[i], WINDOW, slices[i]) for i in reversed(used)
        )
        self.norm_up = nn.LayerNorm(EMBED_DIM)
        self.final_expand = PatchExpand(EMBED_DIM, res[0], scale=PATCH, out_dim=EMBED_DIM)
        self.head = nn.Conv2d(EMBED_DIM, num_classes, 1, bias=False)

        # built by U-Bench, never run: the deepest Swin stage, and the CNN bottleneck that each
        # of its first three encoder layers also constructs
        self.unused_stage = SwinStage(DIMS[-1], res[-1], DEPTHS[-1], HEADS[-1], WINDOW, slices[-1])
        self.unused_bottlenecks = nn.ModuleList(conv_bottleneck(DIMS[-1]) for _ in used)
        self.apply(init_transformer_weights)  # Linear / LayerNorm only; convs and BN keep torch's init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.embed_norm(map_to_tokens(self.embed(x)))
        feats = {}
        for i, (stage, merge) in enumerate(zip(self.stages, self.merges)):
            feats[(i, 0)] = tokens_to_map(x, GRIDS[i], GRIDS[i])  # the stage's input is the skip
            x = merge(stage(x))
        deep = self.bottleneck(tokens_to_map(x, GRIDS[-1], GRIDS[-1]))
        feats[(NEST, 0)] = deep
        for j in range(1, NEST + 1):  # column by column: every input of a node already exists
            for i in range(NEST + 1 - j):
                below = F.interpolate(feats[(i + 1, j - 1)], scale_factor=2, mode="bilinear", align_corners=True)
                row = [feats[(i, k)] for k in range(j)]
                feats[(i, j)] = self.nodes[f"x{i}_{j}"](torch.cat(row + [below], dim=1))

        x = self.norm(map_to_tokens(deep))
        skips = [map_to_tokens(feats[(i, NEST - i)]) for i in reversed(range(NEST))]  # deepest first
        for expand, fuse, stage, skip in zip(self.expands, self.fuses, self.up_stages, skips):
            x = stage(fuse(torch.cat([expand(x), skip], dim=-1)))
        x = self.final_expand(self.norm_up(x))
        return self.head(x.transpose(1, 2).reshape(b, EMBED_DIM, IMG_SIZE, IMG_SIZE))


# built and counted, never run ("prefix." entries: every parameter under the module)
UNUSED_MODULES = ["unused_stage.", "unused_bottlenecks."]


# ---- the ImageNet Swin-T checkpoint U-Bench loads (SwinUnet.load_from) --------------------------
# load_from takes the file's 'model' dict, adds a copy of every layers.<n>.* key as
# layers_up.<3 - n>.*, drops tensors whose shape differs from the model's, and loads the rest with
# strict=False: the encoder (patch embedding, all four stages including the one that never runs,
# the patch mergings, the final norm) and, mirrored, the decoder's Swin blocks (decoder level n
# gets encoder stage n's blocks). Two records of the same file here.

SWIN_FILE = "swin_tiny_patch4_window7_224.pth"
SWIN_URL = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/" + SWIN_FILE
_REBUILT = [r"\.attn_mask$", r"\.relative_position_index$"]  # fixed functions of the grid, rebuilt here
_BIAS_TABLE = [r"\.relative_position_bias_table$", ".bias_table"]

_PRETRAINED = [
    {
        "backbone": "swin_tiny_patch4_window7_224 (encoder)",
        "source": "U-Bench models/Transformer/SCUNet_plus_plus/SCUNet_plus_plus.py SwinUnet.load_from(): "
        "load_state_dict_from_url(<U-Stone url>)['model'] loaded with strict=False into "
        "SwinTransformerSys: patch_embed, layers.0-3 (stage 3's blocks never run), the patch "
        "mergings and the final norm; the ImageNet head matches nothing",
        "file": SWIN_FILE,
        "url": SWIN_URL,
        "modules": ["embed", "embed_norm", "stages", "merges", "norm", "unused_stage"],
        "key_map": [
            [r"^patch_embed\.proj\.", "embed."],
            [r"^patch_embed\.norm\.", "embed_norm."],
            [rf"^layers\.{LEVELS - 1}\.blocks\.", "unused_stage.blocks."],
            [r"^layers\.(\d)\.blocks\.", r"stages.\1.blocks."],
            [r"^layers\.(\d)\.downsample\.", r"merges.\1."],
            _BIAS_TABLE,
        ],
        "drop": [r"^head\."] + _REBUILT,
    },
    {
        "backbone": "swin_tiny_patch4_window7_224 (mirrored into the decoder)",
        "source": "U-Bench SwinUnet.load_from(): the same file's layers.<n>.* copied to "
        "layers_up.<3 - n>.*; only the Swin blocks of stages 0-2 land (layers_up.1-3.blocks, the "
        "decoder levels of the same width); layers.3 and the downsample keys match nothing there",
        "file": SWIN_FILE,
        "url": SWIN_URL,
        "modules": ["up_stages"],
        "key_map": [[rf"^layers\.{n}\.blocks\.", f"up_stages.{LEVELS - 2 - n}.blocks."] for n in range(LEVELS - 1)]
        + [_BIAS_TABLE],
        # every key but the blocks of stages 0-2 (negative lookahead: matches the start of any other)
        "drop": [r"^(?!layers\.[012]\.blocks\.)"] + _REBUILT,
    },
]


@register_model(
    ModelInfo(
        family="transformer",
        ubench_name="SCUNet_plus_plus",
        ubench_id=84,
        year=2024,
        paper="SCUNet++: Swin-UNet and CNN Bottleneck Hybrid Architecture with Multi-Fusion Dense Skip "
        "Connection for Pulmonary Embolism CT Image Segmentation",
        deep_supervision=False,
        ref_params_m=77.236932,
        ref_source="U-Bench models/Transformer/SCUNet_plus_plus/SCUNet_plus_plus.py + "
        "swin_transformer_unet_skip_expand_decoder_sys.py (scunet_plus_plus(num_classes=1, "
        "input_channel=3) -> SwinUnet(img_size=224) -> SwinTransformerSys, Swin-T), counted by "
        "instantiating it with the checkpoint download disabled",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="224x224 only (patch-embedding size check, window shift masks and the 7x7 bottleneck "
        "reshape are fixed to the 224 grid, as in U-Bench). Built untrained: U-Bench's factory always "
        "loads ImageNet Swin-T (swin_tiny_patch4_window7_224.pth from HuggingFace FengheTan9/U-Stone) "
        "into the encoder and, mirrored, into the decoder's Swin blocks; `train.pretrained: true` "
        "loads the same (extra['pretrained'], two records of one file). U-Bench's code vs the paper: "
        "the fourth encoder stage's two Swin blocks are built (and loaded) but skipped, the CNN "
        "bottleneck runs in their place; each of the first three encoder layers also builds a CNN "
        "bottleneck it never calls (all kept, not run: unused_params, 33,668,784 of 77,236,932). "
        "The dense skip rows are the inputs of encoder stages 0-2 (not their outputs) plus the CNN "
        "bottleneck output for the deepest row; node X(0,1) has a 192-wide middle conv. "
        "in_channels: U-Bench passes input_channel to the patch conv but its wrapper repeats a "
        "1-channel input to 3 channels first, so input_channel=1 fails there (conv expects 1 "
        "channel, gets 3); here in_channels reaches the patch conv and a 1-channel model runs "
        "(summing the 3-channel pretrained kernel reproduces the grey repetition).",
        extra={"unused_params": UNUSED_MODULES, "pretrained": _PRETRAINED},
    )
)
def scunet_plus_plus(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """SCUNet++ as U-Bench benchmarks it (Swin-T, 224x224, CNN bottleneck, dense skips)."""
    return SCUNetPlusPlus(in_channels=in_channels, num_classes=num_classes)
