"""Reading U-Bench checkpoints safely and fitting them exactly (issue 19, first half): checkpoints
made here in U-Bench's format (its main.py's dict with an argparse config; a bare state_dict; one
saved from DataParallel), on a registered model."""

from __future__ import annotations

import argparse

import pytest
import torch

from ubench.errors import UbenchError
from ubench.models import create_model
from ubench.ubench_weights import fit_state_dict, read_ubench_checkpoint


def _model():
    torch.manual_seed(0)
    return create_model("unext", num_classes=1, in_channels=3)


def _ubench_config(**over) -> argparse.Namespace:
    values = {"model": "UNeXt", "dataset_name": "busi", "img_size": 256, "num_classes": 1, "input_channel": 3,
              "do_deeps": False, "base_dir": "./data/busi"}
    values.update(over)
    return argparse.Namespace(**values)


def test_main_py_checkpoint_is_read_with_its_config_and_fits(tmp_path):
    model = _model()
    path = tmp_path / "checkpoint_best.pth"
    torch.save({"state_dict": model.state_dict(), "config": _ubench_config(), "epoch": 287, "best_iou": 0.8}, path)
    ck = read_ubench_checkpoint(path)
    assert ck.config["model"] == "UNeXt" and ck.config["dataset_name"] == "busi" and ck.epoch == 287
    assert len(ck.sha256) == 64 and ck.stripped_prefix == ""
    other = create_model("unext", num_classes=1, in_channels=3)
    other.load_state_dict(fit_state_dict(other, ck.state_dict, "checkpoint_best.pth"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), other.eval()(x))


def test_bare_and_dataparallel_state_dicts(tmp_path):
    model = _model()
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "dp.pth")
    bare, dp = read_ubench_checkpoint(tmp_path / "bare.pth"), read_ubench_checkpoint(tmp_path / "dp.pth")
    assert bare.config == {} and bare.epoch is None
    assert dp.stripped_prefix == "module." and list(dp.state_dict) == list(model.state_dict())


def test_another_architecture_is_refused_with_every_kind_of_mismatch(tmp_path):
    model = _model()
    state = dict(model.state_dict())
    first, second = list(state)[:2]
    del state[first]
    state["extra.weight"] = torch.zeros(3)
    state[second] = torch.zeros(7, 7)
    with pytest.raises(UbenchError) as err:
        fit_state_dict(model, state, "x.pth")
    what = err.value.what
    assert "1 missing" in what and first in what and "1 unexpected (extra.weight)" in what
    assert f"1 mis-shaped ({second} (7, 7) !=" in what and "never loads one in part" in err.value.fix


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "config": _Custom()}, path)
    with pytest.raises(UbenchError) as err:
        read_ubench_checkpoint(path)
    assert "safe loader refuses" in err.value.what


def test_damaged_and_foreign_files_name_the_problem(tmp_path):
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UbenchError, match="not a readable PyTorch checkpoint"):
        read_ubench_checkpoint(tmp_path / "cut.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "other.pth")
    with pytest.raises(UbenchError, match="neither a U-Bench checkpoint"):
        read_ubench_checkpoint(tmp_path / "other.pth")
    with pytest.raises(UbenchError, match="not found"):
        read_ubench_checkpoint(tmp_path / "missing.pth")


class _Custom:
    pass


def test_model_and_dataset_come_from_the_config_unless_given(tmp_path):
    from ubench.ubench_weights import identify, ubench_model_names

    names = ubench_model_names()
    assert names["U_Net"] == "unet" and names["UNeXt"] == "unext"  # ModelInfo.ubench_name
    path = tmp_path / "c.pth"
    torch.save({"state_dict": _model().state_dict(), "config": _ubench_config()}, path)
    ck = read_ubench_checkpoint(path)
    assert identify(ck) == ("unext", "busi")
    assert identify(ck, model="unet", dataset="isic2018") == ("unet", "isic2018")
    torch.save({"state_dict": _model().state_dict(), "config": _ubench_config(model="U_Netz")}, path)
    with pytest.raises(UbenchError) as err:
        identify(read_ubench_checkpoint(path))
    assert "U_Netz" in err.value.what and "U_Net" in err.value.what + err.value.fix  # the closest name
    torch.save(_model().state_dict(), path)
    with pytest.raises(UbenchError, match="bare state_dict"):
        identify(read_ubench_checkpoint(path))


def test_an_imported_checkpoint_is_what_evaluate_reads(tmp_path):
    from ubench.checkpoint import checkpoint_bytes, load_checkpoint
    from ubench.ubench_weights import imported_document

    model = _model()
    src = tmp_path / "checkpoint_best.pth"
    torch.save({"state_dict": model.state_dict(), "config": _ubench_config(), "epoch": 287}, src)
    ck = read_ubench_checkpoint(src)
    doc = imported_document(ck, "unext", "busi")
    out = tmp_path / "models" / "busi" / "unext.pt"
    out.parent.mkdir(parents=True)
    out.write_bytes(checkpoint_bytes(doc))  # the safe loader reads it back (checked by checkpoint_bytes)
    loaded, meta = load_checkpoint(out, "unext")  # evaluate's own reader
    assert meta["imported"]["sha256"] == ck.sha256 and meta["imported"]["ubench_model"] == "UNeXt"
    assert meta["imported"]["config"]["img_size"] == 256 and meta["epoch"] == 287
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded.eval()(x))
