"""Pixel rules shared by every converter: decoding files, images → RGB uint8, masks → labels.

Why one place: each raw format has quirks (16-bit TIFFs, palette GIFs, gzipped PPMs, JPEG masks,
instance labels), but what a prepared dataset holds must not depend on which converter read it.

- decoding: any failure to decode a file (not an image, truncated, corrupt header, and PIL's
  decompression-bomb guard, its error *and* its warning) is a UbenchError naming the file, so
  ``datasets check`` reports it as a problem on that file and goes on with the rest.
- images: grayscale is replicated to RGB, alpha dropped, palette/CMYK/YCbCr converted to RGB;
  deeper than 8 bits (16-bit PNG/TIFF, int32, float) is rescaled by the image's own maximum,
  ``round(x * 255 / max(x))`` (all-zero stays zero); 8-bit images are kept as they are.
- masks: what a pixel IS comes first, the same for every format (``mask_pixels``):
  palette   ('P', 'PA') a pixel is its palette INDEX; the palette's colours are display only (a
            palette whose index 0 is white still has index 0 = background), and a palette's
            transparency (tRNS) is per index, so the index already carries it;
  alpha     a mask with an alpha channel (RGBA, LA, PA …) must be uniformly opaque (alpha 255
            everywhere), and alpha is then dropped; any other alpha is refused, naming the file,
            because the foreground may be drawn in the alpha channel alone (colour all 0) and
            reading either channel would then silently give an empty or an inverted mask;
  grey/colour the stored value (or RGB triple); 16-bit and float as stored.
  Then one of four policies, chosen per format (never guessed per file), says what it means:
  ``binary``   grey/colour: at most two values (or colours), one of them 0 → foreground =
               nonzero; palette: at most two indices, one of them 0 → foreground = nonzero index;
               anything else is refused (a JPEG or multi-label mask must not pass silently);
  ``threshold`` grey: >= 128 is foreground, after scaling deeper-than-8-bit masks by their max
               (JPEG-compressed masks: Kvasir-SEG, CHASE …); colour: the brightest channel
               >= 128; palette: an index is not an intensity, so the ``binary`` rule applies to
               the indices (a palette mask with more than two indices is refused);
  ``nonzero``  grey/colour: any nonzero value (channel) is foreground (instance labels: GlaS,
               DSB2018, TNBC); palette: any nonzero index;
  ``labels``   grey: values are class indices 0..C-1 (multi-class masks), optionally remapped;
               palette: the index is the class; colour (several channels): refused.
"""

from __future__ import annotations

import gzip
import io
import warnings
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
    """Decode a whole file with PIL (PIL is lazy: load() forces it), as a UbenchError on failure.

    Every decoder failure becomes a UbenchError naming the file (PIL's decoders raise many kinds:
    OSError, SyntaxError, struct.error …), and so does PIL's decompression-bomb guard: its error
    (more than twice ``Image.MAX_IMAGE_PIXELS``) and its warning (more than the limit), which would
    otherwise stop ``datasets check`` with a traceback or pass unnoticed.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(read_bytes(path)))
            im.load()
        return im
    except UbenchError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UbenchError(
            f"cannot read {what} {path}: refused as a possible decompression bomb: {exc}",
            "re-download the file (a corrupt header can claim such a size); if the image really is "
            f"that large, downscale it below PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels first",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem
        if isinstance(exc, UnidentifiedImageError):
            reason = "not a recognisable image file"
        else:
            reason = " ".join(str(exc).split()) or type(exc).__name__
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


ALPHA_FIX = (
    "flatten it to one channel without transparency: if the object is drawn in the alpha channel, "
    "save that channel as the mask (PIL: Image.open(f).getchannel('A').save(f)); otherwise drop "
    "the alpha (Image.open(f).convert('RGB').save(f))"
)


def mask_pixels(im: Image.Image, path: Path) -> tuple[np.ndarray, bool]:
    """A decoded mask → (its pixels, True when they are palette indices); see the module docstring.

    Refuses (UbenchError) a mask whose alpha channel is not uniformly opaque.
    """
    bands = im.getbands()
    alpha_band = next((b for b in ("A", "a") if b in bands), None)
    if alpha_band is not None:
        alpha = np.asarray(im.getchannel(alpha_band))
        clear = int(np.count_nonzero(alpha != 255))
        if clear:
            raise UbenchError(
                f"mask {path} has an alpha channel that is not uniformly opaque ({clear} of "
                f"{alpha.size} pixels transparent or partly so): its foreground may be in the alpha "
                "channel, and U-Bench does not guess which channel is the mask",
                ALPHA_FIX,
            )
    arr = np.asarray(im)
    if im.mode in ("P", "PA"):
        return (arr[..., 0] if arr.ndim == 3 else arr), True
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., 0]  # drop (opaque) alpha
    return arr, False


def binary_mask(arr: np.ndarray, path: Path, values: str = "values") -> np.ndarray:
    """Policy ``binary`` on a decoded array: refuses anything but two values, one of them 0."""
    if arr.ndim == 3:
        flat = arr.reshape(-1, arr.shape[2])
        found = np.unique(flat, axis=0)
        nonzero = found.any(axis=1)
        fg = arr.any(axis=2)
    else:
        found = np.unique(arr)
        nonzero = found != 0
        fg = arr != 0
    if len(found) > 2 or (len(found) == 2 and nonzero.all()):
        shown = [v.tolist() for v in found[:6]]
        raise UbenchError(
            f"mask {path} is not binary: {len(found)} distinct {values}, e.g. {shown}",
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
    """A mask file → uint8 (H, W) labels under ``policy`` (palette and alpha rules first)."""
    arr, indexed = mask_pixels(open_image(path, "mask"), path)
    if indexed and policy in ("binary", "threshold"):  # threshold: an index is not an intensity
        return binary_mask(arr, path, "palette indices")
    return mask_from_array(arr, path, policy, num_classes, remap)


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
