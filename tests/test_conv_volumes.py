"""Volume converters (ACDC, Synapse, PROMISE12) on tiny volumes written in each official layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ubench.data.converters.base import check_folder, convert_folder
from ubench.data.converters.volumes import ACDC, BTCV_TO_TRANSUNET, Promise12, Synapse, mri_uint8, window_uint8
from ubench.errors import UbenchError

SHAPE = (6, 5, 3)  # rows, cols, slices: 90 voxels


def mri_volume(seed: int) -> np.ndarray:
    """Intensities 0..400 with two voxels at 1000: min 0, 99.5th percentile exactly 1000."""
    vol = np.random.default_rng(seed).integers(1, 400, SHAPE).astype(np.int16)
    vol[0, 0, 0], vol[1, 1, 1], vol[2, 2, 2] = 0, 1000, 1000
    return vol


def expected_mri(vol: np.ndarray) -> np.ndarray:
    """The documented rule with lo = 0 and hi = 1000 for ``mri_volume``."""
    return np.floor(np.clip(vol.astype(np.float64) / 1000.0, 0, 1) * 255 + 0.5).astype(np.uint8)


def label_volume(seed: int, top: int) -> np.ndarray:
    lab = np.random.default_rng(seed).integers(0, top + 1, SHAPE).astype(np.uint8)
    lab[:, :, 1] = 0  # one all-background slice: it must be kept
    return lab


def save_nii(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))
    return path


def save_mhd(path: Path, arr: np.ndarray) -> Path:
    """``arr`` is (rows, cols, slices); SimpleITK wants (slices, rows, cols)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.moveaxis(arr, -1, 0)), str(path))
    return path


def by_id(samples):
    return {s.id: s for s in samples}


def problem_text(conv, root: Path) -> str:
    _, problems, _ = check_folder(conv, root)
    assert problems, "expected problems"
    with pytest.raises(UbenchError):
        convert_folder(conv, root)
    return "\n".join(p.line() for p in problems)


# --------------------------------------------------------------------------------------- ACDC


def make_acdc(root: Path) -> dict:
    """training/patient001 (frames 01, 12) and testing/patient101 (frame 01), with extras."""
    truth = {}
    for part, patient, frames in (("training", "patient001", ("01", "12")), ("testing", "patient101", ("01",))):
        folder = root / part / patient
        for i, frame in enumerate(frames):
            seed = int(patient[-3:]) * 10 + i
            img, lab = mri_volume(seed), label_volume(seed, 3)
            save_nii(folder / f"{patient}_frame{frame}.nii.gz", img)
            save_nii(folder / f"{patient}_frame{frame}_gt.nii.gz", lab)
            truth[f"{patient}_frame{frame}"] = (img, lab)
        save_nii(folder / f"{patient}_4d.nii.gz", np.zeros((6, 5, 3, 2), np.int16))
        (folder / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: DCM\n")
    return truth


def test_acdc_slices_groups_split_labels_intensity(tmp_path):
    truth = make_acdc(tmp_path)
    scan, samples = convert_folder(ACDC(), tmp_path)
    assert [it.id for it in scan.items] == ["patient001_frame01", "patient001_frame12", "patient101_frame01"]
    assert scan.official_split == {"train": ["patient001"], "test": ["patient101"]}
    got = by_id(samples)
    assert sorted(got) == sorted(f"{v}_s{k:02d}" for v in truth for k in range(3))
    for vol_id, (img, lab) in truth.items():
        want = expected_mri(img)
        for k in range(3):
            s = got[f"{vol_id}_s{k:02d}"]
            assert s.group == vol_id.split("_")[0]
            np.testing.assert_array_equal(s.mask, lab[:, :, k])
            assert s.image.shape == (6, 5, 3) and s.image.dtype == np.uint8
            np.testing.assert_array_equal(s.image[..., 0], want[:, :, k])
            np.testing.assert_array_equal(s.image[..., 0], s.image[..., 2])
    assert not got["patient001_frame01_s01"].mask.any()  # the empty slice is kept


def test_acdc_flat_folder_has_no_official_split(tmp_path):
    save_nii(tmp_path / "patient007_frame01.nii.gz", mri_volume(1))
    save_nii(tmp_path / "patient007_frame01_gt.nii.gz", label_volume(1, 3))
    scan, samples = convert_folder(ACDC(), tmp_path)
    assert scan.official_split is None and len(samples) == 3


def test_mri_rule_is_per_volume_not_per_slice():
    vol = mri_volume(3)
    vol[:, :, 0] = np.clip(vol[:, :, 0], 0, 50)  # a dark slice stays dark
    vol[1, 1, 1] = vol[2, 2, 2] = 1000
    out = mri_uint8(vol)
    assert out[:, :, 0].max() == round(50 * 255 / 1000)
    assert out.max() == 255 and out[0, 0, 0] == 0
    assert not mri_uint8(np.full(SHAPE, 7.0)).any()  # constant volume → 0
    assert window_uint8(np.array([-1000.0, -125.0, 75.0, 275.0, 900.0]), -125, 275).tolist() == [0, 0, 128, 255, 255]


def _acdc_drop_gt(root):
    (root / "training/patient001/patient001_frame12_gt.nii.gz").unlink()


def _acdc_orphan_gt(root):
    (root / "training/patient001/patient001_frame01.nii.gz").unlink()


def _acdc_shape(root):
    save_nii(root / "training/patient001/patient001_frame12_gt.nii.gz", np.zeros((6, 5, 4), np.uint8))


def _acdc_range(root):
    lab = label_volume(5, 3)
    lab[0, 0, 0] = 4
    save_nii(root / "training/patient001/patient001_frame12_gt.nii.gz", lab)


def _acdc_fraction(root):
    save_nii(root / "training/patient001/patient001_frame12_gt.nii.gz", np.full(SHAPE, 1.5, np.float32))


def _acdc_corrupt(root):
    (root / "training/patient001/patient001_frame12.nii.gz").write_bytes(b"\x1f\x8bnot a gzip stream")


def _acdc_outside_split(root):
    folder = root / "extra/patient150"
    save_nii(folder / "patient150_frame01.nii.gz", mri_volume(9))
    save_nii(folder / "patient150_frame01_gt.nii.gz", label_volume(9, 3))


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (_acdc_drop_gt, "patient001_frame12.nii.gz", "no label file"),
        (_acdc_orphan_gt, "patient001_frame01_gt.nii.gz", "without its image"),
        (_acdc_shape, "patient001_frame12.nii.gz", "(6, 5, 4)"),
        (_acdc_range, "patient001_frame12_gt.nii.gz", "class value(s) [4]"),
        (_acdc_fraction, "patient001_frame12_gt.nii.gz", "non-integer"),
        (_acdc_corrupt, "patient001_frame12.nii.gz", "cannot read"),
        (_acdc_outside_split, "patient150_frame01.nii.gz", "training/ or testing/"),
    ],
)
def test_acdc_problems_name_the_file(tmp_path, mutate, path, words):
    make_acdc(tmp_path)
    mutate(tmp_path)
    text = problem_text(ACDC(), tmp_path)
    line = next(ln for ln in text.splitlines() if path in ln)
    assert words in line


# ------------------------------------------------------------------------------------ Synapse


def unit_image(seed: int, shape) -> np.ndarray:
    img = np.random.default_rng(seed).random(shape).astype(np.float32)
    img.flat[0], img.flat[1] = 0.0, 1.0
    return img


def make_synapse_pre(root: Path, suffix: str = "", top: int = 8) -> dict:
    """TransUNet's train_npz (cases 5 and 6) and test_vol_h5 (case 1, 3 slices)."""
    truth = {}
    (root / f"train_npz{suffix}").mkdir(parents=True)
    (root / f"test_vol_h5{suffix}").mkdir(parents=True)
    for case, nslices in (("case0005", 2), ("case0006", 1)):
        for k in range(nslices):
            seed = int(case[-2:]) * 10 + k
            img, lab = unit_image(seed, (5, 4)), label_volume(seed, top)[:5, :4, 0].astype(np.float32)
            np.savez_compressed(root / f"train_npz{suffix}/{case}_slice{k:03d}.npz", image=img, label=lab)
            truth[f"{case}_slice{k:03d}"] = (img, lab)
    img, lab = unit_image(1, (3, 5, 4)), label_volume(1, top)[:5, :4, :].transpose(2, 0, 1).astype(np.float32)
    with h5py.File(root / f"test_vol_h5{suffix}/case0001.npy.h5", "w") as f:
        f["image"], f["label"] = img, lab
    for k in range(3):
        truth[f"case0001_slice{k:03d}"] = (img[k], lab[k])
    (root / "lists_Synapse").mkdir()
    (root / "lists_Synapse/test_vol.txt").write_text("case0001\n")
    return truth


def test_synapse_transunet_release(tmp_path):
    truth = make_synapse_pre(tmp_path)
    scan, samples = convert_folder(Synapse(), tmp_path)
    assert scan.official_split == {"train": ["case0005", "case0006"], "test": ["case0001"]}
    got = by_id(samples)
    assert sorted(got) == sorted(truth)
    for sid, (img, lab) in truth.items():
        s = got[sid]
        assert s.group == sid[:8]
        np.testing.assert_array_equal(s.mask, lab.astype(np.uint8))
        np.testing.assert_array_equal(s.image[..., 1], np.floor(img.astype(np.float64) * 255 + 0.5).astype(np.uint8))
    assert Synapse().class_names[0] == "aorta" and Synapse().class_names[-1] == "stomach"


def test_synapse_13_label_variant_is_remapped(tmp_path):
    truth = make_synapse_pre(tmp_path, suffix="_new", top=13)
    _, samples = convert_folder(Synapse(), tmp_path)
    lut = np.zeros(14, np.uint8)
    for src, dst in BTCV_TO_TRANSUNET.items():
        lut[src] = dst
    for s in samples:
        np.testing.assert_array_equal(s.mask, lut[truth[s.id][1].astype(int)])
    assert lut[8] == 1 and lut[11] == 6 and lut[1] == 7 and lut[5] == 0  # aorta, pancreas, spleen, esophagus


def make_synapse_raw(root: Path) -> dict:
    truth = {}
    for number in ("0001", "0005"):
        hu = np.random.default_rng(int(number)).integers(-1000, 1000, SHAPE).astype(np.int16)
        lab = label_volume(int(number), 13)
        save_nii(root / f"RawData/Training/img/img{number}.nii.gz", hu)
        save_nii(root / f"RawData/Training/label/label{number}.nii.gz", lab)
        truth[f"case{number}"] = (hu, lab)
    save_nii(root / "RawData/Testing/img/img0061.nii.gz", np.zeros(SHAPE, np.int16))  # unlabelled: skipped
    return truth


def test_synapse_raw_btcv(tmp_path):
    truth = make_synapse_raw(tmp_path)
    scan, samples = convert_folder(Synapse(), tmp_path)
    assert scan.official_split == {"train": ["case0005"], "test": ["case0001"]}  # TransUNet's test list
    got = by_id(samples)
    assert sorted(got) == sorted(f"{c}_slice{k:03d}" for c in truth for k in range(3))
    lut = np.zeros(14, np.uint8)
    for src, dst in BTCV_TO_TRANSUNET.items():
        lut[src] = dst
    for case, (hu, lab) in truth.items():
        window = np.floor((np.clip(hu, -125, 275) + 125) / 400 * 255 + 0.5).astype(np.uint8)
        for k in range(3):
            s = got[f"{case}_slice{k:03d}"]
            assert s.group == case
            np.testing.assert_array_equal(s.mask, lut[lab[:, :, k]])
            np.testing.assert_array_equal(s.image[..., 0], window[:, :, k])


def _syn_range(root):
    np.savez(root / "train_npz/case0006_slice000.npz", image=unit_image(0, (5, 4)), label=np.full((5, 4), 9.0))


def _syn_key(root):
    np.savez(root / "train_npz/case0006_slice000.npz", image=unit_image(0, (5, 4)))


def _syn_hu(root):
    np.savez(root / "train_npz/case0006_slice000.npz", image=np.full((5, 4), 200.0), label=np.zeros((5, 4)))


def _syn_shape(root):
    np.savez(root / "train_npz/case0006_slice000.npz", image=unit_image(0, (5, 4)), label=np.zeros((4, 4)))


def _syn_corrupt(root):
    (root / "test_vol_h5/case0001.npy.h5").write_bytes(b"not hdf5 at all")


def _syn_both(root):
    np.savez(root / "train_npz/case0001_slice000.npz", image=unit_image(0, (5, 4)), label=np.zeros((5, 4)))


def _syn_name(root):
    np.savez(root / "train_npz/slice7.npz", image=unit_image(0, (5, 4)), label=np.zeros((5, 4)))


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (_syn_range, "case0006_slice000.npz", "class value(s) [9]"),
        (_syn_key, "case0006_slice000.npz", "no label array"),
        (_syn_hu, "case0006_slice000.npz", "not TransUNet's [0, 1]"),
        (_syn_shape, "case0006_slice000.npz", "its 'label' array"),
        (_syn_corrupt, "case0001.npy.h5", "cannot read"),
        (_syn_both, "case0001", "both the train and test"),
        (_syn_name, "slice7.npz", "unexpected file name"),
    ],
)
def test_synapse_preprocessed_problems(tmp_path, mutate, path, words):
    make_synapse_pre(tmp_path)
    mutate(tmp_path)
    line = next(ln for ln in problem_text(Synapse(), tmp_path).splitlines() if path in ln)
    assert words in line


def _raw_missing(root):
    (root / "RawData/Training/label/label0005.nii.gz").unlink()


def _raw_unknown(root):
    lab = label_volume(5, 13)
    lab[0, 0, 0] = 14
    save_nii(root / "RawData/Training/label/label0005.nii.gz", lab)


def _raw_shape(root):
    save_nii(root / "RawData/Training/label/label0005.nii.gz", np.zeros((6, 5, 2), np.uint8))


def _raw_and_pre(root):
    (root / "train_npz").mkdir()
    np.savez(root / "train_npz/case0005_slice000.npz", image=unit_image(0, (5, 4)), label=np.zeros((5, 4)))


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (_raw_missing, "img0005.nii.gz", "no label file"),
        (_raw_unknown, "img0005.nii.gz", "outside the known labels"),
        (_raw_shape, "img0005.nii.gz", "(6, 5, 2)"),
        (_raw_and_pre, ".:", "keep one layout"),
    ],
)
def test_synapse_raw_problems(tmp_path, mutate, path, words):
    make_synapse_raw(tmp_path)
    mutate(tmp_path)
    line = next(ln for ln in problem_text(Synapse(), tmp_path).splitlines() if path in ln)
    assert words in line


# ---------------------------------------------------------------------------------- PROMISE12


def make_promise(root: Path) -> dict:
    truth = {}
    for part, case in (("TrainingData_Part1", "Case00"), ("TrainingData_Part2", "Case13")):
        seed = int(case[-2:])
        img, lab = mri_volume(seed), label_volume(seed, 1)
        save_mhd(root / part / f"{case}.mhd", img)
        save_mhd(root / part / f"{case}_segmentation.mhd", lab)
        truth[case] = (img, lab)
    save_mhd(root / "TestData/Case00.mhd", mri_volume(99))  # unlabelled test set: skipped
    return truth


def test_promise12_slices_and_labels(tmp_path):
    truth = make_promise(tmp_path)
    scan, samples = convert_folder(Promise12(), tmp_path)
    assert [it.id for it in scan.items] == ["Case00", "Case13"] and scan.official_split is None
    got = by_id(samples)
    assert sorted(got) == sorted(f"{c}_s{k:02d}" for c in truth for k in range(3))
    for case, (img, lab) in truth.items():
        want = expected_mri(img)
        for k in range(3):
            s = got[f"{case}_s{k:02d}"]
            assert s.group == case
            np.testing.assert_array_equal(s.mask, lab[:, :, k])
            np.testing.assert_array_equal(s.image[..., 0], want[:, :, k])


def _pr_missing(root):
    for ext in ("mhd", "raw"):
        (root / f"TrainingData_Part2/Case13_segmentation.{ext}").unlink()


def _pr_value(root):
    save_mhd(root / "TrainingData_Part2/Case13_segmentation.mhd", label_volume(13, 2))


def _pr_truncated(root):
    raw = root / "TrainingData_Part2/Case13.raw"
    raw.write_bytes(raw.read_bytes()[:10])


def _pr_shape(root):
    save_mhd(root / "TrainingData_Part2/Case13_segmentation.mhd", np.zeros((6, 5, 4), np.uint8))


def _pr_duplicate(root):
    save_mhd(root / "TrainingData_Part3/Case13.mhd", mri_volume(1))
    save_mhd(root / "TrainingData_Part3/Case13_segmentation.mhd", label_volume(1, 1))


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (_pr_missing, "Case13.mhd", "no label file"),
        (_pr_value, "Case13_segmentation.mhd", "class value(s) [2]"),
        (_pr_truncated, "Case13.mhd", "cannot read"),
        (_pr_shape, "Case13.mhd", "(6, 5, 4)"),
        (_pr_duplicate, "TrainingData_Part3/Case13.mhd", "same volume"),
    ],
)
def test_promise12_problems(tmp_path, mutate, path, words):
    make_promise(tmp_path)
    mutate(tmp_path)
    line = next(ln for ln in problem_text(Promise12(), tmp_path).splitlines() if path in ln)
    assert words in line


@pytest.mark.parametrize("conv", [ACDC(), Synapse(), Promise12()])
def test_empty_folder_names_the_layout(tmp_path, conv):
    _, problems, good = check_folder(conv, tmp_path)
    assert good == 0 and len(problems) == 1 and "expected" in problems[0].message
