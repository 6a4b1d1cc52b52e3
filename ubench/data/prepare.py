"""The prepare stage: a dataset (synthetic or raw files) → ``data/prepared/<name>/``.

Why one canonical form: every later stage reads the same four files, whatever the source format:
``images.npy`` uint8 (N,S,S,3) RGB and ``masks.npy`` uint8 (N,S,S) in {0,1} (plain .npy, so
``np.load(mmap_mode="r")`` works), ``splits.json`` (seeded or U-Bench's own split files) and
``manifest.json`` (ids, source hashes, sizes, classes, zero-shot targets and the dataset
attributes of ``ubench.data.attributes``). Raw data is read by the dataset's converter
(``ubench.data.converters``), whatever the owners' format; multi-class masks hold class indices. The folder is built under a
temporary name and swapped in only when complete (``ubench.io.atomic_dir``): a failure leaves no
output and never half-overwrites a previous one. Preparing twice gives byte-identical files.

Splits are made over *groups* (patients, cases, lesions: the converter says; a 2D image is its
own group), so slices of one patient never straddle train and test. Sorted group ids are permuted
by ``default_rng(split_seed)``; nothing else enters, so adding another dataset never changes this
one's split. Split protocols:
- ``holdout``: disjoint train/val/test. Seeded: test then val taken from the permutation's front
  (``test_fraction``, ``val_fraction`` of the groups, rounded, each >= 1). With an official split
  (U-Bench's train.txt/val.txt, DRIVE's training/test …): test = the official test groups, val =
  a seeded ``val_fraction`` subset of the official training groups.
- ``ubench``: U-Bench selects the best epoch on the split it reports, so val == test. Seeded:
  ``test_fraction`` of the groups is val = test, the rest trains (``val_fraction`` is unused).
  With an official split: train = its training groups, val = test = its test groups.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from ubench.data import synthetic as synthetic_mod
from ubench.data.attributes import dataset_attributes
from ubench.data.converters import get_converter
from ubench.data.converters.base import Sample, convert_folder, relative
from ubench.data.converters.pixels import resize_image, resize_mask
from ubench.data.registry import get_dataset
from ubench.errors import UbenchError
from ubench.io import atomic_dir, save_npy_atomic, sha256_file, write_json_atomic
from ubench.names import check_name, check_split
from ubench.output_guard import check_replaceable

SYNTHETIC_KEYS = ("n", "seed", "size")


def _count(fraction: float, n: int) -> int:
    """round(fraction * n), half up, and at least 1."""
    return max(1, int(math.floor(fraction * n + 0.5)))


def _check_params(image_size: Any, protocol: str, val_fraction: float, test_fraction: float) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise UbenchError(f"image_size must be an integer >= 8, got {image_size!r}", "set e.g. 256")
    check_split(protocol, val_fraction, test_fraction)  # the rule ubench.config applies to params.yaml


def _group_order(groups: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    """Sorted unique groups and the sample indices of each."""
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return sorted(members), members


def _expand(chosen, members: dict[str, list[int]]) -> list[int]:
    return sorted(i for g in chosen for i in members[g])


def seeded_splits(
    n: int,
    protocol: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    groups: list[str] | None = None,
) -> dict[str, list[int]]:
    """Train/val/test index lists (sorted) from a seeded permutation of the sorted groups.

    Without ``groups`` every sample is its own group (in index order).
    """
    if groups is None:
        groups = [f"{i:09d}" for i in range(n)]
    order, members = _group_order(groups)
    perm = [order[j] for j in np.random.default_rng(seed).permutation(len(order))]
    n_test = _count(test_fraction, len(order))
    if protocol == "ubench":
        test, train = perm[:n_test], perm[n_test:]
        val = test
    else:
        n_val = _count(val_fraction, len(order))
        test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    if len(train) == 0:
        raise UbenchError(
            f"{len(order)} image(s)/group(s) are too few to split with protocol {protocol!r} "
            f"(val_fraction={val_fraction}, test_fraction={test_fraction}): nothing left to train on",
            "add images or lower the fractions",
        )
    return {k: _expand(v, members) for k, v in (("train", train), ("val", val), ("test", test))}


def official_splits(
    official: dict[str, list[str]],
    groups: list[str],
    protocol: str,
    seed: int,
    val_fraction: float,
) -> dict[str, list[int]]:
    """Splits from an official train/test split of group ids (U-Bench's train.txt/val.txt …)."""
    order, members = _group_order(groups)
    unknown = sorted((set(official["train"]) | set(official["test"])) - set(members))
    if unknown:
        raise UbenchError(
            f"the official split names {len(unknown)} group(s) with no samples: {unknown[:5]}",
            "check that the raw download is complete",
        )
    train = sorted(set(official["train"]))
    test = sorted(set(official["test"]))
    if protocol == "ubench":
        val = test
    else:
        if len(train) < 2:
            raise UbenchError(
                f"the official training split has {len(train)} image(s)/group(s): too few to carve "
                "a validation set from",
                "list at least 2 images in train.txt, or use protocol 'ubench'",
            )
        perm = np.random.default_rng(seed).permutation(len(train))
        n_val = min(_count(val_fraction, len(train)), len(train) - 1)
        val = [train[j] for j in perm[:n_val]]
        train = [train[j] for j in perm[n_val:]]
    return {k: _expand(v, members) for k, v in (("train", train), ("val", val), ("test", test))}


def _synthetic_params(name: str, synthetic_args: dict | None) -> dict:
    given = set(synthetic_args or {})
    if given != set(SYNTHETIC_KEYS):
        raise UbenchError(
            f"synthetic dataset {name!r} needs exactly the parameters {', '.join(SYNTHETIC_KEYS)}; "
            f"got {', '.join(sorted(given)) or 'none'}",
            "pass the `synthetic` section of params.yaml (n, size, seed)",
        )
    params = dict(synthetic_args or {})
    for key in SYNTHETIC_KEYS:
        if isinstance(params[key], bool) or not isinstance(params[key], int):
            raise UbenchError(
                f"synthetic {key} must be an integer, got {params[key]!r}",
                f"set `synthetic.{key}` in params.yaml to an integer",
            )
    if params["n"] < 3 or params["size"] < 16:
        raise UbenchError(
            f"synthetic n={params['n']}, size={params['size']} too small", "use n >= 3 and size >= 16"
        )
    profile, shifted = synthetic_mod.parse_dataset_name(name)
    params["profile"] = profile
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
    raw_root: str | Path,
    image_size: int,
    protocol: str,
    split_seed: int,
    val_fraction: float,
    test_fraction: float,
    synthetic: dict | None = None,
) -> Path:
    """Build the prepared folder for dataset ``name`` at ``out_dir``; returns ``out_dir``.

    Every knob comes from the caller (params.yaml through ``ubench.pipeline``): this function keeps
    no defaults of its own, so there is one source of truth. ``synthetic`` = dict(n=, size=, seed=)
    is needed for the synthetic datasets (ignored for other kinds, so one params section can serve
    every dataset); ``synth_shift`` draws with ``shifted_seed(seed)`` and shifted=True.
    ``out_dir`` is replaced only if it is absent, empty or a previous prepared output
    (``ubench.output_guard``): never the project, ``.git``, ``data/raw`` or the raw input.
    """
    _check_params(image_size, protocol, val_fraction, test_fraction)
    check_name("dataset", name)
    info = get_dataset(name, raw_root=raw_root)
    out_dir = Path(out_dir)
    check_replaceable(out_dir, kind="prepared", protected=[raw_root, Path(raw_root) / name])
    groups: list[str] | None = None
    official = None
    class_names = list(info.class_names)
    num_classes = info.num_classes
    if info.kind == "synthetic":
        params = _synthetic_params(name, synthetic)
        images, masks, ids = synthetic_generate(params)
        images = np.stack([resize_image(im, image_size) for im in images])
        masks = np.stack([resize_mask(m, image_size) for m in masks])
        size = params["size"]
        sources: dict[str, Any] = {"generator": _generator_hash(), "params": params}
        original = {"min_height": size, "max_height": size, "min_width": size, "max_width": size}
    else:
        conv = get_converter(info.raw_format)
        num_classes, class_names = conv.num_classes, list(conv.class_names)
        images, masks, ids, groups, sources, original, official = _convert_raw(
            conv, Path(raw_root) / name, int(image_size)
        )

    if official is None:
        splits = seeded_splits(len(ids), protocol, split_seed, val_fraction, test_fraction, groups)
    else:
        splits = official_splits(official, groups, protocol, split_seed, val_fraction)
    split_source = "seeded" if official is None else "official"
    splits_doc = {"protocol": protocol, "seed": int(split_seed), "source": split_source, **splits}
    manifest = {
        "name": name,
        "title": info.title or name,
        "kind": info.kind,
        "raw_format": info.raw_format,
        "role": info.role,
        "modality": info.modality,
        "num_classes": int(num_classes),
        "class_names": class_names,
        "count": len(ids),
        "image_size": [int(image_size), int(image_size)],
        "ids": list(ids),
        "groups": None if groups is None or groups == list(ids) else list(groups),
        "sources": sources,
        "original_sizes": original,
        "zero_shot_targets": list(info.zero_shot_targets),
        "attributes": dataset_attributes(images, masks, int(num_classes)),
    }
    with atomic_dir(out_dir) as tmp:
        save_npy_atomic(tmp / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
        save_npy_atomic(tmp / "masks.npy", np.ascontiguousarray(masks, dtype=np.uint8))
        write_json_atomic(tmp / "splits.json", splits_doc)
        write_json_atomic(tmp / "manifest.json", manifest)
    return out_dir


def _convert_raw(conv, root: Path, size: int):
    """Decode a raw folder with its converter, resizing each sample as it comes (see base.py)."""
    heights: list[int] = []
    widths: list[int] = []

    def shrink(sample: Sample) -> Sample:
        heights.append(sample.image.shape[0])
        widths.append(sample.image.shape[1])
        return Sample(sample.id, resize_image(sample.image, size), resize_mask(sample.mask, size), sample.group)

    scan, samples = convert_folder(conv, root, transform=shrink, progress=True)
    samples.sort(key=lambda s: s.id)
    files = sorted({f for item in scan.items for f in item.files()} | set(scan.split_files))
    sources = {relative(f, root): sha256_file(f) for f in files}
    original = {
        "min_height": min(heights),
        "max_height": max(heights),
        "min_width": min(widths),
        "max_width": max(widths),
    }
    images = np.stack([s.image for s in samples])
    masks = np.stack([s.mask for s in samples])
    ids = [s.id for s in samples]
    groups = [s.group or s.id for s in samples]
    return images, masks, ids, groups, sources, original, scan.official_split


def synthetic_generate(params: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Run the generator with the (already derived) parameters recorded in the manifest."""
    return synthetic_mod.generate(
        params["n"], params["size"], params["seed"], shifted=params["shifted"], profile=params["profile"]
    )

