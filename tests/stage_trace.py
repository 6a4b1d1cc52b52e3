"""Run `ubench` commands and record what each one used, for tests/test_dvc_deps.py.

    python tests/stage_trace.py PLAN.json OUTDIR

PLAN.json is a list of ``{"name": ..., "argv": [...]}`` run in order in the working directory;
each step runs ``ubench.cli.main(argv)`` in its own forked process and writes ``OUTDIR/<i>.json``:

- ``files``: ubench files it used, relative to the repository root: the modules it imported
  (ubench imports lazily inside functions, so only a real run shows a stage's closure) and any
  other file under ubench/ it opened (data files, a module hashed by its path);
- ``params``: the params keys it read, dotted (``train.epochs``).

Params reads are recorded by wrapping ``ubench.config.load_config`` (the one way a stage gets its
config): each section of the returned Config becomes an instance of a dynamic subclass of its
dataclass whose ``__getattribute__`` notes every field read. Subclasses keep ``dataclasses.fields``
and ``as_dict`` working; ``as_dict(cfg.train)`` reads, and so records, every key of ``train``.
Reads made while the config is validated happen before the wrapper and are not recorded: a check
that can only stop the stage does not change what it writes.

The parent imports the heavy third-party libraries once, and no ubench module, before forking:
each step still imports all of ubench itself, but does not pay torch's import again.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "ubench"
# Warmed in the parent; a library missing here is simply imported by the step that needs it.
WARM = ("torch", "numpy", "pandas", "scipy.stats", "scipy.ndimage", "monai.losses", "monai.networks",
        "matplotlib", "PIL.Image", "yaml", "tqdm", "xgboost", "ptflops", "dvclive", "medpy.metric")


def _is_section(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _recording_class(cls: type, prefix: str, reads: set[str]) -> type:
    """A subclass of dataclass ``cls`` that adds ``prefix.<field>`` to ``reads`` on each field read
    whose value is not itself a section (a section's own fields are recorded when read)."""
    names = {f.name for f in dataclasses.fields(cls)}

    def __getattribute__(self, name):
        value = object.__getattribute__(self, name)
        if name in names and not _is_section(value):
            reads.add(f"{prefix}.{name}" if prefix else name)
        return value

    return type(cls.__name__, (cls,), {"__getattribute__": __getattribute__,
                                       "__module__": cls.__module__, "__qualname__": cls.__qualname__})


def recording(obj, reads: set[str], prefix: str = ""):
    """A copy of config ``obj`` (a dataclass tree) that records field reads into ``reads``."""
    if isinstance(obj, tuple):
        return tuple(recording(v, reads, prefix) for v in obj)
    if not _is_section(obj):
        return obj
    out = object.__new__(_recording_class(type(obj), prefix, reads))
    for f in dataclasses.fields(obj):
        child = f"{prefix}.{f.name}" if prefix else f.name
        object.__setattr__(out, f.name, recording(getattr(obj, f.name), reads, child))
    return out


def _under_package(path) -> str | None:
    """``path`` relative to the repo root if it is a file of ubench/ (not a bytecode cache)."""
    try:
        p = Path(os.fsdecode(path)).resolve()
    except (TypeError, ValueError, OSError):
        return None
    if not p.is_relative_to(PACKAGE_DIR) or "__pycache__" in p.parts:
        return None
    return p.relative_to(REPO_ROOT).as_posix()


def trace(argv: list[str], out: Path) -> int:
    """Run ``ubench argv`` here and write what it used to ``out``; returns its exit status."""
    opened: set[str] = set()

    def on_open(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            rel = _under_package(args[0])
            if rel:
                opened.add(rel)

    sys.addaudithook(on_open)
    # ubench.config is imported by every stage anyway (cli.main loads the config for each one).
    import ubench.config

    reads: set[str] = set()
    real = ubench.config.load_config
    ubench.config.load_config = lambda *a, **k: recording(real(*a, **k), reads)
    from ubench.cli import main

    status = 1
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        modules = {_under_package(getattr(m, "__file__", None) or "") for m in list(sys.modules.values())}
        files = sorted((modules | opened) - {None})
        out.write_text(json.dumps({"files": files, "params": sorted(reads)}, indent=1))
    return status


def _run_forked(argv: list[str], out: Path, log: Path) -> int:
    pid = os.fork()
    if pid == 0:  # child: never return into the parent's code
        status = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            status = trace(argv, out)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def run_plan(plan: list[dict], outdir: Path) -> int:
    """Run the steps in order; stop at the first failure with its log on stderr."""
    for mod in WARM:
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    leaked = sorted(m for m in sys.modules if m == "ubench" or m.startswith("ubench."))
    if leaked:  # a step must import every ubench module itself, or its closure is incomplete
        raise RuntimeError(f"warm-up imported ubench modules: {leaked}")
    for i, step in enumerate(plan):
        log = outdir / f"{i}.log"
        status = _run_forked(step["argv"], outdir / f"{i}.json", log)
        if status != 0:
            print(f"step {step['name']} (`ubench {' '.join(step['argv'])}`) exited {status}:\n"
                  f"{log.read_text(errors='replace')[-4000:]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/stage_trace.py PLAN.json OUTDIR")
    sys.exit(run_plan(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])))
