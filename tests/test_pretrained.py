"""Pretrained backbone weights (ubench/models/pretrained.py, ``train.pretrained``).

Nothing here downloads: every weights file is written by the test. For each model whose U-Bench
build loads ImageNet weights, the file is made from the real checkpoint's key list (names and
shapes, tests/data/pretrained_keys/<file>.json, taken from the publisher's architecture code), so
the model's key map is checked against the names the real file holds, not against ubench's own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_params
from ubench import paths, pipeline
from ubench.config import config_from_dict
from ubench.errors import UbenchError
from ubench.models import create_model, list_models
from ubench.models.pretrained import in_modules, load_pretrained, map_keys, pretrained_records

KEY_LISTS = Path(__file__).parent / "data" / "pretrained_keys"
WITH_BACKBONE = [n for n in list_models() if pretrained_records(n)]


def _fake_checkpoint(file: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the real checkpoint's names and shapes."""
    spec = json.loads((KEY_LISTS / f"{file}.json").read_text())
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in sorted(spec["tensors"].items()):
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7)
        else:
            out[key] = torch.randn(shape, generator=gen)
    return out


def test_the_zoo_declares_its_pretrained_backbones():
    """Every model whose notes say U-Bench loads ImageNet weights carries a loadable record."""
    assert {"pranet", "unet_v2", "doubleunet", "lv_unet"} <= set(WITH_BACKBONE)
    for name in WITH_BACKBONE:
        for rec in pretrained_records(name):
            assert {"backbone", "source", "file", "modules", "key_map"} <= rec.keys(), name
            assert (KEY_LISTS / f"{rec['file']}.json").is_file(), f"no key list for {rec['file']}"


@pytest.mark.parametrize("name", WITH_BACKBONE)
def test_real_checkpoint_names_load(name, tmp_path):
    """Files with the published checkpoints' keys load, fill every tensor of each record's
    modules, and what lands in the model is the files' values; nothing else changes."""
    records = pretrained_records(name)
    states = {}
    for i, rec in enumerate(records):
        states[rec["file"]] = _fake_checkpoint(rec["file"], seed=i)
        torch.save(states[rec["file"]], tmp_path / rec["file"])
    torch.manual_seed(0)
    model = create_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_pretrained(model, name, tmp_path, check_hash=False)  # random bytes: no published hash
    assert [r["file"] for r in loaded] == [r["file"] for r in records]
    after = model.state_dict()
    for rec, got in zip(records, loaded):
        assert got["sha256"] == hashlib.sha256((tmp_path / rec["file"]).read_bytes()).hexdigest()
        mapped = map_keys(states[rec["file"]], rec)
        assert got["tensors"] == len(mapped) > 0 and got["adapted"] == []
        for key, value in mapped.items():
            assert torch.equal(after[key], value.to(after[key].dtype)), key
    modules = [m for rec in records for m in rec["modules"]]
    outside = [k for k in after if not in_modules(k, modules) and not torch.equal(after[k], before[k])]
    assert outside == [], f"{name}: tensors changed outside the backbone: {outside[:3]}"


def test_grey_input_sums_the_stem_kernel(tmp_path):
    """A 1-channel model gets the 3-channel stem kernel summed over its input channels: the same
    as U-Bench repeating a grey image to three channels."""
    name = "pranet"
    rec = pretrained_records(name)[0]
    state = _fake_checkpoint(rec["file"])
    torch.save(state, tmp_path / rec["file"])
    model = create_model(name, in_channels=1)
    loaded = load_pretrained(model, name, tmp_path, check_hash=False)
    stem = map_keys({"conv1.0.weight": state["conv1.0.weight"]}, rec)
    (key, kernel), = stem.items()
    assert loaded[0]["adapted"] == [key]
    assert torch.equal(model.state_dict()[key], kernel.sum(dim=1, keepdim=True))
    grey = torch.rand(1, 1, 64, 64)
    x3 = grey.repeat(1, 3, 1, 1)
    conv3 = torch.nn.functional.conv2d(x3, kernel, stride=2, padding=1)
    conv1 = torch.nn.functional.conv2d(grey, model.state_dict()[key], stride=2, padding=1)
    assert torch.allclose(conv1, conv3, atol=1e-5)


def test_missing_file_names_it_and_where_to_get_it(tmp_path):
    rec = pretrained_records("pranet")[0]
    with pytest.raises(UbenchError, match=rec["file"]) as exc:
        load_pretrained(create_model("pranet"), "pranet", tmp_path)
    assert rec["url"] in exc.value.fix and "train.pretrained: false" in exc.value.fix


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04broken"])
def test_damaged_file_is_named(tmp_path, content):
    rec = pretrained_records("pranet")[0]
    (tmp_path / rec["file"]).write_bytes(content)
    with pytest.raises(UbenchError, match="cannot be read as a PyTorch state dict"):
        load_pretrained(create_model("pranet"), "pranet", tmp_path)


def test_a_file_of_another_backbone_is_refused(tmp_path):
    """The VGG-19 file under PraNet's Res2Net name: keys that match nothing are named."""
    rec = pretrained_records("pranet")[0]
    torch.save(_fake_checkpoint("vgg19-dcbb9e9d.pth"), tmp_path / rec["file"])
    with pytest.raises(UbenchError, match="match nothing in pranet"):
        load_pretrained(create_model("pranet"), "pranet", tmp_path)


def test_a_file_that_leaves_the_backbone_half_filled_is_refused(tmp_path):
    rec = pretrained_records("pranet")[0]
    state = _fake_checkpoint(rec["file"])
    state = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    torch.save(state, tmp_path / rec["file"])
    with pytest.raises(UbenchError, match="unfilled"):
        load_pretrained(create_model("pranet"), "pranet", tmp_path)


def test_hash_in_the_name_is_checked(tmp_path):
    hashed = [(n, r) for n in WITH_BACKBONE for r in pretrained_records(n) if r.get("hash_in_name")]
    assert hashed, "torchvision's files carry their SHA-256 prefix in the name"
    name, rec = hashed[0]
    torch.save(_fake_checkpoint(rec["file"]), tmp_path / rec["file"])  # not the published bytes
    with pytest.raises(UbenchError, match="does not start with"):
        load_pretrained(create_model(name), name, tmp_path)


# ---- training records what it started from ----

FAKE_FILE = "unet-encoder-test.pth"


@pytest.fixture
def unet_with_backbone(monkeypatch):
    """U-Net with a pretend pretrained record for its first encoder block."""
    import ubench.models as models

    real = models.model_info("unet")
    rec = {"backbone": "test encoder", "source": "written by the test", "file": FAKE_FILE,
           "url": "https://example.invalid/unet-encoder-test.pth", "modules": ["encoder.down.0"],
           "key_map": [[r"^", "encoder.down.0."]], "drop": [r"^head\."]}
    info = dataclasses.replace(real, extra={**real.extra, "pretrained": rec})
    monkeypatch.setattr(models, "model_info", lambda name: info if name == "unet" else real)
    block = create_model("unet").encoder.down[0]
    gen = torch.Generator().manual_seed(3)
    state = {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else v)
             for k, v in block.state_dict().items()}
    state["head.weight"] = torch.zeros(3)
    return state


def _cfg(**train):
    return config_from_dict(tiny_params(train={**tiny_params()["train"], **train}))


def test_training_loads_and_records_the_weights(prepared_tiny, unet_with_backbone):
    weights = prepared_tiny / "weights"
    weights.mkdir()
    torch.save(unet_with_backbone, weights / FAKE_FILE)
    digest = hashlib.sha256((weights / FAKE_FILE).read_bytes()).hexdigest()
    cfg = _cfg(pretrained=True, weights_dir="weights", epochs=1)
    pipeline.run_train(cfg, "unet", "synth")
    ckpt = torch.load(paths.checkpoint("synth", "unet"), weights_only=True)
    record = ckpt["pretrained"]
    assert record["requested"] and record["has_backbone"]
    assert [(f["file"], f["sha256"]) for f in record["files"]] == [(FAKE_FILE, digest)]
    summary = pipeline.run_evaluate(cfg, "unet", "synth")
    assert summary["pretrained"] == record
    assert summary["train"]["pretrained"] is True

    untrained = _cfg(pretrained=False, weights_dir="weights", epochs=1)
    pipeline.run_train(untrained, "unet", "synth")
    other = torch.load(paths.checkpoint("synth", "unet"), weights_only=True)
    assert other["pretrained"] == {"requested": False, "has_backbone": True, "files": []}
    assert not torch.equal(other["state_dict"]["encoder.down.0.0.weight"],
                           ckpt["state_dict"]["encoder.down.0.0.weight"])


def test_missing_weights_stop_training_before_any_output(prepared_tiny, unet_with_backbone):
    cfg = _cfg(pretrained=True, weights_dir="no_such_folder")
    with pytest.raises(UbenchError, match=f"no_such_folder/{FAKE_FILE}") as exc:
        pipeline.run_train(cfg, "unet", "synth")
    assert "example.invalid" in exc.value.fix
    assert not paths.checkpoint("synth", "unet").exists()
    assert not paths.train_live("synth", "unet").exists()


def test_models_without_a_backbone_record_that_nothing_was_loaded(prepared_tiny):
    cfg = _cfg(pretrained=True, weights_dir="weights", epochs=1)
    pipeline.run_train(cfg, "unet", "synth")
    ckpt = torch.load(paths.checkpoint("synth", "unet"), weights_only=True)
    assert ckpt["pretrained"] == {"requested": True, "has_backbone": False, "files": []}


def test_empty_weights_dir_is_refused():
    with pytest.raises(UbenchError, match="train.weights_dir"):
        _cfg(weights_dir=" ")


def test_a_file_whose_hash_matches_its_name_loads(tmp_path, monkeypatch):
    """The positive side of the torch.hub name check: the right bytes under their hashed name."""
    import ubench.models as models

    block = create_model("unet").encoder.down[0]
    raw = tmp_path / "raw.pth"
    torch.save({k: torch.full_like(v, 0.5) if v.is_floating_point() else v
                for k, v in block.state_dict().items()}, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    file = f"enc-{digest[:8]}.pth"
    raw.rename(tmp_path / file)
    real = models.model_info("unet")
    rec = {"backbone": "test encoder", "source": "test", "file": file, "hash_in_name": True,
           "modules": ["encoder.down.0"], "key_map": [[r"^", "encoder.down.0."]]}
    monkeypatch.setattr(models, "model_info",
                        lambda name: dataclasses.replace(real, extra={"pretrained": rec}))
    model = create_model("unet")
    (got,) = load_pretrained(model, "unet", tmp_path)
    assert got["sha256"] == digest
    assert torch.all(model.state_dict()["encoder.down.0.0.weight"] == 0.5)
