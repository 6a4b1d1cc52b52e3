"""D-TrAttUnet: a ViT path injected level by level into a U-Net encoder, and two attention decoders.

Paper: Bougourzi, Distante, Dornaika, Taleb-Ahmed, "D-TrAttUnet: Dual-Decoder Transformer-Based
Attention Unet Architecture for Binary and Multi-classes Covid-19 Infection Segmentation", arXiv
2303.15576, 2023.

Configuration: U-Bench's ``D_TrAttUnet`` (repo FengheTan9/U-Bench, models/Hybrid/D_TrAttUnet/
D_TrAttUnet.py; models/__init__.py maps it to ``d_trattunet(num_classes, input_channel)``, which
builds ``DTrAttUnet`` with its defaults; id 78, flagged ``deeps_supervision`` in
models/model_id.json):
- transformer path: a 16x16 patch embedding (conv, stride 16) to 768 channels, WITHOUT position
  embedding or class token, then 12 MONAI ``TransformerBlock`` s (pre-norm, 12 heads, MLP 3072,
  GELU, no qkv bias, LayerNorm eps 1e-5, dropout 0); the token maps after blocks 4, 7 and 10 and
  the final LayerNorm'd tokens are the four features it hands to the CNN path;
- residual double conv ("ResBlock"): (3x3 conv without bias + BN + ReLU) x 2, plus a 1x1 conv
  without bias + BN + ReLU shortcut, summed (no activation after the sum);
- CNN ("Unet-like fusion") path, widths 32/64/128/256/512: a ResBlock on the image at full size;
  then at strides 2/4/8/16 a ResBlock on [max-pooled previous level, transformer feature], the
  feature brought from the 16x16 token grid by 3/2/1/0 steps of bilinear x2 (align_corners=True)
  + ResBlock (768 -> 32/64/128/256 at the first step);
- two identical, independent decoders (Attention U-Net): per level, bilinear x2 (align_corners)
  of the deeper map, an additive attention gate on the skip (ops/cascade.py ``AttentionGate``,
  inner width = the skip's), a ResBlock on [gated skip, upsampled map] to the skip's width; a 1x1
  conv head on each.
The forward returns [decoder 1 logits, decoder 2 logits], both full size, in train and eval mode;
U-Bench averages the loss over both and evaluates output[-1] (decoder 2), as ubench does. Fixed
256x256 input. Parameters at 3 in / 1 class: 104,174,554 with monai 1.2.0 (U-Bench's pinned
version; 104,192,986 with monai 1.6.1, whose blocks add an unused cross-attention LayerNorm),
all trainable, counted by instantiating U-Bench's module; 10,368 of them are a full-size ResBlock
that U-Bench builds and never calls (kept, not run: ``unused_params``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.cascade import AttentionGate
from ubench.models.ops.common import map_to_tokens, tokens_to_map, up2_aligned
from ubench.models.ops.conv_blocks import conv_bn_relu
from ubench.models.ops.vit_hybrid import TransformerBlock
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
PATCH = 16
HIDDEN = 768
MLP_DIM = 3072
DEPTH = 12
HEADS = 12
TAPS = (3, 6, 9)  # blocks (0-based) whose token outputs feed the CNN path, before the final norm
WIDTHS = (32, 64, 128, 256, 512)  # CNN path, strides 1 to 16
DECODERS = 2


class ResDoubleConv(nn.Module):
    """D-TrAttUnet's ResBlock: two 3x3 conv-BN-ReLU plus a 1x1 conv-BN-ReLU shortcut, summed
    (convs without bias; no activation after the sum)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(in_ch, out_ch, bias=False), *conv_bn_relu(out_ch, out_ch, bias=False))
        self.shortcut = nn.Sequential(*conv_bn_relu(in_ch, out_ch, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class TokenBranch(nn.Module):
    """Brings a transformer feature map (HIDDEN channels, stride 16) to a CNN level: ``ups`` steps
    of bilinear x2 + ResBlock (the paper's UpResBlock, the first step narrowing to ``out_ch``), or
    a single ResBlock where the level is at stride 16 (``ups`` = 0)."""

    def __init__(self, out_ch: int, ups: int):
        super().__init__()
        self.upsample = ups > 0
        self.convs = nn.ModuleList(ResDoubleConv(HIDDEN if i == 0 else out_ch, out_ch) for i in range(max(ups, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(up2_aligned(x) if self.upsample else x)
        return x


class PlainViT(nn.Module):
    """Patch embedding (no position embedding) and MONAI-style transformer blocks; returns the
    feature maps of the tapped blocks and the final LayerNorm'd tokens, (B, HIDDEN, H/16, W/16)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, HIDDEN, PATCH, stride=PATCH)
        self.blocks = nn.ModuleList(
            TransformerBlock(HIDDEN, HEADS, MLP_DIM, qkv_bias=False, eps=1e-5) for _ in range(DEPTH)
        )
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        tokens, feats = map_to_tokens(x), []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in TAPS:
                feats.append(tokens)
        feats.append(self.norm(tokens))
        return [tokens_to_map(t, h, w) for t in feats]


class GatedDecoder(nn.Module):
    """Attention U-Net decoder over ``widths`` (shallowest first): per level upsample, gate the
    skip with the upsampled map, fuse [gated skip, upsampled] with a ResBlock; 1x1 head."""

    def __init__(self, widths: tuple[int, ...], num_classes: int):
        super().__init__()
        deep = widths[::-1]
        self.gates = nn.ModuleList(AttentionGate(g, s, s) for g, s in zip(deep, deep[1:]))
        self.fuses = nn.ModuleList(ResDoubleConv(s + g, s) for g, s in zip(deep, deep[1:]))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for gate, fuse, skip in zip(self.gates, self.fuses, reversed(skips)):
            up = up2_aligned(x)
            x = fuse(torch.cat([gate(up, skip), up], dim=1))
        return self.head(x)


class DTrAttUNet(nn.Module):
    """ViT path -> CNN path fusing a transformer feature at each level -> two attention decoders."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        # built in the reference's module order (transformer, unused ResBlock, CNN stages, token
        # branches, decoder 1, decoder 2)
        self.vit = PlainViT(in_channels)
        self.unused_stem = ResDoubleConv(in_channels, WIDTHS[0])  # U-Bench's `encoder1`, never called
        self.pool = nn.MaxPool2d(2, 2)
        # level i > 0 takes [pooled level i-1, its transformer feature], each WIDTHS[i-1] wide
        self.stages = nn.ModuleList(
            [ResDoubleConv(in_channels, WIDTHS[0])] + [ResDoubleConv(w, w) for w in WIDTHS[1:]]
        )
        levels = len(WIDTHS) - 1
        self.branches = nn.ModuleList(TokenBranch(WIDTHS[i], levels - 1 - i) for i in range(levels))
        self.decoders = nn.ModuleList(GatedDecoder(WIDTHS, num_classes) for _ in range(DECODERS))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.vit(x)
        x = self.stages[0](x)
        skips = [x]
        for stage, branch, feat in zip(self.stages[1:], self.branches, feats):
            x = stage(torch.cat([self.pool(x), branch(feat)], dim=1))
            skips.append(x)
        bottom = skips.pop()
        return [decoder(bottom, skips) for decoder in self.decoders]


_UNUSED = [f"unused_stem.{name}" for name, _ in ResDoubleConv(3, WIDTHS[0]).named_parameters()]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="D_TrAttUnet",
        ubench_id=78,
        year=2023,
        paper="D-TrAttUnet: Dual-Decoder Transformer-Based Attention Unet Architecture for Binary and "
        "Multi-classes Covid-19 Infection Segmentation",
        deep_supervision=True,
        ref_params_m=104.174554,
        ref_source="U-Bench models/Hybrid/D_TrAttUnet/D_TrAttUnet.py (d_trattunet(num_classes=1, "
        "input_channel=3) -> DTrAttUnet(input_channel=3, num_classes=1), defaults feature_size 16, "
        "hidden 768, mlp 3072, 12 heads), counted by instantiating it; monai==1.2.0 (U-Bench "
        "requirements.txt) blocks, i.e. the monai 1.6.1 count 104,192,986 less the 12 unused "
        "norm_cross_attn LayerNorms (18,432)",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        size_multiple=PATCH,
        notes="Deep supervision: returns [decoder 1 logits, decoder 2 logits] in train and eval mode, "
        "as U-Bench's (output, output2); U-Bench (deeps_supervision 1) averages the loss of both "
        "against the same mask and evaluates output[-1] (decoder 2). The paper trains the second "
        "decoder on lung masks; U-Bench and ubench supervise both with the lesion mask. No "
        "pretrained weights: U-Bench builds it from scratch. Quirks of U-Bench's code kept: the ViT "
        "has no position embedding (its PatchEmbeddingBlock is a bare 16x16 conv; ViT's "
        "in_channels/img_size/patch_size arguments are ignored) and no class token; the features "
        "handed to the CNN path are the raw outputs of blocks 4, 7, 10 and the final-LayerNorm'd "
        "tokens; encoder1 (a full-size ResBlock, 10,368 parameters at 3 channels) is built and "
        "never called (kept as unused_stem, not run: unused_params); the two decoders are "
        "identical and independent. Deviations: U-Bench's patch embedding always takes 3 channels "
        "(PatchEmbeddingBlock() with its defaults) while its CNN path takes input_channel, so it "
        "fails on 1-channel input; here both take in_channels (identical at 3). U-Bench hard-codes "
        "the 16x16 token grid (proj_feat with feat_size 16), so it runs at 256x256 only; the "
        "architecture itself (no position table) would take any multiple of 16, but ubench keeps "
        "U-Bench's one size. The transformer blocks are ops/vit_hybrid.py's TransformerBlock with "
        "qkv_bias=False, eps=1e-5 (MONAI's TransformerBlock: the same computation and parameters, "
        "attention through scaled_dot_product_attention); MONAI >= 1.4 also builds an unused "
        "cross-attention LayerNorm per block, absent here.",
        extra={"unused_params": _UNUSED},
    )
)
def d_trattunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """D-TrAttUnet as U-Bench benchmarks it (two decoders, unused full-size ResBlock kept)."""
    return DTrAttUNet(in_channels=in_channels, num_classes=num_classes)
