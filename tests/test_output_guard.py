"""Never lose a user's files, never write outside the project: the name rule and the output guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_params
from ubench import paths
from ubench.cli import main
from ubench.errors import UbenchError
from ubench.names import check_name, is_valid_name
from ubench.output_guard import check_replaceable, is_prepared_output


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (params.yaml of the tiny profile, a .git, a raw dataset) as the cwd."""
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    raw = tmp_path / "data" / "raw" / "mine"
    (raw / "images").mkdir(parents=True)
    (raw / "masks" / "0").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(raw / "images" / f"img{i}.png")
        m = np.zeros((24, 24), np.uint8)
        m[4:12, 4:12] = 255
        Image.fromarray(m).save(raw / "masks" / "0" / f"img{i}.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["unet", "synth_small", "CVC-ClinicDB", "isic2018", "a.b", "x1"])
def test_valid_names(name):
    assert is_valid_name(name) and check_name("dataset", name) == name


@pytest.mark.parametrize("name", [".", "..", "", "../x", "../../../../tmp/x", "/tmp/x", "a/b", "a\\b",
                                  ".hidden", "-rf", "x" * 65, "a b", "über", 3, None])
def test_invalid_names_are_named_errors(name):
    with pytest.raises(UbenchError) as exc:
        check_name("dataset", name)
    assert "invalid dataset name" in exc.value.what and "no '/'" in exc.value.fix


def test_paths_refuse_a_name_that_leaves_its_folder():
    """Every path is built through ubench.paths: a library caller cannot get round the rule."""
    for build in (lambda: paths.prepared(".."), lambda: paths.checkpoint("../../tmp/x", "unet"),
                  lambda: paths.per_image_csv("synth", "/etc/passwd"),
                  lambda: paths.zeroshot_json("synth", "..", "unet"), lambda: paths.candidate_csv("candidate")):
        with pytest.raises(UbenchError):
            build()
    assert paths.checkpoint("synth", "unet") == Path("models/synth/unet.pt")


def test_prepare_refuses_a_folder_with_the_users_notes(project, capsys):
    notes = project / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("my notes")
    assert main(["prepare", "synth", "--out", "notes"]) == 2
    assert (notes / "todo.txt").read_text() == "my notes" and len(list(notes.iterdir())) == 1
    err = capsys.readouterr().err
    assert "not a previous ubench prepared output (it holds todo.txt)" in err and "fix:" in err


def test_prepare_refuses_the_raw_dataset_folder_and_keeps_its_files(project):
    raw = project / "data" / "raw" / "mine"
    before = _tree(raw)
    for out in ("data/raw/mine", "data/raw/mine/images", "data/raw", "data/raw/other", str(raw)):
        assert main(["prepare", "mine", "--out", out]) == 2, out
    assert _tree(raw) == before


def test_prepare_refuses_the_raw_input_given_elsewhere(project, tmp_path_factory):
    """--raw-root outside the project: its dataset folder is still protected."""
    elsewhere = tmp_path_factory.mktemp("store")
    shutil.copytree(project / "data" / "raw" / "mine", elsewhere / "mine")
    before = _tree(elsewhere)
    assert main(["prepare", "mine", "--raw-root", str(elsewhere), "--out", str(elsewhere / "mine")]) == 2
    assert main(["prepare", "mine", "--raw-root", str(elsewhere), "--out", str(elsewhere)]) == 2
    assert _tree(elsewhere) == before


@pytest.mark.parametrize("out", [".", "$PWD", "..", ".git", ".git/objects"])
def test_prepare_refuses_the_project_root_and_git(project, out, capsys):
    before = _tree(project)
    out = str(project) if out == "$PWD" else out
    assert main(["prepare", "synth", "--out", out]) == 2
    assert _tree(project) == before
    assert "refusing" in capsys.readouterr().err


def test_prepare_refuses_the_dot_dataset_name(project):
    (project / "data" / "prepared" / "synth").mkdir(parents=True)
    (project / "data" / "prepared" / "keep.txt").write_text("keep")
    assert main(["prepare", "."]) == 2
    assert (project / "data" / "prepared" / "keep.txt").read_text() == "keep"


def test_prepare_replaces_its_own_previous_output_and_empty_folders(project):
    assert main(["prepare", "synth"]) == 0
    out = project / "data" / "prepared" / "synth"
    assert is_prepared_output(out)
    first = _tree(out)
    assert main(["prepare", "synth"]) == 0  # its own previous output: replaced, same bytes
    assert _tree(out) == first
    (project / "empty").mkdir()
    assert main(["prepare", "synth", "--out", "empty"]) == 0 and is_prepared_output(project / "empty")
    (out / "extra.txt").write_text("a user's file beside the outputs")
    assert main(["prepare", "synth"]) == 2  # no longer exactly ubench's: refused
    assert (out / "extra.txt").exists()


def test_guard_refuses_files_symlinks_and_folders_holding_git(project):
    (project / "afile").write_text("x")
    with pytest.raises(UbenchError, match="not a folder ubench wrote"):
        check_replaceable(project / "afile", kind="prepared")
    (project / "link").symlink_to(project / "data" / "raw" / "mine")
    with pytest.raises(UbenchError):
        check_replaceable(project / "link", kind="prepared")
    (project / "other" / ".git").mkdir(parents=True)
    with pytest.raises(UbenchError, match="holds a .git folder"):
        check_replaceable(project / "other", kind="prepared")


def test_evaluate_refuses_dataset_names_outside_the_project(project, capsys):
    for argv in (["evaluate", "--model", "unet", "--dataset", "../../../../tmp/x", "--target", "synth"],
                 ["evaluate", "--model", "unet", "--dataset", "/tmp/x"],
                 ["evaluate", "--model", "unet", "--dataset", "synth", "--target", "../x"],
                 ["train", "--model", "../unet", "--dataset", "synth"],
                 ["complexity", "--model", "/tmp/evil"]):
        assert main(argv) == 2, argv
        assert "invalid" in capsys.readouterr().err


def test_params_with_a_path_as_dataset_is_refused_before_any_stage(project, capsys):
    import yaml

    params = tiny_params(grid={"transfer": [{"source": "synth", "target": "../../outside"}]})
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["evaluate", "--model", "unet", "--dataset", "synth", "--target", "synth_shift"]) == 2
    err = capsys.readouterr().err
    assert "invalid dataset name '../../outside'" in err and "params.yaml" in err
    assert not (project.parent / "outside").exists()
