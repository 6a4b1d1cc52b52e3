"""U-Bench's training augmentation (RandomRotate90 + two flips), drawn per item, applied to a batch.

Why not MONAI's transforms in the loop: MONAI applies them per item on the CPU, wrapping each
array in a MetaTensor, which costs more than a light model's whole step at 64 px and cannot run
on the device. The ops themselves are permutations of pixels (``torch.rot90``, ``torch.flip``),
so ubench draws each item's decision on the host and applies it wherever the batch lives.

The draws are MONAI's, to the bit: ``Compose([RandRotate90d(prob=0.5, spatial_axes=(0, 1)),
RandFlipd(prob=0.5, spatial_axis=0), RandFlipd(prob=0.5, spatial_axis=1)])`` reseeded with
``set_random_state(seed=item_seed(seed, epoch, index))`` gives each sub-transform a NumPy
RandomState seeded from the Compose's own; RandRotate90d draws ``k = randint(3) + 1`` and then
``rand() < 0.5``; each RandFlipd draws ``rand() < 0.5``. ``tests/test_augment.py`` compares
against MONAI for many seeds, so ubench's results are those of the MONAI pipeline it replaced.
"""

from __future__ import annotations

import numpy as np
import torch

PROB = 0.5
_MAX_SEED = 2**32  # MONAI's MAX_SEED: sub-seeds are uint32


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends only on (seed, epoch, index) — stable across platforms."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


# One generator, reseeded: ``RandomState.seed(s)`` puts it in exactly the state of a new
# ``RandomState(s)`` (legacy seeding), at 3 us instead of the 160 us a new object costs.
_RNG = np.random.RandomState()


def draw(seed: int) -> tuple[int, bool, bool]:
    """(quarter turns 0-3, flip rows, flip columns) of one item, as MONAI's Compose draws them."""
    rng = _RNG
    rng.seed(int(seed) % _MAX_SEED)
    sub_seeds = [int(s) for s in rng.randint(_MAX_SEED, size=3, dtype="uint32")]
    rng.seed(sub_seeds[0])  # RandRotate90d: k first, then whether to rotate
    k = int(rng.randint(3)) + 1
    rotate = bool(rng.rand() < PROB)
    flips = []
    for s in sub_seeds[1:]:  # RandFlipd on rows, then on columns
        rng.seed(s)
        flips.append(bool(rng.rand() < PROB))
    return (k if rotate else 0, flips[0], flips[1])


def draw_items(seed: int, epoch: int, indices) -> list[tuple[int, bool, bool]]:
    """Each item's draw for one epoch (``indices`` are dataset indices, not batch positions)."""
    return [draw(item_seed(seed, epoch, int(i))) for i in indices]


def apply_item(x: torch.Tensor, params: tuple[int, bool, bool]) -> torch.Tensor:
    """One channel-first item (C, H, W): rotate by k quarter turns, then flip rows, then columns."""
    k, flip_rows, flip_cols = params
    if k:
        x = torch.rot90(x, k, (1, 2))
    if flip_rows:
        x = torch.flip(x, (1,))
    if flip_cols:
        x = torch.flip(x, (2,))
    return x


def apply_batch(x: torch.Tensor, params: list[tuple[int, bool, bool]]) -> torch.Tensor:
    """A batch (B, C, H, W) with item i transformed by ``params[i]``, on x's device.

    Square images keep their shape under any rotation; a non-square batch is refused, since a
    quarter turn would give its items different shapes.
    """
    if any(p[0] % 2 for p in params) and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"quarter-turn rotation of a non-square batch {tuple(x.shape)}")
    if not any(k or fr or fc for k, fr, fc in params):
        return x
    return torch.stack([apply_item(x[i], p) for i, p in enumerate(params)])
