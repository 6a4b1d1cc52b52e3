"""What the U-Score reads from the workspace: the leaderboard and each model's efficiency files.

Shared by the ``uscore`` stage (pipeline.run_uscore) and ``ubench uscore calc --reference grid``,
so that both see the same numbers: per-dataset mean IoU from metrics/leaderboard.json, params and
GFLOPs from metrics/complexity/<model>.json, FPS and the device it was measured on from
metrics/speed/<model>.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ubench import paths
from ubench.errors import UbenchError


def _read(path: Path, fix: str) -> dict:
    if not path.exists():
        raise UbenchError(f"{path} missing", fix)
    return json.loads(path.read_text(encoding="utf-8"))


def speed_device(rec: dict) -> str:
    """'cuda: NVIDIA H100' / 'cpu: x86_64' from a speed record; 'unknown' if it names none."""
    kind = rec.get("device")
    if not kind:
        return "unknown"
    return f"{kind}: {rec.get('device_name') or '?'}"


def read_efficiency(models: Sequence[str]) -> dict[str, dict]:
    """{model: {params_m, gflops, fps, device, device_name}} from the complexity and speed files."""
    out = {}
    for m in models:
        fix = "run `dvc repro` (its complexity@ and speed@ stages) first"
        c = _read(paths.complexity_json(m), fix)
        s = _read(paths.speed_json(m), fix)
        out[m] = {"params_m": c["params_m"], "gflops": c["gflops"], "fps": s["fps"],
                  "device": speed_device(s), "device_name": s.get("device_name") or "unknown"}
    return out


def read_board(models: Sequence[str]) -> dict:
    """metrics/leaderboard.json, checked to hold every model on every dataset and pair."""
    board = _read(paths.LEADERBOARD_JSON, "run `ubench leaderboard` (or `dvc repro`) first")
    sets = [(ds, d["models"]) for ds, d in board["datasets"].items()]
    sets += [(key, z["models"]) for key, z in board.get("zeroshot", {}).items()]
    for key, rows in sets:
        missing = [m for m in models if m not in rows]
        if missing:
            raise UbenchError(f"{paths.LEADERBOARD_JSON} has no result for {missing} on {key}",
                              "rerun the leaderboard stage after changing grid.models (`dvc repro`)")
    return board


def read_grid(models: Sequence[str]) -> tuple[dict, dict[str, dict]]:
    """(leaderboard, efficiency records) of ``models``."""
    return read_board(models), read_efficiency(models)
