"""Silent wrong results the converters must not give (the trust issue), on tiny crafted files:

- what a mask pixel means: a palette mask is read by its INDEX (not its colour), a mask whose
  alpha channel carries information is refused (never read as empty);
- image ↔ mask matching by exact stem (``img002.b.png`` is not ``img002``'s mask);
- U-Bench's train.txt/val.txt must list every image (the rest would go silently unused);
- undecodable files (decompression bombs, truncated or non-image files) are reported problems
  on that file, the check going on with the rest; ``prepare`` refuses them naming the file.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_conv_endoscopy import JH, JW
from tests.test_conv_ultrasound import box, build_busi, rgb, save, smooth
from ubench.cli import main
from ubench.data.converters import pixels
from ubench.data.converters.base import check_folder, convert_folder
from ubench.data.converters.endoscopy import CVC_CLINICDB, ROBOTOOL
from ubench.data.converters.fundus import STARE
from ubench.data.converters.ubench_layout import UBENCH_LAYOUT
from ubench.data.converters.ultrasound import BUSI
from ubench.data.converters.xray import MONTGOMERY
from ubench.errors import UbenchError

H, W = 20, 24
OBJECT = box(4, 5, 12, 17)  # the drawn foreground, 0/1


def layout(root: Path, masks: dict[str, Image.Image]) -> dict[str, np.ndarray]:
    """A U-Bench layout: one RGB PNG per stem, its mask saved as the given PIL image."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks" / "0").mkdir(parents=True, exist_ok=True)
    images = {}
    for k, (stem, mask) in enumerate(masks.items()):
        images[stem] = rgb(k)
        Image.fromarray(images[stem]).save(root / "images" / f"{stem}.png")
        mask.save(root / "masks" / "0" / f"{stem}.png")
    return images


def grey(mask01: np.ndarray) -> Image.Image:
    return Image.fromarray(mask01 * 255)


def palette(indices: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    im = Image.fromarray(indices.astype(np.uint8), "P")
    im.putpalette([c for rgb_ in colours for c in rgb_])
    return im


def alpha_only(mask01: np.ndarray, mode: str = "RGBA") -> Image.Image:
    """The object only in the alpha channel: colour channels all 0, alpha 255 on the object."""
    bands = {"RGBA": 3, "LA": 1}[mode]
    arr = np.zeros((*mask01.shape, bands + 1), np.uint8)
    arr[..., -1] = mask01 * 255
    return Image.fromarray(arr, mode)


def check(root: Path, fmt: str, capsys) -> tuple[int, str]:
    status = main(["datasets", "check", str(root), "--format", fmt])
    return status, capsys.readouterr().out


# ------------------------------------------------------------------ 1. what a mask pixel means
@pytest.mark.parametrize("policy", ["binary", "threshold", "nonzero"])
def test_palette_mask_is_read_by_index_not_colour(tmp_path, policy):
    """Index 0 white, index 1 black: the object is index 1 (it used to come out inverted)."""
    path = tmp_path / "m.png"
    palette(OBJECT, [(255, 255, 255), (0, 0, 0)]).save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(pixels.read_mask(path, policy), OBJECT)
    # labels: the index is the class, whatever its colour
    labels = OBJECT * 2
    palette(labels, [(255, 255, 255), (9, 9, 9), (0, 0, 0)]).save(path)
    np.testing.assert_array_equal(pixels.read_mask(path, "labels", num_classes=3), labels)


def test_palette_mask_with_more_indices_is_refused_under_threshold(tmp_path):
    """Thresholding is for intensities; an index is not one, so a palette mask must be binary."""
    path = tmp_path / "m.png"
    palette(OBJECT + 2 * box(0, 0, 2, 2), [(0, 0, 0), (255, 255, 255), (128, 128, 128)]).save(path)
    with pytest.raises(UbenchError, match="not binary"):
        pixels.read_mask(path, "threshold")


def test_palette_mask_end_to_end_via_check_and_convert(tmp_path, capsys):
    root = tmp_path / "d"
    layout(root, {"a": palette(OBJECT, [(255, 255, 255), (0, 0, 0)]), "b": grey(box(1, 1, 3, 3))})
    status, out = check(root, "ubench", capsys)
    assert status == 0 and "verdict:  OK" in out
    _, samples = convert_folder(UBENCH_LAYOUT, root)
    got = {s.id: s.mask for s in samples}
    np.testing.assert_array_equal(got["a"], OBJECT)
    np.testing.assert_array_equal(got["b"], box(1, 1, 3, 3))


def test_palette_transparency_is_per_index_so_the_index_decides(tmp_path):
    """Every colour black, index 0 transparent (tRNS): the object is still index 1."""
    path = tmp_path / "m.png"
    palette(OBJECT, [(0, 0, 0), (0, 0, 0)]).save(path, transparency=0)
    assert Image.open(path).info.get("transparency") == 0
    np.testing.assert_array_equal(pixels.read_mask(path, "binary"), OBJECT)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_mask_with_foreground_in_alpha_is_reported_not_empty(tmp_path, capsys, mode):
    """Alpha 255 on the object, 0 elsewhere, colour all 0: refused naming the file (was: empty, OK)."""
    root = tmp_path / "d"
    layout(root, {"a": grey(OBJECT), "b": alpha_only(OBJECT, mode)})
    assert Image.open(root / "masks/0/b.png").mode == mode
    status, out = check(root, "ubench", capsys)
    assert status == 1 and "NOT OK" in out and "samples:  1 decoded cleanly" in out
    lines = out.splitlines()
    at = next(i for i, ln in enumerate(lines) if "masks/0/b.png" in ln)
    assert "alpha" in lines[at] and lines[at + 1].startswith("    fix: flatten it")
    with pytest.raises(UbenchError) as err:
        convert_folder(UBENCH_LAYOUT, root)
    assert "masks/0/b.png" in err.value.what and "alpha" in err.value.what
    assert err.value.fix.startswith("flatten it")
    for policy in pixels.MASK_POLICIES:
        with pytest.raises(UbenchError, match="alpha") as err:
            pixels.read_mask(root / "masks/0/b.png", policy, num_classes=2)
        assert "flatten" in err.value.fix


def test_mask_with_uniformly_opaque_alpha_is_read_from_its_colour(tmp_path):
    path = tmp_path / "m.png"
    arr = np.dstack([OBJECT * 255] * 3 + [np.full_like(OBJECT, 255)])
    Image.fromarray(arr, "RGBA").save(path)
    np.testing.assert_array_equal(pixels.read_mask(path, "binary"), OBJECT)
    Image.fromarray(np.dstack([OBJECT * 255, np.full_like(OBJECT, 255)]), "LA").save(path)
    np.testing.assert_array_equal(pixels.read_mask(path, "threshold"), OBJECT)


def test_images_keep_dropping_alpha(tmp_path):
    """The alpha rule is for masks: an RGBA image still gives its RGB."""
    path = tmp_path / "i.png"
    arr = np.dstack([rgb(3), OBJECT * 255])
    Image.fromarray(arr, "RGBA").save(path)
    np.testing.assert_array_equal(pixels.read_image(path), arr[..., :3])


# ------------------------------------------------------------------ 3. matching by exact stem
def _stem_pairs(root: Path, fmt: str) -> dict[str, np.ndarray]:
    """Two images whose stems share a prefix (img002, img002.b), each with its own mask."""
    truth = {"img002": box(2, 2, 8, 10, JH, JW), "img002.b": box(12, 14, 18, 22, JH, JW)}
    for k, (stem, mask) in enumerate(truth.items()):
        if fmt == "ubench":
            image, mask_path = root / f"images/{stem}.png", root / f"masks/0/{stem}.png"
        elif fmt == "cvc_clinicdb":
            image, mask_path = root / f"Original/{stem}.tif", root / f"Ground Truth/{stem}.tif"
        else:  # robotool, images/ + masks/ layout
            image, mask_path = root / f"images/{stem}.png", root / f"masks/{stem}.png"
        save(image, smooth(k, JH, JW))
        save(mask_path, mask * 255)
    return truth


@pytest.mark.parametrize("fmt, conv", [("ubench", UBENCH_LAYOUT), ("cvc_clinicdb", CVC_CLINICDB),
                                       ("robotool", ROBOTOOL)])
def test_mask_matching_is_by_exact_stem(tmp_path, fmt, conv, capsys):
    """img002.png beside img002.b.png: each pairs with its own mask (was: '2 masks match')."""
    truth = _stem_pairs(tmp_path, fmt)
    status, out = check(tmp_path, fmt, capsys)
    assert status == 0, out
    _, samples = convert_folder(conv, tmp_path)
    got = {s.id: s.mask for s in samples}
    assert sorted(got) == sorted(truth)
    for sid, mask in truth.items():
        np.testing.assert_array_equal(got[sid], mask, err_msg=sid)


def test_ubench_mask_for_another_extension_or_stem_is_not_claimed(tmp_path):
    """masks/0/a.png.bak is not a's mask: it is reported as a file without an image."""
    layout(tmp_path, {"a": grey(OBJECT)})
    (tmp_path / "masks/0/a.png.bak").write_bytes((tmp_path / "masks/0/a.png").read_bytes())
    _, problems, _ = check_folder(UBENCH_LAYOUT, tmp_path)
    assert [p.line() for p in problems] == ["masks/0/a.png.bak: mask without a matching image"]


def test_busi_unions_only_its_documented_mask_suffixes(tmp_path):
    """'<stem>_mask copy.png' (a Finder duplicate) is not unioned into <stem>'s mask: reported."""
    built = build_busi(tmp_path)
    stray = tmp_path / "benign/benign (1)_mask copy.png"
    save(stray, np.full((H, W), 255, np.uint8))
    _, problems, _ = check_folder(BUSI, tmp_path)
    assert [p.line() for p in problems] == ["benign/benign (1)_mask copy.png: mask without a matching image"]
    stray.unlink()
    _, samples = convert_folder(BUSI, tmp_path)
    got = {s.id: s.mask for s in samples}
    np.testing.assert_array_equal(got["benign (1)"], built.truth["benign (1)"][1])


def test_stare_label_names_are_exact(tmp_path):
    """im0001.ah.ppm.bak is not im0001's label (it used to make '2 masks match')."""
    save(tmp_path / "im0001.ppm", rgb(1))
    save(tmp_path / "labels-ah/im0001.ah.ppm", OBJECT * 255)
    (tmp_path / "labels-ah/im0001.ah.ppm.bak").write_bytes((tmp_path / "labels-ah/im0001.ah.ppm").read_bytes())
    scan, problems, good = check_folder(STARE, tmp_path)
    assert problems == [] and good == 1 and scan.items[0].masks == (tmp_path / "labels-ah/im0001.ah.ppm",)


def test_montgomery_reads_only_left_and_right_masks(tmp_path):
    save(tmp_path / "CXR_png/MCUCXR_0001_0.png", rgb(1))
    save(tmp_path / "ManualMask/leftMask/MCUCXR_0001_0.png", box(2, 2, 8, 8) * 255)
    save(tmp_path / "ManualMask/rightMask/MCUCXR_0001_0.png", box(2, 12, 8, 18) * 255)
    save(tmp_path / "ManualMask/oldMask/MCUCXR_0001_0.png", np.full((H, W), 255, np.uint8))
    _, samples = convert_folder(MONTGOMERY, tmp_path)
    np.testing.assert_array_equal(samples[0].mask, box(2, 2, 8, 8) | box(2, 12, 8, 18))


# ------------------------------------------------------------------ 4. undecodable files
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels (10^10 by default), with no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0")) + _chunk(b"IEND", b"")


def _three(root: Path) -> dict[str, np.ndarray]:
    return layout(root, {"a": grey(OBJECT), "b": grey(box(1, 1, 5, 5)), "c": grey(box(6, 6, 9, 9))})


@pytest.mark.parametrize("which", ["image", "mask"])
def test_decompression_bomb_is_a_problem_on_that_file(tmp_path, capsys, which):
    root = tmp_path / "d"
    _three(root)
    bad = root / ("images/b.png" if which == "image" else "masks/0/b.png")
    bad.write_bytes(bomb_png())
    status, out = check(root, "ubench", capsys)
    assert status == 1 and "problems: 1" in out and "samples:  2 decoded cleanly" in out
    line = next(ln for ln in out.splitlines() if bad.name in ln and "b.png" in ln)
    assert "decompression bomb" in line and "10000000000 pixels" in line
    with pytest.raises(UbenchError) as err:
        convert_folder(UBENCH_LAYOUT, root)
    assert str(bad.relative_to(root)) in err.value.what or bad.as_posix() in err.value.what


def test_decompression_bomb_warning_is_a_problem_too(tmp_path, capsys, monkeypatch):
    """Between PIL's limit and twice it, PIL only warns; the check still names the file."""
    root = tmp_path / "d"
    _three(root)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", H * W - 1)  # every 20x24 file is just over it
    status, out = check(root, "ubench", capsys)
    assert status == 1 and "problems: 3" in out and "samples:  0 decoded cleanly" in out
    assert all(f"images/{s}.png" in out for s in "abc") and "decompression bomb" in out


@pytest.mark.parametrize("damage", ["truncated", "not an image", "empty", "bad header"])
def test_undecodable_files_are_problems_not_tracebacks(tmp_path, capsys, damage):
    root = tmp_path / "d"
    _three(root)
    path = root / "masks/0/c.png"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "not an image": b"hello, world\n" * 10,
                      "empty": b"", "bad header": data[:16] + b"\xff" * 8 + data[24:]}[damage])
    status, out = check(root, "ubench", capsys)
    assert status == 1 and "problems: 1" in out and "samples:  2 decoded cleanly" in out
    assert "cannot read mask" in out and "masks/0/c.png" in out
    with pytest.raises(UbenchError, match="masks/0/c.png"):
        convert_folder(UBENCH_LAYOUT, root)


def test_palette_mask_with_alpha_is_refused_unless_opaque(tmp_path):
    def pa(alpha: np.ndarray) -> Image.Image:
        return Image.merge("PA", (Image.fromarray(OBJECT).convert("P"), Image.fromarray(alpha)))

    with pytest.raises(UbenchError, match="alpha"):
        pixels.mask_pixels(pa(OBJECT * 255), tmp_path / "m.png")
    arr, indexed = pixels.mask_pixels(pa(np.full_like(OBJECT, 255)), tmp_path / "m.png")
    assert indexed
    np.testing.assert_array_equal(arr, OBJECT)


def test_oct_own_mask_is_the_exact_leading_number(tmp_path):
    from ubench.data.converters.oct import pick_mask

    own, longer = Path("815DME_F.png"), Path("8150DME_X.png")
    assert pick_mask("815DME_F", [longer, own]) == own  # was None: both 'start with 815'


# ------------------------------------------------------------------ 2. split files must cover every image
def _split(root: Path, train: list[str], val: list[str]) -> None:
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.txt").write_text("\n".join(val) + "\n")


def test_ubench_split_files_leaving_images_out_are_reported(tmp_path, capsys):
    root = tmp_path / "d"
    layout(root, {f"case{i:02d}": grey(box(i, i, i + 3, i + 3)) for i in range(9)})
    _split(root, ["case00", "case01.png"], ["case02"])  # 6 of 9 images listed nowhere
    status, out = check(root, "ubench", capsys)
    assert status == 1 and "NOT OK" in out
    lines = out.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("  train.txt/val.txt:"))
    assert "6 of 9 image(s)" in lines[at] and "case03, case04, case05, case06, case07 …" in lines[at]
    assert "case08" not in lines[at]  # a few ids, not all
    assert lines[at + 1].startswith("    fix: add each of them to train.txt or val.txt")
    with pytest.raises(UbenchError) as err:
        convert_folder(UBENCH_LAYOUT, root)
    assert "6 of 9 image(s)" in err.value.what and "train.txt or val.txt" in err.value.fix
    # listing every image makes it whole again: the official split is exactly the files
    _split(root, ["case00", "case01.png", "case03", "case04", "case05", "case06"], ["case02", "case07", "case08"])
    status, out = check(root, "ubench", capsys)
    assert status == 0, out
    scan, _ = convert_folder(UBENCH_LAYOUT, root)
    assert scan.official_split == {"train": ["case00", "case01", "case03", "case04", "case05", "case06"],
                                   "test": ["case02", "case07", "case08"]}
