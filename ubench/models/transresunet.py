"""TransResU-Net: a ResNet-50 encoder, a transformer bridge beside a dilated-conv bridge, and a
residual U-Net decoder.

Paper: Tomar, Shergill, Rieders, Bagci, Jha, "TransResU-Net: Transformer based ResU-Net for
Real-Time Colonoscopy Polyp Segmentation", arXiv 2206.08985, 2022.

Configuration: U-Bench's ``TransResUNet`` (repo FengheTan9/U-Bench,
models/Hybrid/TransResUNet/TransResUNet.py + module/resnet.py; models/__init__.py imports its
``trans_res_unet(num_classes, input_channel=3)``, which builds ``TResUnet``), id 71, no deep
supervision. Its ``resnet50()`` defaults to ``pretrained=True`` and loads torchvision's legacy
ImageNet file resnet50-19c8e357.pth; here the trunk is built untrained with torchvision's
initialisation (``extra["pretrained"]`` says how to load that file).

* Encoder: ResNet-50 (v1.5 bottlenecks) up to layer3 only: stem 64@H/2, layer1 256@H/4, layer2
  512@H/8, layer3 1024@H/16. U-Bench's module never holds layer4 or the classifier.
* Two bridges on the H/16 map, concatenated (256 + 256 channels):
  - transformer bridge: 1x1 conv + BN + ReLU to 256, two post-norm ``nn.TransformerEncoderLayer``
    (d_model 256, 8 heads, FFN 2048, ReLU, dropout 0.1), 3x3 conv + BN + ReLU. The map is only
    reshaped to (B, 256, h*w) and given to a sequence-first encoder, so the token axis is the
    batch, the 256 channels are the encoder's batch and the h*w pixels are the embedding: d_model
    256 forces h*w = 256, i.e. 256x256 inputs;
  - dilated bridge: four 3x3 conv + BN + ReLU branches of dilation 1, 3, 6, 9, concatenated and
    fused by a 1x1 conv + BN + ReLU.
* Decoder, four steps: bilinear x2 (align_corners=True), concatenation [upsampled, skip] with the
  layer2, layer1, stem maps and finally the input image itself, then two residual blocks (3x3
  conv + BN + ReLU + 3x3 conv + BN, plus a 1x1 conv + BN shortcut, ReLU after the sum): widths
  256, 128, 64, 32. A 1x1 conv gives the logits at full size.

Parameters at 3 in / 1 class: 27,597,025, the same as U-Bench's module (counted by instantiating
it); 8,543,296 in the ResNet-50 trunk.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ubench.models.ops.common import up2_aligned
from ubench.models.ops.conv_blocks import ResidualDoubleConv, conv_bn_relu
from ubench.models.ops.resnet import RESNET50_DEPTHS, Bottleneck, ResNetEncoder, torchvision_resnet_record
from ubench.models.registry import ModelInfo, register_model

SIZE = 256  # the only input size: the transformer's d_model is the H/16 x W/16 pixel count
STRIDE = 16
BRIDGE_WIDTH = 256
TOKENS = (SIZE // STRIDE) ** 2  # d_model of the transformer bridge
HEADS, LAYERS = 8, 2
DILATIONS = (1, 3, 6, 9)
DECODER_WIDTHS = (256, 128, 64, 32)


class TransformerBridge(nn.Module):
    """1x1 conv + BN + ReLU, a sequence-first transformer encoder over (B, C, h*w), 3x3 conv + BN
    + ReLU. The encoder sees the batch as its sequence, the channels as its batch and the
    flattened map as each token's features, as U-Bench's (and the authors') code feeds it."""

    def __init__(self, in_ch: int, width: int, d_model: int):
        super().__init__()
        self.reduce = nn.Sequential(*conv_bn_relu(in_ch, width, kernel_size=1))
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=HEADS)
        # nn.TransformerEncoder deep-copies ``layer``: both layers start from the same weights
        self.encoder = nn.TransformerEncoder(layer, num_layers=LAYERS, enable_nested_tensor=False)
        self.refine = nn.Sequential(*conv_bn_relu(width, width))
        self.d_model = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        b, c, h, w = x.shape
        if h * w != self.d_model:
            raise ValueError(f"the transformer bridge takes {self.d_model} pixels per map (256x256 "
                             f"inputs), got a {h}x{w} map")
        x = self.encoder(x.reshape(b, c, h * w)).reshape(b, c, h, w)
        return self.refine(x)


class DilatedBridge(nn.Module):
    """Parallel 3x3 conv + BN + ReLU branches of growing dilation, concatenated, 1x1 conv + BN + ReLU."""

    def __init__(self, in_ch: int, width: int, dilations: tuple[int, ...] = DILATIONS):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*conv_bn_relu(in_ch, width, dilation=d)) for d in dilations)
        self.fuse = nn.Sequential(*conv_bn_relu(width * len(dilations), width, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


class UpStage(nn.Module):
    """Bilinear x2 (align_corners), concatenation [upsampled, skip], two residual double convs."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.blocks = nn.Sequential(ResidualDoubleConv(in_ch + skip_ch, out_ch), ResidualDoubleConv(out_ch, out_ch))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(torch.cat([up2_aligned(x), skip], dim=1))


class TransResUNet(nn.Module):
    """ResNet-50 to layer3, transformer and dilated bridges side by side, four residual up-stages
    whose last skip is the input image, 1x1 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        # ResNetEncoder builds one stage per given depth: three here (no layer4, as U-Bench)
        self.encoder = ResNetEncoder(in_channels, Bottleneck, RESNET50_DEPTHS[:3])
        deep = 256 * Bottleneck.expansion  # layer3's 1024 channels
        self.transformer_bridge = TransformerBridge(deep, BRIDGE_WIDTH, TOKENS)
        self.dilated_bridge = DilatedBridge(deep, BRIDGE_WIDTH)
        skips = (512, 256, 64, in_channels)  # layer2, layer1, stem, the image
        stages, prev = [], 2 * BRIDGE_WIDTH
        for skip, width in zip(skips, DECODER_WIDTHS):
            stages.append(UpStage(prev, skip, width))
            prev = width
        self.decoder = nn.ModuleList(stages)
        self.head = nn.Conv2d(prev, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem, l1, l2, l3 = self.encoder(x)
        y = torch.cat([self.transformer_bridge(l3), self.dilated_bridge(l3)], dim=1)
        for stage, skip in zip(self.decoder, (l2, l1, stem, x)):
            y = stage(y, skip)
        return self.head(y)


_RESNET_RECORD = torchvision_resnet_record(
    "resnet50", "encoder.",
    "module/resnet.py resnet50() (pretrained=True by default) builds torchvision's ResNet(Bottleneck, "
    "[3, 4, 6, 3]) and load_state_dict(load_state_dict_from_url(model_urls['resnet50'])) strictly "
    "(the legacy 2017 file of the ImageNet weights that resnet50-0676ba61.pth re-serialises); "
    "TResUnet keeps conv1/bn1 (layer0), maxpool+layer1 (layer1), layer2, layer3; layer4 and fc "
    "are loaded into the throw-away torchvision module and never reach TResUnet",
    file="resnet50-19c8e357.pth",
)
_RESNET_RECORD["drop"] = [r"^fc\.", r"^layer4\."]


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="TransResUNet",
        ubench_id=71,
        year=2022,
        paper="TransResU-Net: Transformer based ResU-Net for Real-Time Colonoscopy Polyp Segmentation",
        deep_supervision=False,
        ref_params_m=27.597025,
        ref_source="U-Bench models/Hybrid/TransResUNet/TransResUNet.py + module/resnet.py "
        "(trans_res_unet(1, input_channel=3), resnet50 built without its download), counted by "
        "instantiating it",
        ref_input_size=SIZE,
        input_sizes=(SIZE,),
        size_multiple=STRIDE,
        notes="ResNet-50 trunk (stem, layer1-3) untrained (U-Bench loads torchvision's legacy "
        "ImageNet file resnet50-19c8e357.pth: extra['pretrained'], fc and layer4 dropped as "
        "TResUnet never holds them), initialised as torchvision's ResNet (He-normal fan-out "
        "convs, unit BN); the rest PyTorch defaults, as in U-Bench (nn.TransformerEncoder "
        "deep-copies its layer, so both transformer layers start identical). 256x256 only: the "
        "transformer bridge's d_model 256 is the pixel count of the H/16 map (U-Bench's code "
        "would also run non-square inputs of 65,536 pixels; the registry takes square ones). "
        "QUIRK kept from U-Bench's (and the authors') code, unlike the paper's long-range "
        "attention over positions: the (B, 256, h*w) map goes to a sequence-first "
        "nn.TransformerEncoder, so self-attention runs across the images of a batch (per channel, "
        "the pixels being each token's features; LayerNorm and FFN act over the 256 pixel "
        "positions). A prediction therefore depends on the other images in its batch (at batch "
        "size 1 the attention is the identity mixing out_proj(v_proj(x))), so evaluation batch "
        "size changes results. U-Bench's input_channel is ignored: its ResNet stem and its last "
        "decoder skip (the image itself, DecoderBlock([64, 3], 32)) are hard-coded to 3 channels; "
        "here both take in_channels (a pretrained 3-channel stem kernel is summed over the inputs "
        "for 1 channel, as repeating a grey image would compute). U-Bench's file also defines "
        "save_feats_mean (cv2 feature dumps), never called by the model: not reproduced.",
        extra={"pretrained": _RESNET_RECORD},
    )
)
def transresunet(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """TransResU-Net (ResNet-50 trunk untrained) as U-Bench benchmarks it, 256x256 inputs."""
    return TransResUNet(in_channels=in_channels, num_classes=num_classes)
