"""TransNorm: TransUNet whose decoder is steered by the transformer's spatial attention.

Paper: Azad et al., "TransNorm: Transformer Provides a Strong Spatial Normalization Mechanism for
a Deep Segmentation Model", IEEE Access 10 (2022).

Configuration: U-Bench's ``TransNorm`` (repo FengheTan9/U-Bench,
models/Hybrid/TransNorm/TransNorm.py with module/vit_seg_configs.py and
module/vit_seg_modeling_resnet_skip.py), whose factory ``transnorm(num_classes, input_channel)``
builds the "R50-ViT-B_16" config at img_size 256 and ignores ``input_channel``. The encoder is
TransUNet's (see ``transunet.py``; blocks in ``ops/vit_hybrid.py``): BiT ResNet-50 v2 trunk to
H/16 (1024 channels), 1x1 patch embedding to 768 plus learned positions for the 16x16 grid
(dropout 0.1), 12 pre-norm ViT-B layers and a final LayerNorm. What TransNorm adds:

- every attention layer has a fourth projection, ``spatial`` (768 -> 768); the LAST layer's
  attention probabilities (softmax(QK^T / sqrt(64)) per head, before dropout) applied to the
  spatial projection of that layer's normalised input give a (B, 256, 768) "guide" sequence;
- the guide, as a 16x16 map, goes through its own 3x3 conv-BN-ReLU to 512 channels beside
  TransUNet's ``conv_more``; in each of the four x2 decoder steps the guide is upsampled and
  convolved (3x3 conv-BN-ReLU) to the step's width, the [upsampled, skip] concatenation is
  reweighted by a CBAM channel gate (``ops/cascade.py`` ``ChannelGate``, ratio 16), passed through
  the two conv-BN-ReLU of TransUNet's CUP block and multiplied by the guide; the next step gets
  the guide as convolved (not multiplied);
- the 3x3 head maps the 16 channels at full size to the classes.

Parameters at 3 in / 1 class: 117,676,465, counted by instantiating the U-Bench code (ours: the
same, all trainable). 6,496,512 of them never take part: the ``spatial`` projections of layers
0-10, whose guide U-Bench computes and discards (only the last layer's guide reaches the decoder);
they are kept, listed in ``unused_params``, and not computed here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.cascade import ChannelGate
from ubench.models.ops.common import map_to_tokens, up2_aligned
from ubench.models.ops.vit_hybrid import CupBlock, ResNetV2Encoder, ViTEncoder, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256
HIDDEN, DEPTH, HEADS, MLP_DIM = 768, 12, 12, 3072
DECODER_WIDTHS = (256, 128, 64, 16)
N_SKIP = 3


class GuidedViTEncoder(ViTEncoder):
    """TransUNet's ViT plus a ``spatial`` projection in every attention layer.

    ``forward`` returns ``(normed tokens, guide)``: the guide is the last layer's attention map
    (recomputed from its q and k on the same normalised input) applied to the spatial projection
    of that input, heads concatenated back to ``dim``. The attention dropout rate is 0, so the
    recomputed map is the one the layer itself uses.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__(dim, depth, heads, mlp_dim, dropout, init="transunet")
        for blk in self.blocks:
            blk.attn.spatial = nn.Linear(dim, dim)

    @staticmethod
    def _guide(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        attn = block.attn
        b, n, d = h.shape
        split = (b, n, attn.heads, d // attn.heads)
        q, k = F.linear(h, attn.qkv.weight[: 2 * d], attn.qkv.bias[: 2 * d]).chunk(2, dim=-1)
        q, k, s = (t.reshape(split).transpose(1, 2) for t in (q, k, attn.spatial(h)))
        return F.scaled_dot_product_attention(q, k, s).transpose(1, 2).reshape(b, n, d)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for blk in self.blocks[:-1]:
            x = blk(x)
        last = self.blocks[-1]
        guide = self._guide(last, last.norm1(x))
        return self.norm(last(x)), guide


class GuidedCupBlock(CupBlock):
    """CUP step with a channel gate on the concatenation and a guide branch multiplying the output.

    ``forward(x, guide, skip)`` returns ``(output, guide for the next step)``.
    """

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int = 0):
        super().__init__(in_ch, out_ch, skip_ch)
        self.gate = ChannelGate(in_ch + skip_ch, ratio=16)
        self.guide_conv = conv_bn_relu(in_ch, out_ch)

    def forward(self, x: torch.Tensor, guide: torch.Tensor, skip: torch.Tensor | None = None):
        x = up2_aligned(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = self.conv2(self.conv1(x * self.gate(x)))
        guide = self.guide_conv(up2_aligned(guide))
        return x * guide, guide


class GuidedCupDecoder(nn.Module):
    """Token map and guide map each to ``head_ch`` (3x3 conv-BN-ReLU), then four guided steps."""

    def __init__(self, hidden: int, skip_channels, widths=DECODER_WIDTHS, head_ch: int = 512):
        super().__init__()
        self.conv_more = conv_bn_relu(hidden, head_ch)
        self.guide_more = conv_bn_relu(hidden, head_ch)
        ins = [head_ch, *widths[:-1]]
        skips = list(skip_channels) + [0] * (len(widths) - len(skip_channels))
        self.blocks = nn.ModuleList(GuidedCupBlock(i, o, s) for i, o, s in zip(ins, widths, skips))

    def forward(self, x: torch.Tensor, guide: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x, guide = self.conv_more(x), self.guide_more(guide)
        for i, block in enumerate(self.blocks):
            x, guide = block(x, guide, skips[i] if i < len(skips) else None)
        return x


class TransNorm(nn.Module):
    """R50 trunk -> patch embedding + positions -> guided ViT -> guided CUP decoder -> 3x3 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, img_size: int = IMG_SIZE, dropout: float = 0.1):
        super().__init__()
        self.cnn = ResNetV2Encoder(in_channels)
        self.patch_embed = nn.Conv2d(self.cnn.out_channels, HIDDEN, 1)
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // 16) ** 2, HIDDEN))
        self.embed_drop = nn.Dropout(dropout)
        self.vit = GuidedViTEncoder(HIDDEN, DEPTH, HEADS, MLP_DIM, dropout)
        self.decoder = GuidedCupDecoder(HIDDEN, self.cnn.skip_channels[:N_SKIP])
        self.head = nn.Conv2d(DECODER_WIDTHS[-1], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, skips = self.cnn(x)
        grid = self.patch_embed(feats)
        b, d, h, w = grid.shape
        tokens, guide = self.vit(self.embed_drop(map_to_tokens(grid) + self.pos_embed))
        y = self.decoder(tokens.transpose(1, 2).reshape(b, d, h, w), guide.transpose(1, 2).reshape(b, d, h, w),
                         skips[:N_SKIP])
        return self.head(y)


# the 11 spatial projections whose guide U-Bench discards (only the last layer's is used)
UNUSED = [f"vit.blocks.{i}.attn.spatial.{p}" for i in range(DEPTH - 1) for p in ("weight", "bias")]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="TransNorm",
        ubench_id=70,
        year=2022,
        paper="TransNorm: Transformer Provides a Strong Spatial Normalization Mechanism for a Deep "
        "Segmentation Model",
        deep_supervision=False,
        ref_params_m=117.676465,
        ref_source="U-Bench models/Hybrid/TransNorm/TransNorm.py (transnorm: R50-ViT-B_16, img_size 256, "
        "n_skip 3), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        notes="Fixed 256x256 input: U-Bench builds the model at img_size 256, so the learned "
        "positional table holds (256/16)^2 = 256 tokens and the decoder reshapes the tokens to "
        "sqrt(n) x sqrt(n); any other size fails in U-Bench's forward. Untrained: U-Bench's "
        "transnorm() never calls load_from, so it loads no checkpoint (the R50+ViT-B/16 ImageNet-21k "
        ".npz named in its config is not read; only DA-TransUNet's factory loads that file). "
        "input_channel is ignored by U-Bench, which repeats a 1-channel image to 3 channels; here "
        "the root conv takes in_channels directly (the root is a weight-standardised conv, so a "
        "3-channel root kernel summed over channels is not exactly U-Bench's repeat: the two differ "
        "by the standardisation's scale, which the GroupNorm after it absorbs). Quirks kept from U-Bench's code: every attention "
        "layer builds a spatial projection but only the last layer's guide is used (layers 0-10: "
        "6,496,512 unused parameters, kept and listed in unused_params; their discarded guides are "
        "not computed); the guide uses the pre-dropout attention map (attention dropout is 0); the "
        "guide fed to the next decoder step is the convolved one, not the product; the guide conv of "
        "each step takes the step's input width. Weight init as U-Bench: PyTorch defaults, Xavier "
        "MLP weights with N(0, 1e-6) biases in the ViT, zero positions.",
        extra={"unused_params": UNUSED},
    )
)
def transnorm(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """R50-ViT-B/16 TransNorm at 256x256 as U-Bench benchmarks it."""
    return TransNorm(in_channels=in_channels, num_classes=num_classes)
