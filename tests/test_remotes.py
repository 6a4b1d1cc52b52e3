"""DVC remotes, for real, on the shared tiny clone (tests/conftest.py `tiny_repo`).

- `ubench publish` pushes to the default directory remote (`local`, beside the repository); a
  fresh `git clone` pulls every output with identical hashes and has nothing to reproduce;
- the same folder served read-only over HTTP (`python -m http.server` on 127.0.0.1) is pulled
  through the `published` remote, and a push to it fails;
- the `team` S3 remote against moto's standalone server on 127.0.0.1: push, pull into another
  clone, identical hashes;
- a pull from a store that lacks some objects names the missing outputs, exits non-zero and loses
  nothing that was already in the workspace.
Every server is started on a free loopback port by a fixture and stopped by its finalizer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, repo_env, run_in


@pytest.fixture(autouse=True)
def _remove_clones(tmp_path):
    """The fresh clones and stores are about 0.5 GB each: removed after each test."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _assert_same_outputs(repo: Path, reference) -> None:
    """Every output recorded in the reference dvc.lock is in ``repo`` with the recorded hash (files)
    or with every file identical to the reference clone's (folders, whose .dir hash DVC checks)."""
    for path, md5 in reference.out_hashes().items():
        got = repo / path
        if md5.endswith(".dir"):
            ref_files = sorted(p.relative_to(reference.path / path)
                               for p in (reference.path / path).rglob("*") if p.is_file())
            got_files = sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file())
            assert got_files == ref_files, f"{path}: other files than recorded"
            for rel in ref_files:
                assert _md5(got / rel) == _md5(reference.path / path / rel), f"{path}/{rel} differs"
        else:
            assert got.is_file(), f"{path} was not pulled"
            assert _md5(got) == md5, f"{path}: md5 differs from dvc.lock"


def _nothing_to_do(repo: Path) -> None:
    status = run_in(repo, "dvc", "status", "--json")
    assert json.loads(status.stdout) == {}, status.stdout
    repro = run_in(repo, "dvc", "repro")
    assert "Running stage" not in repro.stdout, repro.stdout


@pytest.fixture(scope="module")
def published_store(tiny_repo) -> Path:
    """`ubench publish` of the shared clone to its default remote: <tmp>/ubench-dvc-store."""
    r = run_in(tiny_repo.path, "ubench", "publish")
    assert "published the outputs of" in r.stdout
    store = tiny_repo.path.parent / "ubench-dvc-store"
    assert (store / "files" / "md5").is_dir()
    return store


@pytest.fixture
def http_store(published_store):
    """The published store served read-only over HTTP on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                             "--directory", str(published_store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_endpoint(monkeypatch):
    """moto's standalone S3 server on a free loopback port, with the `team` remote's bucket."""
    pytest.importorskip("dvc_s3", reason="the S3 remote needs dvc[s3]")
    boto3 = pytest.importorskip("boto3")
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.skip("moto[server] is not installed")
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    port = free_port()
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="ubench-team")
        yield url
    finally:
        _stop(proc)


def test_publish_to_dir_remote_then_pull_in_fresh_clone(tiny_repo, published_store):
    # beside the shared clone, so the committed relative URL resolves to the same store
    fresh = tiny_repo.path.parent / "fresh-dir-remote"
    run_in(tiny_repo.path.parent, "git", "clone", "-q", str(tiny_repo.path), str(fresh))
    try:
        assert run_in(fresh, "dvc", "remote", "default").stdout.strip() == "local"
        run_in(fresh, "dvc", "pull")  # plain `dvc pull`, the README's recipe
        _assert_same_outputs(fresh, tiny_repo)
        _nothing_to_do(fresh)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def test_http_remote_pulls_and_refuses_push(tiny_repo, http_store, tmp_path):
    fresh = tmp_path / "fresh"
    run_in(tmp_path, "git", "clone", "-q", str(tiny_repo.path), str(fresh))
    run_in(fresh, "dvc", "remote", "modify", "--local", "published", "url", http_store)
    run_in(fresh, "dvc", "pull", "-r", "published")
    _assert_same_outputs(fresh, tiny_repo)

    (fresh / "note.txt").write_text("not for a read-only remote\n")
    run_in(fresh, "dvc", "add", "-q", "note.txt")
    push = run_in(fresh, "dvc", "push", "-r", "published", "note.txt.dvc", check=False)
    assert push.returncode != 0
    assert "failed to push" in push.stdout + push.stderr


def test_s3_remote_push_and_pull(tiny_repo, tiny_copy, s3_endpoint, tmp_path):
    env = repo_env(**S3_ENV)
    run_in(tiny_copy, "dvc", "remote", "modify", "--local", "team", "endpointurl", s3_endpoint, env=env)
    run_in(tiny_copy, "ubench", "publish", "-r", "team", env=env)

    fresh = tmp_path / "fresh"
    run_in(tmp_path, "git", "clone", "-q", str(tiny_copy), str(fresh), env=env)
    run_in(fresh, "dvc", "remote", "modify", "--local", "team", "endpointurl", s3_endpoint, env=env)
    run_in(fresh, "dvc", "pull", "-r", "team", env=env)

    _assert_same_outputs(fresh, tiny_repo)  # the copy's outputs are the shared clone's


def test_pull_from_incomplete_remote_names_missing_and_keeps_workspace(tiny_repo, published_store,
                                                                       tmp_path):
    store = shutil.copytree(published_store, tmp_path / "store")
    hashes = tiny_repo.out_hashes()

    def obj(path: str) -> Path:
        md5 = hashes[path]
        return store / "files" / "md5" / md5[:2] / md5[2:]

    fresh = tmp_path / "fresh"
    run_in(tmp_path, "git", "clone", "-q", str(tiny_repo.path), str(fresh))
    run_in(fresh, "dvc", "remote", "modify", "--local", "local", "url", str(store))
    # part of the workspace is already there
    run_in(fresh, "dvc", "pull", "prepare@synth", "train@unet-synth")
    present = {p: _md5(p) for p in [fresh / "models/synth/unet.pt",
                                     *(fresh / "data/prepared/synth").iterdir()]}

    # the store loses three objects, one of them a file the workspace has; the local cache is gone
    for path in ("models/synth/attention_unet.pt", "results/per_image/synth/attention_unet.csv", "models/synth/unet.pt"):
        obj(path).unlink()
    shutil.rmtree(fresh / ".dvc" / "cache")
    r = run_in(fresh, "dvc", "pull", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    for missing in ("models/synth/attention_unet.pt", "results/per_image/synth/attention_unet.csv"):
        assert missing in out, f"{missing} not named in:\n{out}"
        assert not (fresh / missing).exists()
    for path, md5 in present.items():
        assert path.is_file() and _md5(path) == md5, f"{path} was lost or changed"
    # what the store has was pulled
    assert _md5(fresh / "results/per_image/synth/unet.csv") == hashes["results/per_image/synth/unet.csv"]
