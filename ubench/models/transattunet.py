"""TransAttUnet: a U-Net with self-aware attention at the bottleneck and multi-scale decoder inputs.

Paper: Chen, Liu, Wang, Liang, Ding, Zhang, "TransAttUnet: Multi-level Attention-guided U-Net with
Transformer for Medical Image Segmentation", IEEE Transactions on Emerging Topics in Computational
Intelligence (arXiv 2107.05274, 2021).

Configuration: U-Bench's ``TransAttUnet`` (repo FengheTan9/U-Bench,
models/Hybrid/TransAttUnet/TransAttUnet.py + module/unet_parts*.py; models/__init__.py maps it to
``trans_attention_unet(num_classes, input_channel)``, which builds
``UNet_Attention_Transformer_Multiscale(bilinear=True)`` and loads a whole-network checkpoint; id
68, no deep supervision):
- encoder: U-Net's double 3x3 conv (bias) + BN + ReLU stages, widths 64, 128, 256, 512, 512 (the
  bottleneck halved because the decoder upsamples bilinearly), 2x2 max-pooling between them;
- bottleneck "self-aware attention" on the 512-channel stride-16 map, the sum of two branches:
  a DANet position attention (1x1 query/key to 64 channels, value 512, zero-initialised residual
  gain) on the map itself, and, after adding a learned DETR-style position code (a 32-entry row
  table and a 32-entry column table, 256 channels each, uniform [0, 1) init), a parameter-free
  scaled dot-product attention with attention dropout 0.1. As U-Bench's code builds it, that
  attention runs across CHANNELS (a 512 x 512 map, temperature sqrt(512)), without projections;
- decoder: four steps of bilinear x2 upsampling (align_corners=True), concatenation [skip,
  upsampled], and a double conv whose middle width is half its input (outputs 256, 128, 64, 64).
  Multi-scale: from the second step on, the map upsampled is [the output one level further down,
  already upsampled once by the previous step, the previous output] (the bottleneck alone at the
  first step), so every map is carried one level up beside the next one; the head (1x1 conv,
  128 -> classes) sees [upsampled second-to-last output, last output].
Parameters at 3 in / 1 class: 25,965,770, counted by instantiating U-Bench's module; 3,301,896 of
them are four "multi-scale fusion" blocks (3x3 conv-BN-PReLU x2, 1x1 conv-BN, Softmax2d) that
U-Bench builds and never calls. They are kept here, not run (``unused_params``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import up2_aligned
from ubench.models.ops.conv_blocks import PlainEncoder, conv_bn_relu
from ubench.models.registry import ModelInfo, register_model

ENCODER_WIDTHS = (64, 128, 256, 512, 512)
DECODER_WIDTHS = (256, 128, 64, 64)  # each step's output, deepest first
STRIDE = 2 ** (len(ENCODER_WIDTHS) - 1)
POS_TABLE_LEN = 32  # row/column entries: bottleneck grids up to 32x32, inputs up to 512x512
ATTN_DROPOUT = 0.1
U_STONE_URL = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/TransAttUnet.pth"


def _decoder_plan() -> tuple[list[tuple[int, int, int]], int]:
    """(skip, upsampled, output) widths of each decoder step, deepest first, then the head's input.

    A step upsamples [the map carried up by the previous step, previous output] (the bottleneck
    alone at the first step) and fuses [skip, that]; it carries up its upsampled previous output.
    The head takes [upsampled second-to-last output, last output].
    """
    plan, carried, prev = [], 0, ENCODER_WIDTHS[-1]
    for skip, out in zip(reversed(ENCODER_WIDTHS[:-1]), DECODER_WIDTHS):
        plan.append((skip, carried + prev, out))
        carried, prev = prev, out
    return plan, carried + prev


def _unused_gate_params() -> list[str]:
    """state_dict names of the parameters of the four never-called multi-scale fusion blocks."""
    names = []
    for i in range(len(DECODER_WIDTHS)):
        for layer, kinds in ((0, "wb"), (1, "wb"), (2, "w"), (3, "wb"), (4, "wb"), (5, "w"), (6, "wb"), (7, "wb")):
            names += [f"scale_gates.{i}.{layer}.{'weight' if k == 'w' else 'bias'}" for k in kinds]
    return names


class LearnedPositionCode(nn.Module):
    """Adds a learned 2D position code: channels [0, C/2) from a column table, [C/2, C) from a row
    table (DETR's ``PositionEmbeddingLearned``), each entry uniform [0, 1) at init."""

    def __init__(self, channels: int, length: int = POS_TABLE_LEN):
        super().__init__()
        self.row = nn.Embedding(length, channels // 2)
        self.col = nn.Embedding(length, channels // 2)
        nn.init.uniform_(self.row.weight)
        nn.init.uniform_(self.col.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        length = self.row.num_embeddings
        if h > length or w > length:
            raise ValueError(
                f"the position tables hold {length} rows/columns, the bottleneck map is {h}x{w}: "
                f"inputs may be at most {length * STRIDE}x{length * STRIDE} pixels"
            )
        cols = self.col.weight[:w].t()[:, None, :].expand(-1, h, -1)  # (C/2, h, w)
        rows = self.row.weight[:h].t()[:, :, None].expand(-1, -1, w)
        return x + torch.cat([cols, rows], dim=0)


class PositionAttention(nn.Module):
    """DANet/SAGAN position attention: every pixel attends over all pixels; gamma * out + x."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        attn = torch.softmax(torch.bmm(q, self.key(x).flatten(2)), dim=-1)  # (B, HW, HW)
        out = torch.bmm(self.value(x).flatten(2), attn.transpose(1, 2))
        return self.gamma * out.view(b, c, h, w) + x


class ChannelDotProductAttention(nn.Module):
    """Parameter-free softmax(X X^T / sqrt(C)) X over the (B, C, HW) map: channels attend over
    channels (what U-Bench's ``ScaledDotProductAttention`` computes on a feature map)."""

    def __init__(self, channels: int, dropout: float = ATTN_DROPOUT):
        super().__init__()
        self.temperature = channels ** 0.5
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        attn = self.drop(torch.softmax(torch.bmm(flat / self.temperature, flat.transpose(1, 2)), dim=-1))
        return torch.bmm(attn, flat).view_as(x)


class SelfAwareAttention(nn.Module):
    """The bottleneck: position attention on the map plus channel attention on map + position code."""

    def __init__(self, channels: int):
        super().__init__()
        self.pos = LearnedPositionCode(channels)
        self.spatial = PositionAttention(channels)
        self.channel = ChannelDotProductAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x) + self.channel(self.pos(x))


def _halving_double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """(3x3 conv + BN + ReLU) to in_ch // 2, then to out_ch: the decoder's fusion block."""
    return nn.Sequential(*conv_bn_relu(in_ch, in_ch // 2), *conv_bn_relu(in_ch // 2, out_ch))


def _scale_gate(in_ch: int, out_ch: int) -> nn.Sequential:
    """The multi-scale fusion block U-Bench builds (and never calls): 3x3 conv-BN-PReLU twice,
    1x1 conv-BN, softmax over channels."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.PReLU(),
        nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.PReLU(),
        nn.Conv2d(out_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.Softmax2d(),
    )


class TransAttUNet(nn.Module):
    """U-Net encoder -> self-aware attention -> decoder whose inputs carry the previous level."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        plan, head_in = _decoder_plan()
        # built in the reference's order (encoder, decoder, head, attention, unused gates), so
        # one seed gives the same initial weights as U-Bench's module
        self.encoder = PlainEncoder(in_channels, ENCODER_WIDTHS)
        self.decoder = nn.ModuleList(_halving_double_conv(s + u, o) for s, u, o in plan)
        self.head = nn.Conv2d(head_in, num_classes, 1)
        self.attention = SelfAwareAttention(ENCODER_WIDTHS[-1])
        gate_ins = [u for _, u, _ in plan[1:]] + [head_in]  # the multi-scale concatenations
        self.scale_gates = nn.ModuleList(_scale_gate(i, o) for i, o in zip(gate_ins, DECODER_WIDTHS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encoder(x)
        x = self.attention(skips.pop())
        carried = None
        for fuse in self.decoder:
            up = up2_aligned(x if carried is None else torch.cat([carried, x], dim=1))
            carried = up[:, up.shape[1] - x.shape[1]:]  # x upsampled (bilinear acts per channel)
            x = fuse(torch.cat([skips.pop(), up], dim=1))
        return self.head(torch.cat([carried, x], dim=1))


_FILE_KEYS = (
    [[r"^inc\.double_conv\.", "encoder.down.0."],
     [r"^down(\d)\.maxpool_conv\.1\.double_conv\.", r"encoder.down.\1."]]
    + [[rf"^up{i + 1}\.conv\.double_conv\.", f"decoder.{i}."] for i in range(len(DECODER_WIDTHS))]
    + [[rf"^fuse{i + 1}\.fuse_attn\.", f"scale_gates.{i}."] for i in range(len(DECODER_WIDTHS))]
    + [[r"^pos\.(row|col)_embed\.", r"attention.pos.\1."],
       [r"^pam\.(query|key|value)_conv\.", r"attention.spatial.\1."],
       [r"^pam\.gamma$", "attention.spatial.gamma"]]
)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="TransAttUnet",
        ubench_id=68,
        year=2021,
        paper="TransAttUnet: Multi-level Attention-guided U-Net with Transformer for Medical Image "
        "Segmentation",
        deep_supervision=False,
        ref_params_m=25.965770,
        ref_source="U-Bench models/Hybrid/TransAttUnet/TransAttUnet.py + module/unet_parts.py, "
        "unet_parts_att_transformer.py, unet_parts_att_multiscale.py "
        "(trans_attention_unet(num_classes=1, input_channel=3) -> "
        "UNet_Attention_Transformer_Multiscale(bilinear=True)), counted by instantiating it with "
        "the checkpoint download disabled",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="Built untrained: U-Bench's factory always downloads TransAttUnet.pth (HuggingFace "
        "FengheTan9/U-Stone, a whole-network checkpoint of this architecture; U-Bench does not say "
        "what it was trained on) and loads it with strict=False after popping the first conv's "
        "kernel and the head, so U-Bench never trains it from scratch; `train.pretrained: true` "
        "loads the same file here (extra['pretrained']), except the first conv's bias (64 values), "
        "which U-Bench loads and ubench's loader cannot take apart from the kernel: it keeps its "
        "default init. input_channel sizes the first conv in U-Bench (its kernel is never loaded), "
        "the same here. U-Bench's code vs the paper: the 'transformer self-attention' is a "
        "parameter-free dot-product attention across the 512 channels (softmax(X X^T / sqrt(512)) "
        "X, dropout 0.1 on the weights), not multi-head attention over positions; the four "
        "multi-scale fusion blocks (fuse1-4: conv-BN-PReLU x2, 1x1 conv-BN, Softmax2d; 3,301,896 "
        "parameters) are built but never called: the multi-scale connections are plain "
        "concatenations of the upsampled previous decoder output (kept, not run: unused_params). "
        "Sizes: U-Bench pads each upsampled map to its skip (U-Net's F.pad), so it also runs on "
        "sizes that are not multiples of 16; here H and W must be multiples of 16, where that "
        "padding is a no-op, and is left out. The learned position tables have 32 rows/columns: "
        "inputs larger than 512 (bottleneck over 32x32) fail in U-Bench (embedding index error) "
        "and raise a ValueError here. Each upsampled previous output that U-Bench computes twice "
        "(inside Up and again by F.interpolate for the multi-scale concatenation, the same "
        "bilinear align_corners=True map) is computed once here and sliced out of the step's "
        "upsampled input; outputs are identical.",
        extra={
            "unused_params": _unused_gate_params(),
            "pretrained": {
                "backbone": "TransAttUnet (whole network)",
                "source": "models/Hybrid/TransAttUnet/TransAttUnet.py trans_attention_unet(): "
                "torch.hub.load_state_dict_from_url(<HuggingFace U-Stone TransAttUnet.pth>), pops "
                "'inc.double_conv.0.weight', 'outc.conv.weight', 'outc.conv.bias', then "
                "model.load_state_dict(..., strict=False) into the whole "
                "UNet_Attention_Transformer_Multiscale (everything else, including the unused "
                "fuse1-4 blocks and the first conv's bias; ubench drops that bias too)",
                "file": "TransAttUnet.pth",
                "url": U_STONE_URL,
                "modules": ["encoder.down.0.1", "encoder.down.0.3", "encoder.down.0.4",
                            "encoder.down.1", "encoder.down.2", "encoder.down.3", "encoder.down.4",
                            "decoder", "attention", "scale_gates"],
                "key_map": _FILE_KEYS,
                "drop": [r"^inc\.double_conv\.0\.", r"^outc\."],
            },
        },
    )
)
def transattunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """TransAttUnet as U-Bench benchmarks it (bilinear decoder, unused fusion blocks kept)."""
    return TransAttUNet(in_channels=in_channels, num_classes=num_classes)
