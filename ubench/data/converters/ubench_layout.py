"""U-Bench's own layout: ``images/<stem>.<ext>`` and ``masks/0/<stem>.<ext>`` (+ optional split).

Why: U-Bench's Hugging Face release (and its ``MedicalDataSets`` loader) keeps each dataset as one
image folder plus a binary-mask folder for the foreground class (``masks/0``), with optional
``train.txt``/``val.txt`` naming the split by stem or file name. Anything a user drops into
``data/raw/<name>`` in that layout becomes a dataset. Masks must be binary (policy ``binary``):
JPEG-compressed or multi-label masks are refused rather than thresholded silently.

When the split files are present they must cover every image: an image in neither file would be
converted but never trained or tested on, so it is refused as a problem of the folder (``datasets
check`` lists it, with the count and the first ids), like an unknown or repeated name. Why a
refusal and not a warning: scan problems are the converters' one channel to both ``datasets
check`` and ``prepare`` (nothing here can warn), and a warning printed during a ``dvc repro``
would scroll by while the partial split is recorded as the official one.
"""

from __future__ import annotations

import glob
from pathlib import Path, PurePosixPath

from ubench.data.converters.base import Problem, RawItem
from ubench.data.converters.paired import PairedFolders
from ubench.errors import UbenchError

SPLIT_FILES = ("train.txt", "val.txt")
LAYOUT_HINT = "images/<stem>.png (or .jpg/.bmp/.tif) and masks/0/<stem>.png, one binary mask per image"


def is_ubench_layout(folder: str | Path) -> bool:
    """True when ``folder`` looks like a U-Bench dataset (it has an ``images/`` subfolder)."""
    return (Path(folder) / "images").is_dir()


def _read_split_file(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip()]


def _resolve_names(names: list[str], path: Path, file_names: dict[str, str]) -> list[str]:
    """Split-file entries (stem or image file name) → stems; unknown or repeated names fail."""
    by_file = {fname: stem for stem, fname in file_names.items()}
    stems, unknown, seen = [], [], set()
    for name in names:
        stem = name if name in file_names else by_file.get(Path(name).name)
        if stem is None:
            unknown.append(name)
            continue
        if stem in seen:
            raise UbenchError(f"{path} lists {name!r} twice", f"list each image once in {path.name}")
        seen.add(stem)
        stems.append(stem)
    if unknown:
        listed = ", ".join(repr(u) for u in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise UbenchError(
            f"{path} names {len(unknown)} image(s) not in images/: {listed}",
            "each line must be an image stem or file name from images/; fix or remove those lines",
        )
    return stems


def read_split_names(root: Path, items: list[RawItem]) -> dict[str, list[str]] | None:
    """U-Bench's train.txt/val.txt as id lists ({"train", "test"}), or None when neither exists.

    A UbenchError when only one exists, or they name an unknown image, one twice, one in both, no
    image at all, or leave an image of ``items`` out (it would go unused).
    """
    present = [n for n in SPLIT_FILES if (root / n).is_file()]
    if not present:
        return None
    if len(present) == 1:
        missing = next(n for n in SPLIT_FILES if n not in present)
        raise UbenchError(
            f"{root} has {present[0]} but no {missing}",
            "provide both train.txt and val.txt (U-Bench's split), or neither for a seeded split",
        )
    file_names = {it.id: it.image.name for it in items}
    out = {
        key: _resolve_names(_read_split_file(root / fname), root / fname, file_names)
        for key, fname in (("train", "train.txt"), ("test", "val.txt"))
    }
    both = sorted(set(out["train"]) & set(out["test"]))
    if both:
        raise UbenchError(
            f"{len(both)} image(s) are in both train.txt and val.txt of {root}: {', '.join(both[:5])}",
            "an image may be in one split only; remove it from one of the files",
        )
    for key, fname in (("train", "train.txt"), ("test", "val.txt")):
        if not out[key]:
            raise UbenchError(f"{root / fname} lists no images", "list at least one image")
    unlisted = sorted(set(file_names) - set(out["train"]) - set(out["test"]))
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (" …" if len(unlisted) > 5 else "")
        raise UbenchError(
            f"{len(unlisted)} of {len(file_names)} image(s) in images/ are in neither train.txt nor "
            f"val.txt of {root}, so they would be silently unused: {shown}",
            "add each of them to train.txt or val.txt; if they must not be used, move them and their "
            "masks out of the folder (or delete both split files for a seeded split of every image)",
        )
    return out


class UBenchLayout(PairedFolders):
    """PairedFolders over images/ + masks/0/, with U-Bench's split files."""

    def scan(self, root: Path):
        result = super().scan(root)
        if not result.problems:
            try:
                result.official_split = read_split_names(Path(root), result.items)
            except UbenchError as exc:  # reported like any bad file, so `datasets check` lists it
                result.problems.append(Problem("train.txt/val.txt", exc.what, exc.fix))
            result.split_files = tuple(Path(root) / n for n in SPLIT_FILES if (Path(root) / n).is_file())
        return result


UBENCH_LAYOUT = UBenchLayout(
    "ubench",
    LAYOUT_HINT + "; optional train.txt/val.txt (U-Bench's split)",
    images=("images/*",),
    mask_glob=("masks/0/*",),
    mask_for=lambda rel: f"masks/0/{glob.escape(PurePosixPath(rel).stem)}.*",
    policy="binary",
)

CONVERTERS = [UBENCH_LAYOUT]
