"""DA-TransUNet: TransUNet with dual (position + channel) attention on the embedding and skips.

Paper: Sun et al., "DA-TransUNet: Integrating Spatial and Channel Dual Attention with Transformer
U-Net for Medical Image Segmentation", Frontiers in Bioengineering and Biotechnology (2024).

Configuration: U-Bench's ``DA_TransUNet`` (repo FengheTan9/U-Bench,
models/Hybrid/DA_TransUNet/{DA_TransUNet,block}.py): TransUNet R50-ViT-B/16 at 256x256 (see
``transunet.py``) plus DANet heads (Fu et al., CVPR 2019) in three places: on the 768-channel
patch-embedding map before the positions are added, and on the 512@H/8 and 256@H/4 skips before
the first two decoder steps concatenate them. A DANet head reduces to C/16 channels twice (3x3
conv-BN-ReLU), runs position attention (query/key at C/128) on one copy and channel attention on
the other (both residual with a zero-initialised gain), refines each with a 3x3 conv-BN-ReLU, sums
them and projects back with dropout(0.05) + 1x1 conv + ReLU. BatchNorms inside the head use
momentum 0.95 and eps 1e-3 as in the reference.

Parameters: the reference counts 107,996,775 (instantiating U-Bench's code), but ~1.51M of them
never take part in the forward pass: every decoder block builds three DANet heads (64, 256, 512
channels) of which at most one is used, and each head builds two auxiliary 1x1 projections whose
outputs are discarded. Those dead modules are left out here: 106,482,959 parameters
(107,996,775 - 1,513,816, -1.4%), the computation is the same. U-Bench also loads R50+ViT-B/16
ImageNet-21k weights; nothing is downloaded here.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.vit_hybrid import TransUNetCore
from ubench.models.registry import ModelInfo, register_model

IMG_SIZE = 256


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch, momentum=0.95, eps=1e-3),
        nn.ReLU(),
    )


class PositionAttention(nn.Module):
    """Each position attends over all positions (SAGAN-style); output gamma * attended + x."""

    def __init__(self, ch: int):
        super().__init__()
        self.query = nn.Conv2d(ch, ch // 8, 1)
        self.key = nn.Conv2d(ch, ch // 8, 1)
        self.value = nn.Conv2d(ch, ch, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        k = self.key(x).flatten(2)  # (B, C/8, HW)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, HW, HW)
        out = torch.bmm(self.value(x).flatten(2), attn.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    """Each channel attends over all channels, with DANet's (max - energy) softmax trick."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.flatten(2)
        energy = torch.bmm(flat, flat.transpose(1, 2))
        energy = energy.amax(dim=-1, keepdim=True) - energy
        out = torch.bmm(torch.softmax(energy, dim=-1), flat).view(b, c, h, w)
        return self.gamma * out + x


class DANetHead(nn.Module):
    """Position and channel attention on C/16-channel reductions, summed, projected back to C."""

    def __init__(self, ch: int):
        super().__init__()
        inter = ch // 16
        self.reduce_pos = _conv_bn_relu(ch, inter)
        self.reduce_chn = _conv_bn_relu(ch, inter)
        self.pos_attn = PositionAttention(inter)
        self.chn_attn = ChannelAttention()
        self.refine_pos = _conv_bn_relu(inter, inter)
        self.refine_chn = _conv_bn_relu(inter, inter)
        self.project = nn.Sequential(nn.Dropout2d(0.05), nn.Conv2d(inter, ch, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.refine_pos(self.pos_attn(self.reduce_pos(x)))
        chn = self.refine_chn(self.chn_attn(self.reduce_chn(x)))
        return self.project(pos + chn)


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="DA_TransUNet",
        ubench_id=60,
        year=2024,
        paper="DA-TransUNet: Integrating Spatial and Channel Dual Attention with Transformer U-Net "
        "for Medical Image Segmentation",
        deep_supervision=False,
        ref_params_m=107.996775,
        ref_source="U-Bench models/Hybrid/DA_TransUNet/DA_TransUNet.py (da_transformer, "
        "R50-ViT-B_16, img_size 256), counted by instantiating it",
        ref_input_size=IMG_SIZE,
        input_sizes=(IMG_SIZE,),
        size_multiple=16,
        notes="reference builds ~1.51M parameters that never reach the output (unused DANet heads "
        "in every decoder block, discarded auxiliary projections); left out here (-1.4%). "
        "Untrained (U-Bench loads R50+ViT-B/16 weights); fixed 256x256 input",
    )
)
def da_transunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """TransUNet R50-ViT-B/16 with DANet heads on the patch embedding and the two deepest skips."""
    return TransUNetCore(
        in_channels=in_channels,
        num_classes=num_classes,
        img_size=IMG_SIZE,
        embed_attn=DANetHead(768),
        skip_attn=[DANetHead(512), DANetHead(256)],
    )
