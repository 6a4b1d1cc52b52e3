"""Fundus/vessel converters (DRIVE, CHASE_DB1, STARE, DCA1) on tiny fixtures in the owners' layouts."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubench.data.converters import fundus
from ubench.data.converters.base import check_folder, convert_folder
from ubench.errors import UbenchError

H, W = 20, 24


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _box(y0: int, y1: int, x0: int, x1: int, value: int = 255) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = value
    return m


def _save(path: Path, arr: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    """Write ``arr`` as an image file (``mode`` converts first; a .gz name is gzipped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    im = im.convert(mode) if mode else im
    buf = io.BytesIO()
    im.save(buf, format=fmt or Image.registered_extensions()[path.suffix if path.suffix != ".gz" else ".ppm"])
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _by_id(samples):
    return {s.id: s for s in samples}


def _expect_problem(conv, root: Path, fragment: str) -> None:
    """check_folder names the bad file; convert_folder refuses with a UbenchError."""
    _, problems, _ = check_folder(conv, root)
    assert any(fragment in p.line() for p in problems), [p.line() for p in problems]
    with pytest.raises(UbenchError):
        convert_folder(conv, root)


# ------------------------------------------------------------------------------------- fixtures
def make_drive(root: Path, test_manuals: bool = True, prefix: str = "") -> dict:
    """DRIVE: 2 training + 1 test TIFFs, palette-GIF manuals, GIF FOV masks, a 2nd manual."""
    base = root / prefix
    fov = _box(1, H - 1, 1, W - 1)
    truth = {}
    for k, (n, part) in enumerate((("21", "training"), ("22", "training"), ("01", "test"))):
        img, vessel = _rgb(k), _box(2 + k, 9 + k, 3, 15)
        vessel[0, 0] = 255  # a vessel pixel outside the FOV: kept (the FOV is not applied)
        _save(base / part / "images" / f"{n}_{part}.tif", img)
        if part == "training" or test_manuals:
            _save(base / part / "1st_manual" / f"{n}_manual1.gif", vessel, mode="P")
        _save(base / part / "mask" / f"{n}_{part}_mask.gif", fov, mode="P")
        truth[f"{n}_{part}"] = (img, (vessel > 0).astype(np.uint8))
    _save(base / "test" / "2nd_manual" / "01_manual2.gif", _box(0, H, 0, W), mode="P")
    return truth


def make_chase(root: Path) -> dict:
    """CHASE_DB1: both eyes of child 01, the left eye of child 02; 1st and 2nd observer PNGs."""
    truth = {}
    for k, stem in enumerate(("Image_01L", "Image_01R", "Image_02L")):
        img = np.full((H, W, 3), 60 + 40 * k, dtype=np.uint8)
        vessel = _box(3, 12, 2 + k, 18)
        _save(root / f"{stem}.jpg", img)
        _save(root / f"{stem}_1stHO.png", vessel, mode="1")  # 1-bit PNG
        _save(root / f"{stem}_2ndHO.png", _box(0, H, 0, W))
        truth[stem] = (img, (vessel > 0).astype(np.uint8))
    return truth


def make_stare(root: Path) -> dict:
    """STARE: one gzipped and one plain PPM pair (ah labels), plus ignored vk labels."""
    truth = {}
    for k, ext in enumerate((".ppm.gz", ".ppm")):
        stem = f"im{k + 1:04d}"
        img, vessel = _rgb(10 + k), _box(4, 14, 5 + k, 20)
        _save(root / "stare-images" / f"{stem}{ext}", img)
        _save(root / "labels-ah" / f"{stem}.ah{ext}", np.repeat(vessel[..., None], 3, axis=2))
        _save(root / "labels-vk" / f"{stem}.vk{ext}", _box(0, H, 0, W))
        truth[stem] = (img, (vessel > 0).astype(np.uint8))
    return truth


def make_dca1(root: Path) -> dict:
    """DCA1: grayscale PGM angiograms 1, 2, 12 with _gt.pgm masks."""
    truth = {}
    for k, n in enumerate((1, 2, 12)):
        gray = np.random.default_rng(20 + k).integers(0, 256, (H, W), dtype=np.uint8)
        vessel = _box(k, 10 + k, 6, 9)
        _save(root / "Database_134_Angiograms" / f"{n}.pgm", gray)
        _save(root / "Database_134_Angiograms" / f"{n}_gt.pgm", vessel)
        truth[f"{n:03d}"] = (np.repeat(gray[..., None], 3, axis=2), (vessel > 0).astype(np.uint8))
    return truth


CONVS = {c.name: c for c in fundus.CONVERTERS}
LOSSLESS = {"drive": make_drive, "stare": make_stare, "dca1": make_dca1}


def test_module_exports_the_four_formats():
    assert list(CONVS) == ["drive", "chase_db1", "stare", "dca1"]
    assert all(c.layout and c.num_classes == 1 for c in CONVS.values())


# ------------------------------------------------------------------------------ correct layouts
@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_formats_give_exact_images_and_masks(tmp_path, name):
    truth = LOSSLESS[name](tmp_path)
    _, samples = convert_folder(CONVS[name], tmp_path)
    got = _by_id(samples)
    assert sorted(got) == sorted(truth)
    for sid, (img, mask) in truth.items():
        assert got[sid].image.dtype == np.uint8 and np.array_equal(got[sid].image, img), sid
        assert np.array_equal(got[sid].mask, mask), sid
        assert got[sid].group == sid


def test_drive_official_split_and_fov_as_extra(tmp_path):
    make_drive(tmp_path)
    scan, samples = convert_folder(CONVS["drive"], tmp_path)
    assert scan.official_split == {"train": ["21_training", "22_training"], "test": ["01_test"]}
    fov = {it.id: [p.name for p in it.extra] for it in scan.items}
    assert fov == {"01_test": ["01_test_mask.gif"], "21_training": ["21_training_mask.gif"],
                   "22_training": ["22_training_mask.gif"]}
    assert all(s.mask[0, 0] == 1 for s in samples)  # outside the FOV, not masked away
    assert not any("2nd_manual" in str(m) for it in scan.items for m in it.masks)


def test_drive_without_test_manuals_uses_training_only(tmp_path):
    make_drive(tmp_path, test_manuals=False)
    assert not fundus.Drive.has_test_manuals(tmp_path)
    scan, problems, good = check_folder(CONVS["drive"], tmp_path)
    assert problems == [] and good == 2
    assert [it.id for it in scan.items] == ["21_training", "22_training"]
    assert scan.official_split is None


def test_drive_inside_its_archive_folder(tmp_path):
    truth = make_drive(tmp_path, prefix="DRIVE")
    scan, samples = convert_folder(CONVS["drive"], tmp_path)
    assert sorted(s.id for s in samples) == sorted(truth)
    assert scan.official_split["test"] == ["01_test"]


def test_drive_missing_test_manual_when_others_exist(tmp_path):
    make_drive(tmp_path)
    _save(tmp_path / "test" / "images" / "02_test.tif", _rgb(5))
    _save(tmp_path / "test" / "mask" / "02_test_mask.gif", _box(0, H, 0, W), mode="P")
    _expect_problem(CONVS["drive"], tmp_path, "test/images/02_test.tif")


def test_drive_missing_fov_mask(tmp_path):
    make_drive(tmp_path)
    (tmp_path / "training" / "mask" / "22_training_mask.gif").unlink()
    _expect_problem(CONVS["drive"], tmp_path, "22_training_mask.gif")


def test_chase_groups_both_eyes_of_a_child_and_uses_first_observer(tmp_path):
    truth = make_chase(tmp_path)
    _, samples = convert_folder(CONVS["chase_db1"], tmp_path)
    got = _by_id(samples)
    assert {s.id: s.group for s in samples} == {"Image_01L": "01", "Image_01R": "01", "Image_02L": "02"}
    for sid, (img, mask) in truth.items():
        assert np.array_equal(got[sid].mask, mask), sid  # 1st observer, not the all-ones 2nd
        assert np.abs(got[sid].image.astype(int) - img).max() <= 2  # JPEG: flat colour survives


def test_stare_reads_gzipped_and_plain_ppm(tmp_path):
    make_stare(tmp_path)
    scan, _ = convert_folder(CONVS["stare"], tmp_path)
    assert [(it.image.name, it.masks[0].name) for it in scan.items] == [
        ("im0001.ppm.gz", "im0001.ah.ppm.gz"), ("im0002.ppm", "im0002.ah.ppm")]
    assert scan.official_split is None


# ------------------------------------------------------------------------------------- bad data
# (format, builder, image file of one item relative to the root, its mask file)
ITEMS = [
    ("drive", make_drive, "training/images/21_training.tif", "training/1st_manual/21_manual1.gif"),
    ("chase_db1", make_chase, "Image_01R.jpg", "Image_01R_1stHO.png"),
    ("stare", make_stare, "stare-images/im0002.ppm", "labels-ah/im0002.ah.ppm"),
    ("dca1", make_dca1, "Database_134_Angiograms/2.pgm", "Database_134_Angiograms/2_gt.pgm"),
]


@pytest.mark.parametrize("name, make, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_missing_mask(tmp_path, name, make, image, mask):
    make(tmp_path)
    (tmp_path / mask).unlink()
    _expect_problem(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, make, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_orphan_mask(tmp_path, name, make, image, mask):
    make(tmp_path)
    (tmp_path / image).unlink()
    _expect_problem(CONVS[name], tmp_path, mask)


@pytest.mark.parametrize("name, make, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_unreadable_image(tmp_path, name, make, image, mask):
    make(tmp_path)
    (tmp_path / image).write_bytes(b"not an image")
    _expect_problem(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, make, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_mask_of_another_size(tmp_path, name, make, image, mask):
    make(tmp_path)
    small = np.zeros((H // 2, W // 2), dtype=np.uint8)
    small[2:5, 2:5] = 255
    _save(tmp_path / mask, small, fmt=Image.registered_extensions()[Path(mask).suffix])
    _expect_problem(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, make, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_non_binary_mask_is_refused(tmp_path, name, make, image, mask):
    make(tmp_path)
    three = _box(2, 8, 2, 8, 128)
    three[10:15, 10:15] = 255
    _save(tmp_path / mask, three, fmt=Image.registered_extensions()[Path(mask).suffix])
    _expect_problem(CONVS[name], tmp_path, "not binary")


def test_corrupt_gzip_is_a_problem(tmp_path):
    make_stare(tmp_path)
    (tmp_path / "stare-images" / "im0001.ppm.gz").write_bytes(b"\x1f\x8b garbage")
    _expect_problem(CONVS["stare"], tmp_path, "im0001.ppm.gz")


def test_empty_folder_names_the_expected_layout(tmp_path):
    _, problems, good = check_folder(CONVS["chase_db1"], tmp_path)
    assert good == 0 and any("no images found" in p.line() for p in problems)
    with pytest.raises(UbenchError, match="Image_"):
        convert_folder(CONVS["chase_db1"], tmp_path)
