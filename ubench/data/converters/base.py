"""The converter interface: a raw dataset, laid out as its owners distribute it → samples.

Why split ``scan`` from ``load``: ``ubench datasets check`` must report *every* bad file (unmatched,
unreadable, wrong size, non-binary) without stopping at the first, while ``prepare`` must refuse to
write anything when there is one. So a converter only (1) lists the units of a raw folder with the
problems it sees in names and pairing (``scan``) and (2) decodes one unit (``load``, raising a
UbenchError for a bad file); ``check_folder`` and ``convert_folder`` below build both behaviours
from those two, the same way for every format.

A unit (``RawItem``) is one 2D image with its mask file(s), or one 3D volume; ``load`` returns its
``Sample`` s (one per 2D image, one per slice of a volume). ``group`` is the unit of splitting:
the patient or case for volumes (slices of one patient never straddle train and test), the item
itself for 2D datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ubench.errors import UbenchError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a raw folder: which file (relative path, '' = the folder), why, and
    (when known) how to fix it: the ``fix`` of the UbenchError it came from."""

    path: str
    message: str
    fix: str = ""

    def line(self) -> str:
        if self.path and self.path in self.message:
            return self.message
        return f"{self.path or '.'}: {self.message}"


@dataclass(frozen=True)
class RawItem:
    """One unit of raw data: the image (or volume) file and its mask file(s)."""

    id: str
    image: Path
    masks: tuple[Path, ...]
    group: str = ""
    extra: tuple[Path, ...] = ()  # other files read for this item (e.g. DRIVE's FOV mask)

    def files(self) -> tuple[Path, ...]:
        return (self.image, *self.masks, *self.extra)


@dataclass
class Sample:
    """A decoded 2D sample at its original size."""

    id: str
    image: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # uint8 (H, W): 0 background, 1..C-1 foreground classes
    group: str


@dataclass
class ScanResult:
    """What ``scan`` found: the items, problems in names/pairing, and an official split if any."""

    items: list[RawItem]
    problems: list[Problem] = field(default_factory=list)
    # {"train": [group or id, ...], "test": [...]} when the owners ship a split; else None
    official_split: dict[str, list[str]] | None = None
    split_files: tuple[Path, ...] = ()  # files the official split was read from (hashed)


class Converter:
    """Base class: subclasses set the class attributes and implement ``scan`` and ``load``."""

    name: str = ""  # the --format name
    layout: str = ""  # the expected raw layout, in words (shown by `datasets check` on errors)
    num_classes: int = 1  # model outputs: 1 = binary (sigmoid); C > 1 = classes incl. background
    class_names: tuple[str, ...] = ("foreground",)

    def scan(self, root: Path) -> ScanResult:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, root: Path, item: RawItem) -> list[Sample]:  # pragma: no cover - interface
        raise NotImplementedError


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in posix form (for reports and source hashes)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def validate_sample(sample: Sample, item: RawItem, root: Path, num_classes: int) -> None:
    """Shape and value checks every converter's output must pass (a UbenchError otherwise)."""
    img, mask = sample.image, sample.mask
    where = relative(item.image, root)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise UbenchError(f"{where}: decoded to {img.dtype} {img.shape}, not uint8 (H, W, 3)", "report this bug")
    if mask.shape != img.shape[:2]:
        masks = ", ".join(relative(m, root) for m in item.masks)
        raise UbenchError(
            f"{where}: image is {img.shape[1]}x{img.shape[0]} but its mask ({masks}) is "
            f"{mask.shape[1]}x{mask.shape[0]} (width x height)",
            "the mask must have the image's size; re-export it at the image's resolution",
        )
    top = int(mask.max()) if mask.size else 0
    limit = max(1, num_classes - 1)
    if top > limit:
        raise UbenchError(f"{where}: mask has class {top}, expected at most {limit}", "check the mask values")


def decode_item(conv: Converter, root: Path, item: RawItem) -> list[Sample]:
    """The item's samples, decoded and validated (a UbenchError names what is wrong)."""
    samples = conv.load(root, item)
    for s in samples:
        validate_sample(s, item, root, conv.num_classes)
    return samples


def check_folder(conv: Converter, root: Path) -> tuple[ScanResult, list[Problem], int]:
    """Scan and decode everything, collecting problems instead of stopping (``datasets check``).

    Returns (scan result, all problems, number of 2D samples that decoded cleanly).
    """
    root = Path(root)
    if not root.is_dir():
        return ScanResult([]), [Problem("", f"folder {root} does not exist")], 0
    scan = conv.scan(root)
    problems = list(scan.problems)
    good = 0
    for item in scan.items:
        try:
            good += len(decode_item(conv, root, item))
        except UbenchError as exc:
            problems.append(Problem(relative(item.image, root), exc.what, exc.fix))
    if not scan.items and not problems:
        problems.append(Problem("", f"no {conv.name} data found; expected {conv.layout}"))
    return scan, problems, good


def problems_error(conv: Converter, root: Path, problems: list[Problem]) -> UbenchError:
    """One UbenchError listing the first problems (the full list: ``ubench datasets check``).

    Its fix names the problems' own fixes (the first three distinct ones), then the general one.
    """
    shown = "\n  ".join(p.line() for p in problems[:10])
    more = f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else ""
    specific = list(dict.fromkeys(p.fix for p in problems if p.fix))[:3]
    general = (
        f"fix or remove those files (full report: ubench datasets check {root} --format {conv.name}); "
        f"expected layout: {conv.layout}"
    )
    return UbenchError(f"{len(problems)} problem(s) in {root} (format {conv.name}):\n  {shown}{more}",
                       "; ".join([*specific, general]))


def convert_folder(
    conv: Converter, root: Path, transform: Callable[[Sample], Sample] | None = None, progress: bool = False
) -> tuple[ScanResult, list[Sample]]:
    """Every sample of a raw folder, or a UbenchError listing the problems (nothing partial).

    ``transform`` (e.g. resizing) is applied to each validated sample as it is decoded, so a large
    dataset never sits in memory at its original size.
    """
    root = Path(root)
    if not root.is_dir():
        raise UbenchError(
            f"raw data folder {root} does not exist",
            f"put the dataset there as its owners distribute it: {conv.layout}",
        )
    scan = conv.scan(root)
    if scan.problems:
        raise problems_error(conv, root, scan.problems)
    if not scan.items:
        raise UbenchError(f"no {conv.name} data found in {root}", f"expected layout: {conv.layout}")
    samples: list[Sample] = []
    problems: list[Problem] = []
    items = scan.items
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"converting {root.name} ({conv.name})", mininterval=1.0, leave=False)
    for item in items:
        try:
            samples.extend(transform(s) if transform else s for s in decode_item(conv, root, item))
        except UbenchError as exc:
            problems.append(Problem(relative(item.image, root), exc.what, exc.fix))
    if problems:
        raise problems_error(conv, root, problems)
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise UbenchError(f"duplicate sample ids in {root}: {dup}", "report this converter bug")
    return scan, samples
