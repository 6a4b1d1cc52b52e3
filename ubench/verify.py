"""`ubench verify`: rerun recorded stages in a scratch workspace and compare with dvc.lock.

Design
------
1. A scratch workspace is made in a temporary folder: the files git would ship (tracked and
   untracked-not-ignored, as they are in the working tree, dvc.lock included), a DVC repository
   with ``core.no_scm`` whose cache is *the user's cache*, linked in read-only (``hardlink,copy``)
   and never written (``--no-commit``). The user's workspace is never touched.
2. The recorded inputs of the chosen stages (outputs of other stages, DVC-tracked data) are checked
   out there from the cache at their dvc.lock hashes.
3. ``dvc repro --force --single-item --no-commit`` reruns the chosen stages, downstream stages
   first, so that every stage runs on its *recorded* inputs: a mismatch points at the stage that
   produced it, not at everything below it. The stage commands import the ubench package of the
   scratch workspace (``PYTHONPATH``), i.e. the code whose hashes dvc.lock records as deps.
4. Every output's hash in the new dvc.lock is compared with the recorded one (md5 for files, the
   ``.dir`` hash for folders). Measured stages (``speed@*`` and ``uscore``) are not compared by
   hash: their JSON values are, with a relative tolerance on the measured numbers (FPS, latency
   and what the U-Score computes from FPS) and exact equality for the rest; the recorded device
   and this device are shown side by side, and a measurement from another device is reported as
   not comparable rather than failed. Their renderings (``.md``, ``.png``) are not compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ubench.errors import UbenchError, unknown_name_error

DEFAULT_TOLERANCE = 0.5
# numbers in the measured JSON files compared within the relative tolerance: a leaf whose key path
# has one of these (``models.unet.uscore``, ``percentiles.fps.p10``); every other field exactly
MEASURED_KEYS = {"fps", "latency_ms_median", "norm_fps", "efficiency", "uscore"}
# fields that describe where a measurement was taken: labels, never compared
DEVICE_KEYS = {"device", "device_name", "torch_version", "cpu_count", "threads", "speed_devices"}

MATCH, MISMATCH, FAILED = "match", "MISMATCH", "FAILED"


def is_measured(stage: str) -> bool:
    """speed@* and uscore: measurements (FPS) and what is computed from them."""
    return stage.startswith("speed@") or stage == "uscore"


@dataclass
class Row:
    stage: str
    output: str
    recorded: str
    recomputed: str
    verdict: str
    ok: bool


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    dvc_output: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def table(self) -> str:
        head = ("stage", "output", "recorded", "recomputed", "verdict")
        cells = [head] + [(r.stage, r.output, r.recorded, r.recomputed, r.verdict) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        bad = [r for r in self.rows if not r.ok]
        n_stages = len({r.stage for r in self.rows})
        summary = (f"{len(self.rows)} outputs of {n_stages} stages: "
                   + ("all verified" if not bad else f"{len(bad)} FAILED verification")
                   + f" (measured values: relative tolerance ±{self.tolerance:.0%})")
        return "\n".join(lines + [""] + [f"note: {n}" for n in self.notes] + [summary])


# --- dvc.lock and the DVC cache -------------------------------------------------------------------

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


def select_stages(lock: dict[str, dict], names: list[str]) -> list[str]:
    """Stage names from exact names or group names (``train`` = every ``train@...``)."""
    if not names:
        return list(lock)
    groups = {s.split("@", 1)[0] for s in lock}
    chosen: list[str] = []
    for name in names:
        if name in lock:
            hits = [name]
        elif name in groups:
            hits = [s for s in lock if s.split("@", 1)[0] == name]
        else:
            raise unknown_name_error("stage", name, list(lock) + sorted(groups - set(lock)),
                                     "verify takes stages recorded in dvc.lock (`dvc stage list`)")
        chosen += [s for s in hits if s not in chosen]
    return chosen


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _stage_order(lock: dict[str, dict]) -> list[str]:
    """Stages in dependency order (upstream first), from the paths in dvc.lock."""
    from graphlib import TopologicalSorter

    outs = {s: [o["path"] for o in b.get("outs", [])] for s, b in lock.items()}
    graph = {s: {u for u, paths in outs.items() if u != s
                 for d in b.get("deps", []) for p in paths if _overlaps(d["path"], p)}
             for s, b in lock.items()}
    return list(TopologicalSorter(graph).static_order())


def _needed_inputs(root: Path, lock: dict[str, dict], chosen: list[str]) -> list[str]:
    """DVC targets to check out so that the chosen stages find their recorded inputs."""
    deps = [d["path"] for s in chosen for d in lock[s].get("deps", [])]
    targets = [o["path"] for s, b in lock.items() for o in b.get("outs", [])
               if any(_overlaps(d, o["path"]) for d in deps)]
    for dvcfile in sorted(f for f in root.glob("*.dvc") if f.is_file()):  # data.dvc
        for o in (yaml.safe_load(dvcfile.read_text()) or {}).get("outs", []):
            if any(_overlaps(d, o["path"]) for d in deps):
                targets.append(dvcfile.name)
    return list(dict.fromkeys(targets))


# --- the scratch workspace ------------------------------------------------------------------------

def _shipped_files(root: Path, outputs: list[str]) -> list[str]:
    """Relative paths of the files git would ship; without git, every file but DVC's own state
    and the pipeline's ``outputs``."""
    if (root / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True).stdout.decode()
        return [p for p in out.split("\0") if p]
    skip = {".git", ".venv", ".dvc/cache", ".dvc/tmp", *outputs}
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(rel == s or rel.startswith(s + "/") for s in skip):
            files.append(rel)
    return files


def _make_workspace(root: Path, cache: Path, dest: Path, outputs: list[str]) -> None:
    for rel in dict.fromkeys([*_shipped_files(root, outputs), "dvc.yaml", "dvc.lock", "params.yaml"]):
        src = root / rel
        if src.is_file() or src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)
    (dest / ".dvc").mkdir(exist_ok=True)
    if not (dest / ".dvc" / "config").exists():
        (dest / ".dvc" / "config").write_text("")
    # the user's cache, read through links; site_cache_dir keeps DVC's index inside the scratch
    (dest / ".dvc" / "config.local").write_text(
        "[core]\n    no_scm = true\n"
        f"    site_cache_dir = {json.dumps(str(dest / '.dvc' / 'tmp' / 'site'))}\n"
        f"[cache]\n    dir = {json.dumps(str(cache))}\n    type = \"hardlink,copy\"\n")


def _dvc(args: list[str], cwd: Path, quiet: bool) -> tuple[int, str]:
    """Run dvc in the scratch workspace; its output goes to stderr as it comes (unless quiet)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), env.get("PYTHONPATH")]))
    # the stage commands (`ubench ...`) and dvc from this interpreter's environment, active or not
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    env.setdefault("DVC_NO_ANALYTICS", "1")
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    proc = subprocess.Popen([dvc, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if not quiet:
            sys.stderr.write(line)
            sys.stderr.flush()
    return proc.wait(), "".join(lines)


# --- comparing ------------------------------------------------------------------------------------

def _short(md5: str | None) -> str:
    if not md5:
        return "-"
    return md5[:12] + ("….dir" if md5.endswith(".dir") else "…")


def _leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _device(data: dict) -> str:
    if "speed_devices" in data:
        return "speed on " + ", ".join(data["speed_devices"])
    parts = [str(data.get("device", "?")), str(data.get("device_name", "?"))]
    extra = [f"torch {data['torch_version']}" if "torch_version" in data else "",
             f"{data['threads']} threads" if "threads" in data else ""]
    return " ".join(parts) + (f" ({', '.join(e for e in extra if e)})" if any(extra) else "")


def _device_key(data: dict) -> tuple:
    if "speed_devices" in data:
        return tuple(data["speed_devices"])
    return data.get("device"), data.get("device_name")


def compare_measured(recorded: dict, recomputed: dict, tolerance: float) -> tuple[str, bool, str, str]:
    """(verdict, ok, recorded label, recomputed label) for one measured JSON output."""
    rec_label, new_label = _device(recorded), _device(recomputed)
    if "fps" in recorded:
        rec_label = f"{recorded['fps']:.3g} FPS, {rec_label}"
    if "fps" in recomputed:
        new_label = f"{recomputed['fps']:.3g} FPS, {new_label}"
    a, b = _leaves(recorded), _leaves(recomputed)
    measured = {k for k in set(a) | set(b) if MEASURED_KEYS & set(k.split("."))}
    labels = {k for k in set(a) | set(b) if DEVICE_KEYS & set(k.split("."))}
    exact_diff = sorted(k for k in (set(a) | set(b)) - measured - labels if a.get(k) != b.get(k))
    if exact_diff:
        verdict = f"{MISMATCH}: computed fields differ ({', '.join(exact_diff[:4])})"
        return verdict, False, rec_label, new_label
    if _device_key(recorded) != _device_key(recomputed):
        return "measured on another device: not compared", True, rec_label, new_label
    worst, where = 0.0, ""
    for k in sorted(measured & set(a) & set(b)):
        x, y = a[k], b[k]
        if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            continue
        scale = max(abs(x), abs(y))
        rel = 0.0 if scale == 0 else abs(y - x) / scale
        if rel > worst:
            worst, where = rel, k
    if worst <= tolerance:
        return f"measured: within ±{tolerance:.0%} (max {worst:.0%})", True, rec_label, new_label
    return (f"{MISMATCH}: measured {where} off by {worst:.0%} (tolerance ±{tolerance:.0%})", False,
            rec_label, new_label)


def _read_recorded(root: Path, cache: Path, path: str, md5: str) -> bytes | None:
    obj = cache_object(cache, md5)
    if obj.is_file():
        return obj.read_bytes()
    ws = root / path
    if ws.is_file():
        data = ws.read_bytes()
        if hashlib.md5(data).hexdigest() == md5:
            return data
    return None


def _inputs_changed(rec: dict, new: dict) -> list[str]:
    old = {d["path"]: d.get("md5") for d in rec.get("deps", [])}
    cur = {d["path"]: d.get("md5") for d in new.get("deps", [])}
    changed = [p for p in sorted(set(old) | set(cur)) if old.get(p) != cur.get(p)]
    for f in sorted(set(rec.get("params", {})) | set(new.get("params", {}))):
        op, np_ = _leaves(rec.get("params", {}).get(f, {})), _leaves(new.get("params", {}).get(f, {}))
        where = "" if f == "params.yaml" else f"{f}:"
        changed += [f"param {where}{k}" for k in sorted(set(op) | set(np_)) if op.get(k) != np_.get(k)]
    return changed


def _compare_stage(stage: str, rec: dict, new: dict | None, root: Path, scratch: Path, cache: Path,
                   tolerance: float, report: Report) -> None:
    outs = rec.get("outs", [])
    if new is None:
        for o in outs or [{"path": "-", "md5": None}]:
            report.rows.append(Row(stage, o["path"], _short(o.get("md5")), "-",
                                   f"{FAILED}: the stage did not complete (see dvc's output)", False))
        return
    changed = _inputs_changed(rec, new)
    if changed:
        report.notes.append(f"{stage}: inputs differ from dvc.lock: {', '.join(changed[:6])}"
                            + (" …" if len(changed) > 6 else ""))
    new_outs = {o["path"]: o.get("md5") for o in new.get("outs", [])}
    for o in outs:
        path, md5 = o["path"], o.get("md5")
        got = new_outs.get(path)
        if not is_measured(stage):
            ok = got is not None and got == md5
            verdict = MATCH if ok else (f"{MISMATCH}: not produced" if got is None else
                                        f"{MISMATCH}: inputs differ from dvc.lock" if changed else MISMATCH)
            report.rows.append(Row(stage, path, _short(md5), _short(got), verdict, ok))
            continue
        if not path.endswith(".json"):
            report.rows.append(Row(stage, path, _short(md5), _short(got),
                                   "not compared (rendering of a measurement)", True))
            continue
        raw = _read_recorded(root, cache, path, md5) if md5 else None
        fresh = scratch / path
        if raw is None:
            report.rows.append(Row(stage, path, _short(md5), "-",
                                   f"{FAILED}: recorded file not in the DVC cache (`dvc pull` it)", False))
            continue
        if not fresh.is_file():
            report.rows.append(Row(stage, path, _short(md5), "-", f"{MISMATCH}: not produced", False))
            continue
        verdict, ok, rec_label, new_label = compare_measured(json.loads(raw), json.loads(fresh.read_text()),
                                                             tolerance)
        report.rows.append(Row(stage, path, rec_label, new_label, verdict, ok))


# --- entry point ----------------------------------------------------------------------------------

def verify(repo: str | Path = ".", stages: list[str] | None = None, tolerance: float = DEFAULT_TOLERANCE,
           workdir: str | Path | None = None, keep: bool = False, quiet: bool = False) -> Report:
    """Rerun ``stages`` (default: every stage in dvc.lock) in a scratch workspace and compare.

    ``tolerance`` is the relative tolerance on measured values (0.5 = ±50%). ``workdir`` is where
    the scratch workspace goes (default: the system temp folder); ``keep`` leaves it there.
    """
    if tolerance < 0:
        raise UbenchError(f"tolerance {tolerance} is negative", "give a fraction, e.g. 0.5 for ±50%")
    root = Path(repo).resolve()
    lock = load_lock(root)
    chosen = select_stages(lock, list(stages or []))
    order = [s for s in reversed(_stage_order(lock)) if s in chosen]  # downstream first
    cache = cache_dir(root)
    scratch = Path(tempfile.mkdtemp(prefix="ubench-verify-", dir=workdir))
    report = Report(tolerance=tolerance)
    try:
        _make_workspace(root, cache, scratch, [o["path"] for b in lock.values() for o in b.get("outs", [])])
        targets = _needed_inputs(root, lock, chosen)
        if targets:
            rc, out = _dvc(["checkout", *targets], scratch, quiet=True)
            if rc != 0:
                missing = [ln.strip() for ln in out.splitlines() if ln.strip() in targets]
                raise UbenchError(
                    "the recorded inputs of the chosen stages are not all in the DVC cache"
                    + (f": {', '.join(missing)}" if missing else f" ({out.strip()[-300:]})"),
                    "fetch them with `dvc pull` (or `dvc fetch`), then verify again")
        # a stage that fails must not keep its recorded entry (it would read as a match)
        lock_file = scratch / "dvc.lock"
        data = yaml.safe_load(lock_file.read_text())
        for s in chosen:
            data["stages"].pop(s, None)
        lock_file.write_text(yaml.safe_dump(data, sort_keys=False))
        _, report.dvc_output = _dvc(["repro", "--force", "--single-item", "--no-commit", "--keep-going",
                                     *order], scratch, quiet)
        new = (yaml.safe_load(lock_file.read_text()) or {}).get("stages") or {}
        if any(s not in new for s in chosen):
            errors = [ln.strip() for ln in report.dvc_output.splitlines()
                      if ln.startswith(("ERROR", "WARNING: failed")) or "command not found" in ln]
            report.notes += [f"dvc: {ln}" for ln in errors[-6:]]
        for s in chosen:
            _compare_stage(s, lock[s], new.get(s), root, scratch, cache, tolerance, report)
        if keep:
            report.notes.append(f"scratch workspace kept at {scratch}")
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return report
