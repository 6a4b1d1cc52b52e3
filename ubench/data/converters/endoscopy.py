"""Endoscopy converters: Kvasir-SEG, CVC-ClinicDB, CVC-300 (PraNet's TestDataset) and RoboTool.

All are image/mask pairs found by name. Why ``FirstLayout``: CVC-ClinicDB circulates as the owners'
TIF folders, as a PNG copy, and (Kaggle) as both side by side; RoboTool's layout could not be
confirmed (see its record). The first layout whose marker folder exists is read, so one ``--format``
accepts each release and a folder holding two copies is not converted twice.

Kvasir-SEG's masks are JPEG, and the CVC masks as circulated (PraNet's TestDataset, the PNG copy of
CVC-ClinicDB) carry values besides 0 and 255 near the edges, so those are thresholded at 128.
"""

from __future__ import annotations

import glob
from pathlib import Path, PurePosixPath

from ubench.data.converters.base import Converter, Problem, RawItem, Sample, ScanResult
from ubench.data.converters.paired import PairedFolders
from ubench.errors import UbenchError


def _in_masks(suffix: str):
    """``mask_for``: masks/<the image's stem><suffix> (``suffix`` is a glob)."""
    return lambda rel: f"masks/{glob.escape(rel.stem)}{suffix}"


class FirstLayout(Converter):
    """One format, several releases: reads the first candidate whose marker folder exists."""

    def __init__(self, name: str, layout: str, candidates: tuple[tuple[str, Converter], ...]):
        self.name, self.layout, self.candidates = name, layout, candidates

    def _pick(self, root: Path) -> Converter | None:
        return next((conv for marker, conv in self.candidates if (Path(root) / marker).is_dir()), None)

    def scan(self, root: Path) -> ScanResult:
        conv = self._pick(root)
        if conv is None:
            looked = ", ".join(f"{marker}/" for marker, _ in self.candidates)
            return ScanResult([], [Problem("", f"none of {looked} found; expected {self.layout}")])
        return conv.scan(root)

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        conv = self._pick(root)
        if conv is None:
            raise UbenchError(f"{root} no longer holds {self.name} data", f"expected {self.layout}")
        return conv.load(root, item)


# ---------------------------------------------------------------------------------------- Kvasir
# datasets.simula.no/kvasir-seg: Kvasir-SEG/images/<id>.jpg, masks/<id>.jpg (JPEG, so thresholded)
# and kavsir_bboxes.json (bounding boxes, not needed).
KVASIR = PairedFolders(
    "kvasir",
    "Kvasir-SEG/: images/<id>.jpg with masks/<id>.jpg (JPEG masks, thresholded at 128); "
    "kavsir_bboxes.json is ignored",
    images=("images/*.jpg",),
    mask_glob=("masks/*.jpg",),
    mask_for=_in_masks(".jpg"),
    policy="threshold",
)

# ---------------------------------------------------------------------------------- CVC-ClinicDB
# polyp.grand-challenge.org/CVCClinicDB: Original/<n>.tif (612 RGB frames) with 'Ground Truth'/<n>.tif;
# the widely mirrored copy (Kaggle) holds TIF/ and PNG/ folders of the same pairs. TIF is preferred.
CVC_CLINICDB_LAYOUT = (
    "Original/<n>.tif with 'Ground Truth'/<n>.tif, or a copy holding both folders under TIF/ (.tif) "
    "and/or PNG/ (.png; TIF/ is read when both exist); masks thresholded at 128"
)


def _cvc_clinicdb(prefix: str) -> PairedFolders:
    return PairedFolders(
        "cvc_clinicdb",
        CVC_CLINICDB_LAYOUT,
        images=(f"{prefix}Original/*",),
        mask_glob=(f"{prefix}Ground Truth/*",),
        mask_for=lambda rel: str(PurePosixPath(rel.parent.parent, "Ground Truth", f"{glob.escape(rel.stem)}.*")),
        policy="threshold",
    )


CVC_CLINICDB = FirstLayout(
    "cvc_clinicdb",
    CVC_CLINICDB_LAYOUT,
    tuple((f"{p}Original", _cvc_clinicdb(p)) for p in ("", "TIF/", "PNG/")),
)

# ------------------------------------------------------------------------------------------ CVC-300
# The 60-image CVC-300 test set as distributed in PraNet's TestDataset (github.com/DengPingFan/PraNet):
# TestDataset/CVC-300/images/<n>.png with masks/<n>.png (not strictly 0/255, so thresholded).
CVC300 = PairedFolders(
    "cvc300",
    "CVC-300/ (PraNet's TestDataset): images/<n>.png with masks/<n>.png (thresholded at 128)",
    images=("images/*.png",),
    mask_glob=("masks/*.png",),
    mask_for=_in_masks(".png"),
    policy="threshold",
)

# ----------------------------------------------------------------------------------------- RoboTool
# Garcia-Peraza-Herrera et al. 2021, synapse.org/#!Synapse:syn22427422: 514 frames of 20 surgical
# videos with binary tool masks. The Synapse file layout could not be read from here. Two layouts are
# accepted: images/ + masks/ pairs by stem (any image extension), or, without an images/ folder, the
# authors' own naming in their compositing code (github.com/luiscarlosgph/semi-synthetic:
# '<name>.jpg' with '<name>_seg.png', masks 0/255) at any depth. Masks must be binary.
ROBOTOOL_LAYOUT = (
    "images/<name>.<ext> with masks/<name>.<ext> (binary masks), or without images/: "
    "'<name>.jpg' (or .png) with '<name>_seg.png' beside it, at any depth"
)
ROBOTOOL_FOLDERS = PairedFolders(
    "robotool",
    ROBOTOOL_LAYOUT,
    images=("images/*",),
    mask_glob=("masks/*",),
    mask_for=_in_masks(".*"),
    policy="binary",
)
ROBOTOOL_SUFFIX = PairedFolders(
    "robotool",
    ROBOTOOL_LAYOUT,
    images=("**/*.jpg", "**/*.png"),
    mask_glob=("**/*_seg.png",),
    mask_for=lambda rel: str(PurePosixPath(rel.parent, f"{glob.escape(rel.stem)}_seg.png")),
    policy="binary",
    id_for=lambda rel: str(rel.with_suffix("")),
)
ROBOTOOL = FirstLayout("robotool", ROBOTOOL_LAYOUT, (("images", ROBOTOOL_FOLDERS), (".", ROBOTOOL_SUFFIX)))

CONVERTERS = [KVASIR, CVC_CLINICDB, CVC300, ROBOTOOL]
