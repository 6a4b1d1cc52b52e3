"""Atomic, deterministic file writing.

Every output goes to a temporary sibling first and is renamed into place, so an interrupted stage
never leaves a file (or folder) that looks complete. JSON is written with sorted keys and no NaN:
a non-finite float is a bug upstream, and ``null`` is written only where the caller put ``None``.

Outputs that belong together (a per-image CSV and its summary JSON; a checkpoint and its training
log folder) are staged together with ``atomic_outputs``: nothing is renamed until every temp is
complete, so a failure while writing leaves all the old outputs as they were (see
``atomic_outputs`` for the one window that remains).

Final files get ``0o666 & ~umask`` and folders ``0o777 & ~umask``, like files made with ``open``
and ``mkdir``: the temps come from mkstemp/mkdtemp (0600/0700), which would otherwise make every
output unreadable to the other users of a shared store or container.

A folder that cannot be written (permission denied, read-only file system, full disk or quota) is
a UbenchError naming the folder and the fix, not a traceback; other OS errors propagate unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ubench.errors import UbenchError


def json_safe(obj: Any, where: str = "$") -> Any:
    """``obj`` as plain JSON values, or an error naming the place (``$.a.b[2]``) where it is not.

    The one check of everything ubench writes as JSON (``json_dumps``, ``write_json_atomic``),
    also callable before writing: numpy scalars become Python numbers, keys strings, tuples lists.
    NaN/inf anywhere is a ValueError and a value JSON cannot hold (an array, a Path …) a TypeError:
    both are bugs upstream, since ``null`` is written only where the caller put ``None``.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite number {obj} at {where}: metrics files hold numbers or null")
    if obj is not None and not isinstance(obj, (str, int, float)):
        raise TypeError(f"{type(obj).__name__} at {where} is not a plain JSON value")
    return obj


def json_dumps(obj: Any) -> str:
    """Stable JSON text: sorted keys, 2-space indent, trailing newline, NaN refused (``json_safe``)."""
    return json.dumps(json_safe(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


# --- permissions ---------------------------------------------------------------------------------

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read per call so that a umask set after import is honoured.

    Linux (4.7+) reports it in /proc/self/status, which reads it without changing it. Elsewhere the
    only way is ``os.umask(x)`` then ``os.umask(old)``: a lock keeps our own threads from
    interleaving, and the one remaining race (another thread creating a file between the two calls
    gets umask 022) is harmless next to the alternative of guessing.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o022)
        os.umask(old)
    return old


# --- named errors for folders that cannot be written ---------------------------------------------

_CANNOT_WRITE = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",
}


@contextlib.contextmanager
def _named_write_errors(path: Path) -> Iterator[None]:
    """Turn 'this folder cannot be written' OSErrors while writing ``path`` into a UbenchError."""
    try:
        yield
    except OSError as exc:
        reason = _CANNOT_WRITE.get(exc.errno)
        if reason is None:
            raise
        folder = path.parent
        if reason == "permission denied":
            fix = (f"make {folder} writable for this user (`ls -ld {folder}` shows its owner and mode), "
                   "or run ubench in a copy of the project that you can write")
        elif reason == "read-only file system":
            fix = f"remount the file system holding {folder} read-write, or run ubench in a writable copy"
        else:
            fix = f"free space on the disk holding {folder} (`df -h {folder}`), then re-run"
        raise UbenchError(f"cannot write {path.name} in {folder}: {reason}", fix) from exc


# --- staged outputs ------------------------------------------------------------------------------

def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _swap_dir(tmp: Path, path: Path) -> None:
    """Put folder ``tmp`` at ``path``; if that fails, put the previous ``path`` back.

    A folder cannot be renamed over a non-empty one, so the previous folder moves aside to
    ``.NAME.old`` first and is deleted only once the new one is in place. If the process dies
    between the two renames, ``path`` is briefly absent and ``.NAME.old`` holds the previous
    outputs (removed by the next run).
    """
    old = path.with_name(f".{path.name}.old")
    if old.exists() or old.is_symlink():
        _remove(old)  # left by a run that died mid-swap
    moved = False
    if path.exists() or path.is_symlink():
        os.replace(path, old)
        moved = True
    try:
        os.replace(tmp, path)
    except BaseException:
        if moved:  # if even this fails, the previous outputs stay safe in .NAME.old
            os.replace(old, path)
        raise
    _remove(old)


class StagedOutputs:
    """Files and folders written under temporary names, renamed into place by ``atomic_outputs``."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temp, final), in commit order

    def file(self, path: str | Path, data: bytes | str) -> None:
        """Write ``data`` (str as UTF-8) to a complete, fsynced temp sibling of ``path``."""
        path = Path(path)
        if isinstance(data, str):
            data = data.encode("utf-8")
        with _named_write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            self._staged.append((Path(tmp), path))  # before writing: a failure then removes it
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o666 & ~current_umask())
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

    def dir(self, path: str | Path) -> Path:
        """An empty temp folder beside ``path`` to build the new folder in; returns it."""
        path = Path(path)
        with _named_write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
            self._staged.append((tmp, path))
            os.chmod(tmp, 0o777 & ~current_umask())
        return tmp

    def _commit(self) -> None:
        while self._staged:
            tmp, path = self._staged[0]
            with _named_write_errors(path):
                if tmp.is_dir():
                    _swap_dir(tmp, path)
                else:
                    os.replace(tmp, path)
            self._staged.pop(0)

    def _discard(self) -> None:
        for tmp, _ in self._staged:
            _remove(tmp)
        self._staged = []


@contextlib.contextmanager
def atomic_outputs() -> Iterator[StagedOutputs]:
    """Stage several outputs; they replace their targets together when the block succeeds.

    Inside the block, ``out.file(path, data)`` writes a complete temp file and ``out.dir(path)``
    returns a temp folder to fill. Nothing visible changes until the block ends: then the temps are
    renamed in the order they were staged (so stage last the file whose presence marks the set as
    complete, e.g. a summary JSON). If the block or any write fails, every temp is removed and all
    the old outputs are untouched.

    The window that remains: each rename is atomic, but a set of renames is not. If the process
    dies, or a rename fails, between the first and the last rename (no data is written then; the
    renames take microseconds), the outputs renamed so far are new and the rest old, and the
    remaining temps are removed (or, after a kill, left as hidden ``.NAME.*.tmp`` siblings). DVC
    records no lock entry for a stage that failed, so it reruns it either way.
    """
    out = StagedOutputs()
    try:
        yield out
        out._commit()
    finally:
        out._discard()  # nothing left to remove after a full commit


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, then rename."""
    with atomic_outputs() as out:
        out.file(path, data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json_dumps(obj))


def write_files_atomic(files: Mapping[str | Path, bytes | str]) -> None:
    """Write several files that must land as a set (``atomic_outputs``), renamed in mapping order.

    Serialise everything before calling (e.g. ``json_dumps``), so that a value that cannot be
    written fails before any temp exists.
    """
    with atomic_outputs() as out:
        for path, data in files.items():
            out.file(path, data)


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name; it replaces ``path`` only if the block succeeds.

    On any failure (in the block, or renaming it into place) the temp folder is removed and the
    previous ``path`` is left (or put back) as it was.
    """
    with atomic_outputs() as out:
        yield out.dir(path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
