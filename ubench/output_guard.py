"""Which folders ubench may replace: only its own previous outputs, never a user's files.

Why: a stage writes its folder whole (built aside, then swapped in), so whatever sat at that path
before is gone. ``--out`` lets a user point that at any path, and one typo (``--out .``,
``--out data/raw/x``) would delete a project, its ``.git`` or the raw data the stage reads. So a
folder is replaced only when it is absent, empty, or recognised as a previous output of the same
kind (by its manifest and its exact file list), and never when it holds (or lies inside) the
project root, a ``.git`` folder, ``data/raw`` or the stage's own input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ubench.errors import UbenchError

PREPARED_FILES = frozenset({"images.npy", "masks.npy", "splits.json", "manifest.json"})
PREPARED_MANIFEST_KEYS = frozenset({"name", "ids", "count", "image_size", "num_classes"})


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding dvc.yaml, params.yaml or .git."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in ("dvc.yaml", "params.yaml", ".git")):
            return folder
    return here


def _overlap(a: Path, b: Path) -> bool:
    """True when one of the two resolved paths is the other or lies inside it."""
    return a == b or a in b.parents or b in a.parents


def is_prepared_output(folder: Path) -> bool:
    """A folder that ``ubench prepare`` wrote: exactly its four files and a manifest it recognises."""
    try:
        entries = {p.name for p in folder.iterdir()}
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return entries == PREPARED_FILES and isinstance(manifest, dict) and PREPARED_MANIFEST_KEYS <= set(manifest)


def check_replaceable(out: str | Path, *, kind: str, protected: Iterable[str | Path] = (),
                      root: Path | None = None) -> Path:
    """Refuse to replace ``out`` unless it is absent, empty or a previous ``kind`` output.

    ``protected`` are the stage's inputs (e.g. the raw dataset folder): ``out`` may neither hold them
    nor lie inside them. Returns ``out``'s resolved path.
    """
    target = Path(out).resolve()
    root = (root or project_root()).resolve()
    fix = "give --out a new folder of its own (default: data/prepared/<name>)"
    if target == root or target in root.parents:
        raise UbenchError(f"refusing to write {kind} output at {target}: it "
                          f"{'is' if target == root else 'holds'} the project root {root}", fix)
    guarded = [(root / ".git", "the project's .git"), (root / "data" / "raw", "data/raw (the raw datasets)")]
    guarded += [(Path(p).resolve(), f"the stage's input {Path(p).as_posix()}") for p in protected]
    for path, what in guarded:
        if _overlap(target, path):
            rel = "is" if target == path else ("holds" if target in path.parents else "lies inside")
            raise UbenchError(f"refusing to write {kind} output at {target}: it {rel} {what}", fix)
    if target.is_dir() and any(target.glob(".git")):
        raise UbenchError(f"refusing to write {kind} output at {target}: it holds a .git folder", fix)
    if not target.exists() and not target.is_symlink():
        return target
    if not target.is_dir() or target.is_symlink():
        raise UbenchError(f"refusing to replace {target}: it is not a folder ubench wrote", fix)
    if not any(target.iterdir()):
        return target
    if kind == "prepared" and is_prepared_output(target):
        return target
    names = sorted(p.name for p in target.iterdir())
    shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
    raise UbenchError(
        f"refusing to replace {target}: it is not a previous ubench {kind} output (it holds {shown})",
        f"{fix}; ubench replaces only folders it wrote itself, so that your files are never lost",
    )
