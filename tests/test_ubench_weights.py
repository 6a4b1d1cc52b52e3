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


# --- `ubench weights import` / `import-release` ---------------------------------------------------

def _save(path, net=None, **config):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": (net or _model()).state_dict(), "config": _ubench_config(**config), "epoch": 3},
               path)
    return path


def test_weights_import_writes_a_checkpoint_evaluate_reads(tmp_path, monkeypatch, capsys):
    from ubench.checkpoint import load_checkpoint
    from ubench.cli import main

    monkeypatch.chdir(tmp_path)
    model = _model()
    src = _save(tmp_path / "dl" / "checkpoint_best.pth", model)
    assert main(["weights", "import", str(src)]) == 0
    out = tmp_path / "models" / "imported" / "busi" / "unext.pt"
    assert "as unext on busi -> models/imported/busi/unext.pt" in capsys.readouterr().out
    loaded, meta = load_checkpoint(out, "unext")
    assert meta["imported"]["file"] == "checkpoint_best.pth" and meta["dataset"] == "busi"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded.eval()(x))
    # an earlier import is replaced; any other file is not
    assert main(["weights", "import", str(src), "--dataset", "kvasir"]) == 0
    foreign = tmp_path / "mine.pt"
    foreign.write_text("my notes")
    assert main(["weights", "import", str(src), "--out", str(foreign)]) == 2
    assert foreign.read_text() == "my notes"
    assert "is not a checkpoint `ubench weights import` wrote" in capsys.readouterr().err
    assert main(["weights", "import", str(src), "--out", str(out)]) == 0  # its own earlier import


def test_weights_import_refuses_what_does_not_fit_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from ubench.cli import main

    monkeypatch.chdir(tmp_path)
    src = _save(tmp_path / "c.pth", model="U_Net")  # U-Net's name on UNeXt's weights
    assert main(["weights", "import", str(src)]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "missing" in err and "unexpected" in err
    assert not (tmp_path / "models").exists()
    assert main(["weights", "import", str(src), "--model", "unetx"]) == 2
    assert "unknown model 'unetx'" in capsys.readouterr().err
    assert main(["weights", "import", str(src), "--model", "unext", "--dataset", "../x"]) == 2
    assert main(["weights", "import", str(src), "--model", "unext", "--dataset", "imported"]) == 2
    assert not (tmp_path / "models").exists()


def test_import_release_imports_what_identifies_itself_and_says_why_not(tmp_path, monkeypatch, capsys):
    from ubench.cli import main

    monkeypatch.chdir(tmp_path)
    rel = tmp_path / "weights"
    best = _save(rel / "a" / "checkpoint_best.pth")
    _save(rel / "a" / "checkpoint_final.pth")                       # same model and dataset
    _save(rel / "b" / "UNeXt_isic.pth", dataset_name="isic2018")    # folder names do not matter
    _save(rel / "c" / "x.pth", model="NoSuchNet")                   # a model ubench lacks
    torch.save(_model().state_dict(), rel / "d.pth")                # no config
    (rel / "e.pth").write_text("not a checkpoint")
    (rel / "README.md").write_text("not a checkpoint file name: ignored")
    assert main(["weights", "import-release", str(rel)]) == 1
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert "imported -> models/imported/busi/unext.pt" in lines["a/checkpoint_best.pth"]
    assert "same model and dataset as a/checkpoint_best.pth" in lines["a/checkpoint_final.pth"]
    assert "imported -> models/imported/isic2018/unext.pt" in lines["b/UNeXt_isic.pth"]
    assert "NoSuchNet" in lines["c/x.pth"] and "refused" in lines["c/x.pth"]
    assert "bare state_dict" in lines["d.pth"] and "not a PyTorch checkpoint" in lines["e.pth"]
    assert out.splitlines()[-1] == "2 imported, 4 refused, of 6 checkpoint file(s)"
    assert (tmp_path / "models/imported/busi/unext.pt").is_file() and best.is_file()
    assert main(["weights", "import-release", str(tmp_path / "nothing")]) == 2


def test_an_import_is_evaluated_by_hand_and_says_so(prepared_tiny, tiny_cfg):
    """The README's interim path: import where evaluate looks, then evaluate; the summary records
    the U-Bench provenance (and a trained checkpoint there is never replaced)."""
    import json

    from ubench import paths, pipeline
    from ubench.ubench_weights import import_checkpoint

    src = _save(prepared_tiny / "dl" / "checkpoint_best.pth", dataset_name="synth")
    row = import_checkpoint(src, out=paths.checkpoint("synth", "unext"))
    assert row.model == "unext" and row.dataset == "synth"
    s = pipeline.run_evaluate(tiny_cfg, "unext", "synth")
    assert s["imported"]["ubench_model"] == "UNeXt" and s["imported"]["epoch"] == 3
    assert json.loads(paths.eval_json("synth", "unext").read_text())["imported"]["sha256"] == row_sha(src)
    pipeline.run_train(tiny_cfg, "unet", "synth")
    with pytest.raises(UbenchError, match="not a checkpoint `ubench weights import` wrote"):
        import_checkpoint(src, model="unext", out=paths.checkpoint("synth", "unet"))
    assert pipeline.run_evaluate(tiny_cfg, "unet", "synth")["imported"] is None


def row_sha(path):
    from ubench.io import sha256_file

    return sha256_file(path)


def test_evaluate_imported_stage_in_domain_and_zero_shot(prepared_tiny):
    """evaluate_imported@: the import on its dataset's test split and on every grid.transfer target
    of that dataset, as one set; a checkpoint without U-Bench provenance is refused, leaving nothing."""
    import json
    import shutil

    from tests.conftest import tiny_params
    from ubench import paths, pipeline
    from ubench.config import config_from_dict
    from ubench.ubench_weights import import_checkpoint

    cfg = config_from_dict(tiny_params(grid={"imported": [{"model": "unext", "dataset": "synth"}]}))
    with pytest.raises(UbenchError, match="no imported checkpoint") as err:
        pipeline.run_evaluate_imported(cfg, "unext", "synth")
    assert "ubench weights import CHECKPOINT --model unext --dataset synth" in err.value.fix
    import_checkpoint(_save(prepared_tiny / "dl" / "c.pth", dataset_name="synth"))
    s = pipeline.run_evaluate_imported(cfg, "unext", "synth")
    assert s["imported"]["ubench_model"] == "UNeXt" and s["split"] == "test"
    rows = paths.imported_per_image_dir("synth", "unext")
    assert sorted(p.name for p in rows.iterdir()) == ["test.csv", "zeroshot_synth_shift.csv"]
    z = json.loads(paths.imported_eval("synth", "unext", "synth_shift").read_text())
    assert z["zero_shot"] is True and z["source"] == "synth" and z["imported"]["file"] == "c.pth"
    assert json.loads(paths.imported_eval("synth", "unext").read_text())["n_images"] == s["n_images"]

    pipeline.run_train(cfg, "unet", "synth")  # a checkpoint ubench trained is no import
    shutil.copy(paths.checkpoint("synth", "unet"), paths.imported_checkpoint("synth", "unet"))
    with pytest.raises(UbenchError, match="holds no U-Bench provenance"):
        pipeline.run_evaluate_imported(cfg, "unet", "synth")
    assert not paths.imported_per_image_dir("synth", "unet").exists()
    assert not paths.imported_eval_dir("synth", "unet").exists()


@pytest.mark.parametrize("entry, message", [
    ({"model": "unext", "dataset": "synth_shift"}, "is not in `grid.datasets`"),
    ({"model": "unetx", "dataset": "synth"}, "unknown model 'unetx'"),
    ({"model": "unext", "dataset": "../x"}, "invalid dataset name"),
])
def test_grid_imported_entries_are_checked(entry, message):
    from tests.conftest import tiny_params
    from ubench.config import config_from_dict

    with pytest.raises(UbenchError, match=message):
        config_from_dict(tiny_params(grid={"imported": [entry]}))
    with pytest.raises(UbenchError, match="lists an entry twice"):
        config_from_dict(tiny_params(grid={"imported": [{"model": "unext", "dataset": "synth"}] * 2}))


def test_publish_pushes_imported_weights_and_refuses_unpinned_ones(tmp_path):
    from ubench.publish import IMPORTED_PIN, publish_targets

    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  code:\n    cmd: ubench code\n"
                                       "  evaluate_imported@0:\n    cmd: ubench evaluate --imported\n")
    with pytest.raises(UbenchError, match="not pinned by DVC") as err:
        publish_targets(tmp_path)
    assert "dvc add models/imported" in err.value.fix
    (tmp_path / "models").mkdir()
    (tmp_path / IMPORTED_PIN).write_text("outs:\n- path: imported\n")
    assert publish_targets(tmp_path) == ["code", "evaluate_imported@0", "models/imported.dvc"]
