"""Batches finished on the device (ubench.data.batches, ubench.data.augment) carry exactly the
numbers of SegmentationDataset items through a DataLoader, and the augmentation draws are MONAI's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.test_dataset import (
    encoded,  # noqa: F401  (fixture)
    write_prepared,
)
from ubench.data.augment import apply_batch, apply_item, draw, draw_items, item_seed
from ubench.data.batches import SplitBatches, normalisation_table
from ubench.data.dataset import SegmentationDataset


def _monai_pipeline():
    from monai.transforms import Compose, RandFlipd, RandRotate90d

    keys = ("image", "mask")
    return Compose([RandRotate90d(keys=keys, prob=0.5, spatial_axes=(0, 1)),
                    RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
                    RandFlipd(keys=keys, prob=0.5, spatial_axis=1)])


def _plain(x) -> torch.Tensor:
    return (x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)).contiguous()


def test_draws_are_monais():
    """The pipeline ubench used before (MONAI's RandRotate90d + RandFlipd, reseeded per item) and
    ubench's draws give the same image and mask for every seed tried, the 8 outcomes all seen."""
    monai = _monai_pipeline()
    g = torch.Generator().manual_seed(0)
    outcomes = set()
    for n in range(600):
        seed = item_seed(41, n % 5, n) if n % 3 else (n * 2654435761) % 2**32
        image, mask = torch.randn(3, 6, 6, generator=g), (torch.rand(1, 6, 6, generator=g) > 0.5).float()
        monai.set_random_state(seed=seed)
        out = monai({"image": image, "mask": mask})
        params = draw(seed)
        outcomes.add(params)
        assert torch.equal(_plain(out["image"]), apply_item(image, params)), seed
        assert torch.equal(_plain(out["mask"]), apply_item(mask, params)), seed
    assert {(k, fr, fc) for k, fr, fc in outcomes} >= {(0, False, False), (0, True, True)}
    assert {k for k, _, _ in outcomes} == {0, 1, 2, 3}


def test_batch_application_equals_per_item():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, 8, 8, generator=g)
    params = draw_items(3, 2, range(6))
    assert torch.equal(apply_batch(x, params), torch.stack([apply_item(x[i], p) for i, p in enumerate(params)]))
    with pytest.raises(ValueError, match="non-square"):
        apply_batch(torch.zeros(1, 1, 4, 6), [(1, False, False)])


def test_normalisation_table_is_the_datasets_formula(encoded):  # noqa: F811
    ds = SegmentationDataset(encoded, None, extra_divide=255.0)
    table = normalisation_table(ds)
    values = np.arange(256, dtype=np.uint8)
    for c in range(3):
        pixels = np.zeros((256, 1, 3), np.uint8)
        pixels[:, 0, c] = values
        assert np.array_equal(table[c].numpy(), ds.normalise(pixels)[c, :, 0])


@pytest.mark.parametrize("batch_size,drop_last", [(4, True), (5, False), (16, False)])
@pytest.mark.parametrize("augment", [False, True])
def test_batches_equal_dataloader_over_items(tmp_path, batch_size, drop_last, augment):
    rng = np.random.default_rng(4)
    n = 23
    images = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, (n, 12, 12)).astype(np.uint8)
    folder = write_prepared(tmp_path / "p", images, masks,
                            {"train": list(range(3, n)), "val": [0, 1], "test": [2]})
    ds = SegmentationDataset(folder, "train", augment=augment, seed=9, extra_divide=1.0)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(7),
                        drop_last=drop_last)
    batches = SplitBatches(ds, batch_size, shuffle=True, generator=torch.Generator().manual_seed(7),
                           drop_last=drop_last)
    assert len(batches) == len(loader)
    for epoch in range(3):  # the generator must be consumed alike, epoch after epoch
        ds.set_epoch(epoch)
        expected, got = list(loader), list(batches)
        assert len(expected) == len(got)
        for a, b in zip(expected, got):
            assert torch.equal(a["index"], b["index"]) and a["id"] == b["id"]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_unshuffled_batches_keep_split_order_and_need_no_generator(encoded):  # noqa: F811
    ds = SegmentationDataset(encoded, "train")
    got = [int(i) for b in SplitBatches(ds, 3) for i in b["index"]]
    assert got == ds.indices
    with pytest.raises(ValueError, match="generator"):
        SplitBatches(ds, 3, shuffle=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_on_cuda_equal_cpu(encoded):  # noqa: F811
    ds = SegmentationDataset(encoded, "train", augment=True, seed=3)
    ds.set_epoch(2)
    for a, b in zip(SplitBatches(ds, 4), SplitBatches(ds, 4, device="cuda")):
        assert b["image"].is_cuda and torch.equal(a["image"], b["image"].cpu())
        assert torch.equal(a["mask"], b["mask"].cpu())
