"""The table of `ubench models list`: registry facts at once, params and FLOPs from a cache.

Why a cache: building all 40 models and running ptflops on each takes minutes, yet the numbers
change only when a model's code does. So they are computed on request (``--flops``) and kept in
``$XDG_CACHE_HOME/ubench/model_complexity.json`` (default ``~/.cache/ubench/...``), each under a
hash of the sources that decide them: the model's own file, ``ubench/models/ops/``, the registry,
ubench/efficiency.py and the ptflops version. An edited model no longer matches its hash and is
shown as unknown (or recomputed with ``--flops``); the others stay instant.

Layering: cli -> model_table -> efficiency / models / analysis.ubench_reference; nothing imports
this module but the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ubench.errors import UbenchError

CACHE_VERSION = 1
SORTS = ("name", "top10")
_MODELS_DIR = Path(__file__).resolve().parent / "models"


def cache_path() -> Path:
    """Where computed params/FLOPs are kept (per user, outside the project: it is a convenience)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "ubench" / "model_complexity.json"


def _shared_sources() -> list[Path]:
    """The files every model's numbers depend on besides its own file."""
    ops = sorted(p for p in (_MODELS_DIR / "ops").rglob("*.py") if "__pycache__" not in p.parts)
    return [_MODELS_DIR / "registry.py", Path(__file__).resolve().parent / "efficiency.py", *ops]


def _ptflops_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ptflops")
    except PackageNotFoundError:
        return "absent"


def source_hashes(names: list[str]) -> dict[str, str]:
    """Each model's hash of the sources that decide its params and FLOPs (shared part read once)."""
    from ubench.models import model_source_file

    shared = hashlib.sha256(f"ptflops {_ptflops_version()}\n".encode())
    for path in _shared_sources():
        shared.update(f"{path.relative_to(_MODELS_DIR.parent)}\n".encode())
        shared.update(path.read_bytes())
    out = {}
    for name in names:
        h = shared.copy()
        h.update(f"model {name}\n".encode())
        h.update(model_source_file(name).read_bytes())
        out[name] = h.hexdigest()
    return out


def read_cache(path: Path | None = None) -> dict[str, dict]:
    """The cached entries by model name; a missing, unreadable or foreign file is an empty cache."""
    path = path or cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("models")
    return entries if isinstance(entries, dict) else {}


def _store(name: str, entry: dict, path: Path) -> None:
    """Add one entry, re-reading the file first so that a concurrent run's entries survive."""
    from ubench.io import write_json_atomic

    entries = read_cache(path)
    entries[name] = entry
    write_json_atomic(path, {"version": CACHE_VERSION, "models": entries})


def complexity_table(names: list[str], compute: bool = False, progress: bool = True,
                     cache: Path | None = None) -> tuple[dict[str, dict], str]:
    """Params (M) and GFLOPs of ``names`` that the cache knows, computing the rest if ``compute``.

    Returns ({name: entry} for the known ones, a note for the footer). A cache that cannot be
    written costs only the reuse: the computed numbers are still returned, and the note says why.
    """
    from ubench.models import model_info

    path = cache or cache_path()
    hashes = source_hashes(names)
    cached = read_cache(path)
    known = {n: cached[n] for n in names
             if isinstance(cached.get(n), dict) and cached[n].get("hash") == hashes[n]}
    missing = [n for n in names if n not in known]
    note = ""
    if compute and missing:
        from tqdm import tqdm

        from ubench import efficiency  # by module, so that tests can replace efficiency.complexity

        for name in tqdm(missing, desc="params+FLOPs", unit="model", leave=False, disable=not progress):
            size = model_info(name).size_for(256)  # U-Bench's size, or the model's own
            c = efficiency.complexity(name, size, seed=0, threads=0)  # counts: neither matters
            entry = {"hash": hashes[name], "input_size": size, "params_m": float(c["params_m"]),
                     "gflops": float(c["gflops"])}
            known[name] = entry
            if not note:
                try:
                    _store(name, entry, path)
                except (UbenchError, OSError) as exc:  # e.g. a read-only home, or a file named .cache
                    why = (exc.what if isinstance(exc, UbenchError)
                           else f"{exc.strerror or exc}: {exc.filename}")
                    note = f"params/FLOPs not cached ({why}); they will be computed again next time"
    elif missing:
        note = (f"params/FLOPs of {len(missing)} of {len(names)} model(s) not computed yet (or their code "
                "changed): `ubench models list --flops` computes them once (seconds per model) and "
                f"caches them in {path}")
    return known, note


def top10_by_model() -> dict[str, tuple[int, int]]:
    """(IoU, U-Score) counts of U-Bench's published per-dataset top-10s, by ubench model name."""
    from ubench.analysis.ubench_reference import top10_counts

    out: dict[str, tuple[int, int]] = {}
    for rec in top10_counts().values():
        if rec["model"] is not None:
            iou, us = out.get(rec["model"], (0, 0))
            out[rec["model"]] = (iou + rec["iou"], us + rec["uscore"])
    return out


def models_table(family: str | None = None, compute: bool = False, sort: str = "name",
                 in_top10: bool = False, progress: bool = True) -> str:
    """The Markdown table of `ubench models list`, with its footer notes."""
    from ubench.models import list_models, model_info, unavailable_models
    from ubench.models.pretrained import pretrained_records

    if sort not in SORTS:
        raise UbenchError(f"unknown sort {sort!r}", f"use one of: {', '.join(SORTS)}")
    top10 = top10_by_model()
    names = list_models(family)
    if in_top10:
        names = [n for n in names if sum(top10.get(n, (0, 0))) > 0]
    if sort == "top10":
        names.sort(key=lambda n: (-sum(top10.get(n, (0, 0))), n))
    known, note = complexity_table(names, compute=compute, progress=progress)

    lines = ["| name | family | year | params (M) | ref params (M) | FLOPs (G, 256²) | deep sup. | "
             "pretrained backbone | U-Bench top-10s (IoU/U-Score) |",
             "|---|---|---|---:|---:|---:|---|---|---:|"]
    for name in names:
        info = model_info(name)
        entry = known.get(name)
        params = f"{entry['params_m']:.2f}" if entry else "-"
        flops = "-"
        if entry:
            size = entry["input_size"]
            flops = f"{entry['gflops']:.2f}" + ("" if size == 256 else f" ({size}²)")
        ref = f"{info.ref_params_m:.2f}" if info.ref_params_m else "-"
        iou, us = top10.get(name, (0, 0))
        backbones = " + ".join(rec["backbone"] for rec in pretrained_records(name)) or "-"
        lines.append(f"| {name} | {info.family} | {info.year} | {params} | {ref} | {flops} | "
                     f"{'yes' if info.deep_supervision else 'no'} | {backbones} | {iou}/{us} |")
    lines.append(f"\n{len(names)} model(s). Top-10s: how often U-Bench's published per-dataset top-10 "
                 "(in-domain and zero-shot) holds the model, by IoU / by U-Score. Pretrained backbone: "
                 "what U-Bench initialises with ImageNet weights; ubench builds it untrained unless "
                 "params.yaml sets `train.pretrained: true` (files: `ubench models weights`).")
    if note:
        lines.append(note)
    for name, why in unavailable_models().items():
        lines.append(f"\n{name}: unavailable ({why})")
    return "\n".join(lines)


def weights_table(weights_dir: str | Path) -> str:
    """The table of `ubench models weights`: each pretrained file, the models that load it, its URL,
    and whether ``weights_dir`` holds it (hashes are computed when training loads it, not here)."""
    from ubench.models import list_models
    from ubench.models.pretrained import pretrained_records

    weights_dir = Path(weights_dir)
    files: dict[str, dict] = {}
    for name in list_models():
        for rec in pretrained_records(name):
            entry = files.setdefault(rec["file"], {"backbone": rec["backbone"], "url": rec.get("url", ""),
                                                   "models": []})
            if name not in entry["models"]:  # a file may fill two modules of one model (two records)
                entry["models"].append(name)
    lines = [f"| file | backbone | models | in {weights_dir}/ | URL (where U-Bench gets it) |",
             "|---|---|---|---|---|"]
    for file, entry in sorted(files.items()):
        here = "yes" if (weights_dir / file).is_file() else "no"
        lines.append(f"| {file} | {entry['backbone']} | {', '.join(entry['models'])} | {here} | "
                     f"{entry['url'] or '-'} |")
    lines.append(f"\n{len(files)} file(s). Used only with `train.pretrained: true` in params.yaml; "
                 f"then a model whose file is missing stops before training, naming it.")
    return "\n".join(lines)
