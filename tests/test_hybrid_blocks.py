"""Shared Swin and token blocks (ubench/models/ops/swin.py, ops/common.py) and UTNet's bias tiling."""

from __future__ import annotations

import torch

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.swin import (
    SwinBlock,
    SwinStage,
    from_windows,
    relative_position_index,
    shift_mask,
    swin_stage,
    to_windows,
)


def test_window_partition_roundtrip_and_layout():
    x = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).reshape(2, 8, 12, 3)
    win = to_windows(x, 4)
    assert win.shape == (2 * 2 * 3, 16, 3)
    assert torch.equal(win[1], x[0, 0:4, 4:8].reshape(16, 3))  # second window: row 0, column 1
    assert torch.equal(from_windows(win, 4, 8, 12), x)


def test_tokens_and_maps_are_inverse():
    x = torch.randn(2, 5, 4, 6)
    t = map_to_tokens(x)
    assert t.shape == (2, 24, 5)
    assert torch.equal(tokens_to_map(t, 4, 6), x)


def test_relative_index_is_translation_invariant():
    idx = relative_position_index(3)
    assert idx.shape == (9, 9)
    assert idx.min() == 0 and idx.max() == 24
    assert idx[0, 0] == idx[4, 4] == idx[8, 8]  # zero offset everywhere
    assert idx[0, 1] == idx[3, 4]  # same offset (0, -1) gives the same table row


def test_shift_mask_blocks_only_cells_from_different_regions():
    mask = shift_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert torch.all(mask[0] == 0)  # the top-left window holds one region only
    assert set(mask[3].unique().tolist()) == {-100.0, 0.0}
    assert torch.equal(mask, mask.transpose(1, 2))


def test_swin_block_shift_is_disabled_when_window_covers_grid():
    block = SwinBlock(8, (4, 4), heads=2, window=7, shift=3)
    assert (block.window, block.shift) == (4, 0)
    out = block(torch.randn(2, 16, 8))
    assert out.shape == (2, 16, 8)


def test_both_swin_containers_hold_the_same_blocks_under_their_checkpoint_names():
    """SwinStage (Swin-Unet: blocks.<i>) and swin_stage (HiFormer/H2Former: <i>) build identical
    blocks from the same seed; only the key prefix differs."""
    torch.manual_seed(0)
    a = SwinStage(8, (8, 8), depth=2, heads=2, window=4)
    torch.manual_seed(0)
    b = swin_stage(8, (8, 8), 2, 2, 4, [0.0, 0.0])
    sa, sb = a.state_dict(), b.state_dict()
    assert [k.removeprefix("blocks.") for k in sa] == list(sb)
    assert all(torch.equal(sa[k], sb[k.removeprefix("blocks.")]) for k in sa)
    assert b[1].shift == 2 and b[0].shift == 0
    x = torch.randn(2, 64, 8)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_utnet_bias_matches_reference_tiling_on_multiples_of_8():
    """Nearest-cell mapping equals the reference's repeat_interleave when 8 divides the grid."""
    from ubench.models.utnet import RelativeBias

    torch.manual_seed(0)
    rb = RelativeBias(heads=2, size=8)
    s = 8
    table = rb.table[rb.index.reshape(-1)].reshape(s, s, s * s, -1)
    h, w = 16, 24
    tiled = table.repeat_interleave(h // s, dim=0).repeat_interleave(w // s, dim=1)
    expected = tiled.reshape(h * w, s * s, -1).permute(2, 0, 1).unsqueeze(0)
    assert torch.equal(rb(h, w), expected)
    assert rb(4, 6).shape == (1, 2, 24, 64)  # grids smaller than 8 are defined too
