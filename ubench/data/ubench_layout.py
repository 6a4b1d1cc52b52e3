"""Reader for U-Bench's folder layout: ``images/<stem>.<ext>`` and ``masks/0/<stem>.<ext>``.

Why: U-Bench's Hugging Face release (and its ``MedicalDataSets`` loader) keeps each dataset as
one image folder plus a binary-mask folder per class (``masks/0`` for the single foreground
class), with optional ``train.txt``/``val.txt`` naming the split by stem. Anything a user drops
into ``data/raw/<name>`` in that layout becomes a dataset; every problem found while reading it is
a UbenchError naming the file(s) and the fix, raised before anything is written.

Pixel rules, stated once:
- images: grayscale is replicated to RGB, alpha is dropped, palette/CMYK/YCbCr convert to RGB;
  images with more than 8 bits (16-bit PNG/TIFF, 32-bit int or float) are rescaled to uint8 by
  their own maximum, ``round(x * 255 / max(x))`` (all-zero stays zero); 8-bit images are kept as is.
- masks: foreground is every nonzero pixel, but a mask must be binary: at most two distinct values
  (or colours), and if two, one of them 0 (black). {0,255}, {0,1} and a single value are accepted;
  JPEG-compressed or multi-label masks are refused rather than thresholded silently.
- both are resized to ``image_size`` x ``image_size`` (aspect ratio not kept, as U-Bench's
  ``Resize``): PIL bilinear for images, nearest for masks.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ubench.errors import UbenchError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPLIT_FILES = ("train.txt", "val.txt")
LAYOUT_HINT = "images/<stem>.png (or .jpg/.bmp/.tif) and masks/0/<stem>.png, one binary mask per image"


@dataclass
class LayoutData:
    """Everything read from one U-Bench-layout folder, already resized and validated."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    masks: np.ndarray  # uint8 (N, S, S) in {0, 1}
    ids: list[str]  # sorted stems
    sources: dict[str, str]  # relative posix path -> sha256
    original_sizes: dict[str, int]  # min/max height and width before resizing
    split_names: dict[str, list[str]] | None = None  # {"train": [...], "val": [...]} or None
    file_names: dict[str, str] = field(default_factory=dict)  # stem -> image file name


def is_ubench_layout(folder: str | Path) -> bool:
    """True when ``folder`` looks like a U-Bench dataset (it has an ``images/`` subfolder)."""
    return (Path(folder) / "images").is_dir()


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def find_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """Sorted (stem, image path, mask path) triples; unmatched or duplicated files are errors."""
    root = Path(root)
    img_dir, mask_dir = root / "images", root / "masks" / "0"
    if not root.is_dir():
        raise UbenchError(
            f"raw data folder {root} does not exist",
            f"put the dataset at {root} in U-Bench's layout: {LAYOUT_HINT}",
        )
    if not img_dir.is_dir():
        raise UbenchError(f"{root} has no images/ folder", f"lay the dataset out as {LAYOUT_HINT}")
    if not mask_dir.is_dir():
        raise UbenchError(f"{root} has no masks/0/ folder", f"lay the dataset out as {LAYOUT_HINT}")
    images: dict[str, Path] = {}
    for p in _visible_files(img_dir):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue  # e.g. Thumbs.db, notes: not images
        if p.stem in images:
            raise UbenchError(
                f"two images share the stem {p.stem!r}: {images[p.stem]} and {p}",
                "keep one file per image stem in images/",
            )
        images[p.stem] = p
    if not images:
        raise UbenchError(
            f"no images in {img_dir} (looked for {', '.join(IMAGE_EXTS)})",
            f"put the images there: {LAYOUT_HINT}",
        )
    masks: dict[str, Path] = {}
    for p in _visible_files(mask_dir):
        if p.stem in masks:
            raise UbenchError(
                f"two masks share the stem {p.stem!r}: {masks[p.stem]} and {p}",
                "keep one mask file per image stem in masks/0/",
            )
        masks[p.stem] = p
    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        listed = ", ".join(str(images[s]) for s in no_mask[:5]) + (" …" if len(no_mask) > 5 else "")
        raise UbenchError(
            f"{len(no_mask)} image(s) without a mask in {mask_dir}: {listed}",
            "add masks/0/<stem>.png for each image (same stem), or remove the image",
        )
    no_image = sorted(set(masks) - set(images))
    if no_image:
        listed = ", ".join(str(masks[s]) for s in no_image[:5]) + (" …" if len(no_image) > 5 else "")
        raise UbenchError(
            f"{len(no_image)} mask(s) without an image in {img_dir}: {listed}",
            "add images/<stem>.<ext> for each mask (same stem), or remove the mask",
        )
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def _open(data: bytes, path: Path, what: str) -> Image.Image:
    """Decode fully (PIL is lazy), turning any decoder failure into a UbenchError."""
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UbenchError(
            f"cannot read {what} {path}: {exc}",
            "replace the file with a valid PNG/JPEG/BMP/TIFF (it may be truncated or corrupt)",
        ) from exc


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Deeper-than-8-bit pixels → uint8 by the image's own maximum (see module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    x = arr.astype(np.float64)
    top = float(x.max()) if x.size else 0.0
    if top <= 0:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.floor(np.clip(x, 0.0, None) * (255.0 / top) + 0.5).astype(np.uint8)


def image_to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL image → uint8 (H, W, 3) RGB following the module's pixel rules."""
    if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        im = im.convert("RGBA" if im.mode in ("P", "PA") else "RGB")
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., 0]  # RGBA→RGB, LA→L
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr)


def mask_to_binary(im: Image.Image, path: Path) -> np.ndarray:
    """A PIL mask → uint8 (H, W) in {0, 1}; refuses anything that is not two-valued with 0."""
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]  # drop alpha
        flat = arr.reshape(-1, arr.shape[2])
        values = np.unique(flat, axis=0)
        nonzero = values.any(axis=1)
        fg = arr.any(axis=2)
    else:
        values = np.unique(arr)
        nonzero = values != 0
        fg = arr != 0
    if len(values) > 2 or (len(values) == 2 and nonzero.all()):
        shown = [v.tolist() for v in values[:6]]
        raise UbenchError(
            f"mask {path} is not binary: {len(values)} distinct values, e.g. {shown}",
            "save each mask as a lossless PNG with background 0 and foreground one value "
            "(255 or 1); threshold JPEG masks and split multi-label masks per class",
        )
    return fg.astype(np.uint8)


def _read_split_file(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip()]


def _resolve_names(names: list[str], path: Path, file_names: dict[str, str]) -> list[str]:
    """Split-file entries (stem or image file name) → stems; unknown or repeated names fail."""
    by_file = {fname: stem for stem, fname in file_names.items()}
    stems, unknown, seen = [], [], set()
    for name in names:
        stem = name if name in file_names else by_file.get(Path(name).name)
        if stem is None:
            unknown.append(name)
            continue
        if stem in seen:
            raise UbenchError(f"{path} lists {name!r} twice", f"list each image once in {path.name}")
        seen.add(stem)
        stems.append(stem)
    if unknown:
        listed = ", ".join(repr(u) for u in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise UbenchError(
            f"{path} names {len(unknown)} image(s) not in images/: {listed}",
            "each line must be an image stem or file name from images/; fix or remove those lines",
        )
    return stems


def read_split_names(root: Path, file_names: dict[str, str]) -> dict[str, list[str]] | None:
    """U-Bench's train.txt/val.txt as stem lists, or None when the folder has neither."""
    present = [n for n in SPLIT_FILES if (root / n).is_file()]
    if not present:
        return None
    if len(present) == 1:
        missing = next(n for n in SPLIT_FILES if n not in present)
        raise UbenchError(
            f"{root} has {present[0]} but no {missing}",
            "provide both train.txt and val.txt (U-Bench's split), or neither for a seeded split",
        )
    out = {
        key: _resolve_names(_read_split_file(root / fname), root / fname, file_names)
        for key, fname in (("train", "train.txt"), ("val", "val.txt"))
    }
    both = sorted(set(out["train"]) & set(out["val"]))
    if both:
        raise UbenchError(
            f"{len(both)} image(s) are in both train.txt and val.txt of {root}: {', '.join(both[:5])}",
            "an image may be in one split only; remove it from one of the files",
        )
    for key in out:
        if not out[key]:
            raise UbenchError(f"{root / (key + '.txt')} lists no images", "list at least one image")
    return out


def load_ubench_layout(root: str | Path, image_size: int) -> LayoutData:
    """Read, validate and resize a whole U-Bench-layout folder (nothing is written)."""
    root = Path(root)
    pairs = find_pairs(root)
    n, s = len(pairs), int(image_size)
    images = np.empty((n, s, s, 3), dtype=np.uint8)
    masks = np.empty((n, s, s), dtype=np.uint8)
    sources: dict[str, str] = {}
    heights, widths = [], []
    file_names: dict[str, str] = {}
    for i, (stem, img_path, mask_path) in enumerate(pairs):
        img_bytes, mask_bytes = img_path.read_bytes(), mask_path.read_bytes()
        sources[img_path.relative_to(root).as_posix()] = hashlib.sha256(img_bytes).hexdigest()
        sources[mask_path.relative_to(root).as_posix()] = hashlib.sha256(mask_bytes).hexdigest()
        img = image_to_rgb(_open(img_bytes, img_path, "image"))
        mask = mask_to_binary(_open(mask_bytes, mask_path, "mask"), mask_path)
        if img.shape[:2] != mask.shape:
            raise UbenchError(
                f"image {img_path} is {img.shape[1]}x{img.shape[0]} but its mask {mask_path} "
                f"is {mask.shape[1]}x{mask.shape[0]} (width x height)",
                "the mask must have the image's size; re-export it at the image's resolution",
            )
        heights.append(img.shape[0])
        widths.append(img.shape[1])
        images[i] = resize_image(img, s)
        masks[i] = resize_mask(mask, s)
        file_names[stem] = img_path.name
    split_names = read_split_names(root, file_names)
    for fname in SPLIT_FILES:
        if (root / fname).is_file():
            sources[fname] = hashlib.sha256((root / fname).read_bytes()).hexdigest()
    sizes = {
        "min_height": min(heights),
        "max_height": max(heights),
        "min_width": min(widths),
        "max_width": max(widths),
    }
    return LayoutData(images, masks, [p[0] for p in pairs], sources, sizes, split_names, file_names)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) → (size, size, 3) with PIL bilinear (identity when already that size)."""
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W) {0,1} → (size, size) with nearest neighbour, so it stays binary."""
    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
