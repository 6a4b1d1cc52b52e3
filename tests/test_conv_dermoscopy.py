"""Dermoscopy converters (ISIC 2018, PH2, Waterloo skin cancer) on tiny fixtures in each owner's
layout: ids, official split, masks exactly as drawn, and bad files reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_conv_ultrasound import (
    CORRUPTIONS,
    Built,
    assert_converts,
    assert_reports,
    box,
    rgb,
    save,
    smooth,
)
from ubench.data.converters.dermoscopy import ISIC2018, PH2, SKINCANCER

ISIC_IDS = {"Training": ("ISIC_0000000", "ISIC_0000001"), "Validation": ("ISIC_0012255",),
            "Test": ("ISIC_0036309",)}


def build_isic(root: Path, splits=("Training", "Validation", "Test")) -> Built:
    """JPEG inputs, 0/255 PNG ground truth, and the LICENSE/ATTRIBUTION files of every folder."""
    b = Built(root, orphan=root / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_9999999_segmentation.png")
    for split in splits:
        inputs, truth = root / f"ISIC2018_Task1-2_{split}_Input", root / f"ISIC2018_Task1_{split}_GroundTruth"
        for i, item in enumerate(ISIC_IDS[split]):
            b.add(item, inputs / f"{item}.jpg", smooth(i),
                  truth / f"{item}_segmentation.png", box(2, 3 + i, 15, 20))
        for folder in (inputs, truth):
            (folder / "LICENSE.txt").write_text("CC BY-NC 4.0")
            (folder / "ATTRIBUTION.txt").write_text("ISIC")
    return b


def build_ph2(root: Path) -> Built:
    """The archive's nesting, one 1-bit lesion BMP, and an _roi folder that must be ignored."""
    top = root / "PH2Dataset" / "PH2 Dataset images"
    b = Built(root, orphan=top / "IMD999" / "IMD999_lesion" / "IMD999_lesion.bmp")
    for i, name in enumerate(("IMD002", "IMD003")):
        case = top / name
        b.add(name, case / f"{name}_Dermoscopic_Image/{name}.bmp", rgb(i),
              case / f"{name}_lesion/{name}_lesion.bmp", box(4, 4 + i, 16, 18))
        save(case / f"{name}_roi/{name}_R1_Label4.bmp", box(0, 0, 3, 3) * 255)
    save(b.masks["IMD003"], b.truth["IMD003"][1] * 255, mode="1")
    return b


def build_skincancer(root: Path) -> Built:
    """Both archives; 'Pat1' recurs in melanoma and notmelanoma, so ids keep class and source."""
    b = Built(root, orphan=root / "Skin Image Data Set-1/skin_data/melanoma/dermIS/ghost_contour.png")
    for i, (zipped, cls, source, name) in enumerate((
        ("Skin Image Data Set-1", "melanoma", "dermIS", "Pat1"),
        ("Skin Image Data Set-1", "melanoma", "dermquest", "lesion_a"),
        ("Skin Image Data Set-2", "notmelanoma", "dermIS", "Pat1"),
    )):
        folder = root / zipped / "skin_data" / cls / source
        b.add(f"{cls}/{source}/{name}", folder / f"{name}_orig.jpg", smooth(i),
              folder / f"{name}_contour.png", box(3, 2 * i, 17, 20))
    return b


FORMATS = {"isic2018": (ISIC2018, build_isic, False), "ph2": (PH2, build_ph2, True),
           "skincancer": (SKINCANCER, build_skincancer, False)}
ISIC_SPLIT_ALL = {"train": ["ISIC_0000000", "ISIC_0000001", "ISIC_0012255"], "test": ["ISIC_0036309"]}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_formats_convert_exactly(tmp_path, fmt):
    conv, build, lossless = FORMATS[fmt]
    split = ISIC_SPLIT_ALL if fmt == "isic2018" else None
    assert_converts(conv, build(tmp_path), lossless=lossless, split=split)
    assert conv.name == fmt and conv.layout


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_formats_report_bad_files(tmp_path, fmt, how):
    conv, build, _ = FORMATS[fmt]
    assert_reports(conv, build(tmp_path), how)


@pytest.mark.parametrize("splits,expected", [
    (("Training", "Validation"), {"train": ["ISIC_0000000", "ISIC_0000001"], "test": ["ISIC_0012255"]}),
    (("Training",), None),
    (("Validation", "Test"), {"train": ["ISIC_0012255"], "test": ["ISIC_0036309"]}),
])
def test_isic_official_split_from_folders(tmp_path, splits, expected):
    assert_converts(ISIC2018, build_isic(tmp_path, splits), lossless=False, split=expected)


def test_ph2_ignores_roi_masks_and_reads_one_bit_bmp(tmp_path):
    built = build_ph2(tmp_path)
    scan, samples = assert_converts(PH2, built)
    assert all(len(it.masks) == 1 and "_lesion" in it.masks[0].name for it in scan.items)
    assert int(next(s for s in samples if s.id == "IMD003").mask.sum()) == int(built.truth["IMD003"][1].sum())


def test_skincancer_images_decode_close_to_drawn(tmp_path):
    built = build_skincancer(tmp_path)
    _, samples = assert_converts(SKINCANCER, built, lossless=False)
    for s in samples:
        diff = np.abs(s.image.astype(int) - built.truth[s.id][0].astype(int))
        assert diff.mean() < 3  # JPEG at quality 95: lossy, but the drawn picture
