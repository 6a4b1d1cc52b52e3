"""Torch Dataset over a prepared folder, with U-Bench's input normalisation and augmentation.

Why these choices:
- The arrays are memory-mapped (``np.load(mmap_mode="r")``), opened lazily in each process, so
  DataLoader workers share the page cache instead of copying the dataset.
- Normalisation is U-Bench's albumentations ``Normalize`` (ImageNet mean/std, ``max_pixel_value``
  255) followed by its second division by 255: ``((x / max_pixel_value) - mean) / std /
  extra_divide``. All four are parameters, so a protocol change is a params change.
- Augmentation is U-Bench's RandomRotate90 + Flip, drawn as MONAI's ``RandRotate90d`` /
  ``RandFlipd`` draw them (``ubench.data.augment``) and applied identically to image and mask. Each
  item's draw depends only on (seed, epoch, index), so each epoch draws new transforms while a
  given item's transform does not depend on the number of DataLoader workers, the batch, or the
  order items are fetched in. (U-Bench seeds every worker alike, so its augmentations repeat and
  depend on the worker count.) Call ``set_epoch`` before each epoch's iteration; with
  ``persistent_workers=True`` the workers keep their own copy, so leave it off (the default) or
  the epoch number never reaches them.
- Items one at a time serve tests and any user's DataLoader; training and evaluation read whole
  batches from the memory map and normalise and augment them on the device
  (``ubench.data.batches``), with the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ubench.data.augment import apply_item, draw, item_seed
from ubench.errors import UbenchError

SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationDataset(Dataset):
    """Items of one split of a prepared dataset as dict(image, mask, index, id)."""

    def __init__(
        self,
        prepared_dir: str | Path,
        split: str | None,
        *,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        max_pixel_value: float = 255.0,
        extra_divide: float = 255.0,
        augment: bool = False,
        seed: int = 41,
    ):
        self.prepared_dir = Path(prepared_dir)
        needed = ("images.npy", "masks.npy", "splits.json", "manifest.json")
        missing = [f for f in needed if not (self.prepared_dir / f).is_file()]
        if missing:
            raise UbenchError(
                f"prepared data incomplete at {self.prepared_dir}: missing {', '.join(missing)}",
                f"run `ubench prepare {self.prepared_dir.name}` first",
            )
        manifest = json.loads((self.prepared_dir / "manifest.json").read_text(encoding="utf-8"))
        splits = json.loads((self.prepared_dir / "splits.json").read_text(encoding="utf-8"))
        self.all_ids: list[str] = list(manifest["ids"])
        self.num_classes = int(manifest.get("num_classes", 1))  # model outputs: 1 = binary
        self.class_names = list(manifest.get("class_names", ["foreground"]))
        self.manifest = manifest  # e.g. modality and attributes, recorded by evaluate
        if split is None:
            self.indices = list(range(len(self.all_ids)))
        elif split in SPLITS:
            self.indices = [int(i) for i in splits[split]]
        else:
            raise UbenchError(
                f"unknown split {split!r} for {self.prepared_dir}",
                f"use one of {', '.join(SPLITS)}, or None for all images",
            )
        self.split = split
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.max_pixel_value = np.float32(max_pixel_value)
        self.extra_divide = np.float32(extra_divide)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The prepared images and masks as read-only memory maps (opened once, lazily)."""
        if self._images is None:
            self._images = np.load(self.prepared_dir / "images.npy", mmap_mode="r")
            self._masks = np.load(self.prepared_dir / "masks.npy", mmap_mode="r")
        return self._images, self._masks

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_images"] = state["_masks"] = None  # reopen the memory map in the worker
        return state

    @property
    def ids(self) -> list[str]:
        """Ids of this split's items, in item order."""
        return [self.all_ids[i] for i in self.indices]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations ``__getitem__`` draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def normalise(self, image_hwc: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) → float32 (3, H, W) with U-Bench's normalisation."""
        x = image_hwc.astype(np.float32) / self.max_pixel_value
        x = (x - self.mean) / self.std / self.extra_divide
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        images, masks = self.arrays()
        image = torch.from_numpy(self.normalise(np.asarray(images[index])))
        mask = torch.from_numpy(np.asarray(masks[index], dtype=np.float32)[None].copy())
        if self.augment:
            params = draw(item_seed(self.seed, self.epoch, index))
            image = apply_item(image, params).contiguous()
            mask = apply_item(mask, params).contiguous()
        return {"image": image, "mask": mask, "index": int(index), "id": self.all_ids[index]}
