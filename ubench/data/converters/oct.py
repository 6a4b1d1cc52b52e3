"""OCT: the Intraretinal Cystoid Fluid dataset (U-Bench's "Cystoidfluid"), as released on Kaggle.

Which dataset: U-Bench's ``cystoidfluid`` comes from MedSegBench's CystoFluidMSBench, whose
references are Kaggle's "Intraretinal Cystoid Fluid" (zeeshanahmed13/intraretinal-cystoid-fluid,
DOI 10.34740/KAGGLE/DS/2277068) and its paper (doi 10.1002/ima.22662): 512x512 Spectralis
B-scans of DME patients (selected from Kermany's OCT set) with cystoid macular edema masks.

Layout (one folder per sample, like DSB2018)::

    2021-training-data-ZA/2021-training-data-ZA/<sample>/images/<sample>.jpeg
    2021-training-data-ZA/2021-training-data-ZA/<sample>/masks/<mask>.png

Quirks handled:
- one sample folder (``815DME_F``) also holds another sample's mask (``MASK-DME511.png``): when a
  folder has several masks, the one whose name starts with the folder's leading number (815 in
  ``815DME_F.png``, not in ``8150….png``) is used; if that does not single one out, the folder is
  reported;
- masks are saved as 3-channel 0/255 images with a few intermediate edge values, so foreground
  is ``>= 128``; a mask stored as 0/1 (MATLAB logical) is read as 0/255 first.
No official split ships with the data (a seeded split is made); ``group`` is the sample.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ubench.data.converters import pixels
from ubench.data.converters.base import Converter, Problem, RawItem, Sample, ScanResult, relative


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def pick_mask(sample: str, masks: list[Path]) -> Path | None:
    """The sample's own mask: the only one, or the only one named after its leading number."""
    if len(masks) == 1:
        return masks[0]
    number = re.match(r"\d+", sample)
    if number is None:
        return None
    own = [m for m in masks if re.match(rf"{number.group(0)}(?!\d)", m.name)]  # 815, not 8150
    return own[0] if len(own) == 1 else None


def read_fluid_mask(path: Path) -> np.ndarray:
    """A cystoid-fluid mask file → 0/1: ``>= 128`` is fluid; a 0/1-valued mask counts 1 as fluid.

    The shared pixel rules come first (``pixels.mask_pixels``): a palette mask is read by its
    index and must then be binary; a mask whose alpha is not uniformly opaque is refused.
    """
    arr, indexed = pixels.mask_pixels(pixels.open_image(path, "mask"), path)
    if indexed:
        return pixels.binary_mask(arr, path, "palette indices")
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.size and arr.max() == 1:
        arr = arr.astype(np.uint8) * 255
    return pixels.mask_from_array(arr, path, "threshold")


class CystoidFluid(Converter):
    """Per-sample folders holding ``images/`` (one B-scan) and ``masks/`` (its fluid mask)."""

    name = "oct_cystoid"
    layout = (
        "Kaggle's Intraretinal Cystoid Fluid: <sample>/images/<sample>.jpeg and <sample>/masks/<mask>.png "
        "per sample (anywhere below the folder, e.g. 2021-training-data-ZA/2021-training-data-ZA/<sample>/)"
    )
    num_classes = 1

    def scan(self, root: Path) -> ScanResult:
        items: list[RawItem] = []
        problems: list[Problem] = []
        seen: dict[str, str] = {}
        folders = sorted({p.parent for name in ("images", "masks") for p in root.rglob(name) if p.is_dir()})
        for folder in folders:
            rel = relative(folder, root)
            images = [p for p in _files(folder / "images") if p.suffix.lower() in pixels.IMAGE_EXTS]
            masks = [p for p in _files(folder / "masks") if p.suffix.lower() in pixels.IMAGE_EXTS]
            if len(images) != 1:
                problems.append(Problem(rel, f"{len(images)} image files in images/, expected one"))
                continue
            mask = pick_mask(folder.name, masks)
            if mask is None:
                shown = ", ".join(m.name for m in masks[:4])
                why = f"cannot pick its mask in masks/ (found: {shown})" if masks else "no mask in masks/"
                problems.append(Problem(relative(images[0], root), why))
                continue
            if folder.name in seen:
                problems.append(Problem(rel, f"same sample name as {seen[folder.name]}"))
                continue
            seen[folder.name] = rel
            items.append(RawItem(folder.name, images[0], (mask,), folder.name))
        items.sort(key=lambda it: it.id)
        return ScanResult(items, problems, None)

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        return [Sample(item.id, pixels.read_image(item.image), read_fluid_mask(item.masks[0]), item.group)]


CONVERTERS = [CystoidFluid()]
