"""SegmentationDataset: normalisation, splits, and augmentation seeded per (seed, epoch, index)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import prep
from ubench.data.dataset import IMAGENET_MEAN, IMAGENET_STD, SegmentationDataset
from ubench.errors import UbenchError

N, S = 12, 16


def write_prepared(folder: Path, images: np.ndarray, masks: np.ndarray, splits: dict | None = None) -> Path:
    """A minimal prepared folder in the canonical form (what ``prepare`` writes)."""
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", images)
    np.save(folder / "masks.npy", masks)
    n = len(images)
    splits = splits or {"train": list(range(0, n - 4)), "val": [n - 4, n - 3], "test": [n - 2, n - 1]}
    doc = {"protocol": "holdout", "seed": 0, "source": "seeded", **splits}
    (folder / "splits.json").write_text(json.dumps(doc))
    ids = [f"img{i:03d}" for i in range(n)]
    (folder / "manifest.json").write_text(json.dumps({"ids": ids, "count": n}))
    return folder


@pytest.fixture()
def encoded(tmp_path) -> Path:
    """Images whose pixels encode the mask (red = 255 on the mask) and the position (green, blue)."""
    rng = np.random.default_rng(0)
    masks = np.zeros((N, S, S), np.uint8)
    for i in range(N):
        y, x = rng.integers(0, S - 6, size=2)
        masks[i, y : y + 6, x : x + 3] = 1  # asymmetric blobs: every rotation/flip is visible
        masks[i, y, x : x + 6] = 1
    yy, xx = np.mgrid[0:S, 0:S]
    images = np.zeros((N, S, S, 3), np.uint8)
    images[..., 0] = masks * 255
    images[..., 1] = (yy * 15)[None]
    images[..., 2] = (xx * 15 + 7)[None]
    return write_prepared(tmp_path / "enc", images, masks)


def _denormalise(image: torch.Tensor) -> np.ndarray:
    """Back to 0..255 pixel values (H, W, 3) under the default normalisation."""
    x = image.numpy().transpose(1, 2, 0) * 255.0 * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.rint(x * 255.0)


def _dihedral(a: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of a (H, W, ...) array."""
    out = []
    for k in range(4):
        r = np.rot90(a, k, axes=(0, 1))
        out += [r, r[::-1]]
    return out


def test_item_types_shapes_and_normalisation(encoded):
    ds = SegmentationDataset(encoded, None)
    assert len(ds) == N and ds.ids == [f"img{i:03d}" for i in range(N)]
    item = ds[5]
    assert type(item["image"]) is torch.Tensor and type(item["mask"]) is torch.Tensor
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, S, S)
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, S, S)
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["index"] == 5 and item["id"] == "img005"
    raw = np.load(encoded / "images.npy")[5]
    y, x = 3, 11
    for c in range(3):
        expect = ((raw[y, x, c] / 255.0) - IMAGENET_MEAN[c]) / IMAGENET_STD[c] / 255.0
        assert item["image"][c, y, x].item() == pytest.approx(expect, rel=1e-5, abs=1e-7)
    # the protocol knobs are parameters: without the extra /255 the values are 255x larger
    plain = SegmentationDataset(encoded, None, extra_divide=1.0)[5]["image"]
    assert torch.allclose(plain, item["image"] * 255.0, rtol=1e-5, atol=1e-6)
    other = SegmentationDataset(encoded, None, mean=(0, 0, 0), std=(1, 1, 1), extra_divide=1.0)[5]
    assert other["image"][1, y, x].item() == pytest.approx(raw[y, x, 1] / 255.0)


def test_splits_and_errors(encoded, tmp_path):
    test = SegmentationDataset(encoded, "test")
    assert test.indices == [N - 2, N - 1] and [test[i]["index"] for i in range(2)] == [N - 2, N - 1]
    assert test[0]["id"] == f"img{N - 2:03d}"
    assert len(SegmentationDataset(encoded, "train")) == N - 4
    with pytest.raises(UbenchError, match="unknown split 'holdout'"):
        SegmentationDataset(encoded, "holdout")
    with pytest.raises(UbenchError, match="ubench prepare"):
        SegmentationDataset(tmp_path / "nothing", "train")


def test_arrays_are_memory_mapped(encoded):
    ds = SegmentationDataset(encoded, None)
    ds[0]
    assert isinstance(ds._images, np.memmap) and isinstance(ds._masks, np.memmap)


def _collect(ds, num_workers: int, order: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    loader = DataLoader(ds, batch_size=None, sampler=order, num_workers=num_workers)
    return {int(item["index"]): (item["image"], item["mask"]) for item in loader}


def test_augmentation_independent_of_workers_and_order(encoded):
    ds = SegmentationDataset(encoded, None, augment=True, seed=41)
    ds.set_epoch(3)
    forward = _collect(ds, 0, list(range(N)))
    backward = _collect(ds, 2, list(reversed(range(N))))
    shuffled = [ds[i] for i in np.random.default_rng(1).permutation(N)]
    assert forward.keys() == backward.keys() == set(range(N))
    for idx in range(N):
        assert torch.equal(forward[idx][0], backward[idx][0])
        assert torch.equal(forward[idx][1], backward[idx][1])
    for item in shuffled:
        assert torch.equal(item["image"], forward[item["index"]][0])
    # the augmentation did something: some items differ from the un-augmented ones
    plain = SegmentationDataset(encoded, None)
    changed = sum(not torch.equal(forward[i][0], plain[i]["image"]) for i in range(N))
    assert changed >= N // 3


def test_augmentation_changes_between_epochs_and_seeds(encoded):
    ds = SegmentationDataset(encoded, None, augment=True, seed=41)
    per_epoch = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        per_epoch.append(torch.stack([ds[i]["image"] for i in range(N)]))
    assert all(not torch.equal(per_epoch[0], per_epoch[e]) for e in (1, 2, 3))
    ds.set_epoch(0)
    assert torch.equal(torch.stack([ds[i]["image"] for i in range(N)]), per_epoch[0])
    other = SegmentationDataset(encoded, None, augment=True, seed=42)
    assert not torch.equal(torch.stack([other[i]["image"] for i in range(N)]), per_epoch[0])
    # over many epochs one item sees (nearly) all 8 rotations/flips
    outcomes = set()
    for epoch in range(48):
        ds.set_epoch(epoch)
        outcomes.add(ds[0]["mask"].numpy().tobytes())
    assert len(outcomes) >= 7


def test_mask_stays_aligned_with_image(encoded):
    ds = SegmentationDataset(encoded, None, augment=True, seed=7)
    raw_images, raw_masks = np.load(encoded / "images.npy"), np.load(encoded / "masks.npy")
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(N):
            item = ds[i]
            pixels = _denormalise(item["image"])
            mask = item["mask"][0].numpy()
            assert np.array_equal(pixels[..., 0] > 127, mask > 0.5)  # red channel carries the mask
            # one and the same rotation/flip was applied to both
            pairs = zip(_dihedral(raw_images[i]), _dihedral(raw_masks[i]))
            assert any(np.array_equal(pixels, a) and np.array_equal(mask, b) for a, b in pairs)


def test_works_on_a_prepared_synthetic_dataset(tmp_path):
    syn = {"n": 10, "size": 64, "seed": 3}
    out = prep("synth", tmp_path / "synth", image_size=32, synthetic=syn)
    ds = SegmentationDataset(out, "train", augment=True)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert abs(batch["image"].mean().item()) < 0.02  # the extra /255 keeps inputs tiny, as U-Bench's
