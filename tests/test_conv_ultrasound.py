"""Ultrasound converters (BUSI, UDIAT bus, BUS-BRA, TN-SCUI 2020, TUCC) on tiny fixtures written in
each owner's layout: ids, groups, masks exactly as drawn, and every kind of bad file reported.

The fixture helpers here (``save``, ``Built``, ``assert_converts``, ``assert_reports`` …) are
shared by the dermoscopy and endoscopy converter tests.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from ubench.data.converters.base import check_folder, convert_folder, relative
from ubench.data.converters.ultrasound import BUS, BUSBRA, BUSI, TNSCUI, TUCC
from ubench.errors import UbenchError

H, W = 20, 24


# ------------------------------------------------------------------------------ shared helpers
def save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    """Write ``arr`` as an image file (format from the suffix), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    (im.convert(mode) if mode else im).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """An RGB gradient of a seeded colour: what JPEG keeps nearly intact (for lossy images)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.random.default_rng(seed).integers(40, 160, 3)
    return (base + 2 * yy[..., None] + 2 * xx[..., None]).clip(0, 255).astype(np.uint8)


def box(top: int, left: int, bottom: int, right: int, h: int = H, w: int = W) -> np.ndarray:
    """A 0/1 mask with one rectangle."""
    mask = np.zeros((h, w), np.uint8)
    mask[top:bottom, left:right] = 1
    return mask


@dataclass
class Built:
    """A fixture in an owner's layout: the truth per id and where its files are."""

    root: Path
    truth: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # id → (RGB, 0/1)
    images: dict[str, Path] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    orphan: Path | None = None  # a mask name whose image does not exist
    target: str = ""  # the id that corruptions damage

    def add(self, item_id: str, image_path: Path, image: np.ndarray, mask_path: Path, mask: np.ndarray):
        """Write one pair (mask saved as 0/255) and record its truth (grey images become RGB)."""
        save(image_path, image)
        save(mask_path, mask * 255)
        shown = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        self.truth[item_id] = (shown, mask)
        self.images[item_id], self.masks[item_id] = image_path, mask_path
        self.target = self.target or item_id


CORRUPTIONS = ("missing mask", "orphan mask", "unreadable image", "size mismatch", "non-binary mask")


def corrupt(built: Built, how: str) -> tuple[str, str]:
    """Damage the fixture one way; returns (relative path a report must name, words it must say)."""
    image, mask = built.images[built.target], built.masks[built.target]
    where = relative(image, built.root)
    if how == "missing mask":
        mask.unlink()
        return where, "no mask"
    if how == "orphan mask":
        built.orphan.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mask, built.orphan)
        return relative(built.orphan, built.root), "without a matching image"
    if how == "unreadable image":
        image.write_bytes(b"not an image")
        return where, "cannot read"
    if how == "size mismatch":
        save(mask, np.zeros((H + 4, W), np.uint8))
        return where, "but its mask"
    ramp = np.tile(np.array([0, 90, 255], np.uint8), (H, W // 3 + 1))[:, :W]
    save(mask, ramp)
    return relative(mask, built.root), "not binary"


def assert_converts(conv, built: Built, lossless: bool = True, groups=None, split=None):
    """convert_folder yields exactly the drawn ids, masks (and images when lossless)."""
    scan, samples = convert_folder(conv, built.root)
    got = {s.id: s for s in samples}
    assert sorted(got) == sorted(built.truth)
    for sid, (image, mask) in built.truth.items():
        np.testing.assert_array_equal(got[sid].mask, mask, err_msg=sid)
        if lossless:
            np.testing.assert_array_equal(got[sid].image, image, err_msg=sid)
        else:
            assert got[sid].image.shape == image.shape
    assert {s.id: s.group for s in samples} == (groups or {k: k for k in built.truth})
    assert scan.official_split == split
    return scan, samples


def assert_refused(conv, root: Path, where: str, words: str) -> None:
    """check_folder reports a problem naming ``where``; convert_folder raises a UbenchError."""
    _, problems, _ = check_folder(conv, root)
    lines = [p.line() for p in problems if where in p.line()]
    assert lines, [p.line() for p in problems]
    assert words in lines[0]
    with pytest.raises(UbenchError) as err:
        convert_folder(conv, root)
    assert where in err.value.what


def assert_reports(conv, built: Built, how: str) -> None:
    """Damaged one way (see ``corrupt``), the fixture is reported and refused."""
    where, words = corrupt(built, how)
    assert_refused(conv, built.root, where, words)


# ------------------------------------------------------------------------------ fixtures
def build_busi(root: Path) -> Built:
    """benign (1) has two masks (grey + RGB, unioned), malignant (1) a grey image, normal (1) an
    empty mask, and 'copy.png' is a renamed copy whose id gets the class."""
    b = Built(root, target="malignant (1)", orphan=root / "benign" / "benign (9)_mask.png")
    first, second = box(2, 2, 8, 10), box(12, 14, 18, 22)
    b.add("benign (1)", root / "benign/benign (1).png", rgb(1), root / "benign/benign (1)_mask.png", first)
    save(root / "benign/benign (1)_mask_1.png", np.repeat(second[..., None] * 255, 3, axis=2))
    b.truth["benign (1)"] = (b.truth["benign (1)"][0], first | second)
    b.add("benign/copy", root / "benign/copy.png", rgb(2), root / "benign/copy_mask.png", box(0, 0, 5, 5))
    grey = rgb(3)[..., 0]
    b.add("malignant (1)", root / "malignant/malignant (1).png", grey,
          root / "malignant/malignant (1)_mask.png", box(4, 4, 16, 20))
    b.add("normal (1)", root / "normal/normal (1).png", rgb(4), root / "normal/normal (1)_mask.png",
          np.zeros((H, W), np.uint8))
    return b


def build_bus(root: Path) -> Built:
    b = Built(root, orphan=root / "GT" / "000009.png")
    for n in (1, 2):
        name = f"{n:06d}.png"
        b.add(f"{n:06d}", root / "original" / name, rgb(n)[..., 1], root / "GT" / name, box(n, n, 10 + n, 12))
    return b


def build_busbra(root: Path, csv_text: str | None = None) -> Built:
    """Three images of two patients (bus_0001-l/-r); bus_data.csv written when given."""
    b = Built(root, orphan=root / "Masks" / "mask_0099-l.png")
    for i, name in enumerate(("0001-l", "0001-r", "0002-l")):
        b.add(f"bus_{name}", root / f"Images/bus_{name}.png", rgb(10 + i)[..., 0],
              root / f"Masks/mask_{name}.png", box(3, 3 + i, 15, 20))
    if csv_text is not None:
        (root / "bus_data.csv").write_text(csv_text)
    return b


BUSBRA_CSV = "ID,Case,Histology,Pathology,BIRADS\nbus_0001-l,1,x,benign,3\nbus_0001-r,1,x,benign,3\n"


def build_tnscui(root: Path) -> Built:
    """Upper-case .PNG as released, one lower-case pair, and the ignored train.csv."""
    b = Built(root, orphan=root / "mask" / "99.PNG")
    for n, ext in ((1, "PNG"), (2, "PNG"), (10, "png")):
        b.add(str(n), root / f"image/{n}.{ext}", rgb(n)[..., 2], root / f"mask/{n}.{ext}", box(n, 2, 12, 20))
    (root / "train.csv").write_text("ID,CATE\n1.PNG,0\n2.PNG,1\n10.png,0\n")
    return b


PAIRED = {"busi": (BUSI, build_busi), "bus": (BUS, build_bus), "busbra": (BUSBRA, build_busbra),
          "tnscui2020": (TNSCUI, build_tnscui)}


# ------------------------------------------------------------------------------ paired formats
@pytest.mark.parametrize("fmt", sorted(PAIRED))
def test_paired_formats_convert_exactly(tmp_path, fmt):
    conv, build = PAIRED[fmt]
    built = build(tmp_path)
    groups = {"bus_0001-l": "0001", "bus_0001-r": "0001", "bus_0002-l": "0002"} if fmt == "busbra" else None
    assert_converts(conv, built, groups=groups)
    assert conv.name == fmt and conv.layout


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("fmt", sorted(PAIRED))
def test_paired_formats_report_bad_files(tmp_path, fmt, how):
    conv, build = PAIRED[fmt]
    assert_reports(conv, build(tmp_path), how)


def test_busi_union_and_class_in_ids(tmp_path):
    built = build_busi(tmp_path)
    scan, samples = assert_converts(BUSI, built)
    two = next(it for it in scan.items if it.id == "benign (1)")
    assert [m.name for m in two.masks] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    assert {"benign (1)", "malignant (1)"} <= {s.id for s in samples}
    assert next(s for s in samples if s.id == "normal (1)").mask.max() == 0


def test_busbra_groups_from_csv_override_file_names(tmp_path):
    built = build_busbra(tmp_path, BUSBRA_CSV + "bus_0002-l,7,x,malignant,5\n")
    scan, _ = assert_converts(BUSBRA, built, groups={"bus_0001-l": "0001", "bus_0001-r": "0001",
                                                     "bus_0002-l": "0007"})
    assert scan.split_files == (tmp_path / "bus_data.csv",)


def test_busbra_csv_without_case_column_is_reported(tmp_path):
    build_busbra(tmp_path, "ID,Pathology\nbus_0001-l,benign\n")
    assert_refused(BUSBRA, tmp_path, "bus_data.csv", "no ID and Case")


# ------------------------------------------------------------------------------ TUCC (HDF5)
ROWS = (("103_", 0), ("7_", 5), ("103_", 1), ("7_", 6), ("103_", 2))  # clips interleaved
TUCC_IMAGES = np.stack([rgb(20 + i)[..., 0] for i in range(len(ROWS))])
TUCC_MASKS = np.stack([box(i, i, 12, 18) for i in range(len(ROWS))])


def write_tucc(root: Path, annot_vlen=False, frame_bytes=False, drop=None, masks=None, images=None) -> Path:
    """dataset.hdf5 as Stanford AIMI ships it (byte-string annot_id, integer frame_num) or a variant."""
    path = root / "dataset.hdf5"
    annots = [a for a, _ in ROWS]
    frames = [str(f).encode() if frame_bytes else f for _, f in ROWS]
    with h5py.File(path, "w") as f:
        f["image"] = TUCC_IMAGES if images is None else images
        f["mask"] = TUCC_MASKS * 255 if masks is None else masks
        f["annot_id"] = np.array(annots, dtype=h5py.string_dtype() if annot_vlen else "S8")
        f["frame_num"] = np.array(frames)
        if drop:
            del f[drop]
    return path


@pytest.mark.parametrize("annot_vlen,frame_bytes", [(False, False), (True, False), (False, True)])
def test_tucc_frames_grouped_by_clip(tmp_path, annot_vlen, frame_bytes):
    write_tucc(tmp_path, annot_vlen, frame_bytes)
    scan, samples = convert_folder(TUCC, tmp_path)
    assert [it.id for it in scan.items] == ["103", "7"]
    got = {s.id: s for s in samples}
    assert sorted(got) == ["103_0000", "103_0001", "103_0002", "7_0005", "7_0006"]
    for row, (annot, frame) in enumerate(ROWS):
        sample = got[f"{annot}{frame:04d}"]
        assert sample.group == annot.rstrip("_")
        np.testing.assert_array_equal(sample.mask, TUCC_MASKS[row])
        np.testing.assert_array_equal(sample.image, np.repeat(TUCC_IMAGES[row][..., None], 3, axis=2))
    assert scan.official_split is None


def _bad_mask_row():
    masks = TUCC_MASKS * 255
    masks[3, 0, :3] = (40, 90, 200)
    return {"masks": masks}


@pytest.mark.parametrize("variant,where,words", [
    ({"drop": "frame_num"}, "dataset.hdf5", "frame_num"),
    ({"masks": np.zeros((len(ROWS), H, W + 1), np.uint8)}, "dataset.hdf5", "do not line up"),
    ({"images": TUCC_IMAGES[:3]}, "dataset.hdf5", "do not line up"),
    (_bad_mask_row(), "mask row 3", "not binary"),
])
def test_tucc_bad_files_are_reported(tmp_path, variant, where, words):
    write_tucc(tmp_path, **variant)
    assert_refused(TUCC, tmp_path, where, words)


def test_tucc_repeated_frame_and_unreadable_file(tmp_path):
    path = write_tucc(tmp_path)
    with h5py.File(path, "a") as f:
        f["frame_num"][2] = 0  # clip 103 now has frame 0 twice
    assert_refused(TUCC, tmp_path, "dataset.hdf5", "'103' frame 0 repeated")
    path.write_bytes(b"not hdf5")
    assert_refused(TUCC, tmp_path, "dataset.hdf5", "cannot read")


def test_tucc_missing_file(tmp_path):
    _, problems, _ = check_folder(TUCC, tmp_path)
    assert "no dataset.hdf5" in problems[0].message
    with pytest.raises(UbenchError):
        convert_folder(TUCC, tmp_path)
