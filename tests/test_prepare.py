"""The prepare stage: canonical output, splits, U-Bench-layout reading and its validation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ubench.data.synthetic as synthetic_mod
from tests.conftest import prep
from ubench.data.registry import get_dataset, list_datasets
from ubench.errors import UbenchError

FILES = ("images.npy", "masks.npy", "splits.json", "manifest.json")
SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018-sample"
SYN = {"n": 30, "size": 64, "seed": 5}


def _read(folder: Path) -> dict[str, bytes]:
    return {f: (folder / f).read_bytes() for f in FILES}


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def _assert_no_leftovers(parent: Path, allowed: set[str]) -> None:
    """Nothing but the allowed entries: no half-built output, no temporary folder."""
    assert {p.name for p in parent.iterdir()} <= allowed


def _rng_image(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _rng_mask(rng, h, w):
    m = np.zeros((h, w), dtype=np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    m[y : y + h // 2, x : x + w // 2] = 255
    return m


def make_layout(root: Path, n: int = 6, h: int = 40, w: int = 50, seed: int = 0) -> dict:
    """A U-Bench-layout folder with RGB PNG images and 0/255 PNG masks; returns the arrays."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks" / "0").mkdir(parents=True)
    out = {}
    for i in range(n):
        stem = f"case{i:02d}"
        img, mask = _rng_image(rng, h, w), _rng_mask(rng, h, w)
        Image.fromarray(img).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / "0" / f"{stem}.png")
        out[stem] = (img, mask)
    return out


# ---------------------------------------------------------------- registry


def test_registry_entries_and_user_folders(tmp_path):
    assert {"synth", "synth_shift"} <= set(list_datasets())
    synth = get_dataset("synth")
    assert synth.kind == "synthetic" and synth.zero_shot_targets == ("synth_shift",)
    assert get_dataset("synth_shift").kind == "synthetic"
    make_layout(tmp_path / "mydata", n=3)
    info = get_dataset("mydata", raw_root=tmp_path)
    assert info.kind == "raw" and info.raw_format == "ubench" and info.modality == "unknown" and info.num_classes == 1
    (tmp_path / "notalayout").mkdir()
    with pytest.raises(UbenchError, match="images/"):
        get_dataset("notalayout", raw_root=tmp_path)
    with pytest.raises(UbenchError) as err:
        get_dataset("synht", raw_root=tmp_path)
    assert "did you mean synth" in str(err.value) and "masks/0" in err.value.fix
    assert str(tmp_path / "synht") in err.value.fix


# ---------------------------------------------------------------- synthetic


def test_synthetic_prepare_is_byte_identical(tmp_path):
    a = prep("synth", tmp_path / "a", image_size=32, synthetic=SYN)
    b = prep("synth", tmp_path / "b", image_size=32, synthetic=SYN)
    assert _read(a) == _read(b)
    # rebuilding in place over an existing output gives the same bytes again
    prep("synth", a, image_size=32, synthetic=SYN)
    assert _read(a) == _read(b)
    _assert_no_leftovers(tmp_path, {"a", "b"})


def test_synthetic_canonical_form_and_manifest(tmp_path):
    out = prep("synth", tmp_path / "synth", image_size=32, synthetic=SYN)
    images = np.load(out / "images.npy", mmap_mode="r")
    masks = np.load(out / "masks.npy", mmap_mode="r")
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    assert masks.shape == (30, 32, 32) and masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) <= {0, 1} and masks.max() == 1
    man = _json(out, "manifest.json")
    assert man["kind"] == "synthetic" and man["count"] == 30 and man["num_classes"] == 1
    assert man["image_size"] == [32, 32] and man["ids"] == sorted(man["ids"]) and len(man["ids"]) == 30
    gen_hash = hashlib.sha256(Path(synthetic_mod.__file__).read_bytes()).hexdigest()
    assert man["sources"]["generator"] == gen_hash
    assert man["sources"]["params"]["seed"] == 5 and man["sources"]["params"]["n"] == 30
    assert man["zero_shot_targets"] == ["synth_shift"]
    assert man["original_sizes"] == {"min_height": 64, "max_height": 64, "min_width": 64, "max_width": 64}
    # resizing: the stored image is PIL's bilinear resize of the generated one
    gen_images, gen_masks, _ = synthetic_mod.generate(30, 64, 5)
    expect = np.asarray(Image.fromarray(gen_images[3]).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(images[3], expect)
    expect_m = np.asarray(Image.fromarray(gen_masks[3]).resize((32, 32), Image.Resampling.NEAREST))
    assert np.array_equal(masks[3], expect_m)


def test_synth_shift_uses_a_derived_seed(tmp_path):
    src = prep("synth", tmp_path / "s", image_size=32, synthetic=SYN)
    sh = prep("synth_shift", tmp_path / "t", image_size=32, synthetic=SYN)
    params = _json(sh, "manifest.json")["sources"]["params"]
    assert params["shifted"] is True and params["seed"] == synthetic_mod.shifted_seed(5)
    assert params["base_seed"] == 5
    assert not np.array_equal(np.load(src / "masks.npy"), np.load(sh / "masks.npy"))


def test_holdout_splits_disjoint_and_covering(tmp_path):
    out = prep(
        "synth", tmp_path / "h", image_size=32, synthetic=SYN, val_fraction=0.2, test_fraction=0.3
    )
    sp = _json(out, "splits.json")
    assert sp["protocol"] == "holdout" and sp["source"] == "seeded" and sp["seed"] == 41
    tr, va, te = set(sp["train"]), set(sp["val"]), set(sp["test"])
    assert len(te) == 9 and len(va) == 6 and len(tr) == 15
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(range(30))
    assert all(sp[k] == sorted(sp[k]) for k in ("train", "val", "test"))
    other = prep("synth", tmp_path / "h2", image_size=32, synthetic=SYN, split_seed=7)
    other_sp = _json(other, "splits.json")
    assert other_sp["test"] != sp["test"] or other_sp["val"] != sp["val"]


def test_ubench_protocol_val_equals_test(tmp_path):
    out = prep("synth", tmp_path / "u", image_size=32, synthetic=SYN, protocol="ubench")
    sp = _json(out, "splits.json")
    assert sp["protocol"] == "ubench" and sp["val"] == sp["test"] and len(sp["test"]) == 6
    assert not set(sp["train"]) & set(sp["test"]) and set(sp["train"]) | set(sp["test"]) == set(range(30))


def test_tiny_dataset_still_gets_one_image_per_split(tmp_path):
    out = prep("synth", tmp_path / "t", image_size=16, synthetic={"n": 3, "size": 32, "seed": 1})
    sp = _json(out, "splits.json")
    assert len(sp["train"]) == len(sp["val"]) == len(sp["test"]) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"protocol": "kfold"}, "protocol"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": 1.2}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "nothing to train"),
        ({"image_size": 0}, "image_size"),
        ({"synthetic": {"n": 10, "colour": 3}}, "colour"),
        ({"synthetic": {"n": 2, "size": 64, "seed": 1}}, "too small"),
            ({"synthetic": {"n": 10}}, "needs exactly the parameters n, seed, size"),
    ],
)
def test_bad_parameters_raise(tmp_path, kwargs, match):
    kwargs = {"image_size": 32, "synthetic": SYN, **kwargs}
    with pytest.raises(UbenchError, match=match):
        prep("synth", tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- U-Bench layout


def test_ubench_layout_prepares(tmp_path):
    raw = tmp_path / "raw"
    arrays = make_layout(raw / "mine", n=6, h=40, w=50)
    out = prep("mine", tmp_path / "out", raw_root=raw, image_size=32)
    man, sp = _json(out, "manifest.json"), _json(out, "splits.json")
    assert man["kind"] == "raw" and man["raw_format"] == "ubench" and man["ids"] == sorted(arrays) and man["count"] == 6
    assert man["original_sizes"] == {"min_height": 40, "max_height": 40, "min_width": 50, "max_width": 50}
    assert len(man["sources"]) == 12
    key = "masks/0/case03.png"
    assert man["sources"][key] == hashlib.sha256((raw / "mine" / key).read_bytes()).hexdigest()
    images, masks = np.load(out / "images.npy"), np.load(out / "masks.npy")
    img, mask = arrays["case03"]
    expect_img = np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(images[3], expect_img)
    expect = np.asarray(Image.fromarray(mask).resize((32, 32), Image.Resampling.NEAREST)) > 0
    assert np.array_equal(masks[3], expect.astype(np.uint8))
    assert sp["source"] == "seeded" and sorted(sp["train"] + sp["val"] + sp["test"]) == list(range(6))
    again = prep("mine", tmp_path / "out2", raw_root=raw, image_size=32)
    assert _read(out) == _read(again)


def test_ubench_layout_pixel_formats(tmp_path):
    """Gray → RGB, RGBA drops alpha, 16-bit rescaled by its max; {0,1}, mode '1', empty masks."""
    root = tmp_path / "raw" / "fmt"
    (root / "images").mkdir(parents=True)
    (root / "masks" / "0").mkdir(parents=True)
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    deep = rng.integers(0, 4000, (16, 16)).astype(np.uint16)
    Image.fromarray(gray).save(root / "images" / "a.png")
    Image.fromarray(rgba).save(root / "images" / "b.png")
    Image.fromarray(deep).save(root / "images" / "c.tif")
    Image.fromarray(_rng_image(rng, 16, 16)).save(root / "images" / "d.bmp")
    m01 = (rng.random((16, 16)) > 0.5).astype(np.uint8)
    Image.fromarray(m01).save(root / "masks" / "0" / "a.png")
    Image.fromarray(m01.astype(bool)).save(root / "masks" / "0" / "b.png")  # mode "1"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "0" / "c.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "masks" / "0" / "d.bmp")
    out = prep("fmt", tmp_path / "out", raw_root=tmp_path / "raw", image_size=16)
    images, masks = np.load(out / "images.npy"), np.load(out / "masks.npy")
    assert _json(out, "manifest.json")["ids"] == ["a", "b", "c", "d"]
    assert np.array_equal(images[0], np.repeat(gray[..., None], 3, axis=2))
    assert np.array_equal(images[1], rgba[..., :3])
    scaled = np.floor(deep.astype(np.float64) * 255.0 / deep.max() + 0.5).astype(np.uint8)
    assert np.array_equal(images[2], np.repeat(scaled[..., None], 3, axis=2))
    assert np.array_equal(masks[0], m01) and np.array_equal(masks[1], m01)
    assert masks[2].sum() == 0 and masks[3].min() == 1


def _write_splits(root: Path, train: list[str], val: list[str]) -> None:
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.txt").write_text("\n".join(val) + "\n")


def test_ubench_split_files(tmp_path):
    raw = tmp_path / "raw"
    make_layout(raw / "d", n=8)
    # stems and full file names are both accepted; blank lines are ignored
    train = ["case00", "case01.png", "case02", "case03", "case05", ""]
    _write_splits(raw / "d", train, ["case04", "case06", "case07.png"])  # every image listed
    ub_dir = prep("d", tmp_path / "ub", raw_root=raw, image_size=16, protocol="ubench")
    ub = _json(ub_dir, "splits.json")
    assert ub["source"] == "official" and ub["protocol"] == "ubench"
    assert ub["train"] == [0, 1, 2, 3, 5] and ub["val"] == ub["test"] == [4, 6, 7]
    ho = _json(
        prep("d", tmp_path / "ho", raw_root=raw, image_size=16, val_fraction=0.4), "splits.json"
    )
    assert ho["test"] == [4, 6, 7] and len(ho["val"]) == 2 and len(ho["train"]) == 3
    assert set(ho["val"]) | set(ho["train"]) == {0, 1, 2, 3, 5} and not set(ho["val"]) & set(ho["train"])
    man = _json(tmp_path / "ho", "manifest.json")
    assert "train.txt" in man["sources"] and "val.txt" in man["sources"]


@pytest.mark.parametrize(
    "train, val, match",
    [
        (["case00", "nosuch"], ["case01"], "nosuch"),
        (["case00", "case01"], ["case01"], "both"),
        (["case00", "case00"], ["case01"], "twice"),
    ],
)
def test_bad_split_files(tmp_path, train, val, match):
    raw = tmp_path / "raw"
    make_layout(raw / "d", n=4)
    _write_splits(raw / "d", train, val)
    with pytest.raises(UbenchError, match=match):
        prep("d", tmp_path / "out", raw_root=raw, image_size=16)
    assert not (tmp_path / "out").exists()


def test_only_one_split_file_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    make_layout(raw / "d", n=4)
    (raw / "d" / "train.txt").write_text("case00\n")
    with pytest.raises(UbenchError, match="no val.txt"):
        prep("d", tmp_path / "out", raw_root=raw, image_size=16)


def _no_mask(root):
    (root / "masks" / "0" / "case02.png").unlink()
    return "images/case02.png"


def _no_image(root):
    (root / "images" / "case02.png").unlink()
    return "masks/0/case02.png"


def _size_mismatch(root):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "masks" / "0" / "case03.png")
    return "masks/0/case03.png"


def _corrupt_image(root):
    path = root / "images" / "case01.png"
    path.write_bytes(path.read_bytes()[:60])  # a truncated PNG
    return "images/case01.png"


def _not_an_image(root):
    (root / "images" / "case01.png").write_text("hello")
    return "images/case01.png"


def _three_values(root):
    m = np.zeros((40, 50), np.uint8)
    m[:10], m[10:20] = 128, 255
    Image.fromarray(m).save(root / "masks" / "0" / "case04.png")
    return "masks/0/case04.png"


def _two_nonzero_values(root):
    m = np.full((40, 50), 1, np.uint8)
    m[:10] = 255
    Image.fromarray(m).save(root / "masks" / "0" / "case04.png")
    return "masks/0/case04.png"


def _empty_images(root):
    for p in (root / "images").iterdir():
        p.unlink()
    return str(root / "images")


def _missing_raw(root):
    import shutil

    shutil.rmtree(root)
    return str(root)


@pytest.mark.parametrize(
    "breaker",
    [
        _no_mask,
        _no_image,
        _size_mismatch,
        _corrupt_image,
        _not_an_image,
        _three_values,
        _two_nonzero_values,
        _empty_images,
        _missing_raw,
    ],
)
def test_bad_input_names_the_file_and_leaves_no_output(tmp_path, breaker):
    raw = tmp_path / "raw"
    make_layout(raw / "d", n=6)
    prev = prep("d", tmp_path / "prev", raw_root=raw, image_size=16)
    before = _read(prev)
    named = breaker(raw / "d")
    for target in (tmp_path / "prev", tmp_path / "fresh"):
        with pytest.raises(UbenchError) as err:
            prep("d", target, raw_root=raw, image_size=16)
        assert named in str(err.value), str(err.value)
        assert err.value.fix
    assert not (tmp_path / "fresh").exists()
    assert _read(prev) == before  # the previous output is intact
    _assert_no_leftovers(tmp_path, {"raw", "prev"})


# ---------------------------------------------------------------- real sample (DSB2018)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared DSB2018 sample not available")
def test_dsb2018_sample_mask_survives_exactly(tmp_path):
    img16 = np.asarray(Image.open(SAMPLE / "img2d.tif"))
    labels = np.asarray(Image.open(SAMPLE / "mask2d.tif"))
    assert img16.shape == labels.shape == (512, 512)
    truth = labels > 0
    root = tmp_path / "raw" / "dsb"
    (root / "images").mkdir(parents=True)
    (root / "masks" / "0").mkdir(parents=True)
    scaled = np.floor(img16.astype(np.float64) * 255.0 / img16.max() + 0.5).astype(np.uint8)
    Image.fromarray(scaled).save(root / "images" / "nuclei.png")
    Image.fromarray(truth.astype(np.uint8) * 255).save(root / "masks" / "0" / "nuclei.png")
    # a second copy with the raw 16-bit TIFF as the image: rescaled by its max on the way in
    (root / "images" / "nuclei16.tif").write_bytes((SAMPLE / "img2d.tif").read_bytes())
    Image.fromarray(truth.astype(np.uint8) * 255).save(root / "masks" / "0" / "nuclei16.png")
    out = prep(
        "dsb", tmp_path / "out", raw_root=tmp_path / "raw", image_size=512, protocol="ubench"
    )
    images, masks = np.load(out / "images.npy"), np.load(out / "masks.npy")
    assert _json(out, "manifest.json")["ids"] == ["nuclei", "nuclei16"]
    assert np.array_equal(masks[0].astype(bool), truth) and np.array_equal(masks[1].astype(bool), truth)
    assert np.array_equal(images[0][..., 0], scaled) and np.array_equal(images[1], images[0])
    # the instance-label TIFF itself is not a binary mask: refused, naming the file
    (root / "masks" / "0" / "nuclei16.png").unlink()
    (root / "masks" / "0" / "nuclei16.tif").write_bytes((SAMPLE / "mask2d.tif").read_bytes())
    with pytest.raises(UbenchError, match="nuclei16.tif.*not binary"):
        prep("dsb", tmp_path / "o2", raw_root=tmp_path / "raw", image_size=512, protocol="ubench")


def test_split_files_that_leave_images_out_are_refused(tmp_path):
    """train.txt/val.txt listing only some images: refused with the count, ids and a fix (the rest
    would have been converted but never used), and nothing is written."""
    raw = tmp_path / "raw"
    make_layout(raw / "d", n=5)
    _write_splits(raw / "d", ["case00", "case01"], ["case02"])
    with pytest.raises(UbenchError) as err:
        prep("d", tmp_path / "out", raw_root=raw, image_size=16)
    assert "2 of 5 image(s)" in err.value.what and "case03, case04" in err.value.what
    assert "add each of them to train.txt or val.txt" in err.value.fix
    assert not (tmp_path / "out").exists()
