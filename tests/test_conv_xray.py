"""Chest X-ray lung converters (COVID-QU-Ex, Montgomery, NIH/XLSor) on tiny owner-layout fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubench.data.converters import xray
from ubench.data.converters.base import check_folder, convert_folder
from ubench.errors import UbenchError

H, W = 20, 24
CONVS = {c.name: c for c in xray.CONVERTERS}
LUNG = "Lung Segmentation Data/Lung Segmentation Data"


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def _gray(seed: int, dtype=np.uint8, top: int = 255) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, top + 1, (H, W)).astype(dtype)


def _lung(x0: int, x1: int, y0: int = 3, y1: int = 17) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _refused(conv, root: Path, fragment: str) -> None:
    """``fragment`` appears among check_folder's problems and convert_folder raises UbenchError."""
    lines = [p.line() for p in check_folder(conv, root)[1]]
    assert any(fragment in line for line in lines), lines
    with pytest.raises(UbenchError):
        convert_folder(conv, root)


# ------------------------------------------------------------------------------------- fixtures
COVID_FILES = (
    ("Train", "COVID-19", "covid_1"),
    ("Train", "Normal", "Normal (1)"),
    ("Val", "Non-COVID", "non_COVID (2)"),
    ("Test", "COVID-19", "covid_2"),
)


def make_covid(root: Path, base: str = LUNG) -> dict:
    """Lung Segmentation Data (nested twice, as Kaggle unpacks it) + an ignored Infection set."""
    truth = {}
    for k, (split, cls, name) in enumerate(COVID_FILES):
        img, lung = _gray(k), _lung(2 + k, 20)
        _png(root / base / split / cls / "images" / f"{name}.png", img)
        _png(root / base / split / cls / "lung masks" / f"{name}.png", lung)
        truth[f"{cls}/{name}"] = (_rgb(img), (lung > 0).astype(np.uint8))
    infection = root / "Infection Segmentation Data/Infection Segmentation Data/Train/COVID-19"
    for sub in ("images", "infection masks", "lung masks"):
        _png(infection / sub / "covid_9.png", _lung(1, 5))
    return truth


def make_montgomery(root: Path, base: str = "MontgomerySet") -> dict:
    """MontgomerySet: a 16-bit and an 8-bit CXR, each with a left and a right lung mask."""
    truth = {}
    for k, (name, dtype, top) in enumerate((("MCUCXR_0001_0", np.uint16, 4095), ("MCUCXR_0104_1", np.uint8, 255))):
        img = _gray(10 + k, dtype, top)
        left, right = _lung(2, 10 + k), _lung(13, 22, 4, 16)
        _png(root / base / "CXR_png" / f"{name}.png", img)
        _png(root / base / "ManualMask" / "leftMask" / f"{name}.png", left)
        _png(root / base / "ManualMask" / "rightMask" / f"{name}.png", right)
        (root / base / "ClinicalReadings").mkdir(parents=True, exist_ok=True)
        (root / base / "ClinicalReadings" / f"{name}.txt").write_text("Patient's Sex: F\n")
        expected = np.floor(img * (255.0 / img.max()) + 0.5).astype(np.uint8) if dtype != np.uint8 else img
        truth[name] = (_rgb(expected), ((left > 0) | (right > 0)).astype(np.uint8))
    return truth


def make_nih(root: Path) -> dict:
    """XLSor's NIH set: NIH/images/<name>.png + NIH/masks/<name>_mask.png."""
    truth = {}
    for k, name in enumerate(("00000001_000", "00000013_005")):
        img, lung = np.random.default_rng(20 + k).integers(0, 256, (H, W, 3), dtype=np.uint8), _lung(3 + k, 21)
        _png(root / "NIH" / "images" / f"{name}.png", img)
        _png(root / "NIH" / "masks" / f"{name}_mask.png", lung)
        truth[name] = (img, (lung > 0).astype(np.uint8))
    return truth


MAKERS = {"covid_qu_ex": make_covid, "montgomery": make_montgomery, "nih_lung": make_nih}


def test_module_exports_the_three_formats():
    assert list(CONVS) == ["covid_qu_ex", "montgomery", "nih_lung"]
    assert all(c.layout and c.num_classes == 1 for c in CONVS.values())


# ------------------------------------------------------------------------------ correct layouts
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_images_and_masks_are_exact(tmp_path, name):
    truth = MAKERS[name](tmp_path)
    _, samples = convert_folder(CONVS[name], tmp_path)
    assert [s.id for s in samples] == sorted(truth)
    for s in samples:
        img, mask = truth[s.id]
        assert np.array_equal(s.image, img), s.id
        assert np.array_equal(s.mask, mask), s.id
        assert s.group == s.id


def test_covid_official_split_keeps_val_in_training(tmp_path):
    make_covid(tmp_path)
    scan = CONVS["covid_qu_ex"].scan(tmp_path)
    assert scan.problems == []
    assert scan.official_split == {
        "train": ["COVID-19/covid_1", "Non-COVID/non_COVID (2)", "Normal/Normal (1)"],
        "test": ["COVID-19/covid_2"],
    }
    assert not any("Infection" in str(it.image) for it in scan.items)


@pytest.mark.parametrize("base", ["", "Lung Segmentation Data"], ids=["unwrapped", "wrapped-once"])
def test_covid_other_unpack_depths(tmp_path, base):
    truth = make_covid(tmp_path, base=base)
    _, samples = convert_folder(CONVS["covid_qu_ex"], tmp_path)
    assert sorted(s.id for s in samples) == sorted(truth)


def test_covid_same_name_in_two_splits_is_a_problem(tmp_path):
    make_covid(tmp_path)
    for sub in ("images", "lung masks"):
        _png(tmp_path / LUNG / "Val" / "COVID-19" / sub / "covid_1.png", _lung(2, 20))
    _refused(CONVS["covid_qu_ex"], tmp_path, "same id 'COVID-19/covid_1'")


def test_montgomery_folder_may_be_montgomeryset_itself(tmp_path):
    truth = make_montgomery(tmp_path, base=".")
    scan, samples = convert_folder(CONVS["montgomery"], tmp_path)
    assert [s.id for s in samples] == sorted(truth)
    assert all(sorted(m.parent.name for m in it.masks) == ["leftMask", "rightMask"] for it in scan.items)


def test_montgomery_needs_both_lungs(tmp_path):
    make_montgomery(tmp_path)
    (tmp_path / "MontgomerySet/ManualMask/rightMask/MCUCXR_0104_1.png").unlink()
    _refused(CONVS["montgomery"], tmp_path, "MontgomerySet/CXR_png/MCUCXR_0104_1.png")


# ------------------------------------------------------------------------------------- bad data
ITEMS = [
    ("covid_qu_ex", f"{LUNG}/Test/COVID-19/images/covid_2.png", f"{LUNG}/Test/COVID-19/lung masks/covid_2.png"),
    ("montgomery", "MontgomerySet/CXR_png/MCUCXR_0001_0.png", "MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png"),
    ("nih_lung", "NIH/images/00000013_005.png", "NIH/masks/00000013_005_mask.png"),
]
IDS = [i[0] for i in ITEMS]


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=IDS)
def test_missing_mask(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    (tmp_path / mask).unlink()
    _refused(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=IDS)
def test_orphan_mask(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    (tmp_path / image).unlink()
    _refused(CONVS[name], tmp_path, mask)


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=IDS)
def test_unreadable_image(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    (tmp_path / image).write_bytes(b"\x89PNG truncated")
    _refused(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=IDS)
def test_mask_of_another_size(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    _png(tmp_path / mask, np.full((H, W + 6), 255, dtype=np.uint8))
    _refused(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=IDS)
def test_non_binary_mask_is_refused(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    soft = _lung(2, 12)
    soft[3:17, 12:14] = 128  # an anti-aliased edge
    _png(tmp_path / mask, soft)
    _refused(CONVS[name], tmp_path, "not binary")
