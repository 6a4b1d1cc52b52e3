"""The source digests each stage depends on (ubench/stage_sources.py; the `code` stage)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from ubench import paths, stage_sources
from ubench.errors import UbenchError
from ubench.models import list_models


def test_a_model_digest_lists_the_shared_blocks_it_imports_and_no_others():
    unet = stage_sources.model_sources("unet")
    assert "ubench/models/unet.py" in unet and "ubench/models/ops/conv_blocks.py" in unet
    assert "ubench/models/ops/common.py" in unet  # imported by conv_blocks.py: followed
    assert "ubench/models/ops/light_blocks.py" not in unet and "ubench/models/unext.py" not in unet
    ulite = stage_sources.model_sources("ulite")
    assert not any(f.startswith("ubench/models/ops/") for f in ulite)


@pytest.mark.parametrize("model", list_models())
def test_every_registered_model_has_its_sources(model):
    files = stage_sources.sources("train", model)
    assert f"ubench/models/{model}.py" in files and "ubench/train.py" in files
    assert all((REPO_ROOT / f).is_file() for f in files)


def test_folders_stand_for_their_files_and_bad_requests_are_named():
    raw = stage_sources.sources("prepare_raw")
    assert "ubench/data/converters/ubench_layout.py" in raw
    assert not any("__pycache__" in f for f in raw)
    with pytest.raises(UbenchError, match="unknown stage kind"):
        stage_sources.sources("nope")
    with pytest.raises(UbenchError, match="needs model"):
        stage_sources.sources("train")
    with pytest.raises(UbenchError, match="takes no model"):
        stage_sources.sources("leaderboard", "unet")


def test_dvc_yaml_stages_depend_on_digests_not_on_source_files():
    """Every stage but `code` names its ubench code through one digest, which `code` writes."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["code"]["deps"] == ["ubench", "${train.weights_dir}"]
    for name, body in stages.items():
        if name == "code":
            continue
        deps = body.get("do", body)["deps"]
        assert "${train.weights_dir}" not in deps, f"{name}: backbone weights come through its digest"
        assert not [d for d in deps if d.startswith("ubench")], f"{name} lists ubench sources directly"
        digests = [d for d in deps if d.startswith("results/code/")]
        assert len(digests) == 1, f"{name}: one source digest expected, got {digests}"
        kind = digests[0][len("results/code/"):].split("/")[0].removesuffix(".json")
        assert kind in stage_sources.SOURCES


def test_a_digest_changes_exactly_when_a_file_it_lists_changes(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "ubench", root / "ubench", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    written = stage_sources.write_digests(["unet", "ulite"], root)
    assert paths.code_digest("train", "unet") in written and paths.code_digest("leaderboard") in written
    before = {p: p.read_bytes() for p in written}
    doc = json.loads(paths.code_digest("efficiency", "unet").read_text())
    assert doc["kind"] == "efficiency" and doc["model"] == "unet"
    assert len(doc["files"]["ubench/models/unet.py"]) == 64

    blocks = root / "ubench/models/ops/conv_blocks.py"
    blocks.write_text(blocks.read_text() + "\n# edited\n")
    after = {p: p.read_bytes() for p in stage_sources.write_digests(["unet", "ulite"], root)}
    changed = sorted(str(p) for p in before if before[p] != after[p])
    # unet imports conv_blocks (for training, evaluation, efficiency, the candidate); ulite does not
    assert changed == sorted(str(paths.code_digest(k, "unet")) for k in stage_sources.PER_MODEL)


def test_a_listed_file_that_is_gone_is_named(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "ubench", root / "ubench", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "ubench/advisor").rename(root / "ubench/advisor_old")
    with pytest.raises(UbenchError, match="ubench/advisor, which does not exist"):
        stage_sources.sources("advisor", root=root)


def test_the_code_stage_writes_nothing_when_a_digest_fails(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "ubench", root / "ubench", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "ubench/analysis/html_report.py").unlink()  # `report` lists it; earlier kinds do not
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UbenchError):
        stage_sources.write_digests(["unet"], root)
    assert not Path(paths.CODE).exists()


def test_training_digests_hold_the_backbone_weights_a_model_loads_when_pretrained(tmp_path, monkeypatch):
    """train.pretrained true: the training digests (train, candidate) of a model with a backbone
    list its weight files' hashes (None: not there yet), so that changing one file reruns exactly
    the trainings that load it; false: no weights in any digest (the folder changes nothing)."""
    from ubench.models.pretrained import required_files

    monkeypatch.chdir(tmp_path)
    models = ["aura_net", "cenet", "unet"]
    (aura_file,), (cenet_file,) = required_files("aura_net"), required_files("cenet")
    untouched = {p: p.read_bytes() for p in stage_sources.write_digests(models)}
    assert not any(b'"weights"' in b for b in untouched.values())

    weights = tmp_path / "weights"
    weights.mkdir()
    first = {p: p.read_bytes() for p in stage_sources.write_digests(models, weights_dir=weights)}
    with_weights = sorted(str(p) for p in first if b'"weights"' in first[p])
    assert with_weights == sorted(str(paths.code_digest(k, m)) for k in stage_sources.TRAINS for m in ("aura_net", "cenet"))
    assert json.loads(first[paths.code_digest("train", "aura_net")])["weights"] == {aura_file: None}

    (weights / aura_file).write_bytes(b"resnet18 stand-in")
    (weights / cenet_file).write_bytes(b"resnet34 stand-in")
    second = {p: p.read_bytes() for p in stage_sources.write_digests(models, weights_dir=weights)}
    doc = json.loads(second[paths.code_digest("candidate", "aura_net")])
    assert doc["weights"] == {aura_file: hashlib.sha256(b"resnet18 stand-in").hexdigest()}
    assert doc["files"] == json.loads(first[paths.code_digest("candidate", "aura_net")])["files"]

    (weights / cenet_file).write_bytes(b"resnet34, fine-tuned")
    third = {p: p.read_bytes() for p in stage_sources.write_digests(models, weights_dir=weights)}
    changed = sorted(str(p) for p in third if third[p] != second[p])
    assert changed == sorted(str(paths.code_digest(k, "cenet")) for k in stage_sources.TRAINS)
