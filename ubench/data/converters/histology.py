"""Converters for histology and nuclei sets: GlaS, MoNuSAC, TNBC, DSB2018 and CellNuclei.

Their masks are instance maps (a value per gland or nucleus: GlaS, TNBC), one binary file per
nucleus (DSB2018) or polygons in XML (MoNuSAC); U-Bench segments them as one foreground class,
so every format here ends in a binary mask: policy ``nonzero`` for instance maps, the union of
the per-nucleus files, or the union of the rasterised polygons. Archives unpacked on macOS may
carry ``__MACOSX/`` copies; those are skipped.
"""

from __future__ import annotations

import glob
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from ubench.data.converters import pixels
from ubench.data.converters.base import RawItem, Sample, ScanResult, relative
from ubench.data.converters.paired import PairedFolders
from ubench.errors import UbenchError

_MACOSX = r"(^|/)__MACOSX/"


class GroupedPairs(PairedFolders):
    """PairedFolders whose items are grouped by ``group_for(item)`` (slide, patient …)."""

    def __init__(self, *args, group_for: Callable[[RawItem], str], **kwargs):
        super().__init__(*args, **kwargs)
        self.group_for = group_for

    def scan(self, root: Path) -> ScanResult:
        result = super().scan(root)
        result.items = [replace(it, group=self.group_for(it)) for it in result.items]
        return result


# ----------------------------------------------------------------------------------------- GlaS
_GLAS_TEST = re.compile(r"^test[AB]_")

GLAS = PairedFolders(
    "glas",
    "Warwick QU release: train_<n>.bmp + train_<n>_anno.bmp (instance labels → binary), "
    "testA_<n>/testB_<n> likewise, in one folder (e.g. 'Warwick QU Dataset (Released "
    "2016_07_08)/'); train_ is the official training split, testA_ + testB_ the test; "
    "Grade.csv is ignored",
    images=("**/train_*.bmp", "**/testA_*.bmp", "**/testB_*.bmp"),
    mask_glob=("**/*_anno.bmp",),
    mask_for=lambda rel: f"{glob.escape(str(rel.with_suffix('')))}_anno.bmp",
    policy="nonzero",
    exclude=_MACOSX,
    official_split=lambda root, items: {
        "train": [it.id for it in items if not _GLAS_TEST.match(it.id)],
        "test": [it.id for it in items if _GLAS_TEST.match(it.id)],
    },
)

# -------------------------------------------------------------------------------------- MoNuSAC
# Aperio ImageScope XML: Annotations/Annotation (one per cell type, named by its first
# Attributes/Attribute@Name), each with Regions/Region/Vertices/Vertex@X,@Y (pixels, floats).
MONUSAC_TYPES = ("epithelial", "lymphocyte", "neutrophil", "macrophage")
MONUSAC_IGNORED = ("ambiguous",)  # areas the organisers exclude from scoring, not nuclei
_MONUSAC_TEST_FOLDER = re.compile(r"testing", re.IGNORECASE)


def _monusac_split(root: Path, items: list[RawItem]) -> dict[str, list[str]] | None:
    """Patients under a '...Testing...' folder test, the rest train; None unless both exist."""
    split: dict[str, set[str]] = {"train": set(), "test": set()}
    for it in items:
        folders = PurePosixPath(relative(it.image, root)).parts[:-1]
        split["test" if any(_MONUSAC_TEST_FOLDER.search(f) for f in folders) else "train"].add(it.group)
    if not split["train"] or not split["test"]:
        return None
    return {k: sorted(v) for k, v in split.items()}


def _monusac_polygons(path: Path) -> list[list[tuple[float, float]]]:
    """The nucleus polygons (all four cell types) of one MoNuSAC XML file."""
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise UbenchError(f"cannot read annotation {path}: {exc}", "re-download the file; it is corrupt") from exc
    polygons = []
    for annotation in tree.getroot().iter("Annotation"):
        attr = annotation.find("Attributes/Attribute")
        kind = (attr.get("Name", "") if attr is not None else "").strip().lower()
        if kind in MONUSAC_IGNORED:
            continue
        if kind not in MONUSAC_TYPES:
            raise UbenchError(
                f"annotation {path} has a region type {kind or '(unnamed)'!r}, not one of MoNuSAC's "
                f"{', '.join(t.capitalize() for t in MONUSAC_TYPES)} (or Ambiguous)",
                "check that the file is a MoNuSAC annotation",
            )
        for region in annotation.iter("Region"):
            points = _vertices(region, path)
            if len(points) >= 3:  # a region of 1-2 vertices encloses no area
                polygons.append(points)
    return polygons


def _vertices(region: ET.Element, path: Path) -> list[tuple[float, float]]:
    try:
        return [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
    except (TypeError, ValueError) as exc:
        raise UbenchError(f"annotation {path} has a vertex without numeric X/Y", "re-download the file") from exc


def rasterize_polygons(polygons: list[list[tuple[float, float]]], height: int, width: int) -> np.ndarray:
    """Union of filled polygons as uint8 {0, 1} (PIL ImageDraw: the outline pixels are included)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for points in polygons:
        draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def _tcga_patient(item: RawItem) -> str:
    """The patient of a MoNuSAC image: its folder's TCGA barcode up to the patient field."""
    folder = item.image.parent.name
    parts = folder.split("-")
    return "-".join(parts[:3]) if folder.startswith("TCGA-") and len(parts) >= 3 else folder


class MoNuSAC(GroupedPairs):
    """MoNuSAC: <slide folder>/<sub-image>.tif + .xml polygons, rasterised to one nuclei mask."""

    def scan(self, root: Path) -> ScanResult:
        result = super().scan(root)
        result.official_split = _monusac_split(Path(root), result.items)
        return result

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        image = pixels.read_image(item.image)
        mask = rasterize_polygons(_monusac_polygons(item.masks[0]), *image.shape[:2])
        return [Sample(item.id, image, mask, item.group)]


MONUSAC = MoNuSAC(
    "monusac",
    "MoNuSAC release: <TCGA slide folder>/<sub-image>.tif + <sub-image>.xml (ImageScope polygons "
    "of Epithelial/Lymphocyte/Neutrophil/Macrophage nuclei, unioned to one binary mask; "
    "Ambiguous areas are not foreground; .svs files are ignored); grouped by TCGA patient. "
    "Put MoNuSAC_images_and_annotations/ and 'MoNuSAC Testing Data and Annotations/' side by "
    "side for the official train/test split (one of them alone: a seeded split)",
    images=("**/*.tif",),
    mask_glob=("**/*.xml",),
    mask_for=lambda rel: f"{glob.escape(str(rel.with_suffix('')))}.xml",
    policy="nonzero",  # unused: load rasterises the XML
    exclude=_MACOSX,
    group_for=_tcga_patient,
)

# ----------------------------------------------------------------------------------------- TNBC


def _tnbc_mask(rel: PurePosixPath) -> str:
    """Slide_<nn>/<name> → GT_<nn>/<name> (a glob, names escaped)."""
    slide = rel.parent.name.removeprefix("Slide_")
    return f"{glob.escape(str(rel.parent.parent))}/{glob.escape('GT_' + slide)}/{glob.escape(rel.name)}"


TNBC = GroupedPairs(
    "tnbc",
    "TNBC_NucleiSegmentation release: Slide_<nn>/<nn>_<k>.png + GT_<nn>/<nn>_<k>.png (nuclei, any "
    "nonzero value is foreground), at any depth; grouped by slide (one patient each)",
    images=("**/Slide_*/*.png",),
    mask_glob=("**/GT_*/*.png",),
    mask_for=_tnbc_mask,
    policy="nonzero",
    exclude=_MACOSX,
    group_for=lambda it: it.image.parent.name.removeprefix("Slide_"),
)

# ---------------------------------------------------------------------------- DSB2018 / CellNuclei


def _dsb_layout(name: str, note: str) -> PairedFolders:
    """The Data Science Bowl 2018 stage-1 training layout (one folder per image)."""
    return PairedFolders(
        name,
        "stage1_train/<id>/images/<id>.png (RGBA; alpha dropped) + stage1_train/<id>/masks/*.png "
        "(one binary PNG per nucleus, unioned); the folder may also be stage1_train itself" + note,
        images=("stage1_train/*/images/*.png", "*/images/*.png"),
        mask_glob=("stage1_train/*/masks/*.png", "*/masks/*.png"),
        mask_for=lambda rel: f"{glob.escape(str(rel.parent.parent))}/masks/*.png",
        policy="binary",
        max_masks=None,
    )


DSB2018 = _dsb_layout("dsb2018", "")
# U-Bench's "cellnuclei" is MedSegBench's CellNuclei: the 670 DSB2018 stage-1 training images
# (469/67/134 split, reference BBBC038 / Kaggle DSB2018), so the raw download is the same.
CELLNUCLEI = _dsb_layout("cellnuclei", " (CellNuclei = the 670 DSB2018 stage-1 training images)")

CONVERTERS = [GLAS, MONUSAC, TNBC, DSB2018, CELLNUCLEI]
