"""ScribFormer: a Conformer-style CNN/transformer twin backbone with a decoder per branch.

Paper: Li, Zheng, Shan, Yang, Li, Wang, Zhang, Hong, Shen, "ScribFormer: Transformer Makes CNN
Work Better for Scribble-based Medical Image Segmentation", IEEE Transactions on Medical Imaging,
2024 (arXiv 2402.02029).

Configuration: U-Bench's ``ScribFormer`` (repo FengheTan9/U-Bench, models/Hybrid/ScribFormer/
ScribFormer.py + scribformer_cam.py + amm.py; id 109, flagged ``deeps_supervision`` in
models/model_id.json). models/__init__.py maps it to ``scribformer(input_channel, num_classes)``,
which builds ``Net(patch_size=16, channel_ratio=4, embed_dim=384, depth=12, num_heads=6,
mlp_ratio=4, qkv_bias=True, drop_path_rate=0.1, linear_layer=True, bilinear=True)``; no pretrained
weights are loaded. The architecture (Conformer, Peng et al., ICCV 2021, with U-Net decoders):
- CNN stem, three Conformer bottlenecks (1x1 -> 3x3 -> 1x1 at a quarter of the output width,
  BatchNorm eps 1e-6, ReLU, projected shortcut) of widths 64 at full resolution, 128 at 1/2 and
  256 at 1/4, a 3x3/2 max-pool (padding 1) between them;
- transformer stem: a 4x4/4 conv of the 256-wide map to 384-wide tokens (stride 16), a CLS token,
  one pre-norm ViT block (6 heads, MLP x4, LayerNorm eps 1e-6);
- eleven coupled blocks in three stages of 3, 4 and 4 (CNN widths 256, 512, 1024 at strides 4, 8,
  16; the first block of stages 2 and 3 halves the map with a strided 3x3 conv and a projected
  shortcut). Each runs a bottleneck; squeezes its 3x3 output into tokens (1x1 conv to 384,
  average-pool to the token grid, LayerNorm, GELU; prepended with the incoming CLS token) and adds
  them to the incoming tokens (so the CLS token is doubled) before a ViT block; expands the tokens
  back (1x1 conv to a quarter of the width + BN + ReLU, nearest upsampling) and adds them to the
  input of the 3x3 conv of a second "fusion" bottleneck (projected shortcut in the last block only);
- stochastic depth on the ViT blocks, linearly 0 to 0.1 over the twelve;
- CNN decoder (WSL4MIS's U-Net decoder) on the stem and stage outputs (widths 64, 128, 256, 512,
  1024): per step a 1x1 conv to the skip's width, bilinear x2 (align_corners=True), concatenation
  [skip, upsampled], two 3x3 conv + BN + LeakyReLU(0.01); a per-pixel Linear head;
- transformer decoder on the final patch tokens (384 wide, stride 16): four steps of 1x1 conv
  (to 256, 128, 64, 32) + bilinear x2 (align_corners=True), no skips; a per-pixel Linear head.
The forward returns [transformer-branch logits, CNN-branch logits], both at full resolution, in
U-Bench's order: its main.py averages the loss over the two and evaluates ``output[-1]``, the CNN
branch. Spatial size: any multiple of 16 (there is no positional embedding). Parameters at 3 in /
1 class: 47,905,966, all trainable, counted by instantiating U-Bench's module; 179,388 of them
belong to the paper's class-activation-map branch (five attention modulation modules, five 1x1
class heads and a CAM encoder) whose outputs U-Bench's forward discards or never computes: built
here, not run (``unused_params``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ubench.models.ops.common import init_vit_weights, map_to_tokens, tokens_to_map, up2_aligned
from ubench.models.ops.vit_hybrid import TransformerBlock
from ubench.models.registry import ModelInfo, register_model

CNN_WIDTHS = (64, 128, 256, 512, 1024)  # stem (full res, 1/2), then stages 1-3 (1/4, 1/8, 1/16)
STAGE_DEPTHS = (3, 4, 4)  # coupled blocks per stage (Conformer's depth 12 = these + the stem block)
EMBED_DIM = 384
HEADS = 6
MLP_RATIO = 4
PATCH = 4  # the token grid is 4x coarser than the stage-1 CNN map: stride 16
DROP_PATH = 0.1
TRANS_DECODER_WIDTHS = (384, 256, 128, 64, 32)
STRIDE = 16
BN_EPS = 1e-6  # Conformer's BatchNorms; the U-Net decoder keeps torch's 1e-5
AMM_REDUCTION = 16


class Bottleneck(nn.Module):
    """Conformer's ``ConvBlock``: 1x1 -> 3x3 (stride) -> 1x1 at a quarter of ``out_ch``, BN + ReLU
    each, the residual (1x1-projected when ``project``) added before the last ReLU.

    ``forward(x, injected)`` adds ``injected`` (the tokens brought back to the map) to the input of
    the 3x3 conv, and returns the block output and the 3x3 conv's activated output (what the
    coupled block squeezes into tokens).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, project: bool = False):
        super().__init__()
        mid = out_ch // 4
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch, eps=BN_EPS))
            if project else nn.Identity()
        )

    def forward(self, x: torch.Tensor, injected: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.relu(self.bn1(self.conv1(x)))
        if injected is not None:
            y = y + injected
        mid = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(mid)) + self.shortcut(x)), mid


class MapToTokens(nn.Module):
    """Conformer's FCU down: 1x1 conv to the token width, average-pooling by ``pool`` to the token
    grid, LayerNorm (eps 1e-6) and GELU on the tokens."""

    def __init__(self, in_ch: int, dim: int, pool: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, 1)
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(map_to_tokens(self.pool(self.proj(x)))))


class TokensToMap(nn.Module):
    """Conformer's FCU up: patch tokens (CLS dropped) back to a map, 1x1 conv + BN + ReLU, nearest
    upsampling to the CNN map's size."""

    def __init__(self, dim: int, out_ch: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, out_ch, 1)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, tokens: torch.Tensor, h: int, w: int, size: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn(self.proj(tokens_to_map(tokens[:, 1:], h, w))))
        return F.interpolate(x, size=size, mode="nearest")


class CoupledBlock(nn.Module):
    """Conformer's ``ConvTransBlock``: a CNN bottleneck and a ViT block exchanging features.

    The bottleneck's 3x3 output is squeezed into tokens (with the incoming CLS token in front) and
    added to the incoming tokens before the ViT block; the ViT block's output is expanded back to
    the map and injected into the 3x3 conv of a second bottleneck, which gives the block's map.
    ``pool``: how much coarser the token grid is than the 3x3 output.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, pool: int, drop_path: float, last: bool = False):
        super().__init__()
        self.pool = pool
        # registered in U-Bench's order (cnn_block, fusion_block, squeeze, expand, trans_block)
        self.conv = Bottleneck(in_ch, out_ch, stride, project=stride > 1 or in_ch != out_ch)
        self.fusion = Bottleneck(out_ch, out_ch, project=last)
        self.squeeze = MapToTokens(out_ch // 4, EMBED_DIM, pool)
        self.expand = TokensToMap(EMBED_DIM, out_ch // 4)
        self.transformer = TransformerBlock(EMBED_DIM, HEADS, EMBED_DIM * MLP_RATIO, drop_path=drop_path)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mid = self.conv(x)
        squeezed = torch.cat([tokens[:, :1], self.squeeze(mid)], dim=1)
        tokens = self.transformer(squeezed + tokens)
        h, w = mid.shape[-2:]
        back = self.expand(tokens, h // self.pool, w // self.pool, (h, w))
        return self.fusion(x, back)[0], tokens


class UpFuse(nn.Module):
    """One step of the CNN branch's U-Net decoder: 1x1 conv to the skip's width, bilinear x2,
    concatenation [skip, upsampled], then (3x3 conv + BN + LeakyReLU) twice."""

    def __init__(self, in_ch: int, skip_ch: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, skip_ch, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * skip_ch, skip_ch, 3, padding=1), nn.BatchNorm2d(skip_ch), nn.LeakyReLU(),
            nn.Conv2d(skip_ch, skip_ch, 3, padding=1), nn.BatchNorm2d(skip_ch), nn.LeakyReLU(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([skip, up2_aligned(self.reduce(x))], dim=1))


def _pixel_linear(head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A Linear over the channels of every pixel (the decoders' ``linear_layer`` head)."""
    return head(x.movedim(1, -1)).movedim(-1, 1)


class CNNDecoder(nn.Module):
    """U-Net decoder over the CNN features (shallowest first) and a per-pixel Linear head."""

    def __init__(self, widths: tuple[int, ...], num_classes: int):
        super().__init__()
        self.ups = nn.ModuleList(UpFuse(widths[i], widths[i - 1]) for i in range(len(widths) - 1, 0, -1))
        self.head = nn.Linear(widths[0], num_classes)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        *skips, x = feats
        for up in self.ups:
            x = up(x, skips.pop())
        return _pixel_linear(self.head, x)


class TokenDecoder(nn.Module):
    """The transformer branch's decoder: (1x1 conv + bilinear x2) per width, no skips, then a
    per-pixel Linear head."""

    def __init__(self, widths: tuple[int, ...], num_classes: int):
        super().__init__()
        self.ups = nn.ModuleList(nn.Conv2d(i, o, 1) for i, o in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.ups:
            x = up2_aligned(conv(x))
        return _pixel_linear(self.head, x)


class AttentionModulation(nn.Module):
    """The parameters of the paper's attention modulation module (AMM: a channel gate from a
    Linear bottleneck MLP, a spatial gate from a 7x7 conv + BN, both Gaussian-modulated) feeding
    its class-activation maps. U-Bench computes it and discards the result, so it is built here
    for parameter parity and never run."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = channels // AMM_REDUCTION
        self.channel_mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3, bias=False), nn.BatchNorm2d(1, momentum=0.01))


def _init_backbone(m: nn.Module) -> None:
    """Conformer's init: ViT-style Linear/LayerNorm, He-normal (fan-out) conv kernels with their
    biases as built; BatchNorms stay at ones/zeros."""
    init_vit_weights(m)
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ScribFormer(nn.Module):
    """CNN stem + ViT stem -> three stages of coupled blocks -> a decoder per branch."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1):
        super().__init__()
        w = CNN_WIDTHS
        rates = torch.linspace(0, DROP_PATH, 1 + sum(STAGE_DEPTHS)).tolist()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stem = nn.ModuleList(Bottleneck(i, o, project=True) for i, o in zip((in_channels, *w[:2]), w[:3]))
        self.patch_embed = nn.Conv2d(w[2], EMBED_DIM, PATCH, stride=PATCH)
        self.trans_stem = TransformerBlock(EMBED_DIM, HEADS, EMBED_DIM * MLP_RATIO, drop_path=rates[0])
        self.stages = nn.ModuleList()
        k = 1
        for s, depth in enumerate(STAGE_DEPTHS):
            blocks = nn.ModuleList()
            for j in range(depth):
                first = j == 0 and s > 0
                blocks.append(CoupledBlock(
                    w[s + 1] if first else w[s + 2], w[s + 2], 2 if first else 1, PATCH >> s, rates[k],
                    last=k == sum(STAGE_DEPTHS),
                ))
                k += 1
            self.stages.append(blocks)
        self.cam_gates = nn.ModuleList(AttentionModulation(c) for c in w)
        self.cam_heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1, bias=False) for c in w)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_backbone)  # before the decoders, which keep torch's defaults (as U-Bench)
        self.cnn_decoder = CNNDecoder(w, num_classes)
        self.token_decoder = TokenDecoder(TRANS_DECODER_WIDTHS, num_classes)
        self.cam_encoder = nn.ModuleList(
            nn.Sequential(nn.Conv2d(num_classes, num_classes, 7, stride=2, padding=3, bias=False),
                          nn.BatchNorm2d(num_classes, eps=BN_EPS))
            for _ in range(len(w) - 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        full = self.stem[0](x)[0]
        half = self.stem[1](self.pool(full))[0]
        x = self.stem[2](self.pool(half))[0]
        feats = [full, half]  # the decoder's skips: these two, then each stage's output
        grid = self.patch_embed(x)
        gh, gw = grid.shape[-2:]
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), map_to_tokens(grid)], dim=1)
        tokens = self.trans_stem(tokens)
        for blocks in self.stages:
            for block in blocks:
                x, tokens = block(x, tokens)
            feats.append(x)
        seg_trans = self.token_decoder(tokens_to_map(tokens[:, 1:], gh, gw))
        return [seg_trans, self.cnn_decoder(feats)]


def _unused_params() -> list[str]:
    """Names of the class-activation-map branch's parameters (listed without building the model)."""
    names = []
    for i in range(len(CNN_WIDTHS)):
        names += [f"cam_gates.{i}.channel_mlp.{j}.{p}" for j in (0, 2) for p in ("weight", "bias")]
        names += [f"cam_gates.{i}.spatial.0.weight", f"cam_gates.{i}.spatial.1.weight",
                  f"cam_gates.{i}.spatial.1.bias", f"cam_heads.{i}.weight"]
    for i in range(len(CNN_WIDTHS) - 1):
        names += [f"cam_encoder.{i}.0.weight", f"cam_encoder.{i}.1.weight", f"cam_encoder.{i}.1.bias"]
    return names


@register_model(
    ModelInfo(
        family="hybrid",
        ubench_name="ScribFormer",
        ubench_id=109,
        year=2024,
        paper="ScribFormer: Transformer Makes CNN Work Better for Scribble-based Medical Image "
        "Segmentation",
        deep_supervision=True,
        ref_params_m=47.905966,
        ref_source="U-Bench models/Hybrid/ScribFormer/ScribFormer.py + scribformer_cam.py + amm.py "
        "(scribformer(input_channel=3, num_classes=1) -> Net(patch_size=16, channel_ratio=4, "
        "embed_dim=384, depth=12, num_heads=6, mlp_ratio=4, qkv_bias=True, drop_path_rate=0.1, "
        "linear_layer=True, bilinear=True)), counted by instantiating it; all trainable",
        ref_input_size=256,
        size_multiple=STRIDE,
        notes="No pretrained weights: U-Bench builds ScribFormer from scratch (the Conformer "
        "backbone is not loaded from an ImageNet checkpoint). Returns [transformer-branch logits, "
        "CNN-branch logits], both full size, in U-Bench's order: U-Bench averages the loss over the "
        "two and evaluates output[-1], the CNN branch. The paper's class-activation-map branch "
        "(five AMM attention modules and five 1x1 class heads on the stem/stage maps, whose ReLU'd "
        "CAMs U-Bench's forward computes and discards, and a CAM encoder it builds and never calls; "
        "179,388 parameters) is built here and not run (unused_params), so our FLOPs leave out that "
        "discarded work (small: the AMM's 7x7 2->1 conv and 1x1 heads). U-Bench's attention returns "
        "its weights, which the forward collects and never uses: not returned here. Deviation: "
        "U-Bench reshapes the final patch tokens to a sqrt(N) x sqrt(N) grid, so it only runs "
        "square inputs (other shapes fail or scramble the map); here the grid is H/16 x W/16 "
        "(identical on square inputs). Quirks kept: the CNN stem runs its first bottleneck (64 "
        "wide) at full resolution; each coupled block adds the squeezed tokens, headed by the "
        "incoming CLS token, to the incoming tokens, so the CLS token is doubled before every ViT "
        "block; the decoders' dropout is 0 (left out); the per-pixel heads are Linear layers; the "
        "decoders keep PyTorch's default init while the backbone gets Conformer's (truncated-normal "
        "Linear, He fan-out conv kernels). The ViT attention uses torch's scaled_dot_product_attention "
        "(same result up to rounding).",
        extra={"unused_params": _unused_params()},
    )
)
def scribformer(num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    """ScribFormer as U-Bench benchmarks it (Conformer-S-like twin backbone, two decoders)."""
    return ScribFormer(in_channels=in_channels, num_classes=num_classes)
