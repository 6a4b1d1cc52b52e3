"""The dataset registry as a whole, `ubench datasets list/check`, and preparing registered raw
formats end to end (converter → prepared folder), including group-wise splits and stability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import prep
from tests.test_conv_endoscopy import build_kvasir
from tests.test_conv_ultrasound import build_busi
from tests.test_conv_volumes import make_acdc
from ubench.cli import main
from ubench.data.catalog import CATALOG
from ubench.data.converters import all_converters, get_converter
from ubench.data.registry import all_datasets, get_dataset, list_datasets
from ubench.errors import UbenchError


def test_every_raw_dataset_has_a_converter_with_matching_classes():
    convs = all_converters()
    assert len(CATALOG) == 28
    for info in all_datasets():
        if info.kind != "raw":
            continue
        conv = convs[info.raw_format]
        assert conv.num_classes == info.num_classes, info.name
        assert tuple(conv.class_names) == tuple(info.class_names), info.name
        assert conv.layout and info.raw_layout == conv.layout
    for target in (t for d in all_datasets() for t in d.zero_shot_targets):
        assert target in list_datasets()


def test_synthetic_sources_each_have_a_shifted_twin():
    for name in ("synth", "synth_small", "synth_ragged"):
        info = get_dataset(name)
        assert info.kind == "synthetic" and info.role == "in-domain"
        assert info.zero_shot_targets == (f"{name}_shift",)
        assert get_dataset(f"{name}_shift").role == "zero-shot"


def test_datasets_list_and_show(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for info in all_datasets():
        assert f"| {info.name} |" in out
    assert "| kvasir | Kvasir-SEG | endoscopy | binary | in-domain | cvc300, cvc_clinicdb |" in out
    assert "4 (RV, MYO, LV)" in out
    assert main(["datasets", "list", "--modality", "mri"]) == 0
    mri = capsys.readouterr().out
    assert "| acdc |" in mri and "| kvasir |" not in mri
    assert main(["datasets", "show", "busi"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["raw_format"] == "busi" and "_mask" in rec["raw_layout"]
    assert main(["datasets", "show", "bussi"]) == 2
    assert "did you mean busi" in capsys.readouterr().err


def test_datasets_check_reports_every_bad_file(tmp_path, capsys):
    root = tmp_path / "busi"
    built = build_busi(root)
    assert main(["datasets", "check", str(root), "--format", "busi"]) == 0
    out = capsys.readouterr().out
    assert "verdict:  OK" in out and f"samples:  {len(built.truth)} decoded cleanly" in out
    # break two files in two different ways: both are named, exit status 1
    first, second = sorted(built.images)[:2]
    built.masks[first].write_bytes(b"not a png either")
    built.images[second].write_bytes(b"not a png")
    assert main(["datasets", "check", str(root), "--format", "busi"]) == 1
    out = capsys.readouterr().out
    assert "problems: 2" in out and "NOT OK" in out
    assert built.masks[first].name in out and built.images[second].name in out
    assert "not a recognisable image file" in out
    assert main(["datasets", "check", str(root), "--format", "bussi"]) == 2
    assert "unknown format" in capsys.readouterr().err


def _tree_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_prepare_a_registered_format_is_stable_and_atomic(tmp_path):
    raw = tmp_path / "raw"
    build_kvasir(raw / "kvasir")
    out = prep("kvasir", tmp_path / "p1", raw_root=raw, image_size=16, test_fraction=0.5,
                          val_fraction=0.25, protocol="ubench")
    man = json.loads((out / "manifest.json").read_text())
    assert man["raw_format"] == "kvasir" and man["modality"] == "endoscopy" and man["num_classes"] == 1
    assert sorted(man["sources"]) == sorted(
        p.relative_to(raw / "kvasir").as_posix() for p in (raw / "kvasir").rglob("*.jpg"))
    assert man["attributes"]["images"] == 2 and man["attributes"]["foreground_fraction"] > 0
    masks = np.load(out / "masks.npy")
    assert set(np.unique(masks)) <= {0, 1}
    before = _tree_bytes(out)
    # an unrelated dataset appearing next to it changes nothing in this one's prepared bytes
    build_busi(raw / "busi")
    prep("busi", tmp_path / "pb", raw_root=raw, image_size=16)
    again = prep("kvasir", tmp_path / "p2", raw_root=raw, image_size=16, test_fraction=0.5,
                            val_fraction=0.25, protocol="ubench")
    assert _tree_bytes(again) == before
    # a broken raw file: a named error, no output, the previous output intact
    next((raw / "kvasir" / "images").glob("*.jpg")).write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UbenchError, match="kvasir"):
        prep("kvasir", tmp_path / "p1", raw_root=raw, image_size=16)
    with pytest.raises(UbenchError):
        prep("kvasir", tmp_path / "p3", raw_root=raw, image_size=16)
    assert not (tmp_path / "p3").exists() and _tree_bytes(tmp_path / "p1") == before


def test_prepare_acdc_splits_by_patient_with_class_labels(tmp_path):
    raw = tmp_path / "raw"
    make_acdc(raw / "acdc")
    out = prep("acdc", tmp_path / "out", raw_root=raw, image_size=16, protocol="ubench")
    man = json.loads((out / "manifest.json").read_text())
    splits = json.loads((out / "splits.json").read_text())
    assert man["num_classes"] == 4 and man["class_names"] == ["RV", "MYO", "LV"]
    assert splits["source"] == "official"
    groups = man["groups"]
    test_groups = {groups[i] for i in splits["test"]}
    train_groups = {groups[i] for i in splits["train"]}
    assert test_groups == {"patient101"} and train_groups == {"patient001"}
    assert splits["val"] == splits["test"]  # protocol ubench
    masks = np.load(out / "masks.npy")
    assert masks.max() == 3 and set(np.unique(masks)) <= {0, 1, 2, 3}
    assert set(man["attributes"]["class_fractions"]) == {"1", "2", "3"}


def test_seeded_group_split_never_splits_a_group(tmp_path):
    from ubench.data.prepare import seeded_splits

    groups = [f"p{i // 4}" for i in range(40)]  # 10 patients, 4 slices each
    sp = seeded_splits(40, "holdout", 7, 0.2, 0.2, groups)
    seen = {}
    for split, idx in sp.items():
        for i in idx:
            assert seen.setdefault(groups[i], split) == split
    assert len({groups[i] for i in sp["test"]}) == 2 and len({groups[i] for i in sp["val"]}) == 2
    assert sp == seeded_splits(40, "holdout", 7, 0.2, 0.2, groups)
    # without groups, every sample is its own group (the 2D behaviour)
    assert seeded_splits(10, "holdout", 7, 0.2, 0.2) == seeded_splits(10, "holdout", 7, 0.2, 0.2, [f"{i:09d}" for i in range(10)])


def test_get_converter_unknown_name():
    with pytest.raises(UbenchError, match="unknown format"):
        get_converter("kvasir_seg")


def test_check_reports_a_bad_split_file_instead_of_stopping(tmp_path, capsys):
    from tests.test_prepare import make_layout

    make_layout(tmp_path / "d", n=3)
    (tmp_path / "d" / "train.txt").write_text("case00\nnosuch\n")
    (tmp_path / "d" / "val.txt").write_text("case01\n")
    assert main(["datasets", "check", str(tmp_path / "d"), "--format", "ubench"]) == 1
    out = capsys.readouterr().out
    assert "train.txt/val.txt" in out and "'nosuch'" in out and "NOT OK" in out
