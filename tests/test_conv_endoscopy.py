"""Endoscopy converters (Kvasir-SEG, CVC-ClinicDB, CVC-300, RoboTool) on tiny fixtures in each
owner's layout: JPEG and near-binary masks thresholded back to the drawn shapes, each release
layout read once, and bad files reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
from ubench.data.converters.base import check_folder, convert_folder
from ubench.data.converters.endoscopy import CVC300, CVC_CLINICDB, KVASIR, ROBOTOOL
from ubench.errors import UbenchError

JH, JW = 32, 48  # JPEG fixtures: large flat shapes, so JPEG ringing at their edges stays far from 128


def noisy(path: Path) -> None:
    """Re-save a 0/255 mask with values like PraNet's masks (3, 6 for background, 249 for polyp)."""
    mask = np.asarray(Image.open(path)).copy()
    mask[mask == 255] = 249
    mask[0, :3] = (3, 6, 3)
    save(path, mask)


def build_kvasir(root: Path) -> Built:
    """JPEG images and JPEG masks (one grey, one RGB), plus the ignored bounding-box json."""
    b = Built(root, orphan=root / "masks" / "ghost.jpg")
    for i, name in enumerate(("cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4")):
        b.add(name, root / f"images/{name}.jpg", smooth(i, JH, JW), root / f"masks/{name}.jpg",
              box(5, 7 + 4 * i, 27, 41, JH, JW))
    save(b.masks[name], np.repeat(b.truth[name][1][..., None] * 255, 3, axis=2))
    (root / "kavsir_bboxes.json").write_text("{}")
    return b


def build_cvc_clinicdb(root: Path, release: str = "") -> Built:
    """Original/ + 'Ground Truth'/ under ``release`` ('' or 'TIF/' as .tif, 'PNG/' as .png)."""
    ext = "png" if release == "PNG/" else "tif"
    b = Built(root, orphan=root / f"{release}Ground Truth" / f"99.{ext}")
    for n in (1, 2, 12):
        b.add(str(n), root / f"{release}Original/{n}.{ext}", rgb(n), root / f"{release}Ground Truth/{n}.{ext}",
              box(n % 5, 2, 15, 20))
        noisy(b.masks[str(n)])
    return b


def build_cvc300(root: Path) -> Built:
    b = Built(root, orphan=root / "masks" / "999.png")
    for n in (149, 150):
        b.add(str(n), root / f"images/{n}.png", rgb(n), root / f"masks/{n}.png", box(3, n - 145, 17, 21))
        noisy(b.masks[str(n)])
    return b


def build_robotool(root: Path, layout: str = "folders") -> Built:
    """images/ + masks/ by stem, or '<name>.jpg' + '<name>_seg.png' in per-video folders."""
    b = Built(root, orphan=root / ("masks/ghost.png" if layout == "folders" else "video01/ghost_seg.png"))
    for i, (folder, name, ext) in enumerate((("video01", "frame_001", "png"), ("video02", "frame_001", "jpg"))):
        image = smooth(i, JH, JW)
        mask = box(8, 8 * i, 24, 32, JH, JW)
        if layout == "folders":
            b.add(f"{folder}_{name}", root / f"images/{folder}_{name}.{ext}", image,
                  root / f"masks/{folder}_{name}.png", mask)
        else:
            b.add(f"{folder}/{name}", root / f"{folder}/{name}.{ext}", image,
                  root / f"{folder}/{name}_seg.png", mask)
    return b


FORMATS = {"kvasir": (KVASIR, build_kvasir, False), "cvc_clinicdb": (CVC_CLINICDB, build_cvc_clinicdb, True),
           "cvc300": (CVC300, build_cvc300, True), "robotool": (ROBOTOOL, build_robotool, False)}
THRESHOLDED = {"kvasir", "cvc_clinicdb", "cvc300"}  # a non-binary mask is their normal case


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_formats_convert_exactly(tmp_path, fmt):
    conv, build, lossless = FORMATS[fmt]
    assert_converts(conv, build(tmp_path), lossless=lossless)
    assert conv.name == fmt and conv.layout


@pytest.mark.parametrize("fmt,how", [
    (fmt, how) for fmt in sorted(FORMATS) for how in CORRUPTIONS
    if not (how == "non-binary mask" and fmt in THRESHOLDED)
])
def test_formats_report_bad_files(tmp_path, fmt, how):
    conv, build, _ = FORMATS[fmt]
    assert_reports(conv, build(tmp_path), how)


def test_kvasir_jpeg_masks_are_noisy_but_threshold_exactly(tmp_path):
    built = build_kvasir(tmp_path)
    for path in built.masks.values():
        assert len(np.unique(np.asarray(Image.open(path)))) > 2  # JPEG ringing: not a clean 0/255 file
    assert_converts(KVASIR, built, lossless=False)


@pytest.mark.parametrize("release", ["PNG/", "TIF/"])
def test_cvc_clinicdb_releases(tmp_path, release):
    """The PNG copy alone, or the Kaggle archive with TIF/ and PNG/ side by side (TIF/ is read)."""
    built = build_cvc_clinicdb(tmp_path, release)
    if release == "TIF/":
        other = build_cvc_clinicdb(tmp_path / "unused", "PNG/")
        (tmp_path / "unused" / "PNG").rename(tmp_path / "PNG")
        for path in (tmp_path / "PNG" / "Ground Truth").iterdir():
            save(path, np.zeros_like(other.truth["1"][1]))  # would fail the mask check if read
    scan, _ = assert_converts(CVC_CLINICDB, built)
    assert all(release in it.image.as_posix() for it in scan.items)


def test_cvc_clinicdb_without_any_release_folder(tmp_path):
    (tmp_path / "Originals").mkdir()
    _, problems, _ = check_folder(CVC_CLINICDB, tmp_path)
    assert "Original/, TIF/Original/, PNG/Original/" in problems[0].message
    with pytest.raises(UbenchError):
        convert_folder(CVC_CLINICDB, tmp_path)


def test_robotool_seg_suffix_layout(tmp_path):
    built = build_robotool(tmp_path, layout="suffix")
    scan, _ = assert_converts(ROBOTOOL, built, lossless=False)
    assert [it.id for it in scan.items] == ["video01/frame_001", "video02/frame_001"]
    assert_reports(ROBOTOOL, built, "orphan mask")
