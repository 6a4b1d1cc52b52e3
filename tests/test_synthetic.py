"""The embedded synthetic data: deterministic, binary masks, varied objects, a real domain shift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ubench.data.synthetic import generate, shifted_seed


@pytest.fixture(scope="module")
def source():
    return generate(60, 128, 41)


@pytest.fixture(scope="module")
def shifted():
    return generate(60, 128, shifted_seed(41), shifted=True)


def _luminance(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float64).mean(axis=-1)


def _fg_bg_contrast(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image: (mean background - mean foreground luminance) / background std."""
    out = []
    for img, mask in zip(_luminance(images), masks.astype(bool)):
        if mask.any() and (~mask).any():
            out.append((img[~mask].mean() - img[mask].mean()) / img[~mask].std())
    return np.array(out)


def test_same_seed_same_bytes_and_prefix_stable():
    a = generate(5, 64, 7)
    b = generate(5, 64, 7)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    longer = generate(8, 64, 7)  # per-image seeds: the first images do not depend on n
    assert np.array_equal(longer[0][:5], a[0]) and np.array_equal(longer[1][:5], a[1])


def test_different_seed_or_domain_gives_different_images():
    a = generate(4, 64, 7)
    b = generate(4, 64, 8)
    c = generate(4, 64, 7, shifted=True)
    assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])  # the twin draws its own objects
    assert a[2][0] == "synth_00000" and c[2][0] == "synth_shift_00000"


def test_shapes_dtypes_and_binary_masks(source):
    images, masks, ids = source
    assert images.shape == (60, 128, 128, 3) and images.dtype == np.uint8
    assert masks.shape == (60, 128, 128) and masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) == {0, 1}
    assert ids == sorted(ids) and len(set(ids)) == 60
    # the image really has colour: channels differ
    assert np.abs(images[..., 0].astype(int) - images[..., 2].astype(int)).mean() > 10


def test_object_area_fractions_span_small_to_large(source):
    _, masks, _ = source
    frac = masks.reshape(len(masks), -1).mean(axis=1)
    assert (frac == 0).mean() <= 0.1  # empty images are rare
    nonzero = frac[frac > 0]
    assert nonzero.min() < 0.03 and nonzero.max() > 0.25
    counts = [ndimage.label(m)[1] for m in masks]
    assert max(counts) >= 3 and min(c for c in counts if c > 0) == 1


def test_some_objects_have_soft_edges_and_some_hard(source):
    """Boundary gradient relative to the object's contrast: low for blurred edges, high for hard."""
    images, masks, _ = source
    ratios = []
    for img, mask in zip(images, masks.astype(bool)):
        lum = ndimage.gaussian_filter(img.astype(np.float64).mean(-1), 1.0)
        grad = np.hypot(*np.gradient(lum))
        labels, n = ndimage.label(mask)
        for k in range(1, n + 1):
            obj = labels == k
            inner = ndimage.binary_erosion(obj, iterations=6)
            near = ndimage.binary_dilation(obj, iterations=10)
            outer = near & ~ndimage.binary_dilation(mask, iterations=6)
            if obj.sum() < 150 or inner.sum() < 20 or outer.sum() < 20:
                continue
            ring = obj ^ ndimage.binary_erosion(obj)
            ratios.append(grad[ring].mean() / (lum[outer].mean() - lum[inner].mean()))
    ratios = np.array(ratios)
    assert len(ratios) > 30
    assert ratios.min() < 0.14 and ratios.max() > 0.25 and ratios.max() / ratios.min() > 2


def test_foreground_is_darker_but_not_trivially_separable(source):
    images, masks, _ = source
    contrast = _fg_bg_contrast(images, masks)
    assert np.median(contrast) > 1.5  # clearly separable on average
    # but no global threshold separates the pixels perfectly (noise, illumination, soft edges)
    lum = _luminance(images)
    fg, bg = lum[masks == 1], lum[masks == 0]
    assert np.percentile(fg, 99) > np.percentile(bg, 1)


def test_shift_lowers_contrast_and_changes_appearance(source, shifted):
    src_img, src_mask, _ = source
    sh_img, sh_mask, _ = shifted
    src_c, sh_c = _fg_bg_contrast(src_img, src_mask), _fg_bg_contrast(sh_img, sh_mask)
    assert np.median(sh_c) < 0.7 * np.median(src_c)  # lower contrast (and more noise)
    assert np.median(sh_c) > 0.5  # the lesion is still darker: a model should not be at chance
    src_bg = _luminance(src_img)[src_mask == 0].mean()
    sh_bg = _luminance(sh_img)[sh_mask == 0].mean()
    assert src_bg - sh_bg > 15  # a darker background on the 0..255 scale
    # another tint: the red/blue balance of the background moves
    rb = lambda im, m: im[..., 0][m == 0].mean() / im[..., 2][m == 0].mean()  # noqa: E731
    assert rb(src_img, src_mask) - rb(sh_img, sh_mask) > 0.1
    # same object statistics: area fractions come from the same distribution
    src_frac = src_mask.reshape(60, -1).mean(1)
    sh_frac = sh_mask.reshape(60, -1).mean(1)
    assert abs(np.median(src_frac) - np.median(sh_frac)) < 0.05


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        generate(0, 64, 1)
    with pytest.raises(ValueError):
        generate(2, 8, 1)
