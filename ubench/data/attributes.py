"""Dataset attributes computed from the prepared masks (and images): the advisor's inputs.

Why in the data layer: the attributes describe a dataset, so ``ubench.data.prepare`` records them
in manifest.json, and the advisor reads them from there (it imports this module, never the
reverse).

Why these: U-Bench relates model rankings to a dataset's foreground scale, boundary clarity and
shape complexity. Each is measured here from the data itself, at the prepared size, so a user's
new dataset gets the same numbers as the benchmark's. All are deterministic functions of the
arrays (no sampling), rounded to 6 decimals so manifest.json is byte-stable.

- foreground fraction: per image, foreground pixels / pixels (foreground = any class > 0);
  ``foreground_fraction`` is the mean over images with foreground. ``foreground_scale``:
  small < 0.05 <= medium < 0.20 <= large (U-Bench's small/medium/large targets, thresholds ours).
- boundary contrast: per image, the grey level (mean of RGB) in a ring just inside the mask
  boundary (mask minus its 2-pixel erosion) against a ring just outside (2-pixel dilation minus
  mask): |mean_in - mean_out| / sqrt((var_in + var_out) / 2 + 1e-6), a standardised mean
  difference (Cohen's d). ``boundary_contrast`` is the mean over images with both rings;
  ``boundary_clarity``: low < 0.5 <= medium < 1.5 <= high.
- shape complexity, per connected object (8-connectivity, at least 9 pixels): ``solidity`` =
  area / convex-hull area (1 for convex shapes; the hull of the pixel squares' corners), and
  ``isoperimetric`` = perimeter^2 / (4 pi area) with the perimeter counted as pixel edges between
  object and background (4/pi = 1.27 for an axis-aligned square, about 1.56 for a digital disc; larger = more
  ragged). Means over all objects. ``shape_complexity``: low if solidity >= 0.9, medium if >= 0.75,
  else high.
- counts: images, empty-mask fraction, objects per image, per-class pixel fractions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

SCALE_THRESHOLDS = (0.05, 0.20)
CLARITY_THRESHOLDS = (0.5, 1.5)
SOLIDITY_THRESHOLDS = (0.9, 0.8)
MIN_OBJECT_PIXELS = 9
RING = 2
_EIGHT = np.ones((3, 3), dtype=bool)


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _grade(value: float | None, lo: float, hi: float, names: tuple[str, str, str]) -> str | None:
    if value is None:
        return None
    return names[0] if value < lo else names[1] if value < hi else names[2]


def boundary_contrast(gray: np.ndarray, fg: np.ndarray) -> float | None:
    """Standardised grey-level difference across the mask boundary of one image (None if none)."""
    if not fg.any() or fg.all():
        return None
    inner = fg & ~ndimage.binary_erosion(fg, iterations=RING, border_value=1)
    outer = ndimage.binary_dilation(fg, iterations=RING) & ~fg
    if not inner.any() or not outer.any():
        return None
    a, b = gray[inner], gray[outer]
    return abs(float(a.mean()) - float(b.mean())) / math.sqrt((float(a.var()) + float(b.var())) / 2 + 1e-6)


def object_shapes(fg: np.ndarray) -> list[tuple[float, float]]:
    """(solidity, isoperimetric ratio) of each object of at least MIN_OBJECT_PIXELS pixels."""
    labels, n = ndimage.label(fg, structure=_EIGHT)
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        obj = labels[sl] == k
        area = int(obj.sum())
        if area < MIN_OBJECT_PIXELS:
            continue
        padded = np.pad(obj, 1)
        edges = int(np.count_nonzero(padded[1:, :] != padded[:-1, :]) + np.count_nonzero(padded[:, 1:] != padded[:, :-1]))
        ys, xs = np.nonzero(obj)
        corners = np.concatenate(
            [np.stack([ys + dy, xs + dx], axis=1) for dy in (0, 1) for dx in (0, 1)]
        ).astype(np.float64)
        try:
            hull_area = float(ConvexHull(np.unique(corners, axis=0)).volume)
        except QhullError:  # collinear pixels: a line's hull has no area
            hull_area = float(area)
        out.append((min(1.0, area / hull_area), edges**2 / (4 * math.pi * area)))
    return out


def dataset_attributes(images: np.ndarray, masks: np.ndarray, num_classes: int = 1) -> dict:
    """Attributes of a prepared dataset: uint8 images (N,S,S,3), masks (N,S,S) class labels."""
    n = int(masks.shape[0])
    fractions, contrasts, shapes, objects = [], [], [], []
    for i in range(n):
        fg = masks[i] > 0
        frac = float(fg.mean())
        if frac > 0:
            fractions.append(frac)
        gray = images[i].astype(np.float64).mean(axis=2) / 255.0
        c = boundary_contrast(gray, fg)
        if c is not None:
            contrasts.append(c)
        s = object_shapes(fg)
        shapes.extend(s)
        objects.append(len(s))
    fg_frac = float(np.mean(fractions)) if fractions else None
    contrast = float(np.mean(contrasts)) if contrasts else None
    solidity = float(np.mean([s[0] for s in shapes])) if shapes else None
    iso = float(np.mean([s[1] for s in shapes])) if shapes else None
    shape_grade = None
    if solidity is not None:
        shape_grade = "low" if solidity >= SOLIDITY_THRESHOLDS[0] else "medium" if solidity >= SOLIDITY_THRESHOLDS[1] else "high"
    class_fractions = {}
    if num_classes > 1:
        total = masks.size
        for c in range(1, num_classes):
            class_fractions[str(c)] = _r(float(np.count_nonzero(masks == c)) / total)
    return {
        "images": n,
        "empty_fraction": _r(1.0 - len(fractions) / n) if n else None,
        "foreground_fraction": _r(fg_frac),
        "foreground_scale": _grade(fg_frac, *SCALE_THRESHOLDS, ("small", "medium", "large")),
        "boundary_contrast": _r(contrast),
        "boundary_clarity": _grade(contrast, *CLARITY_THRESHOLDS, ("low", "medium", "high")),
        "solidity": _r(solidity),
        "isoperimetric": _r(iso),
        "shape_complexity": shape_grade,
        "objects_per_image": _r(float(np.mean(objects))) if objects else None,
        "class_fractions": class_fractions,
        "rules": "ubench/data/attributes.py",
    }
