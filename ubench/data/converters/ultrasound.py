"""Ultrasound converters: BUSI, UDIAT Dataset B (``bus``), BUS-BRA, TN-SCUI 2020 and Stanford TUCC.

Each reads the folder as its owners distribute it (the sources are named by each record). Why two
are not plain ``PairedFolders`` records: BUS-BRA has several images per patient, so its split unit
is the patient (``bus_data.csv``'s ``Case``, else the number in the file name); TUCC is a single
HDF5 file of cine-clip frames whose split unit is the clip (``annot_id``, one thyroid nodule).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import re
from pathlib import Path, PurePosixPath

import numpy as np

from ubench.data.converters import pixels
from ubench.data.converters.base import Converter, Problem, RawItem, Sample, ScanResult
from ubench.data.converters.paired import PairedFolders
from ubench.errors import UbenchError


def _in_folder(folder: str, suffix: str = ".*"):
    """``mask_for``: the file with the image's stem in ``folder`` (``suffix`` is a glob)."""
    return lambda rel: f"{folder}/{glob.escape(rel.stem)}{suffix}"


# ------------------------------------------------------------------------------------------- BUSI
# Al-Dhabyani et al. 2020 (scholar.cu.edu.eg/?q=afahmy/pages/dataset; Kaggle mirror
# aryashah2k/breast-ultrasound-images-dataset): Dataset_BUSI_with_GT/<class>/<class> (<n>).png with
# '<stem>_mask.png' and, for 17 multifocal cases, '_mask_1.png', '_mask_2.png' (unioned here); only
# those names are the image's masks ('<stem>_mask copy.png' is reported, never unioned).
BUSI_CLASSES = ("benign", "malignant", "normal")


def _busi_id(rel: PurePosixPath) -> str:
    """The owners' stems already carry the class ('benign (1)'); a renamed copy gets it prefixed."""
    return rel.stem if rel.stem.startswith(rel.parent.name) else f"{rel.parent.name}/{rel.stem}"


BUSI = PairedFolders(
    "busi",
    "Dataset_BUSI_with_GT/ with benign/, malignant/, normal/ folders of '<name>.png' images and "
    "'<name>_mask.png' masks (extra lesions in '<name>_mask_1.png', '_mask_2.png' … are unioned; "
    "normal images have empty masks)",
    images=tuple(f"{c}/*.png" for c in BUSI_CLASSES),
    mask_glob=tuple(f"{c}/*_mask*.png" for c in BUSI_CLASSES),
    mask_for=lambda rel: str(PurePosixPath(rel.parent, f"{glob.escape(rel.stem)}_mask*.png")),
    mask_ok=lambda rel, mask: re.fullmatch(rf"{re.escape(rel.stem)}_mask(_\d+)?\.png", mask.name) is not None,
    policy="binary",
    id_for=_busi_id,
    max_masks=None,
)

# -------------------------------------------------------------------------- UDIAT Dataset B (bus)
# Yap et al. 2018, released on request: DatasetB/original/000001.png … 000163.png and GT/<same name>
# (lesion 255, background 0).
BUS = PairedFolders(
    "bus",
    "UDIAT Dataset B: original/<nnnnnn>.png images and GT/<nnnnnn>.png masks (0/255)",
    images=("original/*.png",),
    mask_glob=("GT/*.png",),
    mask_for=_in_folder("GT", ".png"),
    policy="binary",
)

# ---------------------------------------------------------------------------------------- BUS-BRA
# Gómez-Flores et al. 2024 (zenodo.org/records/8231412; github.com/wgomezf/BUS-BRA, whose MATLAB code
# reads Images/<ID>.png and Masks/mask<ID minus 'bus'>.png for each ID of bus_data.csv). 1875 images
# of 1064 patients: bus_0001-l and bus_0001-r are one patient, and bus_data.csv's Case column names it.
BUSBRA_CSV = "bus_data.csv"


def _patient(value: str) -> str:
    """A patient number as a zero-padded group id ('1' and '0001' → '0001')."""
    value = value.strip()
    return f"{int(value):04d}" if value.isdigit() else value


def _busbra_cases(root: Path) -> tuple[dict[str, str], list[Problem]]:
    """bus_data.csv's ID → patient ({} when there is no csv), with a Problem if it is unreadable."""
    path = root / BUSBRA_CSV
    if not path.is_file():
        return {}, []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return {}, [Problem(BUSBRA_CSV, f"cannot read {BUSBRA_CSV}: {exc}")]
    if not rows or not {"ID", "Case"} <= set(rows[0]):
        found = sorted(rows[0]) if rows else []
        return {}, [Problem(BUSBRA_CSV, f"{BUSBRA_CSV} has no ID and Case columns (found {found})")]
    return {row["ID"].strip(): _patient(row["Case"] or "") for row in rows if row["ID"]}, []


def _busbra_group(item_id: str, cases: dict[str, str]) -> str:
    """The patient of one image: bus_data.csv's Case, else the number in 'bus_0001-l'."""
    if item_id in cases and cases[item_id]:
        return cases[item_id]
    match = re.match(r"bus_(\d+)", item_id)
    return _patient(match.group(1)) if match else item_id


class BusBra(PairedFolders):
    """PairedFolders whose groups are patients, so one patient's images never straddle a split."""

    def scan(self, root: Path) -> ScanResult:
        result = super().scan(root)
        cases, problems = _busbra_cases(Path(root))
        result.problems.extend(problems)
        result.items = [dataclasses.replace(it, group=_busbra_group(it.id, cases)) for it in result.items]
        if cases:
            result.split_files = (Path(root) / BUSBRA_CSV,)  # the grouping depends on it
        return result


BUSBRA = BusBra(
    "busbra",
    "BUSBRA/: Images/bus_<nnnn>-<x>.png with Masks/mask_<nnnn>-<x>.png (0/255); bus_data.csv (ID, Case) "
    "groups images by patient (without it, by <nnnn>)",
    images=("Images/*.png",),
    mask_glob=("Masks/*.png",),
    mask_for=lambda rel: f"Masks/mask{glob.escape(rel.stem.removeprefix('bus'))}.png",
    policy="binary",
)

# ------------------------------------------------------------------------------------ TN-SCUI 2020
# tn-scui2020.grand-challenge.org training set: image/<n>.PNG, mask/<n>.PNG (0/255, upper-case
# extension) and train.csv (ID = '<n>.PNG', CATE = benign 0 / malignant 1), not needed here.
TNSCUI = PairedFolders(
    "tnscui2020",
    "TN-SCUI 2020 training set: image/<n>.PNG with mask/<n>.PNG (0/255); train.csv is not needed",
    images=("image/*.PNG", "image/*.png"),
    mask_glob=("mask/*.PNG", "mask/*.png"),
    mask_for=_in_folder("mask", ".[Pp][Nn][Gg]"),
    policy="binary",
)

# ------------------------------------------------------------------------------------------- TUCC
# Stanford AIMI Thyroid Ultrasound Cine-clip (stanfordaimi.azurewebsites.net/datasets/
# a72f2b02-7b53-4c5d-963c-d7253220bfd5): dataset.hdf5 with 'image' (N, H, W) uint8 frames, 'mask'
# (N, H, W) with values {0, 255}, 'annot_id' (N,) byte strings such as b'103_' (one clip = one
# nodule) and 'frame_num' (N,); metadata.csv holds the clinical data. Key names, the trailing '_' and
# the 0/255 masks as read by public loaders (e.g. UltraBench's stanford_thyroid.py).
TUCC_FILE = "dataset.hdf5"
TUCC_KEYS = ("image", "mask", "annot_id", "frame_num")
TUCC_FIX = "re-download dataset.hdf5 from Stanford AIMI (Thyroid Ultrasound Cine-clip); it may be truncated"


def _open_h5(path: Path):
    """An open h5py.File (h5py is imported here: only TUCC needs it)."""
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise UbenchError("reading TUCC needs h5py, which is not installed", "pip install h5py") from exc
    return h5py.File(path, "r")


def _text(value) -> str:
    """An HDF5 string cell (bytes, numpy bytes or str) as stripped text."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace").strip()
    return str(value).strip()


def _frame_number(value) -> int:
    """frame_num as stored (an integer, or text such as b'12') → int; ValueError otherwise."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return int(_text(value).rstrip("_"))


def _check_tucc_shapes(shapes: dict[str, tuple[int, ...]], path: str) -> None:
    """Same frame count everywhere; (N, H, W[, C]) images and (N, H, W) masks of one size."""
    counts = {k: s[0] if s else 0 for k, s in shapes.items()}
    image, mask = shapes["image"], shapes["mask"]
    bad = (
        len(set(counts.values())) != 1
        or len(image) not in (3, 4)
        or len(mask) not in (3, 4)
        or image[1:3] != mask[1:3]
    )
    if bad:
        shown = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise UbenchError(
            f"{path}: datasets do not line up ({shown}); expected image (N, H, W), mask (N, H, W), "
            "annot_id (N,), frame_num (N,)",
            TUCC_FIX,
        )


def _group_frames(annots: np.ndarray, frames: np.ndarray, path: str) -> dict[str, tuple[tuple[int, int], ...]]:
    """annot_id → ((frame_num, row), …) in row order, refusing unreadable or repeated frames."""
    clips: dict[str, list[tuple[int, int]]] = {}
    bad: list[str] = []
    for row, (annot, frame) in enumerate(zip(annots, frames)):
        clip = _text(annot).rstrip("_")
        try:
            number = _frame_number(frame)
        except ValueError:
            number = None
        if not clip or number is None:
            bad.append(f"row {row} (annot_id {_text(annot)!r}, frame_num {_text(frame)!r})")
            continue
        clips.setdefault(clip, []).append((number, row))
    for clip, pairs in sorted(clips.items()):
        numbers = [n for n, _ in pairs]
        bad.extend(f"annot_id {clip!r} frame {n} repeated" for n in sorted(set(numbers)) if numbers.count(n) > 1)
    if bad:
        raise UbenchError(f"{path}: {len(bad)} bad frame label(s): {'; '.join(bad[:5])}", TUCC_FIX)
    return {clip: tuple(pairs) for clip, pairs in clips.items()}


@functools.lru_cache(maxsize=4)
def _tucc_index(path: str, mtime_ns: int, size: int) -> dict[str, tuple[tuple[int, int], ...]]:
    """The clips of one dataset.hdf5 (cached by path, mtime and size: scan and load share it)."""
    try:
        with _open_h5(Path(path)) as f:
            missing = [k for k in TUCC_KEYS if k not in f]
            if missing:
                raise UbenchError(f"{path} has no dataset(s) {missing} (it has {sorted(f.keys())})", TUCC_FIX)
            shapes = {k: tuple(f[k].shape) for k in TUCC_KEYS}
            _check_tucc_shapes(shapes, path)
            annots, frames = f["annot_id"][()], f["frame_num"][()]
    except (OSError, TypeError, ValueError, KeyError, AttributeError) as exc:  # h5py's errors, groups
        raise UbenchError(f"cannot read {path} as HDF5: {exc}", TUCC_FIX) from exc
    return _group_frames(np.ravel(annots), np.ravel(frames), path)


def _clips_of(path: Path) -> dict[str, tuple[tuple[int, int], ...]]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise UbenchError(f"cannot read {path}: {exc}", TUCC_FIX) from exc
    return _tucc_index(str(path), stat.st_mtime_ns, stat.st_size)


class TuccHdf5(Converter):
    """Stanford TUCC: one unit per cine clip (annot_id), one sample per frame."""

    name = "tucc"
    layout = (
        "dataset.hdf5 (Stanford AIMI Thyroid Ultrasound Cine-clip) with datasets image (N, H, W) uint8, "
        "mask (N, H, W) 0/255, annot_id (N,) such as '103_' and frame_num (N,); metadata.csv is not needed"
    )

    def scan(self, root: Path) -> ScanResult:
        path = Path(root) / TUCC_FILE
        if not path.is_file():
            return ScanResult([], [Problem("", f"no {TUCC_FILE} found; expected {self.layout}")])
        try:
            clips = _clips_of(path)
        except UbenchError as exc:
            return ScanResult([], [Problem(TUCC_FILE, exc.what, exc.fix)])
        return ScanResult([RawItem(clip, path, (path,), clip) for clip in sorted(clips)])

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        path = item.image
        frames = _clips_of(path).get(item.id, ())
        if not frames:
            raise UbenchError(f"{path} has no frames of clip {item.id!r}", "re-run ubench datasets check")
        rows = [row for _, row in frames]  # increasing, as h5py's fancy indexing requires
        try:
            with _open_h5(path) as f:
                images, masks = f["image"][rows], f["mask"][rows]
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise UbenchError(f"cannot read clip {item.id!r} from {path}: {exc}", TUCC_FIX) from exc
        return [
            Sample(
                f"{item.id}_{frame:04d}",
                pixels.array_to_rgb(image),
                pixels.mask_from_array(mask, Path(f"{path}[mask row {row}]"), "binary"),
                item.id,
            )
            for (frame, row), image, mask in zip(frames, images, masks)
        ]


TUCC = TuccHdf5()

CONVERTERS = [BUSI, BUS, BUSBRA, TNSCUI, TUCC]
