"""oct_cystoid: Kaggle's Intraretinal Cystoid Fluid layout (<sample>/images + <sample>/masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubench.data.converters.base import check_folder, convert_folder
from ubench.data.converters.oct import CystoidFluid, pick_mask
from ubench.errors import UbenchError

H, W = 20, 24
DATA = Path("2021-training-data-ZA/2021-training-data-ZA")


def fluid(seed: int) -> np.ndarray:
    """A 0/1 truth: one or two flat rectangles."""
    m = np.zeros((H, W), np.uint8)
    m[2 + seed : 9 + seed, 3:11] = 1
    if seed % 2:
        m[12:18, 14:22] = 1
    return m


def bscan(seed: int) -> np.ndarray:
    """Flat grey blocks (JPEG keeps them within a few levels)."""
    img = np.full((H, W), 40 + 20 * seed, np.uint8)
    img[:, W // 2 :] = 160
    return img


def encode(truth: np.ndarray, how: str) -> Image.Image:
    """The mask encodings seen in the release: RGB 0/255 with stray edge values, 0/1, 1-bit."""
    if how == "rgb255":
        arr = truth * 255
        arr[0, 0], arr[truth.nonzero()[0][0], truth.nonzero()[1][0]] = 6, 250  # anti-aliased edges
        return Image.fromarray(np.repeat(arr[..., None], 3, axis=2))
    if how == "zero_one":
        return Image.fromarray(truth)
    return Image.fromarray(truth * 255).convert("1")


def write_sample(root: Path, name: str, seed: int, how: str = "rgb255", parent: Path = DATA) -> np.ndarray:
    folder = root / parent / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    Image.fromarray(bscan(seed)).save(folder / "images" / f"{name}.jpeg", quality=95)
    truth = fluid(seed)
    encode(truth, how).save(folder / "masks" / f"{name}.png")
    return truth


def make_release(root: Path) -> dict[str, np.ndarray]:
    truth = {
        "101DME_A": write_sample(root, "101DME_A", 0, "rgb255"),
        "202DME_B": write_sample(root, "202DME_B", 1, "zero_one"),
        "815DME_F": write_sample(root, "815DME_F", 2, "bitmap"),
    }
    # the release's stray mask of another sample inside 815DME_F
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(root / DATA / "815DME_F/masks/MASK-DME511.png")
    (root / "X_train_1006.pickle").write_bytes(b"\x80\x04N.")  # the release's pickles are ignored
    return truth


def test_release_converts_with_exact_masks(tmp_path):
    truth = make_release(tmp_path)
    scan, samples = convert_folder(CystoidFluid(), tmp_path)
    assert [s.id for s in samples] == ["101DME_A", "202DME_B", "815DME_F"]
    assert scan.official_split is None
    for i, s in enumerate(samples):
        assert s.group == s.id
        np.testing.assert_array_equal(s.mask, truth[s.id])  # stray 511 mask not unioned in
        assert s.image.shape == (H, W, 3)
        np.testing.assert_array_equal(s.image[..., 0], s.image[..., 2])
        assert np.abs(s.image[..., 0].astype(int) - bscan(i)).max() <= 6


def test_pick_mask_rule():
    own, stray = Path("815DME_F.png"), Path("MASK-DME511.png")
    assert pick_mask("815DME_F", [stray, own]) == own
    assert pick_mask("815DME_F", [stray]) == stray  # a single mask is the sample's
    assert pick_mask("DME_F", [stray, own]) is None  # no leading number to choose by
    assert pick_mask("815DME_F", [own, Path("815_other.png")]) is None


def _no_mask(root):
    (root / DATA / "101DME_A/masks/101DME_A.png").unlink()


def _ambiguous(root):
    Image.fromarray(fluid(0) * 255).save(root / DATA / "101DME_A/masks/101DME_A_copy.png")


def _size(root):
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(root / DATA / "202DME_B/masks/202DME_B.png")


def _unreadable(root):
    (root / DATA / "202DME_B/masks/202DME_B.png").write_bytes(b"\x89PNG broken")


def _orphan_mask(root):
    (root / DATA / "303DME_C/masks").mkdir(parents=True)
    Image.fromarray(fluid(0) * 255).save(root / DATA / "303DME_C/masks/303DME_C.png")


def _duplicate(root):
    write_sample(root, "101DME_A", 0, parent=Path("copy"))


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (_no_mask, "101DME_A.jpeg", "no mask in masks/"),
        (_ambiguous, "101DME_A.jpeg", "cannot pick its mask"),
        (_size, "202DME_B.png", "24x22"),
        (_unreadable, "202DME_B.png", "cannot read mask"),
        (_orphan_mask, "303DME_C", "0 image files"),
        (_duplicate, "101DME_A", "same sample name"),
    ],
)
def test_problems_name_the_file(tmp_path, mutate, path, words):
    make_release(tmp_path)
    mutate(tmp_path)
    _, problems, _ = check_folder(CystoidFluid(), tmp_path)
    line = next(p.line() for p in problems if path in p.line())
    assert words in line
    with pytest.raises(UbenchError):
        convert_folder(CystoidFluid(), tmp_path)


def test_empty_folder_names_the_layout(tmp_path):
    _, problems, _ = check_folder(CystoidFluid(), tmp_path)
    assert len(problems) == 1 and "images/" in problems[0].message
