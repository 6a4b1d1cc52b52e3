"""3D datasets as their owners distribute them → 2D slices: ACDC, Synapse (BTCV), PROMISE12.

Why slices: U-Bench trains its 2D U-Nets on axial slices and evaluates per slice, keeping every
slice of a volume in one split (``group`` = the patient or case). Every volume is cut along its
slice axis (NIfTI: the last array axis; MetaImage: SimpleITK's first; the Synapse HDF5 test
volumes: their first), each slice a sample, **empty slices included** (a model must learn to
predict nothing on them; dropping them would also change the evaluation set).

Intensities → uint8, one rule per format, applied to the whole VOLUME (never per slice, so the
slices of one volume stay comparable):

- MRI (ACDC, PROMISE12): ``(v - min) / (p99.5 - min)``, clipped to [0, 1], × 255, rounded half up,
  with ``min`` the volume's minimum and ``p99.5`` its 99.5th percentile (a few very bright
  voxels do not darken the whole volume); ``p99.5 <= min`` falls back to the maximum, a
  constant volume becomes 0.
- CT (Synapse): TransUNet's fixed window, HU clipped to [-125, 275] and scaled to [0, 1]; the
  preprocessed releases already hold that [0, 1] value, which is × 255 and rounded.

Greyscale is replicated to RGB. Labels must be integers in the format's range (a float volume
with fractional labels, or a value out of range, is refused naming the file). Readers
(nibabel, h5py, SimpleITK) are imported lazily and any of their errors becomes a UbenchError
naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ubench.data.converters import pixels
from ubench.data.converters.base import Converter, Problem, RawItem, Sample, ScanResult, relative
from ubench.errors import UbenchError

CORRUPT_FIX = "re-download or re-extract the file; it is truncated, corrupt or not this format"

# ---------------------------------------------------------------------------------------------
# readers: file → numpy array; every library error becomes a UbenchError naming the file


def _guarded(path: Path, what: str, read: Callable[[], np.ndarray | tuple]):
    """Run ``read``; any non-UbenchError exception (the readers raise many kinds) → UbenchError."""
    try:
        return read()
    except UbenchError:
        raise
    except Exception as exc:  # nibabel/h5py/SimpleITK/zip errors have no common base class
        detail = " ".join(str(exc).split())  # ITK's messages span several lines
        detail = detail if len(detail) <= 300 else detail[:300] + " …"
        raise UbenchError(f"cannot read {what} {path}: {type(exc).__name__}: {detail}", CORRUPT_FIX) from exc


def read_nifti(path: Path, what: str = "volume") -> np.ndarray:
    """A NIfTI file (.nii / .nii.gz) → its voxel array (x, y, z), scaling applied."""

    def read():
        import nibabel as nib

        return np.asanyarray(nib.load(str(path)).dataobj)

    return _guarded(path, what, read)


def read_mhd(path: Path, what: str = "volume") -> np.ndarray:
    """A MetaImage (.mhd + its .raw) → (rows, cols, slices), i.e. SimpleITK's (z, y, x) moved."""

    def read():
        import SimpleITK as sitk

        return np.moveaxis(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), 0, -1)

    return _guarded(path, what, read)


def read_image_label(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``image`` and ``label`` arrays of a Synapse .npz slice or .npy.h5 volume."""

    def read():
        if path.name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                return _pick(data, list(data.keys()), path)
        import h5py

        with h5py.File(path, "r") as data:
            return _pick(data, list(data.keys()), path)

    return _guarded(path, "file", read)


def _pick(data, keys: list[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ("image", "label") if k not in keys]
    if missing:
        raise UbenchError(
            f"{path} has no {' or '.join(missing)} array (it holds: {', '.join(keys) or 'nothing'})",
            "TransUNet's Synapse files hold 'image' and 'label'; " + CORRUPT_FIX,
        )
    return np.asarray(data["image"][()]), np.asarray(data["label"][()])


# ---------------------------------------------------------------------------------------------
# volume rules shared by the formats


def as_volume(arr: np.ndarray, path: Path) -> np.ndarray:
    """A 3D (rows, cols, slices) array: trailing length-1 axes dropped, a 2D array is 1 slice."""
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise UbenchError(f"{path} holds a {arr.ndim}D array {arr.shape}, expected a 3D volume", CORRUPT_FIX)
    return arr


def same_shape(image: np.ndarray, label: np.ndarray, image_path: Path, label_what: str) -> None:
    """Image and label volumes must have the same voxel grid."""
    if image.shape != label.shape:
        raise UbenchError(
            f"{image_path} is {image.shape} voxels but its label ({label_what}) is {label.shape}",
            "the label volume must be the image's own; re-download the pair",
        )


def label_volume(arr: np.ndarray, path: Path, num_values: int, remap: dict[int, int] | None = None) -> np.ndarray:
    """Integer labels 0..num_values-1 (after ``remap``) as uint8, or a UbenchError naming ``path``."""
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise UbenchError(f"label volume {path} has non-integer values", "labels must be whole class indices")
    if arr.dtype.kind not in "fiub":
        raise UbenchError(f"label volume {path} has {arr.dtype} values", "labels must be whole class indices")
    flat = arr.reshape(-1, arr.shape[-1])  # pixels.mask_from_array checks 2D arrays; any 2D view works
    return pixels.mask_from_array(flat, path, "labels", num_values, remap).reshape(arr.shape)


def window_uint8(vol: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(v - lo) / (hi - lo)`` clipped to [0, 1], × 255, rounded half up (hi <= lo → zeros)."""
    if not hi > lo:
        return np.zeros(vol.shape, dtype=np.uint8)
    x = (np.nan_to_num(vol.astype(np.float64)) - lo) / (hi - lo)
    return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mri_uint8(vol: np.ndarray) -> np.ndarray:
    """The MRI rule of the module docstring: the volume's min .. its 99.5th percentile."""
    v = np.nan_to_num(vol.astype(np.float64))
    if v.size == 0:
        return np.zeros(vol.shape, dtype=np.uint8)
    lo, hi = float(v.min()), float(np.percentile(v, 99.5))
    if not hi > lo:
        hi = float(v.max())
    return window_uint8(v, lo, hi)


def slice_samples(image: np.ndarray, label: np.ndarray, id_for: Callable[[int], str], group: str) -> list[Sample]:
    """One Sample per slice (last axis) of uint8 image and label volumes, empty slices kept."""
    return [
        Sample(id_for(k), pixels.array_to_rgb(image[:, :, k]), np.ascontiguousarray(label[:, :, k]), group)
        for k in range(image.shape[2])
    ]


def slice_width(n: int) -> int:
    """Zero-padding of slice numbers: 2 digits, more only when a volume has >= 100 slices."""
    return max(2, len(str(max(n - 1, 0))))


def _pair_volumes(
    root: Path, found: dict[tuple, dict[str, Path]], what: str, expect: Callable[[dict[str, Path]], str]
) -> tuple[list[tuple[tuple, Path, Path]], list[Problem]]:
    """(key, image, label) for keys holding both files; a Problem for each half-pair."""
    pairs, problems = [], []
    for key in sorted(found):
        files = found[key]
        if "image" not in files:
            problems.append(Problem(relative(files["label"], root), f"{what} label without its image volume"))
        elif "label" not in files:
            problems.append(Problem(relative(files["image"], root), f"no label file (looked for {expect(files)})"))
        else:
            pairs.append((key, files["image"], files["label"]))
    return pairs, problems


def _unique_items(root: Path, items: list[RawItem]) -> tuple[list[RawItem], list[Problem]]:
    """Drop items whose id was already seen (two copies of one volume), reporting each."""
    seen: dict[str, RawItem] = {}
    problems = []
    for it in items:
        if it.id in seen:
            problems.append(
                Problem(relative(it.image, root), f"same volume {it.id!r} as {relative(seen[it.id].image, root)}")
            )
        else:
            seen[it.id] = it
    return sorted(seen.values(), key=lambda it: it.id), problems


def _split_problem(root: Path, items: list[RawItem], train: set[str], test: set[str]) -> list[Problem]:
    """A Problem for each group found in both parts of an official split."""
    first = {}
    for it in items:
        first.setdefault(it.group, it.image)
    return [Problem(relative(first[g], root), f"{g} is in both the train and test parts") for g in sorted(train & test)]


def _has_part(path: Path, root: Path, pred: Callable[[str], bool]) -> bool:
    """Whether a folder between ``root`` and ``path`` satisfies ``pred`` (lower-cased name)."""
    return any(pred(part.lower()) for part in Path(relative(path, root)).parts[:-1])


# ---------------------------------------------------------------------------------------------
# MRI volumes with one label volume each (ACDC, PROMISE12)


class LabelledMRI(Converter):
    """A volume + label-volume pair per item, the MRI intensity rule, slices ``<id>_sKK``."""

    label_values = 2  # labels allowed: 0 .. label_values - 1
    reader: Callable[[Path, str], np.ndarray] = staticmethod(read_nifti)

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        image = as_volume(self.reader(item.image, "image volume"), item.image)
        label_path = item.masks[0]
        raw_label = as_volume(self.reader(label_path, "label volume"), label_path)
        same_shape(image, raw_label, item.image, str(label_path))
        label = label_volume(raw_label, label_path, self.label_values)
        width = slice_width(image.shape[2])
        return slice_samples(mri_uint8(image), label, lambda k: f"{item.id}_s{k:0{width}d}", item.group)


ACDC_NAME = re.compile(r"^(patient\d{3})_frame(\d{2})(_gt)?\.nii(\.gz)?$")


class ACDC(LabelledMRI):
    """ACDC cine-MRI: the ED and ES frames of each patient with their ground truth."""

    name = "acdc"
    layout = (
        "ACDC as released: training/patientNNN/ and testing/patientNNN/, each with "
        "patientNNN_frameMM.nii.gz and patientNNN_frameMM_gt.nii.gz (labels 0 background, 1 RV, "
        "2 myocardium, 3 LV) for its ED and ES frames; Info.cfg and patientNNN_4d.nii.gz are ignored"
    )
    num_classes = 4
    class_names = ("RV", "MYO", "LV")
    label_values = 4

    def scan(self, root: Path) -> ScanResult:
        found: dict[tuple, dict[str, Path]] = {}
        for path in sorted(root.rglob("patient*_frame*.nii*")):
            m = ACDC_NAME.match(path.name)
            if m and path.is_file():
                key = (str(path.parent), m.group(1), m.group(2))
                found.setdefault(key, {})["label" if m.group(3) else "image"] = path
        pairs, problems = _pair_volumes(root, found, "ACDC", lambda f: f["image"].name.replace(".nii", "_gt.nii"))
        items = [RawItem(f"{key[1]}_frame{key[2]}", img, (lab,), key[1]) for key, img, lab in pairs]
        items, dup = _unique_items(root, items)
        problems += dup
        split, split_problems = self._official_split(root, items)
        return ScanResult(items, problems + split_problems, split)

    @staticmethod
    def _official_split(root: Path, items: list[RawItem]) -> tuple[dict[str, list[str]] | None, list[Problem]]:
        """The release's training/ vs testing/ folders, by patient; None when neither is used."""
        part = {}
        for it in items:
            train = _has_part(it.image, root, lambda p: p == "training")
            test = _has_part(it.image, root, lambda p: p == "testing")
            part[it.id] = "train" if train and not test else "test" if test and not train else None
        if not any(part.values()):
            return None, []
        outside = [it for it in items if part[it.id] is None]
        if outside:
            return None, [
                Problem(relative(it.image, root), "not under a training/ or testing/ folder (the official split)")
                for it in outside
            ]
        train = {it.group for it in items if part[it.id] == "train"}
        test = {it.group for it in items if part[it.id] == "test"}
        problems = _split_problem(root, items, train, test)
        return {"train": sorted(train - test), "test": sorted(test - train)}, problems


PROMISE_NAME = re.compile(r"^(case\d{2})(_segmentation)?\.mhd$", re.IGNORECASE)


class Promise12(LabelledMRI):
    """PROMISE12 prostate MRI: CaseNN.mhd/.raw with CaseNN_segmentation.mhd/.raw (0/1)."""

    name = "promise12"
    layout = (
        "PROMISE12 training data as released (TrainingData_Part1..3/ or their files together): "
        "CaseNN.mhd + CaseNN.raw and CaseNN_segmentation.mhd + CaseNN_segmentation.raw (prostate 1, "
        "background 0); folders whose name contains 'test' (the unlabelled test sets) are skipped"
    )
    num_classes = 1
    label_values = 2
    reader = staticmethod(read_mhd)

    def scan(self, root: Path) -> ScanResult:
        found: dict[tuple, dict[str, Path]] = {}
        for path in sorted(root.rglob("*.mhd")):
            m = PROMISE_NAME.match(path.name)
            if not m or not path.is_file() or _has_part(path, root, lambda p: "test" in p):
                continue
            key = (str(path.parent), m.group(1))
            found.setdefault(key, {})["label" if m.group(2) else "image"] = path
        pairs, problems = _pair_volumes(root, found, "PROMISE12", lambda f: f["image"].stem + "_segmentation.mhd")
        items = [RawItem(key[1], img, (lab,), key[1]) for key, img, lab in pairs]
        items, dup = _unique_items(root, items)
        return ScanResult(items, problems + dup, None)


# ---------------------------------------------------------------------------------------------
# Synapse multi-organ CT (BTCV abdomen), in TransUNet's 8-organ label set

# BTCV's 13 labels (1 spleen, 2 right kidney, 3 left kidney, 4 gallbladder, 5 esophagus, 6 liver,
# 7 stomach, 8 aorta, 9 inferior vena cava, 10 portal and splenic vein, 11 pancreas, 12 right
# adrenal gland, 13 left adrenal gland) → TransUNet's 8 organs; the other five → background.
BTCV_TO_TRANSUNET = {1: 7, 2: 4, 3: 3, 4: 2, 5: 0, 6: 5, 7: 8, 8: 1, 9: 0, 10: 0, 11: 6, 12: 0, 13: 0}
# TransUNet's lists_Synapse/test_vol.txt: its 12 test cases of BTCV's 30 labelled ones.
TRANSUNET_TEST_CASES = frozenset(f"case{n:04d}" for n in (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38))
CT_WINDOW = (-125.0, 275.0)
NPZ_NAME = re.compile(r"^(case\d{4})_slice(\d{3})\.npz$")
H5_NAME = re.compile(r"^(case\d{4})\.npy\.h5$")
RAW_NAME = re.compile(r"^img(\d{4})\.nii(\.gz)?$")
PREPROCESSED_DIRS = ("train_npz", "train_npz_new", "test_vol_h5", "test_vol_h5_new")


class Synapse(Converter):
    """Synapse multi-organ CT: TransUNet's preprocessed release, its 13-label variant, or raw BTCV.

    Three layouts, all giving TransUNet's classes (1 aorta, 2 gallbladder, 3 left kidney, 4 right
    kidney, 5 liver, 6 pancreas, 7 spleen, 8 stomach):

    - ``train_npz/caseNNNN_sliceNNN.npz`` + ``test_vol_h5/caseNNNN.npy.h5`` (TransUNet), labels 0..8;
    - ``train_npz_new/`` + ``test_vol_h5_new/`` (the EMCAD/CASCADE preprocessing U-Bench loads),
      BTCV's labels 0..13, remapped by ``BTCV_TO_TRANSUNET``;
    - raw BTCV ``RawData/Training/img/imgNNNN.nii.gz`` + ``label/labelNNNN.nii.gz`` (13 labels,
      remapped), CT windowed like TransUNet, split by TransUNet's ``test_vol.txt``;
      ``RawData/Testing`` has no labels and is skipped.

    Preprocessed images must already be in [0, 1] (raw HU there means the wrong layout).
    """

    name = "synapse"
    layout = (
        "TransUNet's preprocessed Synapse: train_npz/caseNNNN_sliceNNN.npz and "
        "test_vol_h5/caseNNNN.npy.h5 (arrays 'image' in [0, 1] and 'label' 0..8; also "
        "train_npz_new/ + test_vol_h5_new/ with BTCV's 13 labels), or raw BTCV "
        "RawData/Training/img/imgNNNN.nii.gz + RawData/Training/label/labelNNNN.nii.gz"
    )
    num_classes = 9
    class_names = ("aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen", "stomach")

    def scan(self, root: Path) -> ScanResult:
        pre = sorted(p for d in PREPROCESSED_DIRS for p in root.rglob(f"{d}/*") if p.is_file())
        pre = [p for p in pre if not p.name.startswith(".")]
        raw = sorted(p for p in root.rglob("img/img*.nii*") if p.is_file() and RAW_NAME.match(p.name))
        raw = [p for p in raw if not _has_part(p, root, lambda d: d == "testing")]
        if pre and raw:
            both = "both preprocessed (train_npz/test_vol_h5) and raw (RawData) Synapse files found"
            return ScanResult([], [Problem("", f"{both}; keep one layout in the folder")])
        return self._scan_raw(root, raw) if raw else self._scan_preprocessed(root, pre)

    def _scan_preprocessed(self, root: Path, files: list[Path]) -> ScanResult:
        items, problems = [], []
        for path in files:
            train = path.parent.name.startswith("train_npz")
            m = (NPZ_NAME if train else H5_NAME).match(path.name)
            if not m:
                expected = "caseNNNN_sliceNNN.npz" if train else "caseNNNN.npy.h5"
                problems.append(Problem(relative(path, root), f"unexpected file name (expected {expected})"))
                continue
            items.append(RawItem(path.name[:-4] if train else m.group(1), path, (), m.group(1)))
        items, dup = _unique_items(root, items)
        train = {it.group for it in items if it.image.name.endswith(".npz")}
        test = {it.group for it in items if not it.image.name.endswith(".npz")}
        problems += dup + _split_problem(root, items, train, test)
        split = {"train": sorted(train), "test": sorted(test)} if train and test else None
        return ScanResult(items, problems, split)

    def _scan_raw(self, root: Path, images: list[Path]) -> ScanResult:
        def label_for(image: Path) -> Path:
            return image.parent.parent / "label" / image.name.replace("img", "label", 1)

        found: dict[tuple, dict[str, Path]] = {}
        for path in images:
            key = (f"case{RAW_NAME.match(path.name).group(1)}", str(path))
            found[key] = {"image": path} | ({"label": label_for(path)} if label_for(path).is_file() else {})
        pairs, problems = _pair_volumes(root, found, "Synapse", lambda f: relative(label_for(f["image"]), root))
        items, dup = _unique_items(root, [RawItem(key[0], img, (lab,), key[0]) for key, img, lab in pairs])
        groups = {it.group for it in items}
        split = {"train": sorted(groups - TRANSUNET_TEST_CASES), "test": sorted(groups & TRANSUNET_TEST_CASES)}
        return ScanResult(items, problems + dup, split if split["train"] and split["test"] else None)

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        if item.masks:  # raw BTCV NIfTI pair
            image = as_volume(read_nifti(item.image, "image volume"), item.image)
            raw_label = as_volume(read_nifti(item.masks[0], "label volume"), item.masks[0])
            same_shape(image, raw_label, item.image, str(item.masks[0]))
            label = label_volume(raw_label, item.masks[0], self.num_classes, BTCV_TO_TRANSUNET)
            image = window_uint8(image, *CT_WINDOW)
            return slice_samples(image, label, lambda k: f"{item.id}_slice{k:03d}", item.group)
        image, raw_label = read_image_label(item.image)
        remap = BTCV_TO_TRANSUNET if item.image.parent.name.endswith("_new") else None
        one_slice = item.image.name.endswith(".npz")  # an (H, W) slice; .npy.h5: (slices, H, W)
        if one_slice:
            image, raw_label = image[..., None], raw_label[..., None]
        elif image.ndim == 3 and raw_label.ndim == 3:
            image, raw_label = np.moveaxis(image, 0, -1), np.moveaxis(raw_label, 0, -1)
        image, raw_label = as_volume(image, item.image), as_volume(raw_label, item.image)
        same_shape(image, raw_label, item.image, "its 'label' array")
        self._check_unit_range(image, item.image)
        label = label_volume(raw_label, item.image, self.num_classes, remap)
        id_for = (lambda k: item.id) if one_slice else (lambda k: f"{item.id}_slice{k:03d}")
        return slice_samples(window_uint8(image, 0.0, 1.0), label, id_for, item.group)

    @staticmethod
    def _check_unit_range(image: np.ndarray, path: Path) -> None:
        lo, hi = (float(np.nanmin(image)), float(np.nanmax(image))) if image.size else (0.0, 0.0)
        if lo < -0.01 or hi > 1.01:
            raise UbenchError(
                f"{path}: image values span [{lo:g}, {hi:g}], not TransUNet's [0, 1] (HU clipped to "
                "[-125, 275] and scaled)",
                "use TransUNet's preprocessed files, or put the raw BTCV RawData/ folder instead",
            )


CONVERTERS = [ACDC(), Synapse(), Promise12()]
