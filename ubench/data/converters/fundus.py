"""Converters for the retinal-vessel sets (DRIVE, CHASE_DB1, STARE) and DCA1's angiograms.

Each follows its owners' download as unpacked (a wrapping folder such as ``DRIVE/`` or
``CHASEDB1/`` may be kept). Vessel masks are drawn binary by the owners (GIF/PNG/PPM/PGM with
0 and 255), so policy ``binary`` refuses anything else instead of guessing a threshold. DCA1
sits here because it is a vessel task, although the catalog files it under x-ray.
"""

from __future__ import annotations

import glob
import re
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ubench.data.converters.base import Converter, RawItem, Sample, ScanResult, relative
from ubench.data.converters.paired import PairedFolders


def _under(prefixes: tuple[str, ...], *patterns: str) -> tuple[str, ...]:
    """Every pattern under every optional wrapping folder ('' = the root itself)."""
    return tuple(f"{p}{pat}" for p in prefixes for pat in patterns)


def _sibling(rel: PurePosixPath, folder: str, name: str) -> str:
    """``<rel's grandparent>/<folder>/<name>`` as a glob (names escaped)."""
    return f"{glob.escape(str(rel.parent.parent))}/{folder}/{glob.escape(name)}"


# ---------------------------------------------------------------------------------------- DRIVE
_DRIVE_PREFIXES = ("", "DRIVE/")
_DRIVE_TRAIN = _under(_DRIVE_PREFIXES, "training/images/*_training.tif")
_DRIVE_TEST = _under(_DRIVE_PREFIXES, "test/images/*_test.tif")
DRIVE_LAYOUT = (
    "training/images/21_training.tif + training/1st_manual/21_manual1.gif + FOV "
    "training/mask/21_training_mask.gif, and the same under test/ (01_test.tif, 01_manual1.gif, "
    "01_test_mask.gif); optionally inside DRIVE/. test/ is used only when test/1st_manual/ is "
    "present (some releases lack the test manuals; then only training/ is converted and the "
    "split is seeded). 2nd_manual/ is ignored; the FOV mask is hashed but not applied"
)


def _drive_number(rel: PurePosixPath) -> str:
    return rel.stem.split("_")[0]


def _drive_split(root: Path, items: list[RawItem]) -> dict[str, list[str]] | None:
    """The owners' split: training/ vs test/ (None when test/ is not converted)."""
    parts = {it.id: PurePosixPath(relative(it.image, root)).parts for it in items}
    train = [i for i, p in parts.items() if "training" in p]
    test = [i for i, p in parts.items() if "test" in p]
    return {"train": train, "test": test} if train and test else None


def _drive_pairs(images: tuple[str, ...]) -> PairedFolders:
    """DRIVE's pairing over the given image globs (training only, or training + test).

    The FOV mask is recorded as ``extra`` (so it is hashed and must exist) but not applied:
    U-Bench's DRIVE loader trains and scores on the whole image, and outside the FOV the
    image is black and the manual has no vessel, so masking would change nothing there.
    """
    return PairedFolders(
        "drive",
        DRIVE_LAYOUT,
        images=images,
        mask_glob=_under(_DRIVE_PREFIXES, "training/1st_manual/*.gif", "test/1st_manual/*.gif"),
        mask_for=lambda rel: _sibling(rel, "1st_manual", f"{_drive_number(rel)}_manual1.gif"),
        policy="binary",
        extra_for=lambda rel: f"{rel.parent.parent}/mask/{rel.stem}_mask.gif",
        official_split=_drive_split,
    )


class Drive(Converter):
    """DRIVE: training/ + test/, with test/ skipped when its manuals are not in the release."""

    name = "drive"
    layout = DRIVE_LAYOUT

    def __init__(self) -> None:
        self._all = _drive_pairs(_DRIVE_TRAIN + _DRIVE_TEST)
        self._training_only = _drive_pairs(_DRIVE_TRAIN)

    @staticmethod
    def has_test_manuals(root: Path) -> bool:
        """True when the release ships test/1st_manual/ (the grand-challenge download does not)."""
        return any(p.is_file() for pat in _under(_DRIVE_PREFIXES, "test/1st_manual/*.gif") for p in root.glob(pat))

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        pairs = self._all if self.has_test_manuals(root) else self._training_only
        return pairs.scan(root)

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        return self._all.load(root, item)


# ------------------------------------------------------------------------------------ CHASE_DB1
_CHASE_CHILD = re.compile(r"^Image_(\d+)[LR]$")


class ChaseDB1(PairedFolders):
    """CHASE_DB1: both eyes of one child (Image_01L, Image_01R) form one group ('01')."""

    def scan(self, root: Path) -> ScanResult:
        result = super().scan(root)
        result.items = [replace(it, group=_chase_child(it.id)) for it in result.items]
        return result


def _chase_child(item_id: str) -> str:
    m = _CHASE_CHILD.match(item_id)
    return m.group(1) if m else item_id


CHASE_DB1 = ChaseDB1(
    "chase_db1",
    "Image_01L.jpg + Image_01L_1stHO.png (first observer) in one folder, optionally inside "
    "CHASEDB1/; Image_XXL/R of one child form one group; _2ndHO.png masks are ignored",
    images=_under(("", "CHASEDB1/"), "Image_*.jpg"),
    mask_glob=_under(("", "CHASEDB1/"), "Image_*_1stHO.png"),
    mask_for=lambda rel: f"{glob.escape(str(rel.with_suffix('')))}_1stHO.png",
    policy="binary",
)

# ---------------------------------------------------------------------------------------- STARE
_STARE_IMAGE = "im[0-9][0-9][0-9][0-9]"


def _stare_id(rel: PurePosixPath) -> str:
    return rel.name.split(".")[0]


STARE = PairedFolders(
    "stare",
    "im0001.ppm (or im0001.ppm.gz, as in stare-images.tar) + Hoover's label im0001.ah.ppm(.gz) "
    "(labels-ah.tar) anywhere under the folder (e.g. stare-images/ and labels-ah/); "
    "Kouznetsova's .vk.ppm labels are ignored",
    images=(f"**/{_STARE_IMAGE}.ppm", f"**/{_STARE_IMAGE}.ppm.gz"),
    mask_glob=(f"**/{_STARE_IMAGE}.ah.ppm", f"**/{_STARE_IMAGE}.ah.ppm.gz"),
    mask_for=lambda rel: f"**/{glob.escape(_stare_id(rel))}.ah.ppm*",
    mask_ok=lambda rel, mask: mask.name in (f"{_stare_id(rel)}.ah.ppm", f"{_stare_id(rel)}.ah.ppm.gz"),
    policy="binary",
    id_for=_stare_id,
)

# ----------------------------------------------------------------------------------------- DCA1
DCA1 = PairedFolders(
    "dca1",
    "Database_134_Angiograms: 1.pgm … 134.pgm + 1_gt.pgm … (binary ground truth) in one folder, "
    "optionally inside Database_134_Angiograms/; ids are zero-padded (001 … 134)",
    images=_under(("", "Database_134_Angiograms/"), "*.pgm"),
    mask_glob=_under(("", "Database_134_Angiograms/"), "*_gt.pgm"),
    mask_for=lambda rel: f"{glob.escape(str(rel.with_suffix('')))}_gt.pgm",
    policy="binary",
    id_for=lambda rel: f"{int(rel.stem):03d}" if rel.stem.isdigit() else rel.stem,
)

CONVERTERS = [Drive(), CHASE_DB1, STARE, DCA1]
