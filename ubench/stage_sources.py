"""Which ubench source files each kind of stage runs, and the digests that stand for them in dvc.yaml.

Why: a stage that listed its ~25 source files as DVC deps made DVC stat and look up ~25 files per
stage; on the full grid (~5,000 stages) that made `dvc status` 5x slower than the same number of
one-dep stages. Instead, the ``code`` stage (deps: the whole ``ubench/`` package) writes one small
JSON file per stage kind (and per model, for the stages over a model) naming each source file with
its SHA-256, and each stage depends on its one file. Editing a file changes exactly the digests
that list it, so `dvc repro` reruns the same stages as before (fewer, for models: a model's digest
lists the shared blocks it imports, not all of ``models/ops``).

``SOURCES`` is the list tests/test_dvc_deps.py checks against what each stage really imports and
opens. This module imports nothing heavy (no torch): the ``code`` stage takes about a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ubench import paths
from ubench.errors import UbenchError
from ubench.io import json_dumps, sha256_file, write_files_atomic

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent

# What every stage runs: the command line, params.yaml's loader (it checks model names against the
# registry) and the shared plumbing.
CORE = ("ubench/__init__.py", "ubench/cli.py", "ubench/config.py", "ubench/errors.py", "ubench/names.py",
        "ubench/paths.py", "ubench/io.py", "ubench/pipeline.py", "ubench/models/__init__.py",
        "ubench/models/registry.py")

_DATA_LOADING = ("ubench/data/__init__.py", "ubench/data/dataset.py", "ubench/data/augment.py",
                 "ubench/data/batches.py")
_RUN_MODEL = ("ubench/inference.py", "ubench/checkpoint.py", "ubench/runtime.py", "ubench/metrics.py")
_EVALUATE = ("ubench/evaluate.py", "ubench/analysis/__init__.py", "ubench/analysis/degenerate.py")
_TRAIN = ("ubench/train.py", "ubench/models/pretrained.py")
_PREPARE = ("ubench/output_guard.py", "ubench/data/__init__.py", "ubench/data/prepare.py",
            "ubench/data/synthetic.py", "ubench/data/registry.py", "ubench/data/catalog.py",
            "ubench/data/attributes.py")
_REFERENCE = ("ubench/analysis/ubench_reference.py", "ubench/analysis/data/ubench_reference.json")

# kind -> the files (a folder stands for every file under it) beyond CORE. A kind in PER_MODEL also
# gets its model's file and the ubench modules that file imports (followed through imports).
SOURCES: dict[str, tuple[str, ...]] = {
    "prepare": _PREPARE + ("ubench/data/converters/__init__.py", "ubench/data/converters/base.py",
                           "ubench/data/converters/paired.py", "ubench/data/converters/pixels.py",
                           "ubench/data/converters/ubench_layout.py"),
    "prepare_raw": _PREPARE + ("ubench/data/converters",),   # synthetic.py: imported, unused for raw
    "train": _TRAIN + _RUN_MODEL + _DATA_LOADING,
    "evaluate": _EVALUATE + _RUN_MODEL + _DATA_LOADING,     # in-domain and zero-shot
    "efficiency": ("ubench/efficiency.py", "ubench/runtime.py"),   # complexity and speed
    "candidate": _TRAIN + _EVALUATE + _RUN_MODEL + _DATA_LOADING,
    "leaderboard": ("ubench/analysis/__init__.py", "ubench/analysis/stats.py", "ubench/analysis/degenerate.py",
                    "ubench/analysis/leaderboard.py", "ubench/analysis/plots.py") + _REFERENCE,
    "uscore": ("ubench/analysis/__init__.py", "ubench/analysis/uscore.py", "ubench/analysis/uscore_inputs.py",
               "ubench/analysis/plots.py") + _REFERENCE,
    "report": ("ubench/analysis/__init__.py", "ubench/analysis/stats.py", "ubench/analysis/degenerate.py",
               "ubench/analysis/leaderboard.py", "ubench/analysis/ubench_reference.py",
               "ubench/analysis/plots.py", "ubench/analysis/html_report.py"),
    "advisor": ("ubench/advisor",),
    "candidate_report": ("ubench/analysis/__init__.py", "ubench/analysis/stats.py",
                         "ubench/analysis/degenerate.py"),
}
PER_MODEL = ("train", "evaluate", "efficiency", "candidate")


def _files_under(rel: str, root: Path) -> list[str]:
    path = root / rel
    if path.is_dir():
        return sorted(p.relative_to(root).as_posix() for p in path.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    if not path.is_file():
        raise UbenchError(f"stage_sources lists {rel}, which does not exist",
                          "fix SOURCES in ubench/stage_sources.py (a file was renamed or removed)")
    return [rel]


def _module_file(module: str, root: Path) -> str | None:
    """ubench/a/b.py or ubench/a/b/__init__.py for ``ubench.a.b``; None if neither exists."""
    base = Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / cand).is_file():
            return cand.as_posix()
    return None


def _imported_files(rel: str, root: Path) -> set[str]:
    """The ubench files one file imports (any import statement, also inside functions), with the
    packages' ``__init__.py`` that Python runs on the way."""
    tree = ast.parse((root / rel).read_text(), rel)
    package = Path(rel).parent.as_posix().replace("/", ".")
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
        for name in names:
            if name != "ubench" and not name.startswith("ubench."):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                f = _module_file(".".join(parts[:i]), root)
                if f:
                    found.add(f)
    return found


def model_sources(model: str, root: Path = ROOT) -> list[str]:
    """A model's file and every ubench file it imports, followed through imports."""
    start = f"ubench/models/{model}.py"
    if not (root / start).is_file():
        raise UbenchError(f"no model file {start}", "name a registered model (`ubench models list`)")
    seen, todo = set(), [start]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(_imported_files(f, root) - seen)
    return sorted(seen)


def sources(kind: str, model: str | None = None, root: Path = ROOT) -> list[str]:
    """Every ubench file a stage of ``kind`` (for ``model``) runs or reads, sorted."""
    if kind not in SOURCES:
        raise UbenchError(f"unknown stage kind {kind!r}", f"use one of: {', '.join(SOURCES)}")
    if (kind in PER_MODEL) != (model is not None):
        raise UbenchError(f"stage kind {kind!r} {'needs' if kind in PER_MODEL else 'takes no'} model",
                          f"per-model kinds: {', '.join(PER_MODEL)}")
    files = {f for rel in CORE + SOURCES[kind] for f in _files_under(rel, root)}
    if model is not None:
        files.update(model_sources(model, root))
    return sorted(files)


def digest(kind: str, model: str | None = None, root: Path = ROOT) -> dict:
    """The JSON a stage depends on: its files with their SHA-256 (stable key order)."""
    return {"kind": kind, "model": model,
            "files": {f: sha256_file(root / f) for f in sources(kind, model, root)}}


# The kinds that train, and so load a model's backbone weights when train.pretrained is true.
TRAINS = ("train", "candidate")


def backbone_weights(models: list[str], weights_dir: Path) -> dict[str, dict[str, str | None]]:
    """model -> {weight file: its SHA-256, or None when it is not in ``weights_dir``}, for the
    models with a pretrained backbone (train.pretrained true). In a training digest, so that a
    model's training reruns when its own weight files change, and no other's does (a dep on the
    whole folder in every training stage reran all of them for any file, and cost `dvc status` a
    folder hash per stage). A missing file is recorded as None: training then stops and names it.
    Imports the models (torch): done only when train.pretrained is true."""
    from ubench.models.pretrained import required_files

    hashes: dict[str, str | None] = {}  # one file may serve many models: hashed once
    out = {}
    for model in sorted(set(models)):
        files = required_files(model)
        for f in files:
            if f not in hashes:
                hashes[f] = sha256_file(weights_dir / f) if (weights_dir / f).is_file() else None
        if files:
            out[model] = {f: hashes[f] for f in files}
    return out


def write_digests(models: list[str], root: Path = ROOT, weights_dir: Path | None = None) -> list[Path]:
    """Write every kind's digest (per model for PER_MODEL kinds; paths.code_digest, relative to the
    working directory) as one atomic set; returns the paths. ``weights_dir`` (train.pretrained
    true): the training digests of models with a backbone also list its weight files' hashes."""
    weights = backbone_weights(models, weights_dir) if weights_dir is not None else {}
    files: dict[Path, str] = {}
    for kind in SOURCES:
        for model in sorted(set(models)) if kind in PER_MODEL else [None]:
            doc = digest(kind, model, root)
            if kind in TRAINS and model in weights:
                doc["weights"] = weights[model]
            files[paths.code_digest(kind, model)] = json_dumps(doc)
    write_files_atomic(files)
    return sorted(files)
