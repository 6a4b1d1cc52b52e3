"""FAT-Net: a ResNet-34 branch and a DeiT-tiny branch fused by squeeze-excitation, FAM skips.

Paper: Wu, Chen, Zhong, Wang, Shi, "FAT-Net: Feature Adaptive Transformers for Automated Skin
Lesion Segmentation", Medical Image Analysis 76, 2022.

Configuration: U-Bench's ``FAT_Net`` (repo FengheTan9/U-Bench, models/CNN/FAT_Net/FAT_Net.py;
models/__init__.py builds ``fat_net(input_channel, num_classes)`` = ``FAT_Net(n_channels,
n_classes)``), id 32, no deep supervision, benchmarked at 224x224 only. U-Bench takes the pieces
of two ImageNet models: torchvision ``resnet34(pretrained=True)`` and timm
``create_model('deit_tiny_distilled_patch16_224', pretrained=True)``; here both are built
untrained with their libraries' own initialisation (see ``extra["pretrained"]`` for loading them).

* CNN branch: ResNet-34 stem (7x7/2 conv, BN, ReLU) WITHOUT the max-pool, then layer1..layer4,
  so its maps are 64@H/2, 128@H/4, 256@H/8 and 512@H/16 (not the usual H/4..H/32).
* Transformer branch: DeiT-tiny's 16x16 patch embedding (conv to 192) and its 12 pre-norm blocks
  (3 heads, MLP 768, LayerNorm eps 1e-6, qkv bias) on the 14x14 tokens, with no class or
  distillation token, no positional embedding and no final norm (U-Bench uses none of them);
  the tokens go back to a 192@H/16 map and a 1x1 conv lifts them to 512.
* Fusion: concat [CNN 512, transformer 512], squeeze-excitation (bias-free 1024 -> 64 -> 1024),
  1x1 conv to 512.
* FAM skips: one block per scale (relu(3x3 conv) + relu(1x1 conv)), applied with SHARED weights
  6 times to the 64-channel, 4 times to the 128-channel and twice to the 256-channel map.
* Decoder: three LinkNet blocks (1x1 conv to in/4, 3x3 transposed conv x2, 1x1 conv; each + BN +
  ReLU) 512 -> 256 -> 128 -> 64, each added to the FAM map of its scale; head: 4x4/2 transposed
  conv to 32, ReLU, 3x3 conv, ReLU, 3x3 conv to the classes, at full size.

Parameters at 3 in / 1 class: 28,758,657, the same as U-Bench's module (counted by instantiating
it); 4,640 of them are a fourth decoder block (64 -> 64) that U-Bench builds and never runs, kept
here as ``decoder.3``. The parts of the two ImageNet models U-Bench never attaches to its module
(ResNet fc, DeiT tokens, positional table, final norm, heads) are not in its count nor here.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import SqueezeExcite, init_vit_weights
from ubench.models.ops.linknet import LinkNetUp
from ubench.models.ops.resnet import ResNet34Encoder, torchvision_resnet_record
from ubench.models.ops.vit_hybrid import TransformerBlock
from ubench.models.registry import ModelInfo, register_model

SIZE = 224  # U-Bench reshapes the tokens to a hard-coded 14x14 grid, and timm's DeiT checks 224
PATCH = 16
EMBED_DIM, DEPTH, HEADS, MLP_DIM = 192, 12, 3, 768  # DeiT-tiny
WIDTHS = (64, 128, 256, 512)
FAM_REPEATS = (6, 4, 2)  # shared-weight passes over the 64-, 128- and 256-channel maps


class FeatureAdaptation(nn.Module):
    """FAM: a 3x3 and a 1x1 conv (with bias), each followed by ReLU, summed; width unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.local = nn.Conv2d(channels, channels, 3, padding=1)
        self.point = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.local(x)) + torch.relu(self.point(x))


class FATNet(nn.Module):
    """Dual ResNet-34 / DeiT-tiny encoder at H/16, SE fusion, FAM skips, LinkNet decoder."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        self.cnn = ResNet34Encoder(in_channels)  # its max-pool is skipped in forward
        # timm's untrained DeiT: PyTorch-default patch conv, truncated-normal(0.02) Linear weights
        # with zero bias, unit LayerNorms
        self.patch_embed = nn.Conv2d(in_channels, EMBED_DIM, PATCH, stride=PATCH)
        self.blocks = nn.ModuleList(TransformerBlock(EMBED_DIM, HEADS, MLP_DIM) for _ in range(DEPTH))
        self.blocks.apply(init_vit_weights)
        top = WIDTHS[-1]
        self.token_proj = nn.Conv2d(EMBED_DIM, top, 1)
        self.se = SqueezeExcite(2 * top, reduction=16)
        self.fuse = nn.Conv2d(2 * top, top, 1)
        self.fam = nn.ModuleList(FeatureAdaptation(c) for c in WIDTHS[:3])
        # the fourth block (64 -> 64) mirrors U-Bench's decoder1, which is built but never run
        ins, outs = WIDTHS[::-1], (*WIDTHS[::-1][1:], WIDTHS[0])
        self.decoder = nn.ModuleList(LinkNetUp(i, o) for i, o in zip(ins, outs))
        self.head = nn.Sequential(
            nn.ConvTranspose2d(WIDTHS[0], 32, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, num_classes, 3, padding=1),
        )

    def _transformer(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.patch_embed(x)
        b, d, h, w = grid.shape
        tokens = grid.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens)
        return self.token_proj(tokens.transpose(1, 2).reshape(b, d, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cnn.stem(x)
        skips = []
        for stage in self.cnn.layers:
            y = stage(y)
            skips.append(y)
        top = skips.pop()  # 512 @ H/16
        y = self.fuse(self.se(torch.cat([top, self._transformer(x)], dim=1)))
        for i, (fam, repeats) in enumerate(zip(self.fam, FAM_REPEATS)):
            for _ in range(repeats):
                skips[i] = fam(skips[i])
        # decoder.3 gets no skip: zip stops after three blocks, as U-Bench never runs decoder1
        for block, skip in zip(self.decoder, reversed(skips)):
            y = block(y) + skip
        return self.head(y)


_RESNET_RECORD = torchvision_resnet_record(
    "resnet34", "cnn.",
    "torchvision.models.resnet34(pretrained=True) -> FAT_Net.firstconv/firstbn (conv1, bn1) and "
    "encoder1-4 (layer1-4); its maxpool, avgpool and fc are not attached",
)

_DEIT_RECORD = {
    "backbone": "deit_tiny_distilled_patch16_224",
    "source": "timm.create_model('deit_tiny_distilled_patch16_224', pretrained=True) -> "
    "FAT_Net.patch_embed and FAT_Net.transformers (blocks 0-11); the class/distillation tokens, "
    "pos_embed, final norm, head and head_dist are not attached. The release file wraps the "
    "state dict as {'model': ...} (recent timm fetches the same weights from the Hugging Face "
    "hub, timm/deit_tiny_distilled_patch16_224.fb_in1k, with the same keys)",
    "file": "deit_tiny_distilled_patch16_224-b40b3cf7.pth",
    "url": "https://dl.fbaipublicfiles.com/deit/deit_tiny_distilled_patch16_224-b40b3cf7.pth",
    "hash_in_name": True,
    "modules": ["patch_embed", "blocks"],
    "key_map": [[r"^patch_embed\.proj\.", "patch_embed."], [r"\.mlp\.", "."]],
    "drop": [r"^cls_token$", r"^dist_token$", r"^pos_embed$", r"^norm\.", r"^head\.", r"^head_dist\."],
}

_UNUSED = [f"decoder.3.{i}.{p}" for i in (0, 1, 3, 4, 6, 7) for p in ("weight", "bias")]


@register_model(
    ModelInfo(
        family="cnn",
        ubench_name="FAT_Net",
        ubench_id=32,
        year=2022,
        paper="FAT-Net: Feature Adaptive Transformers for Automated Skin Lesion Segmentation",
        deep_supervision=False,
        ref_params_m=28.758657,
        ref_source="U-Bench models/CNN/FAT_Net/FAT_Net.py (fat_net(3, 1) = FAT_Net(n_channels=3, "
        "n_classes=1); torchvision resnet34 and timm deit_tiny_distilled_patch16_224 stood in "
        "without weights), counted by instantiating it",
        ref_input_size=SIZE,
        input_sizes=(SIZE,),
        notes="ResNet-34 and DeiT-tiny parts untrained (U-Bench loads ImageNet weights: "
        "extra['pretrained'], two records); initialised as torchvision's resnet34 and timm's "
        "untrained DeiT, the rest PyTorch defaults. 224x224 only: U-Bench reshapes the tokens to a "
        "hard-coded 14x14 grid and timm's patch embedding insists on 224 (the network itself has "
        "no positional embedding and total stride 16). The ResNet max-pool is skipped (as in "
        "U-Bench), so the CNN maps are at H/2..H/16. U-Bench's FAM blocks are one module per "
        "scale listed 6/4/2 times (shared weights), reproduced as one block applied repeatedly. "
        "U-Bench builds decoder1 (LinkNet block 64 -> 64, 4,640 parameters) and never runs it: "
        "kept as decoder.3 for the count (unused_params). The DeiT class/distillation tokens, "
        "pos_embed, final norm, heads and the ResNet fc are not part of U-Bench's module (nor its "
        "count) and are dropped from the checkpoints. U-Bench ignores input_channel (both "
        "ImageNet stems take 3 channels; its loaders repeat a grey image to 3); here the ResNet "
        "stem and the patch embedding take in_channels (summing a pretrained 3-channel kernel "
        "over its inputs reproduces the repetition for 1 channel).",
        extra={"unused_params": _UNUSED, "pretrained": [_RESNET_RECORD, _DEIT_RECORD]},
    )
)
def fat_net(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """FAT-Net (ResNet-34 + DeiT-tiny, untrained) as U-Bench benchmarks it, 224x224."""
    return FATNet(in_channels=in_channels, num_classes=num_classes)
