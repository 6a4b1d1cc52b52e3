"""Embedded synthetic data: lesion-like objects on textured backgrounds, generated from a seed.

Why: the default pipeline must run on a fresh clone with no download and no raw data. ``synth``
is an easy-but-not-trivial in-domain task (a U-Net learns it in a few CPU epochs at 64x64), and
``synth_shift`` is its domain-shifted twin for zero-shot evaluation: the same object statistics
(count, size, shape, edge softness) drawn the same way, with another appearance (lower contrast,
a different illumination profile and gamma, another tint, more noise, blur), so a model trained
on ``synth`` loses measurably there without falling to chance.

Everything is pure numpy + scipy.ndimage. Each image has its own generator seeded from
``(seed, shifted, index)``, so the bytes depend only on those (no global RNG), and the first k
images of ``generate(n, ...)`` equal ``generate(k, ...)``.

The ground-truth mask is the exact union of the object interiors; the drawn appearance blends
object and background with a logistic edge of random width (hard to soft), centred on the mask
boundary, so a soft edge never moves the boundary.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Object statistics, in units of the generated size (shared by the source and the shifted twin).
OBJECT_COUNT_PROBS = (0.03, 0.52, 0.30, 0.15)  # P(0), P(1), P(2), P(3) objects in an image
RADIUS_RANGE = (0.085, 0.30)  # mean object radius as a fraction of the image side (log-uniform)
EDGE_WIDTH_RANGE = (0.002, 0.025)  # logistic edge scale as a fraction of the side (log-uniform)
LOBULATED_PROB = 0.5  # else an ellipse

# Profiles: the three embedded source datasets differ in exactly the attributes the model advisor
# reads (ubench/data/attributes.py): foreground scale, boundary clarity and shape complexity.
#   base   (synth):        medium objects, clear boundaries, mostly convex shapes
#   small  (synth_small):  small objects (several per image), medium clarity, lobulated shapes
#   ragged (synth_ragged): large objects, faint blurred boundaries, deeply lobulated shapes
# "harmonics" scales the radial-harmonic amplitudes of lobulated shapes; "contrast" scales how far
# the lesion's brightness departs from the background's (1 = the base look), "edge" widens edges.
PROFILES = {
    "base": {"counts": OBJECT_COUNT_PROBS, "radius": RADIUS_RANGE, "lobulated": LOBULATED_PROB,
             "harmonics": 1.0, "contrast": 1.0, "edge": 1.0},
    "small": {"counts": (0.03, 0.27, 0.30, 0.40), "radius": (0.05, 0.10), "lobulated": 0.8,
              "harmonics": 1.4, "contrast": 0.25, "edge": 1.0},
    "ragged": {"counts": (0.03, 0.77, 0.20, 0.0), "radius": (0.22, 0.34), "lobulated": 1.0,
               "harmonics": 4.5, "contrast": 0.1, "edge": 3.0},
}


def dataset_name(profile: str, shifted: bool) -> str:
    """The registered dataset a (profile, shifted) pair is: synth, synth_small_shift …"""
    stem = "synth" if profile == "base" else f"synth_{profile}"
    return f"{stem}_shift" if shifted else stem


def parse_dataset_name(name: str) -> tuple[str, bool]:
    """Inverse of ``dataset_name`` (a ValueError for names that are not synthetic)."""
    for profile in PROFILES:
        for shifted in (False, True):
            if dataset_name(profile, shifted) == name:
                return profile, shifted
    raise ValueError(f"{name!r} is not a synthetic dataset")


def shifted_seed(seed: int) -> int:
    """The seed ``synth_shift`` uses when ``synth`` uses ``seed`` (so the two never share images)."""
    return int(seed) + 100_003


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation (a texture field)."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=sigma, mode="reflect")
    return field / max(float(field.std()), 1e-12)


def _draw_objects(rng: np.random.Generator, size: int, prof: dict) -> tuple[np.ndarray, np.ndarray]:
    """Objects → (alpha in [0,1], mask bool); alpha > 0.5 exactly where the mask is set."""
    count = int(rng.choice(len(prof["counts"]), p=prof["counts"]))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    alpha = np.zeros((size, size))
    mask = np.zeros((size, size), dtype=bool)
    lo, hi = np.log(prof["radius"][0] * size), np.log(prof["radius"][1] * size)
    for k in range(count):
        # Later objects tend to be smaller (a main lesion with satellites).
        radius = float(np.exp(rng.uniform(lo, hi))) * (1.0 if k == 0 else rng.uniform(0.55, 0.9))
        aspect = rng.uniform(0.6, 1.0)
        ax, ay = radius / np.sqrt(aspect), radius * np.sqrt(aspect)
        cy, cx = rng.uniform(0.18, 0.82, size=2) * size
        angle = rng.uniform(0.0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / ax
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ay
        rho = np.hypot(u, v)
        theta = np.arctan2(v, u)
        boundary = np.ones_like(rho)
        if rng.random() < prof["lobulated"]:  # a lobulated blob: random radial harmonics
            for h in range(2, 6):
                amp = rng.uniform(0.0, 0.22 / h * 2.0) * prof["harmonics"]
                boundary += amp * np.cos(h * theta + rng.uniform(0.0, 2 * np.pi))
            boundary = np.maximum(boundary, 0.35)
        inside = rho < boundary
        edge = float(np.exp(rng.uniform(*np.log(np.array(EDGE_WIDTH_RANGE) * size)))) * prof["edge"]
        signed_px = (boundary - rho) * radius  # approximate signed distance to the boundary, px
        a = 1.0 / (1.0 + np.exp(-np.clip(signed_px / edge, -50.0, 50.0)))
        alpha = np.maximum(alpha, a)
        mask |= inside
    # The logistic is 0.5 exactly on the boundary; pin the pixels that sit on it to the mask side.
    alpha = np.where(mask, np.maximum(alpha, 0.5 + 1e-6), np.minimum(alpha, 0.5 - 1e-6))
    return alpha, mask


# Appearance of each domain (ranges are drawn per image). The shifted twin changes every
# appearance cue at once but keeps the lesion darker than its surroundings, so a source-trained
# model degrades without collapsing.
SOURCE_LOOK = {
    "base": (0.68, 0.78),  # background brightness
    "fg_factor": (0.45, 0.62),  # lesion brightness relative to the background (lower = more contrast)
    "illumination": "vignette",  # darker corners
    "illum_strength": (0.05, 0.2),
    "low_amp": 0.05,  # slow intensity field
    "speckle_amp": 0.035,  # fine background texture
    "mottle_amp": 0.06,  # coarser texture inside lesions
    "bg_tint": (1.0, 0.80, 0.72),
    "fg_tint": (0.85, 0.52, 0.42),
    "noise": 0.03,
    "gamma": 1.0,
    "blur": 0.0,  # Gaussian sigma in pixels at size 128 (scaled with the size)
}
SHIFT_LOOK = {
    "base": (0.40, 0.50),
    "fg_factor": (0.62, 0.75),
    "illumination": "ramp",  # a linear gradient in a random direction instead of a vignette
    "illum_strength": (0.12, 0.22),
    "low_amp": 0.06,
    "speckle_amp": 0.05,
    "mottle_amp": 0.05,
    "bg_tint": (0.94, 0.83, 0.79),  # a quarter of the way from the source tint to a cold blue
    "fg_tint": (0.81, 0.59, 0.55),
    "noise": 0.06,
    "gamma": 0.85,
    "blur": 0.9,
}


def _render(rng: np.random.Generator, size: int, alpha: np.ndarray, look: dict, contrast: float = 1.0) -> np.ndarray:
    """Background and foreground appearance → RGB float image in [0, 1]."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size - 0.5
    low = _smooth_noise(rng, size, sigma=size / 8.0)
    speckle = _smooth_noise(rng, size, sigma=max(size / 128.0, 0.6))
    mottle = _smooth_noise(rng, size, sigma=max(size / 40.0, 1.0))
    base = rng.uniform(*look["base"])
    strength = rng.uniform(*look["illum_strength"])
    if look["illumination"] == "vignette":
        illum = -strength * (xx**2 + yy**2) * 2.0
    else:
        direction = rng.uniform(0.0, 2 * np.pi)
        illum = strength * (np.cos(direction) * xx + np.sin(direction) * yy) * 2.0
    bg = base + look["low_amp"] * low + illum + look["speckle_amp"] * speckle
    factor = 1.0 - contrast * (1.0 - rng.uniform(*look["fg_factor"]))
    fg = bg * factor + look["mottle_amp"] * mottle
    a = alpha[..., None]
    bg_rgb = bg[..., None] * np.array(look["bg_tint"])
    bg_tint = np.array(look["bg_tint"])
    fg_tint = bg_tint + contrast * (np.array(look["fg_tint"]) - bg_tint)
    rgb = (1.0 - a) * bg_rgb + a * fg[..., None] * fg_tint
    rgb = rgb + look["noise"] * rng.standard_normal(rgb.shape)
    rgb = np.clip(rgb, 0.0, 1.0) ** look["gamma"]
    if look["blur"] > 0:
        sigma = look["blur"] * size / 128.0
        rgb = ndimage.gaussian_filter(rgb, sigma=(sigma, sigma, 0.0), mode="reflect")
    return np.clip(rgb, 0.0, 1.0)


def generate(
    n: int, size: int = 128, seed: int = 41, shifted: bool = False, profile: str = "base"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` images → (uint8 (n,size,size,3) RGB, uint8 (n,size,size) masks in {0,1}, ids).

    ``shifted=True`` draws the domain-shifted twin (its own per-image seeds, so even the same
    ``seed`` gives other images; ``prepare`` also passes ``shifted_seed(seed)`` for synth_shift).
    ``profile`` picks the object statistics (``PROFILES``); other profiles draw from their own
    per-image seeds too, and ids are prefixed with the dataset name.
    """
    if int(n) < 1 or int(size) < 16:
        raise ValueError(f"need n >= 1 and size >= 16, got n={n}, size={size}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    prof = PROFILES[profile]
    salt = [] if profile == "base" else [sorted(PROFILES).index(profile) + 1]
    n, size = int(n), int(size)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([int(seed), int(bool(shifted)), i, *salt])
        alpha, mask = _draw_objects(rng, size, prof)
        rgb = _render(rng, size, alpha, SHIFT_LOOK if shifted else SOURCE_LOOK, prof["contrast"])
        images[i] = np.floor(rgb * 255.0 + 0.5).astype(np.uint8)
        masks[i] = mask
    prefix = dataset_name(profile, shifted)
    width = max(5, len(str(n - 1)))
    ids = [f"{prefix}_{i:0{width}d}" for i in range(n)]
    return images, masks, ids
