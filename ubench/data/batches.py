"""Batches of one split read straight from the prepared memory map, finished on the device.

Why not a DataLoader over items: per item, the DataLoader path converts, normalises and augments
on the CPU and collates; for a light model at 64 px that costs more than the model's own step, and
on a GPU it leaves the device waiting. Here a batch is one fancy-index of the uint8 memory map
(page cache, no copy of the dataset), one host-to-device copy of uint8 (a quarter of the float
bytes; pinned and non-blocking on CUDA), then on the device: normalisation by a 256-entry table per
channel, and the augmentation (``ubench.data.augment``).

The numbers are those of ``SegmentationDataset`` items through a ``DataLoader``: the table holds
``SegmentationDataset.normalise`` of every byte value (computed by that method), the shuffle
consumes the generator exactly as a fully iterated ``DataLoader(shuffle=True, generator=g)`` does
(one int64 for the loader's base seed, then two ``randperm``), and the augmentation draws are per (seed, epoch,
index). ``tests/test_batches.py`` checks equality, so results do not depend on which is used and
there are no worker processes whose count could matter.
"""

from __future__ import annotations

import numpy as np
import torch

from ubench.data.augment import apply_batch, draw_items
from ubench.data.dataset import SegmentationDataset


def normalisation_table(ds: SegmentationDataset) -> torch.Tensor:
    """(3, 256) float32: ``ds.normalise`` of every uint8 value in each channel."""
    values = np.repeat(np.arange(256, dtype=np.uint8).reshape(256, 1, 1), 3, axis=2)  # (256, 1, 3)
    return torch.from_numpy(ds.normalise(values)[:, :, 0].copy())


class SplitBatches:
    """Iterable of batches ``{"image", "mask", "index", "id"}`` of a dataset, on ``device``.

    ``image`` is float32 (B, 3, H, W) normalised, ``mask`` float32 (B, 1, H, W), both augmented when
    the dataset augments (call ``ds.set_epoch`` first, as with a DataLoader); ``index`` the dataset
    indices (int64, on the CPU), ``id`` their ids. ``shuffle`` needs ``generator``.
    """

    def __init__(self, ds: SegmentationDataset, batch_size: int, *, device: torch.device | str = "cpu",
                 shuffle: bool = False, generator: torch.Generator | None = None, drop_last: bool = False):
        if shuffle and generator is None:
            raise ValueError("shuffle needs a generator (results must not depend on global RNG state)")
        self.ds = ds
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last
        self._table = normalisation_table(ds).reshape(-1).to(self.device)
        self._offsets = torch.arange(3, device=self.device) * 256
        self._pin = self.device.type == "cuda"

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> list[int]:
        """Positions in the split for one epoch, drawn as DataLoader(shuffle=True) draws them."""
        n = len(self.ds)
        if not self.shuffle:
            return list(range(n))
        # The DataLoader iterator takes its base seed from the generator before the sampler runs;
        # RandomSampler then draws a permutation, and once exhausted draws a second one for the
        # remainder of num_samples % n (empty here) before it stops: the next epoch starts there.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = torch.randperm(n, generator=self.generator).tolist()
        torch.randperm(n, generator=self.generator)
        return order

    def __iter__(self):
        order = self.order()
        stop = len(self) * self.batch_size
        for start in range(0, stop, self.batch_size):
            yield self.batch([self.ds.indices[i] for i in order[start:min(start + self.batch_size, len(order))]])

    def batch(self, indices: list[int]) -> dict:
        """The batch of these dataset indices (not split positions)."""
        images, masks = self.ds.arrays()
        image = torch.from_numpy(np.ascontiguousarray(images[indices]))  # (B, H, W, 3) uint8
        mask = torch.from_numpy(np.ascontiguousarray(masks[indices]))  # (B, H, W)
        if self._pin:
            image, mask = image.pin_memory(), mask.pin_memory()
        image = image.to(self.device, non_blocking=True)
        mask = mask.to(self.device, non_blocking=True)
        x = self._table[image.long() + self._offsets].permute(0, 3, 1, 2).contiguous()
        y = mask.unsqueeze(1).float()
        if self.ds.augment:
            params = draw_items(self.ds.seed, self.ds.epoch, indices)
            x, y = apply_batch(x, params), apply_batch(y, params)
        return {"image": x, "mask": y, "index": torch.tensor(indices, dtype=torch.int64),
                "id": [self.ds.all_ids[i] for i in indices]}
