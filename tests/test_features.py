"""Dataset attributes (ubench/data/attributes.py) on masks whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ubench.data.attributes import boundary_contrast, dataset_attributes, object_shapes


def _disc(size=64, r=20, cy=32, cx=32):
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2


def test_square_is_solid_with_known_isoperimetric_ratio():
    sq = np.zeros((40, 40), bool)
    sq[5:25, 10:30] = True
    [(solidity, iso)] = object_shapes(sq)
    assert solidity == pytest.approx(1.0)
    assert iso == pytest.approx(80**2 / (4 * math.pi * 400))  # perimeter 80 edges, area 400


def test_a_ragged_shape_is_less_solid_and_less_round_than_a_disc():
    disc = _disc()
    star = np.zeros_like(disc)
    yy, xx = np.mgrid[0:64, 0:64]
    theta = np.arctan2(yy - 32, xx - 32)
    star[np.hypot(yy - 32, xx - 32) < 12 + 10 * np.cos(5 * theta)] = True
    (ds, di), (ss, si) = object_shapes(disc)[0], object_shapes(star)[0]
    assert ds > 0.95 and ss < 0.8 and si > di


def test_tiny_objects_are_ignored_and_objects_counted():
    m = np.zeros((32, 32), bool)
    m[2:4, 2:4] = True  # 4 pixels: below MIN_OBJECT_PIXELS
    m[10:20, 10:20] = True
    m[22:30, 2:10] = True
    assert len(object_shapes(m)) == 2


def test_boundary_contrast_follows_the_edge_step():
    fg = _disc()
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, fg.shape)
    sharp = np.where(fg, 0.2, 0.8) + noise
    faint = np.where(fg, 0.45, 0.55) + noise
    assert boundary_contrast(sharp, fg) > 5 * boundary_contrast(faint, fg)
    assert boundary_contrast(sharp, np.zeros_like(fg)) is None  # no boundary
    assert boundary_contrast(sharp, np.ones_like(fg)) is None


def _dataset(radius, contrast, n=6, size=64):
    masks = np.stack([_disc(size, radius, 32, 32) for _ in range(n)]).astype(np.uint8)
    gray = np.where(masks > 0, 0.5 - contrast / 2, 0.5 + contrast / 2)
    noise = np.random.default_rng(1).normal(0, 0.03, gray.shape)
    img = np.clip((gray + noise) * 255, 0, 255).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=3), masks


@pytest.mark.parametrize(
    "radius, scale", [(6, "small"), (16, "medium"), (28, "large")]
)
def test_foreground_scale_grades(radius, scale):
    images, masks = _dataset(radius, 0.4)
    attrs = dataset_attributes(images, masks)
    assert attrs["foreground_scale"] == scale
    assert attrs["foreground_fraction"] == pytest.approx(masks[0].mean(), abs=1e-6)


def test_attributes_record_counts_clarity_and_are_deterministic():
    images, masks = _dataset(16, 0.6)
    masks[0] = 0  # one empty mask
    a = dataset_attributes(images, masks)
    assert a == dataset_attributes(images.copy(), masks.copy())
    assert a["images"] == 6 and a["empty_fraction"] == pytest.approx(1 / 6, abs=1e-6)
    assert a["objects_per_image"] == pytest.approx(5 / 6, abs=1e-6)
    assert a["boundary_clarity"] == "high" and a["shape_complexity"] == "low"
    faint = dataset_attributes(*_dataset(16, 0.005))  # step 1/6 of the noise: d ~ 0.17
    assert faint["boundary_clarity"] == "low" and faint["boundary_contrast"] < a["boundary_contrast"]
    empty = dataset_attributes(images, np.zeros_like(masks))
    assert empty["foreground_fraction"] is None and empty["foreground_scale"] is None
    assert empty["empty_fraction"] == 1.0


def test_multiclass_fractions():
    images, masks = _dataset(16, 0.4, n=2)
    masks[:, 30:34, 30:34] = 2
    a = dataset_attributes(images, masks, num_classes=3)
    assert a["class_fractions"]["2"] == pytest.approx(16 / 64**2, abs=1e-6)
    assert a["class_fractions"]["1"] + a["class_fractions"]["2"] == pytest.approx(a["foreground_fraction"], abs=1e-5)
