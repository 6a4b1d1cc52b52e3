"""A missing, empty, truncated, foreign or unfitting checkpoint is a named error (UbenchError with a
fix), never a traceback; a pickle that a safe load refuses is never answered with advice to load it
unsafely."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from ubench import paths
from ubench.checkpoint import checkpoint_bytes
from ubench.errors import UbenchError
from ubench.evaluate import load_checkpoint
from ubench.models import create_model

CKPT = paths.checkpoint("synth", "unet")  # models/synth/unet.pt, relative to the test's folder
STAGE = "train@unet-synth"


class Foreign:
    """Any class outside torch's safe list: a weights-only load must refuse it."""

    def __init__(self):
        self.payload = [1, 2, 3]


class RunsCode:
    """A pickle whose loading would run code: touch a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _checkpoint(model: str = "unet", **overrides) -> dict:
    """The dict train_model writes, for an untrained ``model`` (no training needed)."""
    net = create_model(model, num_classes=1, in_channels=3)
    doc = {"model": model, "state_dict": net.state_dict(), "epoch": 1, "num_classes": 1,
           "class_names": ["foreground"], "val_iou": 0.5, "protocol": "holdout", "train": {}, "data": {}}
    doc.update(overrides)
    return doc


@pytest.fixture
def ckpt(workdir) -> Path:
    CKPT.parent.mkdir(parents=True)
    CKPT.write_bytes(checkpoint_bytes(_checkpoint()))
    return CKPT


def _error(path: Path = CKPT, model: str = "unet") -> UbenchError:
    with pytest.raises(UbenchError) as exc:
        load_checkpoint(path, model)
    err = exc.value
    assert str(path) in err.what, err.what
    assert err.fix, "every checkpoint error says what to do"
    assert "weights_only" not in str(err), str(err)
    return err


def test_a_good_checkpoint_loads(ckpt):
    model, doc = load_checkpoint(ckpt, "unet")
    assert doc["epoch"] == 1 and isinstance(model, torch.nn.Module)


def test_missing(workdir):
    err = _error()
    assert "not found" in err.what
    assert f"dvc pull {CKPT}" in err.fix and f"dvc repro {STAGE}" in err.fix


def test_empty(ckpt):
    ckpt.write_bytes(b"")
    err = _error()
    assert "is empty" in err.what and STAGE in err.fix


@pytest.mark.parametrize("keep", [0.5, 0.9, 10, 3])
def test_truncated(ckpt, keep):
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    err = _error()
    assert "truncated" in err.what and STAGE in err.fix and f"dvc pull --force {CKPT}" in err.fix


@pytest.mark.parametrize("content", [
    b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 12\n",  # a Git LFS pointer
    b"\x00" * 64,
    pickle.dumps({"model": "unet"}),  # a plain pickle, not a torch zip archive
])
def test_not_a_torch_file(ckpt, content):
    ckpt.write_bytes(content)
    err = _error()
    assert "not a PyTorch checkpoint" in err.what


def test_refused_objects_never_suggest_an_unsafe_load(ckpt):
    torch.save(_checkpoint(extra=Foreign()), ckpt)
    err = _error()
    assert "refused" in err.what and "safe" in err.what
    assert "Foreign" in err.what  # names what was refused
    assert "weights_only=False" not in str(err) and "weights_only" not in err.fix
    assert STAGE in err.fix


def test_a_code_running_pickle_is_refused_and_runs_nothing(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": "unet", "x": RunsCode(str(marker))}, ckpt)
    err = _error()
    assert "refused" in err.what
    assert not marker.exists()


@pytest.mark.parametrize("doc, needle", [
    ([1, 2, 3], "list"),
    (torch.zeros(3), "Tensor"),
    ({"state_dict": {}}, "model"),
    ({"model": "unet", "epoch": 1}, "state_dict"),
    ({"model": "unet", "state_dict": [1], "epoch": 1}, "state_dict"),
    ({"model": "unet", "state_dict": {}, "epoch": "one"}, "epoch"),
    ({"model": "unet", "state_dict": {}, "epoch": 1, "num_classes": 0}, "num_classes"),
])
def test_not_what_ubench_writes(ckpt, doc, needle):
    torch.save(doc, ckpt)
    err = _error()
    assert "ubench" in err.what and needle in err.what


def test_checkpoint_of_another_model(ckpt):
    torch.save(_checkpoint("attention_unet"), ckpt)
    err = _error()
    assert "'attention_unet'" in err.what and "'unet'" in err.what


def test_state_dict_that_does_not_fit(ckpt):
    doc = _checkpoint()
    sd = dict(doc["state_dict"])
    names = sorted(sd)
    dropped = names[:10]
    for k in dropped:
        del sd[k]
    sd["extra.weight"] = torch.zeros(1)
    reshaped = names[-1]
    sd[reshaped] = torch.zeros(7, 7)
    torch.save({**doc, "state_dict": sd}, ckpt)
    err = _error()
    assert "does not fit" in err.what
    assert "10 missing" in err.what and dropped[0] in err.what and "and 2 more" in err.what  # 8 names, a count
    assert "extra.weight" in err.what and reshaped in err.what
    assert STAGE in err.fix


def test_candidate_checkpoint_fix_names_its_stage(workdir):
    path = paths.candidate_checkpoint("synth")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    err = _error(path, "unet")
    assert "dvc repro -f candidate@synth" in err.fix


def test_unreadable_file_is_named(ckpt, monkeypatch):
    real_open = open

    def refuse(file, *args, **kwargs):
        if Path(file) == ckpt:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    err = _error()
    assert "cannot be read" in err.what and "permission" in err.fix.lower()


def test_evaluate_stage_reports_a_truncated_checkpoint(prepared_tiny, tiny_cfg, capsys):
    """Through the CLI: `error:` / `fix:` lines and exit status 2, no traceback, nothing written."""
    import yaml

    from ubench.cli import main
    from ubench.config import as_dict

    Path("params.yaml").write_text(yaml.safe_dump(as_dict(tiny_cfg)))
    CKPT.parent.mkdir(parents=True)
    CKPT.write_bytes(checkpoint_bytes(_checkpoint())[:100])
    assert main(["evaluate", "--model", "unet", "--dataset", "synth"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {CKPT}") and "truncated" in err and "Traceback" not in err
    assert "\n  fix: " in err and STAGE in err
    assert not paths.per_image_csv("synth", "unet").exists()
    assert not paths.eval_json("synth", "unet").exists()


def test_writer_refuses_what_the_safe_loader_would_refuse():
    """A value evaluate could not load back (here torch's TorchVersion, a str subclass) fails when
    the checkpoint is written, not later when every evaluation of it does."""
    with pytest.raises(TypeError, match="TorchVersion"):
        checkpoint_bytes(_checkpoint(platform={"torch": torch.__version__}))
    doc = torch.load(__import__("io").BytesIO(checkpoint_bytes(_checkpoint())), weights_only=True)
    assert doc["model"] == "unet"
