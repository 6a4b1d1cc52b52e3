"""`ubench publish`: push the pipeline's outputs to a DVC remote.

It is `dvc push [-r REMOTE] <every stage recorded in dvc.lock>`: checkpoints, per-image results,
metrics, reports and the prepared synthetic data, and imported U-Bench weights
(``models/imported.dvc``). Two things differ from a bare `dvc push`:

- Raw data (``data.dvc``) and what is prepared from it (``prepare_raw@*``) stay out unless
  ``with_data``: the datasets' licences rarely allow redistribution.
- ``data.dvc`` as shipped pins an *empty* ``data/raw``, whose (two-byte) folder object is in no
  clone's cache, so that a fresh clone's plain `dvc pull` would fail on it. That pin holds no data:
  it is published (its object written to the cache first when missing).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ubench.dvc_files import cache_dir, cache_object, load_lock
from ubench.errors import UbenchError

EMPTY_DIR_OBJECT = b"[]"  # DVC's listing of an empty folder
EMPTY_DIR_MD5 = hashlib.md5(EMPTY_DIR_OBJECT).hexdigest() + ".dir"


def _empty_data_pins(root: Path) -> list[str]:
    """Top-level .dvc files whose every output is an empty folder."""
    pins = []
    for f in sorted(f for f in root.glob("*.dvc") if f.is_file()):
        outs = (yaml.safe_load(f.read_text()) or {}).get("outs", [])
        if outs and all(o.get("md5") == EMPTY_DIR_MD5 for o in outs):
            pins.append(f.name)
    return pins


def _ensure_empty_dir_object(cache: Path) -> None:
    obj = cache_object(cache, EMPTY_DIR_MD5)
    if not obj.exists():
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(EMPTY_DIR_OBJECT)
        os.chmod(obj, 0o444)


IMPORTED_PIN = "models/imported.dvc"  # `dvc add models/imported`: U-Bench weights brought in


def publish_targets(root: Path, with_data: bool = False) -> list[str]:
    """The DVC targets `ubench publish` pushes. Imported U-Bench weights (released openly) are
    pushed always, raw data only ``with_data``."""
    lock = load_lock(root)
    stages = [s for s in lock if with_data or not s.startswith("prepare_raw@")]
    if with_data:
        data = [f.name for f in sorted(root.glob("*.dvc")) if f.is_file()]
    else:
        data = _empty_data_pins(root)
    if (root / IMPORTED_PIN).is_file():
        data.append(IMPORTED_PIN)
    elif any(s.startswith("evaluate_imported@") for s in lock):
        raise UbenchError("dvc.lock records evaluations of imported U-Bench weights, but models/imported is not "
                          "pinned by DVC, so a colleague could not `dvc pull` them",
                          "run `dvc add models/imported`, commit models/imported.dvc, then publish again")
    return stages + data


def publish(repo: str | Path = ".", remote: str | None = None, jobs: int | None = None,
            with_data: bool = False) -> list[str]:
    """Push the outputs recorded in dvc.lock to ``remote`` (default: the default remote)."""
    root = Path(repo).resolve()
    targets = publish_targets(root, with_data)
    if not with_data and _empty_data_pins(root):
        _ensure_empty_dir_object(cache_dir(root))
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    cmd = [dvc, "push", *(["-r", remote] if remote else []), *(["-j", str(jobs)] if jobs else []), *targets]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    sys.stderr.write(r.stdout + r.stderr)
    if r.returncode != 0:
        name = remote or "the default remote"
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        raise UbenchError(
            f"`dvc push` to {name} failed (exit {r.returncode}): {tail[0]}",
            "an HTTP remote such as `published` is read-only: push to the store it serves "
            "(`ubench publish -r local`) and upload that folder; `dvc remote list` shows the remotes, "
            "`dvc remote modify --local NAME url URL` points one elsewhere")
    return targets
