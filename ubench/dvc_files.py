"""Reading what DVC records: the stages of dvc.lock and the objects of the DVC cache.

Why a module of its own: ``ubench verify`` (rerun and compare) and ``ubench publish`` (push) both
read them, and neither should depend on the other.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ubench.errors import UbenchError


def load_lock(root: Path) -> dict[str, dict]:
    lock = root / "dvc.lock"
    if not lock.exists():
        raise UbenchError(f"no dvc.lock in {root}: nothing is recorded to verify",
                          "run `dvc repro` first (or `git pull` the dvc.lock of a published run)")
    data = yaml.safe_load(lock.read_text()) or {}
    return data.get("stages") or {}


def cache_dir(root: Path) -> Path:
    """The repository's DVC cache folder (``cache.dir`` respected)."""
    try:
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
            return Path(repo.cache.local_cache_dir)
    except Exception:  # noqa: BLE001 - fall back to DVC's default location
        return root / ".dvc" / "cache"


def cache_object(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]
