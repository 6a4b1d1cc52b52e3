"""Pixel rules shared by every converter: decoding files, images → RGB uint8, masks → labels.

Why one place: each raw format has quirks (16-bit TIFFs, palette GIFs, gzipped PPMs, JPEG masks,
instance labels), but what a prepared dataset holds must not depend on which converter read it.

- images: grayscale is replicated to RGB, alpha dropped, palette/CMYK/YCbCr converted to RGB;
  deeper than 8 bits (16-bit PNG/TIFF, int32, float) is rescaled by the image's own maximum,
  ``round(x * 255 / max(x))`` (all-zero stays zero); 8-bit images are kept as they are.
- masks, one of four policies, chosen per format (never guessed per file):
  ``binary``   at most two values (or colours), one of them 0 → foreground = nonzero; anything
               else is refused (a JPEG or multi-label mask must not pass silently);
  ``threshold`` grayscale >= 128 is foreground (JPEG-compressed masks: Kvasir-SEG, CHASE …);
  ``nonzero``  every nonzero value is foreground (instance labels: GlaS, DSB2018, TNBC);
  ``labels``   values are class indices 0..C-1 (multi-class masks), optionally remapped.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ubench.errors import UbenchError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
MASK_POLICIES = ("binary", "threshold", "nonzero", "labels")


def read_bytes(path: Path) -> bytes:
    """File bytes, gunzipped when the name ends in .gz (STARE ships ``im0001.ppm.gz``)."""
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UbenchError(f"cannot gunzip {path}: {exc}", "re-download the file; it is corrupt") from exc
    return data


def open_image(path: Path, what: str = "image") -> Image.Image:
    """Decode a whole file with PIL (PIL is lazy: load() forces it), as a UbenchError on failure."""
    try:
        im = Image.open(io.BytesIO(read_bytes(path)))
        im.load()
        return im
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = "not a recognisable image file" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise UbenchError(
            f"cannot read {what} {path}: {reason}",
            "replace the file with a valid image (it may be truncated or corrupt)",
        ) from exc


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Deeper-than-8-bit pixels → uint8 by the array's own maximum (see module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    x = arr.astype(np.float64)
    top = float(np.nanmax(x)) if x.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.zeros(arr.shape, dtype=np.uint8)
    x = np.nan_to_num(x, nan=0.0)
    return np.floor(np.clip(x, 0.0, None) * (255.0 / top) + 0.5).astype(np.uint8)


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """A decoded (H, W) or (H, W, C) array → uint8 (H, W, 3) RGB."""
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., 0]  # RGBA→RGB, LA→L
    arr = to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr)


def image_to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL image → uint8 (H, W, 3) RGB following the module's pixel rules."""
    if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        im = im.convert("RGBA" if im.mode in ("P", "PA") else "RGB")
    return array_to_rgb(np.asarray(im))


def read_image(path: Path) -> np.ndarray:
    """An image file → uint8 (H, W, 3) RGB."""
    return image_to_rgb(open_image(path, "image"))


def _mask_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]  # drop alpha
    return arr


def binary_mask(arr: np.ndarray, path: Path) -> np.ndarray:
    """Policy ``binary`` on a decoded array: refuses anything but two values, one of them 0."""
    if arr.ndim == 3:
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


def mask_from_array(
    arr: np.ndarray, path: Path, policy: str, num_classes: int = 1, remap: dict[int, int] | None = None
) -> np.ndarray:
    """A decoded mask array → uint8 (H, W) labels under ``policy`` (see module docstring)."""
    if policy not in MASK_POLICIES:
        raise ValueError(f"mask policy {policy!r} not in {MASK_POLICIES}")
    if policy == "binary":
        return binary_mask(arr, path)
    if arr.ndim == 3:
        if policy == "labels":
            raise UbenchError(f"label mask {path} has {arr.shape[2]} channels", "save class indices as one channel")
        arr = arr.max(axis=2)  # a colour-saved mask: any lit channel
    if policy == "threshold":
        scale = 255.0 / float(arr.max()) if arr.dtype != np.uint8 and arr.max() > 0 else 1.0
        return (arr.astype(np.float64) * scale >= 128).astype(np.uint8)
    if policy == "nonzero":
        return (arr != 0).astype(np.uint8)
    values = np.asarray(arr).astype(np.int64)
    if remap:
        out = np.zeros(values.shape, dtype=np.int64)
        unknown = sorted(set(np.unique(values).tolist()) - set(remap) - {0})
        if unknown:
            raise UbenchError(
                f"label mask {path} has value(s) {unknown[:6]} outside the known labels {sorted(remap)}",
                "check that the file belongs to this dataset (and this release of it)",
            )
        for src, dst in remap.items():
            out[values == src] = dst
        values = out
    bad = sorted(v for v in np.unique(values).tolist() if v < 0 or v >= num_classes)
    if bad:
        raise UbenchError(
            f"label mask {path} has class value(s) {bad[:6]}, expected 0..{num_classes - 1}",
            "check the dataset's format (or that this mask belongs to it)",
        )
    return values.astype(np.uint8)


def read_mask(path: Path, policy: str, num_classes: int = 1, remap: dict[int, int] | None = None) -> np.ndarray:
    """A mask file → uint8 (H, W) labels under ``policy``."""
    return mask_from_array(_mask_array(open_image(path, "mask")), path, policy, num_classes, remap)


def union_masks(masks: list[np.ndarray], paths: list[Path]) -> np.ndarray:
    """Union of binary masks of one image (BUSI's ``_mask_1``, Montgomery's left + right lung)."""
    out = masks[0].copy()
    for m, p in zip(masks[1:], paths[1:]):
        if m.shape != out.shape:
            raise UbenchError(
                f"mask {p} is {m.shape[1]}x{m.shape[0]} but {paths[0]} is {out.shape[1]}x{out.shape[0]}",
                "all masks of one image must have the image's size",
            )
        out = np.maximum(out, m)
    return out


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) → (size, size, 3) with PIL bilinear (identity when already that size)."""
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W) labels → (size, size) with nearest neighbour, so labels stay labels."""
    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
