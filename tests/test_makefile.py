"""The Makefile's set-up steps: `make data-pin` (run by `make run`) makes a fresh clone's `dvc
status` clean without ever rewriting a pin of real data."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import clone_tiny, run_in

VENV = Path(sys.executable).parents[1]  # the venv running the tests: make uses its dvc


def _status(repo: Path) -> str:
    return run_in(repo, "dvc", "status", "data.dvc").stdout


def test_data_pin_makes_a_fresh_clone_clean_and_keeps_the_pin(tmp_path):
    repo = clone_tiny(tmp_path / "repo")
    pin = (repo / "data.dvc").read_text()
    assert "not in cache" in _status(repo)  # the committed pin of an empty data/raw: in no cache yet
    run_in(repo, "make", "data-pin", f"VENV={VENV}")
    assert "up to date" in _status(repo)
    assert (repo / "data.dvc").read_text() == pin
    run_in(repo, "make", "data-pin", f"VENV={VENV}")  # idempotent
    assert (repo / "data.dvc").read_text() == pin


def test_data_pin_never_commits_real_data(tmp_path):
    repo = clone_tiny(tmp_path / "repo")
    pin = (repo / "data.dvc").read_text()
    (repo / "data/raw/busi").mkdir(parents=True)
    (repo / "data/raw/busi/img.png").write_bytes(b"not yet pinned")
    run_in(repo, "make", "data-pin", f"VENV={VENV}")
    assert (repo / "data.dvc").read_text() == pin  # the user's files are not pinned behind their back
    assert "up to date" not in _status(repo)
