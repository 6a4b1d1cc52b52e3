"""CASCADE: a PVTv2-B2 encoder with a cascaded attention decoder and a head at every level.

Paper: Rahman & Marculescu, "Medical Image Segmentation via Cascaded Attention Decoding", WACV 2023
(arXiv 2303.16892).

Configuration: U-Bench's ``CASCADE`` (repo FengheTan9/U-Bench, models/Hybrid/CASCADE/CASCADE.py +
decoders.py + pvtv2.py; models/__init__.py maps it to ``cascade(num_classes, input_channel)``,
which builds ``PVT_CASCADE``; id 57, flagged ``deeps_supervision`` in models/model_id.json):
- a learned grey stem (1x1 conv 1 -> 3 + BN + ReLU), applied only to 1-channel inputs;
- encoder: PVTv2-B2 (dims 64/128/320/512, depths 3/4/6/3, strides 4/8/16/32), untrained here
  (U-Bench loads the ImageNet checkpoint from HuggingFace, FengheTan9/U-Stone);
- decoder (ops/cascade.py ``CascadeDecoder``, concatenation): 1x1 conv on the stride-32 map, then
  a CAM (CBAM channel gate, spatial gate, double 3x3 conv + BN + ReLU); per finer level an
  up-convolution (nearest x2, 3x3 conv + BN + ReLU) to the level's width, an additive attention
  gate (inner widths 128, 64, 32) on the encoder skip, [gated skip, upsampled] concatenated and a
  CAM back to the level width (320, 128, 64); one spatial gate shared by the four CAMs;
- heads: a 1x1 conv per decoder map (512, 320, 128, 64 channels), upsampled bilinearly
  (align_corners=False) by 32, 16, 8, 4.
The forward returns the four full-size logits, coarsest first; the stride-4 one, which U-Bench
evaluates (``output[-1]``), is last. Spatial size: any multiple of 32. Parameters at 3 in /
1 class: 35,272,795 (PVTv2-B2 without head 24,849,856, decoder 10,421,899, heads 1,028, grey stem
12), counted by instantiating U-Bench's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.cascade import CascadeDecoder, CascadeHeads, grey_stem
from ubench.models.ops.pvt import PVTv2Encoder, pvt_v2_record
from ubench.models.registry import ModelInfo, register_model

STRIDE = 32
U_STONE_PVT_V2_B2 = "https://huggingface.co/FengheTan9/U-Stone/resolve/main/pvt_v2_b2.pth"


class PVTCascade(nn.Module):
    """(grey stem) -> PVTv2-B2 -> cascaded attention decoder -> a head per level."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        # U-Bench lifts a grey image to 3 channels with a learned 1x1 conv so the ImageNet encoder
        # applies unchanged; it builds the stem whatever the input (unused for 3 channels)
        self.from_grey = in_channels == 1
        self.grey = grey_stem()
        self.encoder = PVTv2Encoder(3 if self.from_grey else in_channels)
        widths = tuple(reversed(self.encoder.dims))  # deepest first
        self.decoder = CascadeDecoder(widths, aggregation="cat")
        self.heads = CascadeHeads(widths, num_classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.from_grey:
            x = self.grey(x)
        return self.heads(self.decoder(self.encoder(x)))


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="CASCADE",
        ubench_id=57,
        year=2023,
        paper="Medical Image Segmentation via Cascaded Attention Decoding",
        deep_supervision=True,
        ref_params_m=35.272795,
        ref_source="U-Bench models/Hybrid/CASCADE/CASCADE.py + decoders.py + pvtv2.py "
        "(cascade(num_classes=1, input_channel=3) -> PVT_CASCADE, pvt_v2_b2 backbone, "
        "CASCADE(channels=[512, 320, 128, 64])), counted by instantiating it with the checkpoint "
        "download disabled",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="PVTv2-B2 backbone built untrained (U-Bench downloads pvt_v2_b2.pth from HuggingFace "
        "FengheTan9/U-Stone into PVT_CASCADE.backbone, keeping the keys its pvt_v2_b2 has). Returns "
        "four full-size logits, coarsest (stride 32) first, the stride-4 head last: U-Bench averages "
        "the loss over the four and evaluates output[-1] (the paper's inference sums the four "
        "maps; U-Bench's code does not). U-Bench's factory ignores input_channel: PVT_CASCADE "
        "always builds a learned 1x1 conv + BN + ReLU stem from 1 to 3 channels and applies it "
        "when the input has 1 channel; the same here for in_channels=1 (stem 'grey', 12 "
        "parameters, unused at 3 channels: unused_params). Other in_channels (U-Bench fails on "
        "them) reach the first patch embedding directly. The decoder's last attention gate has "
        "32 inner channels (hard-coded in U-Bench's CASCADE; half the last width, the default of "
        "ops/cascade.py). Upsampling by scale_factor, align_corners=False, as in the reference.",
        extra={
            "unused_params": ["grey.0.weight", "grey.0.bias", "grey.1.weight", "grey.1.bias"],
            "pretrained": pvt_v2_record(
                "b2", "encoder.",
                "models/Hybrid/CASCADE/CASCADE.py PVT_CASCADE.__init__: "
                "torch.hub.load_state_dict_from_url(<HuggingFace U-Stone pvt_v2_b2.pth>) filtered "
                "to the keys of pvtv2.pvt_v2_b2() (patch_embed{1-4}, block{1-4}, norm{1-4}; the "
                "classifier head dropped), merged into its state_dict and loaded into "
                "PVT_CASCADE.backbone",
                url=U_STONE_PVT_V2_B2,
            ),
        },
    )
)
def cascade(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """CASCADE (PVTv2-B2 + cascaded attention decoder, four outputs) as U-Bench benchmarks it."""
    return PVTCascade(in_channels=in_channels, num_classes=num_classes)
