"""ubench.io: outputs land whole or not at all (singly and in pairs), get the umask's permissions,
and an unwritable folder is a named error, not a traceback."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest

from ubench import io as uio
from ubench.errors import UbenchError


def _hidden(folder: Path) -> list[str]:
    """Leftovers of the atomic writers (temp files/folders, `.NAME.old`) in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the previous one afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


# --- several files that land together -------------------------------------------------------------

def test_failed_second_file_leaves_old_pair_and_no_temps(tmp_path, monkeypatch):
    a, b = tmp_path / "out.csv", tmp_path / "out.json"
    a.write_text("old csv\n")
    b.write_text("old json\n")
    real_fsync = os.fsync
    calls = []

    def fsync_fails_second(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, "simulated I/O error")
        real_fsync(fd)

    monkeypatch.setattr(uio.os, "fsync", fsync_fails_second)
    with pytest.raises(OSError, match="simulated"):
        uio.write_files_atomic({a: b"new csv\n", b: b"new json\n"})
    assert a.read_text() == "old csv\n" and b.read_text() == "old json\n"
    assert _hidden(tmp_path) == []


def test_files_land_together(tmp_path):
    a, b = tmp_path / "sub" / "x.csv", tmp_path / "y.json"
    uio.write_files_atomic({a: b"1\n", b: "two\n"})
    assert a.read_bytes() == b"1\n" and b.read_text() == "two\n"
    assert _hidden(tmp_path) == [] and _hidden(a.parent) == []


def test_failed_rename_removes_the_remaining_temps(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    b.write_text("old b\n")
    real_replace = os.replace

    def replace_fails_for_b(src, dst):
        if Path(dst) == b:
            raise OSError(errno.EIO, "simulated rename failure")
        real_replace(src, dst)

    monkeypatch.setattr(uio.os, "replace", replace_fails_for_b)
    with pytest.raises(OSError, match="simulated"):
        uio.write_files_atomic({a: b"new a\n", b: b"new b\n"})
    assert b.read_text() == "old b\n"  # documented window: `a` may be new, `b` is intact
    assert _hidden(tmp_path) == []


# --- atomic_dir ----------------------------------------------------------------------------------

def test_atomic_dir_failed_rename_cleans_up_and_restores_the_old_folder(tmp_path, monkeypatch):
    target = tmp_path / "live"
    target.mkdir()
    (target / "old.txt").write_text("previous run\n")
    real_replace = os.replace

    def replace_fails_into_place(src, dst):
        if Path(dst) == target and str(src).endswith(".tmp"):  # the old folder moves aside; the new cannot land
            raise OSError(errno.EIO, "simulated rename failure")
        real_replace(src, dst)

    monkeypatch.setattr(uio.os, "replace", replace_fails_into_place)
    with pytest.raises(OSError, match="simulated"):
        with uio.atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("this run\n")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert (target / "old.txt").read_text() == "previous run\n"
    assert _hidden(tmp_path) == []


def test_atomic_dir_failed_first_rename_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "fresh"

    def replace_fails(src, dst):
        raise OSError(errno.EIO, "simulated rename failure")

    monkeypatch.setattr(uio.os, "replace", replace_fails)
    with pytest.raises(OSError, match="simulated"):
        with uio.atomic_dir(target) as tmp:
            (tmp / "f").write_text("x")
    assert not target.exists() and _hidden(tmp_path) == []


def test_atomic_dir_replaces_and_a_failed_block_keeps_the_old(tmp_path):
    target = tmp_path / "d"
    with uio.atomic_dir(target) as tmp:
        (tmp / "one").write_text("1")
    with pytest.raises(RuntimeError):
        with uio.atomic_dir(target) as tmp:
            (tmp / "two").write_text("2")
            raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["one"] and _hidden(tmp_path) == []
    with uio.atomic_dir(target) as tmp:
        (tmp / "three").write_text("3")
    assert [p.name for p in target.iterdir()] == ["three"] and _hidden(tmp_path) == []


# --- permissions follow the umask ----------------------------------------------------------------

@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_outputs_get_the_umask_permissions(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    uio.write_text_atomic(tmp_path / "a.txt", "a\n")
    uio.write_json_atomic(tmp_path / "b.json", {"b": 1})
    uio.write_files_atomic({tmp_path / "c.csv": b"c\n", tmp_path / "d.json": b"{}\n"})
    with uio.atomic_dir(tmp_path / "folder") as tmp:
        uio.write_text_atomic(tmp / "inner.txt", "x\n")
    for name in ("a.txt", "b.json", "c.csv", "d.json", "folder/inner.txt"):
        assert oct(_mode(tmp_path / name)) == oct(file_mode), name
    assert oct(_mode(tmp_path / "folder")) == oct(dir_mode)
    assert uio.current_umask() == mask


# --- unwritable folders are named errors ---------------------------------------------------------

@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder regardless")
def test_read_only_folder_is_a_named_error_real_chmod(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UbenchError) as exc:
            uio.write_text_atomic(ro / "x.txt", "x")
        assert str(ro) in exc.value.what and exc.value.fix
        with pytest.raises(UbenchError):
            with uio.atomic_dir(ro / "d"):
                pass
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("err, needle", [
    (errno.EACCES, "permission denied"), (errno.EPERM, "permission denied"),
    (errno.EROFS, "read-only file system"), (errno.ENOSPC, "no space left"),
])
def test_unwritable_folder_is_a_named_error(tmp_path, monkeypatch, err, needle):
    """Runs as root too: mkstemp/mkdtemp raise the error a read-only or full folder would give."""
    def refuse(*args, dir=None, **kwargs):
        raise OSError(err, os.strerror(err), str(Path(dir) / ".x.tmp"))

    monkeypatch.setattr(uio.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(uio.tempfile, "mkdtemp", refuse)
    out = tmp_path / "results"
    for write in (lambda: uio.write_text_atomic(out / "x.csv", "x"),
                  lambda: uio.write_files_atomic({out / "a": b"a", out / "b": b"b"}),
                  lambda: uio.save_npy_atomic(out / "a.npy", __import__("numpy").zeros(2))):
        with pytest.raises(UbenchError) as exc:
            write()
        assert str(out) in exc.value.what and needle in exc.value.what.lower()
        assert exc.value.fix
    with pytest.raises(UbenchError) as exc:
        with uio.atomic_dir(out / "folder"):
            pytest.fail("the block must not run when the folder cannot be made")
    assert str(out) in exc.value.what


def test_unwritable_parent_folder_is_a_named_error(tmp_path, monkeypatch):
    """mkdir of a missing parent fails in a read-only tree: the error names the folder it could not make."""
    def refuse_mkdir(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse_mkdir)
    with pytest.raises(UbenchError) as exc:
        uio.write_text_atomic(tmp_path / "new" / "x.txt", "x")
    assert str(tmp_path / "new") in exc.value.what and "permission denied" in exc.value.what.lower()
    assert "writable" in exc.value.fix


def test_failed_rename_of_a_read_only_target_is_named_and_leaves_no_temp(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", src, dst)

    monkeypatch.setattr(uio.os, "replace", refuse)
    with pytest.raises(UbenchError) as exc:
        uio.write_text_atomic(tmp_path / "x.txt", "x")
    assert str(tmp_path) in exc.value.what
    assert _hidden(tmp_path) == []


def test_other_errors_are_not_swallowed(tmp_path, monkeypatch):
    """Only the 'cannot write here' errors become UbenchError; a bug stays a bug."""
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(uio.tempfile, "mkstemp", broken)
    with pytest.raises(OSError) as exc:
        uio.write_text_atomic(tmp_path / "x", "x")
    assert not isinstance(exc.value, UbenchError)


def test_no_temp_left_in_a_real_tempdir():
    with tempfile.TemporaryDirectory() as d:
        uio.write_json_atomic(Path(d) / "k.json", {"b": 2, "a": 1})
        assert (Path(d) / "k.json").read_text() == '{\n  "a": 1,\n  "b": 2\n}\n'
        assert _hidden(Path(d)) == []


# --- evaluate's CSV + JSON pair -------------------------------------------------------------------

def test_evaluate_failing_json_leaves_the_old_pair(prepared_tiny, tiny_cfg, monkeypatch):
    """The summary cannot be written (a NaN reached it): the per-image CSV of the previous run
    stays, beside its JSON, and no temp file is left in either folder."""
    from ubench import evaluate, paths, pipeline
    from ubench.checkpoint import checkpoint_bytes
    from ubench.models import create_model

    net = create_model("unet", num_classes=1, in_channels=3)
    uio.write_bytes_atomic(paths.checkpoint("synth", "unet"), checkpoint_bytes(
        {"model": "unet", "state_dict": net.state_dict(), "epoch": 1, "num_classes": 1}))
    csv, js = paths.per_image_csv("synth", "unet"), paths.eval_json("synth", "unet")
    for p, old in ((csv, "old csv\n"), (js, "old json\n")):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(old)
    real = evaluate.summarize
    monkeypatch.setattr(evaluate, "summarize", lambda frame: {**real(frame), "iou": {"mean": float("nan")}})
    with pytest.raises(ValueError, match="non-finite"):
        pipeline.run_evaluate(tiny_cfg, "unet", "synth")
    assert csv.read_text() == "old csv\n" and js.read_text() == "old json\n"
    assert _hidden(csv.parent) == [] and _hidden(js.parent) == []
    monkeypatch.setattr(evaluate, "summarize", real)
    pipeline.run_evaluate(tiny_cfg, "unet", "synth")
    assert csv.read_text().startswith("id,index,") and '"metrics"' in js.read_text()


def test_training_lands_log_folder_and_checkpoint_together(prepared_tiny, tiny_cfg, monkeypatch):
    """The checkpoint cannot be written (read-only models/ folder): the dvclive folder, staged in the
    same set, does not appear either, and no temp is left."""
    from ubench import paths, pipeline

    real = uio.tempfile.mkstemp

    def refuse_checkpoints(*args, prefix="", **kwargs):
        if prefix.endswith(".pt."):
            raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))
        return real(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(uio.tempfile, "mkstemp", refuse_checkpoints)
    with pytest.raises(UbenchError, match="permission denied") as exc:
        pipeline.run_train(tiny_cfg, "unet", "synth")
    assert str(paths.checkpoint("synth", "unet").parent) in exc.value.what
    assert not paths.checkpoint("synth", "unet").exists()
    assert not paths.train_live("synth", "unet").exists()
    assert _hidden(paths.train_live("synth", "unet").parent) == []
    assert _hidden(paths.checkpoint("synth", "unet").parent) == []
