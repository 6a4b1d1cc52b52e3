"""Dermoscopy converters: ISIC 2018 Task 1, PH2 and the Waterloo skin-cancer (DermIS/DermQuest) set.

All three are image/mask pairs found by name (``PairedFolders`` records). ISIC ships its own
train/validation/test folders, which become the official split; PH2 and the Waterloo set have none.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path, PurePosixPath

from ubench.data.converters.base import RawItem
from ubench.data.converters.paired import PairedFolders

# ------------------------------------------------------------------------------- ISIC 2018 Task 1
# challenge.isic-archive.com/data/#2018: ISIC2018_Task1-2_{Training,Validation,Test}_Input/
# ISIC_<7 digits>.jpg and ISIC2018_Task1_{…}_GroundTruth/ISIC_<7 digits>_segmentation.png (0/255);
# each folder also holds LICENSE.txt and ATTRIBUTION.txt, which the globs below never match.
ISIC_SPLITS = ("Training", "Validation", "Test")
ISIC_INPUT = re.compile(r"^ISIC2018_Task1-2_(Training|Validation|Test)_Input$")


def _isic_split(image_folder: str) -> str:
    match = ISIC_INPUT.match(image_folder)
    return match.group(1) if match else ""


def _isic_mask(rel: PurePosixPath) -> str:
    split = _isic_split(rel.parent.name)
    return f"ISIC2018_Task1_{split}_GroundTruth/{glob.escape(rel.stem)}_segmentation.png"


def isic_official_split(root: Path, items: list[RawItem]) -> dict[str, list[str]] | None:
    """The challenge's split: test = the Test folder (else Validation), train = the rest.

    With Test present, Validation joins training (prepare carves its own validation subset from
    the training groups); with Training alone there is no official split.
    """
    by_split: dict[str, list[str]] = {s: [] for s in ISIC_SPLITS}
    for item in items:
        by_split[_isic_split(item.image.parent.name)].append(item.group)
    test_name = "Test" if by_split["Test"] else "Validation"
    train = sorted(g for s in ISIC_SPLITS if s != test_name for g in by_split[s])
    test = sorted(by_split[test_name])
    return {"train": train, "test": test} if train and test else None


ISIC2018 = PairedFolders(
    "isic2018",
    "ISIC2018_Task1-2_Training_Input/ISIC_<id>.jpg with ISIC2018_Task1_Training_GroundTruth/"
    "ISIC_<id>_segmentation.png (0/255); the Validation and Test folder pairs, when present, "
    "give the official split (test = Test, else Validation)",
    images=tuple(f"ISIC2018_Task1-2_{s}_Input/*.jpg" for s in ISIC_SPLITS),
    mask_glob=tuple(f"ISIC2018_Task1_{s}_GroundTruth/*.png" for s in ISIC_SPLITS),
    mask_for=_isic_mask,
    policy="binary",
    official_split=isic_official_split,
)

# -------------------------------------------------------------------------------------------- PH2
# fc.up.pt/addi/ph2 database: PH2Dataset/PH2 Dataset images/IMD<nnn>/IMD<nnn>_Dermoscopic_Image/
# IMD<nnn>.bmp with IMD<nnn>_lesion/IMD<nnn>_lesion.bmp (binary BMP); the IMD<nnn>_roi/ colour-region
# masks are not the lesion task and are ignored. Matched at any depth, so the archive's top folder
# ('PH2Dataset' or Kaggle's 'PH2_Dataset_images') may be kept.


def _ph2_lesion(rel: PurePosixPath) -> str:
    """IMD002/IMD002_Dermoscopic_Image/IMD002.bmp → IMD002/IMD002_lesion/IMD002_lesion.bmp."""
    lesion = f"{glob.escape(rel.stem)}_lesion"
    return str(PurePosixPath(rel.parent.parent, lesion, f"{lesion}.bmp"))


PH2 = PairedFolders(
    "ph2",
    "PH2 Dataset images/IMD<nnn>/IMD<nnn>_Dermoscopic_Image/IMD<nnn>.bmp with "
    "IMD<nnn>_lesion/IMD<nnn>_lesion.bmp (at any depth; IMD<nnn>_roi/ is ignored)",
    images=("**/IMD*_Dermoscopic_Image/IMD*.bmp",),
    mask_glob=("**/IMD*_lesion/IMD*_lesion.bmp",),
    mask_for=_ph2_lesion,
    policy="binary",
)

# ------------------------------------------------------------------------------------- SkinCancer
# uwaterloo.ca/vision-image-processing-lab/research-demos/skin-cancer-detection: skin_image_data_set-1.zip
# ('Skin Image Data Set-1/skin_data/melanoma/<source>/') and -2.zip ('…-2/skin_data/notmelanoma/
# <source>/'), source = dermIS or dermquest, each holding '<name>_orig.jpg' photographs with
# '<name>_contour.png' lesion masks (names as read by torch-em's uwaterloo_skin loader). A name may
# recur across classes or sources, so the id keeps both: 'melanoma/dermIS/<name>'.
ORIG, CONTOUR = "_orig", "_contour"


def _skin_name(rel: PurePosixPath) -> str:
    return rel.stem.removesuffix(ORIG)


def _skin_id(rel: PurePosixPath) -> str:
    return "/".join((*rel.parent.parts[-2:], _skin_name(rel)))


SKINCANCER = PairedFolders(
    "skincancer",
    "Skin Image Data Set-1/skin_data/melanoma/<source>/<name>_orig.jpg with <name>_contour.png "
    "(and Set-2 …/notmelanoma/…; source dermIS or dermquest; matched at any depth)",
    images=(f"**/*{ORIG}.jpg",),
    mask_glob=(f"**/*{CONTOUR}.png",),
    mask_for=lambda rel: str(PurePosixPath(rel.parent, f"{glob.escape(_skin_name(rel))}{CONTOUR}.png")),
    policy="binary",
    id_for=_skin_id,
)

CONVERTERS = [ISIC2018, PH2, SKINCANCER]
