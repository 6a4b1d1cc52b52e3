"""Block-level checks for the transformer models (swinunet, medt, polyp_pvt, batformer).

``test_models.py`` checks shapes, gradients and parameter counts; these check the parts whose
mistakes would not show there: the shifted-window attention against a direct per-token
computation, the plain-torch stand-ins for torchvision's ``roi_align`` and ``nms`` that BATFormer
needs against literal re-statements of torchvision's algorithms, MedT's relative-position tables
and Polyp-PVT's / BATFormer's output conventions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ubench.models import create_model
from ubench.models.batformer import greedy_nms, roi_weights, window_corners
from ubench.models.medt import AxialAttention
from ubench.models.ops.swin import PatchExpand, PatchMerging, SwinBlock, from_windows, to_windows


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_windows_round_trip():
    x = torch.randn(2, 8, 12, 5)
    w = to_windows(x, 4)
    assert w.shape == (2 * 2 * 3, 16, 5)
    assert torch.equal(w[1].view(4, 4, 5), x[0, 0:4, 4:8])  # second window: top row, middle
    assert torch.equal(from_windows(w, 4, 8, 12), x)


def _direct_swin_attention(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """Token by token: attend within the window grid offset by the shift, no wrap-around."""
    h, w = block.resolution
    win, s = block.window, block.shift
    attn = block.attn
    y = block.norm1(x)[0]  # (h*w, C), batch of one
    c = y.shape[1]
    heads, d = attn.heads, c // attn.heads
    q, k, v = attn.qkv(y).view(h * w, 3, heads, d).unbind(1)

    def group(t):  # window index along one axis in original coordinates; -1: the wrapped strip
        return (t - s) // win if t >= s else -1

    out = torch.zeros(h * w, heads, d)
    for a in range(h * w):
        ya, xa = divmod(a, w)
        members = [b for b in range(h * w)
                   if group(b // w) == group(ya) and group(b % w) == group(xa)]
        for hd in range(heads):
            logits = []
            for b in members:
                yb, xb = divmod(b, w)
                rel = (ya - yb + win - 1) * (2 * win - 1) + (xa - xb + win - 1)
                logits.append(q[a, hd] @ k[b, hd] * attn.scale + attn.bias_table[rel, hd])
            weights = torch.stack(logits).softmax(0)
            out[a, hd] = (weights[:, None] * v[members, hd]).sum(0)
    return x[0] + attn.proj(out.reshape(h * w, c))


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_attention_matches_direct_computation(shift):
    torch.manual_seed(0)
    block = SwinBlock(dim=8, resolution=(8, 8), heads=2, window=4, shift=shift).eval()
    torch.nn.init.normal_(block.attn.bias_table, std=1.0)  # make a wrong bias index visible
    x = torch.randn(1, 64, 8)
    with torch.no_grad():
        ours = block(x)
        expected = _direct_swin_attention(block, x)
        expected = expected + block.mlp(block.norm2(expected))
    assert torch.allclose(ours[0], expected, atol=1e-5)


def test_swin_block_on_a_grid_no_larger_than_the_window_uses_one_window():
    block = SwinBlock(dim=8, resolution=(7, 7), heads=2, window=7, shift=3)
    assert (block.window, block.shift, block.mask) == (7, 0, None)


def test_patch_merging_concatenates_2x2_neighbourhoods_in_swin_order():
    merge = PatchMerging(1, (4, 4))
    merge.norm, merge.reduction = torch.nn.Identity(), torch.nn.Identity()  # expose the layout
    x = torch.arange(16.0).view(1, 16, 1)  # 4x4 grid, token value = its raster index
    out = merge(x)
    assert out.shape == (1, 4, 4)
    # top-left 2x2 block holds tokens 0, 1, 4, 5; order (0,0), (1,0), (0,1), (1,1)
    assert out[0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]
    assert out[0, 1].tolist() == [2.0, 6.0, 3.0, 7.0]


def test_patch_expand_spreads_channels_over_the_sub_grid():
    expand = PatchExpand(8, (1, 2), scale=2, out_dim=2)
    expand.expand, expand.norm = torch.nn.Identity(), torch.nn.Identity()
    x = torch.arange(16.0).view(1, 2, 8)  # two tokens side by side, channels (p1, p2, c)
    out = expand(x).view(2, 4, 2)  # 2 x 4 grid of 2 channels
    assert out[0, 0].tolist() == [0.0, 1.0]  # token 0, p1=0, p2=0
    assert out[0, 1].tolist() == [2.0, 3.0]  # token 0, p1=0, p2=1
    assert out[1, 0].tolist() == [4.0, 5.0]  # token 0, p1=1, p2=0
    assert out[0, 2].tolist() == [8.0, 9.0]  # token 1, p1=0, p2=0
    final = PatchExpand(4, (2, 2), scale=4, out_dim=4)
    assert final(torch.randn(1, 4, 4)).shape == (1, 64, 4)


def test_swinunet_rejects_other_sizes_clearly():
    model = create_model("swinunet").eval()
    with pytest.raises(ValueError, match="224 pixels, got 256x256"), torch.no_grad():
        model(torch.randn(1, 3, 256, 256))


def test_medt_relative_table_cropping_is_the_central_part():
    torch.manual_seed(0)
    att = AxialAttention(16, span=8)
    full = att._embeddings(8)
    i, j = 3, 5
    assert torch.equal(full[:, i, j], att.relative[:, i - j + 7])
    assert torch.equal(att._embeddings(5), full[:, :5, :5])


def test_medt_height_and_width_attention_agree_on_transposed_input():
    torch.manual_seed(0)
    height = AxialAttention(16, span=6).eval()
    width = AxialAttention(16, span=6, along_width=True).eval()
    width.load_state_dict(height.state_dict())
    x = torch.randn(2, 16, 6, 4)
    with torch.no_grad():
        assert torch.allclose(height(x), width(x.transpose(2, 3)).transpose(2, 3), atol=1e-6)


def test_medt_rejects_sizes_it_was_not_built_for():
    model = create_model("medt").eval()
    with pytest.raises(ValueError, match="64x64"), torch.no_grad():
        model(torch.randn(1, 3, 64, 64))


def _torchvision_roi_align(feat: torch.Tensor, box, out: int) -> torch.Tensor:
    """torchvision.ops.roi_align (aligned=False, spatial_scale=1, sampling_ratio=-1), literally."""
    c, h, w = feat.shape
    x1, y1, x2, y2 = box
    rw, rh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    bw, bh = rw / out, rh / out
    gw, gh = math.ceil(rw / out), math.ceil(rh / out)
    res = torch.zeros(c, out, out)
    for ph in range(out):
        for pw in range(out):
            acc = torch.zeros(c)
            for iy in range(gh):
                y = y1 + ph * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = x1 + pw * bw + (ix + 0.5) * bw / gw
                    if y < -1 or y > h or x < -1 or x > w:
                        continue
                    y, x = max(y, 0.0), max(x, 0.0)
                    yl, xl = int(y), int(x)
                    if yl >= h - 1:
                        yl = yh = h - 1
                        y = float(yl)
                    else:
                        yh = yl + 1
                    if xl >= w - 1:
                        xl = xh = w - 1
                        x = float(xl)
                    else:
                        xh = xl + 1
                    ly, lx = y - yl, x - xl
                    acc += ((1 - ly) * (1 - lx) * feat[:, yl, xl] + (1 - ly) * lx * feat[:, yl, xh]
                            + ly * (1 - lx) * feat[:, yh, xl] + ly * lx * feat[:, yh, xh])
            res[:, ph, pw] = acc / (gh * gw)
    return res


@pytest.mark.parametrize("corner", [(0, 0), (6, 10), (16, 16)])
def test_window_sampling_matches_roi_align(corner):
    torch.manual_seed(0)
    win = 16
    feat = torch.randn(3, 32, 32)
    y0, x0 = corner
    expected = _torchvision_roi_align(feat, (x0, y0, x0 + win - 1, y0 + win - 1), win)
    a = roi_weights(win)
    ours = a @ feat[:, y0 : y0 + win, x0 : x0 + win] @ a.T
    assert torch.allclose(ours, expected, atol=1e-5)


def _torchvision_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> list[int]:
    """torchvision.ops.nms on CPU, literally: stable descending sort, suppress a float32 IoU that is
    above the threshold as a double."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed, keep = set(), []
    for pos, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[pos + 1 :]:
            ix = max(0.0, float(min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])))
            iy = max(0.0, float(min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])))
            inter = np.float32(ix * iy)  # the kernel's arithmetic is float32 (scalar_t) ...
            ovr = inter / (np.float32(area[i]) + np.float32(area[j]) - inter)
            if float(ovr) > thresh:  # ... and its threshold a double (nms_kernel.cpp: ovr > iou_threshold)
                suppressed.add(j)
    return keep


@pytest.mark.parametrize("tied", [False, True])
def test_greedy_nms_matches_torchvision(tied):
    corners = window_corners(48, 48)  # (y, x), 17 x 17 windows
    scores = torch.zeros(len(corners)) if tied else torch.rand(len(corners), generator=torch.Generator().manual_seed(0))
    boxes = torch.stack([corners[:, 1], corners[:, 0], corners[:, 1] + 15, corners[:, 0] + 15], 1).float()
    expected = _torchvision_nms(boxes, scores, 0.2)[:6]
    kept = greedy_nms(corners, scores, 0.2, keep=6)
    assert kept.tolist() == corners[expected].tolist()
    if tied:  # all scores equal: raster order, the first window at the origin
        assert kept[0].tolist() == [0, 0]


def test_greedy_nms_at_an_iou_of_exactly_the_threshold_follows_the_device_kernel():
    # boxes 10 apart on one axis: IoU 75/375, 0.2 in float32 but above 0.2 as a double
    corners = torch.tensor([[0, 0], [0, 10], [0, 20]])
    scores = torch.tensor([3.0, 2.0, 1.0])
    boxes = torch.stack([corners[:, 1], corners[:, 0], corners[:, 1] + 15, corners[:, 0] + 15], 1).float()
    cpu = greedy_nms(corners, scores, 0.2, keep=3, cpu_rule=True)  # torchvision's CPU kernel: suppressed
    assert cpu.tolist() == corners[_torchvision_nms(boxes, scores, 0.2)].tolist() == [[0, 0], [0, 20]]
    cuda = greedy_nms(corners, scores, 0.2, keep=3, cpu_rule=False)  # its CUDA kernel: float(0.2), kept
    assert cuda.tolist() == [[0, 0], [0, 10], [0, 20]]


def test_window_corners_follow_score_order():
    c = window_corners(20, 24)
    assert c.shape == (3 * 5, 2)
    assert c[:6].tolist() == [[0, 0], [0, 2], [0, 4], [0, 6], [0, 8], [2, 0]]


def test_batformer_outputs_and_size_check():
    model = create_model("batformer", num_classes=2).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 2, 64, 64)] * 4
    with pytest.raises(ValueError, match="288x288"), torch.no_grad():
        model(torch.randn(1, 3, 288, 288))


def test_polyp_pvt_returns_cfm_then_sam():
    torch.manual_seed(0)
    model = create_model("polyp_pvt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        cfm, sam = model(x)
        # the SAM head, applied by hand, gives the last output
        x1, x2, x3, x4 = model.backbone(x)
        feat = model.cfm(model.trans4_1(x4), model.trans3_1(x3), model.trans2_1(x2))
        first = torch.nn.functional.interpolate(model.out_cfm(feat), scale_factor=8, mode="bilinear")
    assert torch.allclose(cfm, first, atol=1e-6)
    assert not torch.allclose(cfm, sam)


def test_pvt_backbone_strides():
    model = create_model("polyp_pvt")
    feats = model.backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 24), (128, 8, 12), (320, 4, 6), (512, 2, 3)]
