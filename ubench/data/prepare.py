"""The prepare stage: a dataset (synthetic or raw files) → ``data/prepared/<name>/``.

Why one canonical form: every later stage reads the same four files, whatever the source format:
``images.npy`` uint8 (N,S,S,3) RGB and ``masks.npy`` uint8 (N,S,S) in {0,1} (plain .npy, so
``np.load(mmap_mode="r")`` works), ``splits.json`` (seeded or U-Bench's own split files) and
``manifest.json`` (ids, source hashes, sizes, zero-shot targets). The folder is built under a
temporary name and swapped in only when complete (``ubench.io.atomic_dir``): a failure leaves no
output and never half-overwrites a previous one. Preparing twice gives byte-identical files.

Split protocols:
- ``holdout``: disjoint train/val/test. Seeded: a ``default_rng(split_seed)`` permutation, test
  then val taken from its front (``test_fraction``, ``val_fraction`` of N rounded, each >= 1).
  With U-Bench split files: test = val.txt, val = a seeded ``val_fraction`` subset of train.txt.
- ``ubench``: U-Bench selects the best epoch on the split it reports, so val == test. Seeded:
  ``test_fraction`` of N is val = test, the rest trains (``val_fraction`` is unused). With split
  files: train = train.txt, val = test = val.txt.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from ubench.data import synthetic as synthetic_mod
from ubench.data.registry import get_dataset
from ubench.data.ubench_layout import load_ubench_layout, resize_image, resize_mask
from ubench.errors import UbenchError
from ubench.io import atomic_dir, save_npy_atomic, write_json_atomic

PROTOCOLS = ("holdout", "ubench")
SYNTHETIC_DEFAULTS = {"n": 100, "size": 128, "seed": 41}


def _count(fraction: float, n: int) -> int:
    """round(fraction * n), half up, and at least 1."""
    return max(1, int(math.floor(fraction * n + 0.5)))


def _check_params(image_size: Any, protocol: str, val_fraction: float, test_fraction: float) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise UbenchError(f"image_size must be an integer >= 8, got {image_size!r}", "set e.g. 256")
    if protocol not in PROTOCOLS:
        raise UbenchError(f"unknown split protocol {protocol!r}", f"use one of {', '.join(PROTOCOLS)}")
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise UbenchError(f"{key} must be in (0, 1), got {value!r}", f"set e.g. {key}=0.2")
    if protocol == "holdout" and val_fraction + test_fraction >= 1.0:
        raise UbenchError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves nothing to train on",
            "keep their sum below 1 (e.g. 0.2 and 0.2)",
        )


def seeded_splits(
    n: int, protocol: str, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, list[int]]:
    """Train/val/test index lists (sorted) from a seeded permutation of ``range(n)``."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = _count(test_fraction, n)
    if protocol == "ubench":
        test, train = perm[:n_test], perm[n_test:]
        val = test
    else:
        n_val = _count(val_fraction, n)
        test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    if len(train) == 0:
        raise UbenchError(
            f"{n} image(s) are too few to split with protocol {protocol!r} "
            f"(val_fraction={val_fraction}, test_fraction={test_fraction}): nothing left to train on",
            "add images or lower the fractions",
        )
    return {k: sorted(int(i) for i in v) for k, v in (("train", train), ("val", val), ("test", test))}


def file_splits(
    split_names: dict[str, list[str]],
    ids: list[str],
    protocol: str,
    seed: int,
    val_fraction: float,
) -> dict[str, list[int]]:
    """Splits from U-Bench's train.txt/val.txt (already resolved to stems)."""
    pos = {stem: i for i, stem in enumerate(ids)}
    train = [pos[s] for s in split_names["train"]]
    listed_val = [pos[s] for s in split_names["val"]]
    if protocol == "ubench":
        val = test = listed_val
    else:
        if len(train) < 2:
            raise UbenchError(
                f"train.txt lists {len(train)} image(s): too few to carve a validation set from",
                "list at least 2 images in train.txt, or use protocol 'ubench'",
            )
        order = np.random.default_rng(seed).permutation(len(train))
        n_val = min(_count(val_fraction, len(train)), len(train) - 1)
        val = [train[j] for j in order[:n_val]]
        train = [train[j] for j in order[n_val:]]
        test = listed_val
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def _synthetic_params(name: str, synthetic_args: dict | None) -> dict:
    params = dict(SYNTHETIC_DEFAULTS)
    unknown = sorted(set(synthetic_args or {}) - set(params))
    if unknown:
        raise UbenchError(
            f"unknown synthetic parameter(s) {', '.join(unknown)}",
            f"use only {', '.join(sorted(SYNTHETIC_DEFAULTS))}",
        )
    params.update(synthetic_args or {})
    for key in ("n", "size", "seed"):
        if isinstance(params[key], bool) or not isinstance(params[key], int):
            raise UbenchError(
                f"synthetic {key} must be an integer, got {params[key]!r}",
                f"set e.g. {key}={SYNTHETIC_DEFAULTS[key]}",
            )
    if params["n"] < 3 or params["size"] < 16:
        raise UbenchError(
            f"synthetic n={params['n']}, size={params['size']} too small", "use n >= 3 and size >= 16"
        )
    shifted = name == "synth_shift"
    params["shifted"] = shifted
    params["base_seed"] = params["seed"]
    if shifted:
        params["seed"] = synthetic_mod.shifted_seed(params["seed"])
    return params


def _generator_hash() -> str:
    return hashlib.sha256(Path(synthetic_mod.__file__).read_bytes()).hexdigest()


def prepare_dataset(
    name: str,
    out_dir: str | Path,
    *,
    raw_root: str | Path = "data/raw",
    image_size: int = 64,
    protocol: str = "holdout",
    split_seed: int = 41,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    synthetic: dict | None = None,
) -> Path:
    """Build the prepared folder for dataset ``name`` at ``out_dir``; returns ``out_dir``.

    ``synthetic`` = dict(n=, size=, seed=) for the synthetic datasets (defaults
    ``SYNTHETIC_DEFAULTS``; ignored for other kinds, so one params section can serve every
    dataset); ``synth_shift`` draws with ``shifted_seed(seed)`` and shifted=True.
    """
    _check_params(image_size, protocol, val_fraction, test_fraction)
    info = get_dataset(name, raw_root=raw_root)
    out_dir = Path(out_dir)
    if info.kind == "synthetic":
        params = _synthetic_params(name, synthetic)
        images, masks, ids = synthetic_generate(params)
        images = np.stack([resize_image(im, image_size) for im in images])
        masks = np.stack([resize_mask(m, image_size) for m in masks])
        size = params["size"]
        sources: dict[str, Any] = {"generator": _generator_hash(), "params": params}
        original = {"min_height": size, "max_height": size, "min_width": size, "max_width": size}
        split_names = None
        split_source = "seeded"
    else:
        data = load_ubench_layout(Path(raw_root) / name, image_size)
        images, masks, ids = data.images, data.masks, data.ids
        sources, original, split_names = data.sources, data.original_sizes, data.split_names
        split_source = "seeded" if split_names is None else "ubench_files"

    if split_names is None:
        splits = seeded_splits(len(ids), protocol, split_seed, val_fraction, test_fraction)
    else:
        splits = file_splits(split_names, ids, protocol, split_seed, val_fraction)
    splits_doc = {"protocol": protocol, "seed": int(split_seed), "source": split_source, **splits}
    manifest = {
        "name": name,
        "kind": info.kind,
        "modality": info.modality,
        "num_classes": 1,
        "count": len(ids),
        "image_size": [int(image_size), int(image_size)],
        "ids": list(ids),
        "sources": sources,
        "original_sizes": original,
        "zero_shot_targets": list(info.zero_shot_targets),
    }
    with atomic_dir(out_dir) as tmp:
        save_npy_atomic(tmp / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
        save_npy_atomic(tmp / "masks.npy", np.ascontiguousarray(masks, dtype=np.uint8))
        write_json_atomic(tmp / "splits.json", splits_doc)
        write_json_atomic(tmp / "manifest.json", manifest)
    return out_dir


def synthetic_generate(params: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Run the generator with the (already derived) parameters recorded in the manifest."""
    return synthetic_mod.generate(params["n"], params["size"], params["seed"], shifted=params["shifted"])

