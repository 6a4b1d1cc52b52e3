"""A scratch copy of the repository for DVC to run in, and running dvc there.

Why a module of its own: DVC holds one lock per repository for the whole of ``dvc repro``, so
stages can run side by side only in workspaces of their own (``ubench grid run``), and ``ubench
verify`` reruns stages away from the user's files. Both make the same copy: the files git would
ship, as they are in the working tree (dvc.lock included), and a DVC config without git
(``core.no_scm``) whose cache or remotes are chosen by the caller. Nothing here writes to the
user's workspace.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import IO

# DVC's own state in a repository: never shipped
_DVC_STATE = (".dvc/cache", ".dvc/tmp", ".dvc/config.local")


def shipped_files(root: Path, outputs: list[str]) -> list[str]:
    """Relative paths of the files git would ship (tracked and untracked-not-ignored); without
    git, every file but DVC's own state, ``.git``/``.venv``/``.ubench`` and the pipeline's ``outputs``."""
    if (root / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True).stdout.decode()
        files = [p for p in out.split("\0") if p]
    else:
        skip = {".git", ".venv", ".ubench", *_DVC_STATE, *outputs}  # .ubench: resume states, grid workspaces
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        files = [f for f in files if not any(f == s or f.startswith(s.rstrip("/") + "/") for s in skip)]
    files = [f for f in files if not f.startswith(_DVC_STATE)]
    return sorted(dict.fromkeys([*files, "dvc.yaml", "dvc.lock", "params.yaml"]))


def snapshot(root: Path, outputs: list[str]) -> bytes:
    """The shipped files as one uncompressed tar (a few MB): what a worker on another machine
    unpacks into its workspace."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in shipped_files(root, outputs):
            src = root / rel
            if src.is_file() or src.is_symlink():
                tar.add(src, arcname=rel, recursive=False)
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(dest, filter="tar")


def copy_shipped(root: Path, dest: Path, outputs: list[str]) -> None:
    for rel in shipped_files(root, outputs):
        src = root / rel
        if src.is_file() or src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)


def absolute_remotes(root: Path) -> dict[str, dict[str, str]]:
    """{remote name: its options} from the repository's DVC config, then config.local (which may
    hold a URL override or credentials), a relative local URL made absolute (DVC resolves it from
    ``.dvc/``; a copy elsewhere would not find it)."""
    from configobj import ConfigObj  # DVC's own config reader (a dependency of dvc)

    remotes: dict[str, dict[str, str]] = {}
    for name in ("config", "config.local"):
        path = root / ".dvc" / name
        if not path.exists():
            continue
        for section, body in ConfigObj(str(path)).items():
            if not (section.startswith("remote ") and isinstance(body, dict)):
                continue
            options = remotes.setdefault(section.split(" ", 1)[1].strip().strip('"'), {})
            options.update({k: str(v) for k, v in body.items()})
            url = options.get("url", "")
            if url and "://" not in url and not os.path.isabs(url):
                options["url"] = os.path.normpath(os.path.join(root, ".dvc", url))
    return {name: opts for name, opts in remotes.items() if opts.get("url")}


def write_dvc_config(dest: Path, *, cache: Path | None = None, cache_type: str | None = None,
                     remotes: dict[str, dict[str, str]] | None = None, default_remote: str | None = None) -> None:
    """``dest/.dvc/config.local``: no git, DVC's index inside ``dest``, and the given cache
    (default: ``dest``'s own) and remotes (``absolute_remotes``)."""
    from configobj import ConfigObj

    (dest / ".dvc").mkdir(parents=True, exist_ok=True)
    if not (dest / ".dvc" / "config").exists():
        (dest / ".dvc" / "config").write_text("")
    conf = ConfigObj()
    conf.filename = str(dest / ".dvc" / "config.local")
    conf["core"] = {"no_scm": "true", "site_cache_dir": str(dest / ".dvc" / "tmp" / "site")}
    if default_remote:
        conf["core"]["remote"] = default_remote
    if cache is not None or cache_type:
        conf["cache"] = {}
        if cache is not None:
            conf["cache"]["dir"] = str(cache)
        if cache_type:
            conf["cache"]["type"] = cache_type
    for name, options in (remotes or {}).items():
        conf[f'remote "{name}"'] = dict(options)
    conf.write()


def dvc_env(cwd: Path) -> dict:
    """The environment of dvc in a scratch workspace: the stage commands import the ubench package
    of ``cwd`` (``PYTHONPATH``: the code whose hashes dvc.lock records), and ``ubench``/``dvc``
    come from this interpreter's environment, active or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def dvc_executable() -> str:
    return shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"


def run_dvc(args: list[str], cwd: Path, echo: IO[str] | None = None, new_session: bool = True) -> tuple[int, str]:
    """Run dvc in ``cwd``; its output is returned and, line by line as it comes, written to ``echo``.

    dvc runs in a session of its own (``new_session``), so that an interrupted caller can end it
    together with the stage processes it started (``stop_session``) before the workspace is
    removed; otherwise they would go on writing there. A caller whose own session is ended from
    outside (a grid worker) keeps dvc in it instead.
    """
    proc = subprocess.Popen([dvc_executable(), *args], cwd=cwd, env=dvc_env(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=new_session and os.name == "posix")
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo is not None:
                echo.write(line)
                echo.flush()
        return proc.wait(), "".join(lines)
    except BaseException:
        stop_session(proc)
        raise


def stop_session(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End ``proc`` and every process of its session: SIGTERM, then SIGKILL to what is left."""
    if os.name != "posix":  # pragma: no cover
        proc.kill()
        proc.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stage processes that outlived dvc
    proc.wait()
