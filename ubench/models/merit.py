"""MERIT: two MaxViT encoders at two resolutions, cascaded through one CASCADE decoder.

Paper: Rahman & Marculescu, "Multi-scale Hierarchical Vision Transformer with Cascaded Attention
Decoding for Medical Image Segmentation", MIDL 2023 (arXiv 2303.16892).

Configuration: U-Bench's ``MERIT`` (repo FengheTan9/U-Bench, models/Hybrid/MERIT/MERIT.py +
decoders.py + maxxvit_4out.py; models/__init__.py maps it to ``merit(num_classes,
input_channel)``, which builds ``MERIT_Cascaded`` with its defaults: img_size_s1 (256, 256),
img_size_s2 (224, 224), model_scale "small", decoder_aggregation "additive", bilinear
interpolation; id 66, flagged ``deeps_supervision`` in models/model_id.json):
- a learned grey stem (1x1 conv 1 -> 3 + BN + ReLU), applied only to 1-channel inputs;
- encoder 1: MaxxViT ``maxxvit_rmlp_small_rw_256`` (ConvNeXt conv blocks, partitions 8) on the
  image resized to 256; encoder 2: MaxViT ``maxvit_rmlp_small_rw_224`` (MBConv blocks, partitions
  7) on the gated image resized to 224; both widths 96/192/384/768, depths 2/2/5/2, strides
  4/8/16/32 (ops/maxvit.py), untrained here (U-Bench loads both ImageNet checkpoints);
- one CASCADE decoder (ops/cascade.py ``CascadeDecoder``, aggregation "add", gate widths 192, 96,
  48) and one set of 1x1 heads, shared by both passes;
- pass 1: decoder on encoder 1's maps, heads upsampled by 32/16/8/4 to 256; a 1-channel 1x1 conv
  on the finest decoder map, sigmoid, upsampled x4, multiplies the input (the cascade's feedback);
- pass 2: encoder 2 on the gated image at 224; each of its maps plus encoder 1's map at that
  level resized bilinearly to it (64->56, 32->28, 16->14, 8->7); decoder, heads, each logit map
  resized bilinearly to 256 and added to pass 1's logit map of the same level.
The forward returns the four summed full-size logits, coarsest first; the stride-4 one (U-Bench
evaluates ``output[-1]``) is last. 256x256 inputs only. Parameters at 3 in / 1 class:
147,848,404 (encoder 1 65,241,516, encoder 2 64,126,044, decoder 18,479,291, heads 1,444,
feedback conv 97, grey stem 12), counted by instantiating U-Bench's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.cascade import CascadeDecoder, CascadeHeads, grey_stem
from ubench.models.ops.maxvit import (
    MAXVIT_RMLP_SMALL_RW_224,
    MAXXVIT_RMLP_SMALL_RW_256,
    MaxViTEncoder,
    maxvit_record,
)
from ubench.models.registry import ModelInfo, register_model

SIZE = 256
U_STONE = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/{file}"


def _resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False, as U-Bench's F.interpolate calls)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:  # bilinear to the same size is the identity
        return x
    return F.interpolate(x, size=size, mode="bilinear")


class MERIT(nn.Module):
    """(grey stem) -> MaxxViT@256 -> CASCADE -> feedback gate -> MaxViT@224 (+ pass-1 maps) ->
    the same CASCADE -> the two passes' logits summed per level."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        # U-Bench lifts a grey image to 3 channels with a learned 1x1 conv for the ImageNet
        # encoders; it builds the stem whatever the input (unused for 3 channels)
        self.from_grey = in_channels == 1
        self.grey = grey_stem()
        enc_in = 3 if self.from_grey else in_channels
        self.encoder1 = MaxViTEncoder(enc_in, MAXXVIT_RMLP_SMALL_RW_256)
        self.encoder2 = MaxViTEncoder(enc_in, MAXVIT_RMLP_SMALL_RW_224)
        widths = tuple(reversed(self.encoder1.dims))  # deepest first
        self.decoder = CascadeDecoder(widths, aggregation="add")
        self.heads = CascadeHeads(widths, num_classes)
        self.feedback = nn.Conv2d(widths[-1], 1, 1)  # one channel whatever num_classes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.from_grey:
            x = self.grey(x)
        feats1 = self.encoder1(_resize(x, self.encoder1.cfg.img_size))
        maps1 = self.decoder(feats1)
        logits1 = self.heads(maps1)
        gate = F.interpolate(torch.sigmoid(self.feedback(maps1[-1])), scale_factor=4, mode="bilinear")
        feats2 = self.encoder2(_resize(x * gate, self.encoder2.cfg.img_size))
        fused = [f2 + _resize(f1, f2.shape[-2:]) for f1, f2 in zip(feats1, feats2)]
        logits2 = self.heads.logits(self.decoder(fused))
        return [p1 + _resize(p2, p1.shape[-2:]) for p1, p2 in zip(logits1, logits2)]


_SOURCE = (
    "models/Hybrid/MERIT/MERIT.py MERIT_Cascaded.__init__: "
    "torch.hub.load_state_dict_from_url(<HuggingFace U-Stone {file}>) loaded with strict=False "
    "into MERIT_Cascaded.{module} = maxxvit_4out.{arch}() (timm 0.6 MaxxVit without its "
    "classifier, built for {size}x{size}); the file's head.fc is left unused. The file is timm's "
    "release of the same name ({release})"
)


def _record(cfg, prefix: str, module: str) -> dict:
    release = f"https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights-maxx/{cfg.file}"
    source = _SOURCE.format(file=cfg.file, module=module, arch=cfg.name, size=cfg.img_size, release=release)
    return maxvit_record(cfg, prefix, source, url=U_STONE.format(file=cfg.file))


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="MERIT",
        ubench_id=66,
        year=2023,
        paper="Multi-scale Hierarchical Vision Transformer with Cascaded Attention Decoding for "
        "Medical Image Segmentation",
        deep_supervision=True,
        ref_params_m=147.848404,
        ref_source="U-Bench models/Hybrid/MERIT/MERIT.py + decoders.py + maxxvit_4out.py "
        "(merit(num_classes=1, input_channel=3) -> MERIT_Cascaded with its defaults: "
        "maxxvit_rmlp_small_rw_256 + maxvit_rmlp_small_rw_224 backbones, CASCADE_Add(channels="
        "[768, 384, 192, 96])), counted by instantiating it with the checkpoint downloads disabled",
        ref_input_size=SIZE,
        input_sizes=(SIZE,),
        notes="Both MaxViT backbones built untrained (U-Bench downloads "
        "maxxvit_rmlp_small_rw_256_sw-37e217ff.pth into backbone1 and "
        "maxvit_rmlp_small_rw_224_sw-6ef0ae4f.pth into backbone2 from HuggingFace FengheTan9/"
        "U-Stone, strict=False: extra['pretrained'], two records); initialised as timm's "
        "untrained MaxxVit ('vit_eff'), the decoder and heads at PyTorch defaults. Returns four "
        "full-size logits, coarsest (stride 32) first, the stride-4 sum last: U-Bench averages the "
        "loss over the four and evaluates output[-1]. 256x256 only: the feedback gate (upsampled "
        "x4 from the 64x64 finest decoder map of the 256 pass) multiplies the input itself, and "
        "the MaxViT partitions are fixed at build time (8 for the 256 encoder, 7 for the 224 one). "
        "U-Bench picks the encoders by x.shape[2] % 14: for sides that are multiples of 14 it "
        "swaps them (and then fails on their partitions); at 256 encoder 1 (MaxxViT) takes the "
        "256 image and encoder 2 (MaxViT) the gated 224 one, as here. The resize of a 256 input "
        "to 256 is skipped (bilinear to the same size is the identity). One decoder and one set "
        "of heads serve both passes (shared weights), as in U-Bench; the feedback conv "
        "(out_head4_in) always has one output channel. U-Bench's factory passes input_channel "
        "but MERIT_Cascaded ignores it: it always builds a learned 1x1 conv + BN + ReLU stem from "
        "1 to 3 channels and applies it when the input has 1 channel; the same here for "
        "in_channels=1 (stem 'grey', 12 parameters, unused at 3 channels: unused_params). Other "
        "in_channels (U-Bench fails on them) reach both encoder stems directly. The relative-"
        "position MLPs keep timm's dropout 0.125 on their hidden layer while training (a timm "
        "RelPosMlp default, not in the paper). Attention uses torch's scaled_dot_product_attention "
        "with the relative-position bias as additive mask (same computation as timm's explicit "
        "softmax, up to rounding). Decoder upsampling by scale_factor, align_corners=False, as in "
        "the reference.",
        extra={
            "unused_params": ["grey.0.weight", "grey.0.bias", "grey.1.weight", "grey.1.bias"],
            "pretrained": [
                _record(MAXXVIT_RMLP_SMALL_RW_256, "encoder1.", "backbone1"),
                _record(MAXVIT_RMLP_SMALL_RW_224, "encoder2.", "backbone2"),
            ],
        },
    )
)
def merit(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """MERIT (MaxxViT@256 + MaxViT@224 cascaded, CASCADE decoder, four outputs) as U-Bench
    benchmarks it, 256x256."""
    return MERIT(in_channels=in_channels, num_classes=num_classes)
