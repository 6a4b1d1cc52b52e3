"""Converters for chest X-ray lung segmentation: COVID-QU-Ex, Montgomery and NIH (XLSor).

All three ship lossless binary lung masks (0/255 PNG), so policy ``binary`` refuses anything
else. Montgomery splits each lung into its own file; the two are unioned. Wrapping folders the
archives unpack into (``Lung Segmentation Data/Lung Segmentation Data/``, ``MontgomerySet/``,
``NIH/``) may be kept.
"""

from __future__ import annotations

import glob
from pathlib import Path, PurePosixPath

from ubench.data.converters.base import RawItem, relative
from ubench.data.converters.paired import PairedFolders


def _under(prefixes: tuple[str, ...], *patterns: str) -> tuple[str, ...]:
    """Every pattern under every optional wrapping folder ('' = the root itself)."""
    return tuple(f"{p}{pat}" for p in prefixes for pat in patterns)


# ---------------------------------------------------------------------------------- COVID-QU-Ex
_COVID_PREFIXES = ("", "Lung Segmentation Data/", "Lung Segmentation Data/Lung Segmentation Data/")
_COVID_SPLITS = ("Train", "Val", "Test")


def _covid_split(root: Path, items: list[RawItem]) -> dict[str, list[str]] | None:
    """The owners' split: Train + Val train (a validation set is carved later), Test tests."""
    is_test = {it.id: "Test" in PurePosixPath(relative(it.image, root)).parts for it in items}
    test = [i for i, t in is_test.items() if t]
    train = [i for i, t in is_test.items() if not t]
    return {"train": train, "test": test} if train and test else None


COVID_QU_EX = PairedFolders(
    "covid_qu_ex",
    "COVID-QU-Ex 'Lung Segmentation Data': <Train|Val|Test>/<COVID-19|Non-COVID|Normal>/images/"
    "<name>.png + .../lung masks/<name>.png, optionally inside 'Lung Segmentation Data/' (once "
    "or twice, as Kaggle unpacks it); ids are <class>/<name>; Test is the official test split, "
    "Train + Val the training split; 'Infection Segmentation Data' is not read",
    images=_under(_COVID_PREFIXES, *(f"{s}/*/images/*.png" for s in _COVID_SPLITS)),
    mask_glob=_under(_COVID_PREFIXES, *(f"{s}/*/lung masks/*.png" for s in _COVID_SPLITS)),
    mask_for=lambda rel: f"{glob.escape(str(rel.parent.parent))}/lung masks/{glob.escape(rel.name)}",
    policy="binary",
    id_for=lambda rel: f"{rel.parent.parent.name}/{rel.stem}",
    official_split=_covid_split,
)

# ----------------------------------------------------------------------------------- Montgomery
_MC_PREFIXES = ("", "MontgomerySet/")

MONTGOMERY = PairedFolders(
    "montgomery",
    "MontgomerySet/CXR_png/MCUCXR_XXXX_Y.png + ManualMask/leftMask/ and ManualMask/rightMask/ "
    "with the same file name (both lungs, unioned); the folder may be MontgomerySet itself; "
    "ClinicalReadings/ is ignored",
    images=_under(_MC_PREFIXES, "CXR_png/*.png"),
    mask_glob=_under(_MC_PREFIXES, "ManualMask/leftMask/*.png", "ManualMask/rightMask/*.png"),
    mask_for=lambda rel: f"{glob.escape(str(rel.parent.parent))}/ManualMask/*Mask/{glob.escape(rel.name)}",
    mask_ok=lambda rel, mask: mask.parent.name in ("leftMask", "rightMask"),
    policy="binary",
    min_masks=2,
    max_masks=2,
)

# ------------------------------------------------------------------------------------------ NIH
# The "NIH-test" set of U-Bench's zero-shot pair Montgomery -> NIH: NIH ChestX-ray14 images with
# manual lung masks, released with XLSor (Tang et al., MIDL 2019, github.com/rsummers11/CADLab,
# Lung_Segmentation_XLSor). U-Bench's loader reads images/<name>.png + masks/<name>_mask.png.
NIH_LUNG = PairedFolders(
    "nih_lung",
    "XLSor's annotated NIH set: images/<name>.png + masks/<name>_mask.png, optionally inside NIH/",
    images=_under(("", "NIH/"), "images/*.png"),
    mask_glob=_under(("", "NIH/"), "masks/*_mask.png"),
    mask_for=lambda rel: f"{glob.escape(str(rel.parent.parent))}/masks/{glob.escape(rel.stem)}_mask.png",
    policy="binary",
)

CONVERTERS = [COVID_QU_EX, MONTGOMERY, NIH_LUNG]
