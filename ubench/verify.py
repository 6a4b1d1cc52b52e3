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
   first, so that every stage runs on its *recorded* inputs: a difference points at the stage that
   produced it, not at everything below it. The stage commands import the ubench package of the
   scratch workspace (``PYTHONPATH``), i.e. the code whose hashes dvc.lock records as deps.
4. Every output gets one of three verdicts (``Verdict``). Byte identity across machines is not a
   promise CPU kernels keep (another SIMD path, torch, thread count or GPU may change the last
   bits), so "other bytes" alone cannot tell another machine from a real failure; the platform
   fingerprint that every computed output carries (``runtime.platform_fingerprint``) can:

   - ``identical``: the hash in the new dvc.lock is the recorded one (md5 for files, the ``.dir``
     hash for folders).
   - ``equivalent``: other bytes, every metric within ``metric_tolerance``, every other field
     equal, and the recorded and recomputed fingerprints differ (their differing fields are shown
     under the table). A metrics JSON is judged by its own values; a checkpoint by its metadata
     (validation IoU, best epoch, config, tensor shapes and its fingerprint); any other output
     (per-image CSV, plot folder, prepared data) by its stage's JSON files and checkpoints: it is
     equivalent only if all of those are identical or equivalent and they show another platform.
   - ``different``: anything else, and in particular other bytes on the *same* platform, which is
     a reproducibility failure on one machine; also a stage that did not complete, or ran on inputs
     other than the recorded ones.

   Measured stages (``speed@*`` and ``uscore``) are never compared by hash: their JSON values are,
   within the relative ``tolerance`` on measured numbers (FPS, latency and what the U-Score
   computes from FPS) and exactly for the rest (equivalent or different); a measurement from
   another device and the renderings (``.md``, ``.png``) are "not compared".
5. SIGTERM and SIGINT during verify stop the dvc child (and the stages it started), remove the
   scratch workspace and then reach the previous handlers, which end the process as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ubench import paths
from ubench.dvc_files import cache_dir, cache_object, load_lock
from ubench.errors import UbenchError, unknown_name_error
from ubench.scratch import copy_shipped, run_dvc, write_dvc_config

DEFAULT_TOLERANCE = 0.5
# absolute on scores within ±1 (IoU, Dice, ...), relative beyond (HD95 in pixels, loss, GFLOPs)
DEFAULT_METRIC_TOLERANCE = 0.01
# numbers in the measured JSON files compared within the relative tolerance: a leaf whose key path
# has one of these (``models.unet.uscore``, ``percentiles.fps.p10``); every other field exactly
MEASURED_KEYS = {"fps", "latency_ms_median", "latency_ms_q1", "latency_ms_q3", "stable",
                 "norm_fps", "efficiency", "uscore"}
# what a measurement says about its own noise (the interquartile spread over the median, how many
# windows it took): shown in the file, never compared; two good runs' spreads (3 % and 5 %, say)
# differ by far more than any tolerance on the values themselves
NOISE_KEYS = {"spread", "repeats"}
# measured files whose every number is a measurement (no key says so)
MEASURED_SUMMARIES = {paths.USCORE_METRICS.as_posix()}
# fields that describe where a measurement was taken: labels, never compared
DEVICE_KEYS = {"device", "device_name", "torch_version", "cpu_count", "threads", "speed_devices", "platform",
               "timer", "cuda", "driver"}
# where computed outputs (JSON files, checkpoint metadata) keep runtime.platform_fingerprint()
PLATFORM_KEY = "platform"

IDENTICAL, EQUIVALENT, DIFFERENT, NOT_COMPARED = "identical", "equivalent", "different", "not compared"


def is_measured(stage: str) -> bool:
    """speed@* and uscore: measurements (FPS) and what is computed from them; report shows them."""
    return stage.startswith("speed@") or stage in ("uscore", "report")


@dataclass(frozen=True)
class Verdict:
    """One output's verdict; ``platforms`` = (recorded, recomputed) fingerprints when they differ."""

    kind: str
    detail: str = ""
    platforms: tuple[dict, dict] | None = None


@dataclass
class Row:
    stage: str
    output: str
    recorded: str
    recomputed: str
    verdict: str
    kind: str

    @property
    def ok(self) -> bool:
        return self.kind != DIFFERENT


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    metric_tolerance: float = DEFAULT_METRIC_TOLERANCE
    dvc_output: str = ""
    # distinct (recorded, recomputed) fingerprint pairs, in order of appearance; rows cite them [A]...
    platform_pairs: list[tuple[dict, dict]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def add(self, stage: str, output: str, recorded: str, recomputed: str, verdict: Verdict) -> None:
        """Append a row; a differing platform pair gets a letter that the row cites."""
        text = verdict.kind + (f": {verdict.detail}" if verdict.detail else "")
        if verdict.platforms is not None:
            if verdict.platforms not in self.platform_pairs:
                self.platform_pairs.append(verdict.platforms)
            text += f" [platform {_letter(self.platform_pairs.index(verdict.platforms))}]"
        self.rows.append(Row(stage, output, recorded, recomputed, text, verdict.kind))

    def table(self) -> str:
        head = ("stage", "output", "recorded", "recomputed", "verdict")
        cells = [head] + [(r.stage, r.output, r.recorded, r.recomputed, r.verdict) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        for i, (rec, new) in enumerate(self.platform_pairs):
            lines.append(f"platform {_letter(i)}: recorded on another platform; the fields that differ "
                         "(recorded -> this run):")
            lines += [f"  {line}" for line in platform_diff(rec, new)]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines + self.footer())

    def footer(self) -> list[str]:
        """The counts, what they mean for the exit status, and the tolerances used."""
        counts = {k: sum(r.kind == k for r in self.rows) for k in (IDENTICAL, EQUIVALENT, DIFFERENT, NOT_COMPARED)}
        n_stages = len({r.stage for r in self.rows})
        summary = (f"{len(self.rows)} outputs of {n_stages} stages: "
                   + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + ". ")
        if self.ok:
            summary += ("Verified: every output is identical or equivalent"
                        + (" (or a measurement not compared)" if counts[NOT_COMPARED] else "")
                        + "; exit status 0.")
        else:
            summary += f"NOT verified: {counts[DIFFERENT]} output(s) different; exit status 1."
        tol = (f"tolerances: metrics ±{self.metric_tolerance:g} (--metric-tolerance; absolute on values "
               f"within ±1 such as IoU and Dice, relative beyond, e.g. HD95 in pixels); measured values "
               f"±{self.tolerance:.0%} relative (--tolerance: FPS, latency, U-Score)")
        return [summary, tol]


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else str(i + 1)


def platform_diff(recorded: dict, recomputed: dict) -> list[str]:
    """``field: recorded -> recomputed`` for each fingerprint field that differs (CPU flags as the
    flags only one side has, which is what selects other kernels)."""
    out = []
    for key in [*recorded, *(k for k in recomputed if k not in recorded)]:
        a, b = recorded.get(key, "-"), recomputed.get(key, "-")
        if a == b:
            continue
        if key == "cpu_flags" and isinstance(a, str) and isinstance(b, str):
            only_a, only_b = sorted(set(a.split()) - set(b.split())), sorted(set(b.split()) - set(a.split()))
            out.append(f"{key}: only recorded: {' '.join(only_a) or '-'}; only this run: {' '.join(only_b) or '-'}")
        else:
            out.append(f"{key}: {a} -> {b}")
    return out


# --- the stages of dvc.lock to rerun (dvc.lock and the cache are read by ubench.dvc_files) --------

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

    from ubench.grid.plan import Stage, upstream  # the one rule linking a dep to the stage producing it

    stages = {s: Stage(s, tuple(d["path"] for d in b.get("deps", [])), tuple((o["path"], True) for o in b.get("outs", [])))
              for s, b in lock.items()}
    return list(TopologicalSorter(upstream(stages)).static_order())


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


# --- the scratch workspace (ubench.scratch) --------------------------------------------------------

def _make_workspace(root: Path, cache: Path, dest: Path, outputs: list[str]) -> None:
    """The shipped files, and the user's cache read through links (``--no-commit`` never writes it)."""
    copy_shipped(root, dest, outputs)
    write_dvc_config(dest, cache=cache, cache_type="hardlink,copy")


def _dvc(args: list[str], cwd: Path, quiet: bool) -> tuple[int, str]:
    """dvc in the scratch workspace, its output on stderr as it comes (unless quiet)."""
    return run_dvc(args, cwd, echo=None if quiet else sys.stderr)


# --- interruption ---------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """Raised by SIGTERM/SIGINT while verify runs, so that its ``finally`` removes the scratch
    workspace (the default SIGTERM action ends the process with no cleanup at all). A BaseException,
    like KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_blocked():
    """Hold SIGTERM/SIGINT back (they stay pending) while a cleanup must run to its end."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def interruptible():
    """While the block runs, SIGTERM and SIGINT raise ``Interrupted`` in it; afterwards the old
    handlers are back and the signal is delivered again to them, so the process ends as it would
    have (the CLI: SIGTERM kills it, status 143; SIGINT raises KeyboardInterrupt), only after the
    block's ``finally`` ran. A signal that was ignored stays ignored (e.g. SIGINT of a background
    job). If the old handler returns, verify stops with an error instead of reporting half a run.
    Only the main thread can have signal handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def handler(signum, _frame):
        if not caught:  # a second signal during cleanup would abort the cleanup: ignore it
            caught.append(signum)
            raise Interrupted(signum)

    previous = {}
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) not in (signal.SIG_IGN, None):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    except Interrupted:
        pass
    finally:
        with _signals_blocked():  # a signal now waits for the old handler
            for sig, old in previous.items():
                signal.signal(sig, old)
    if caught:
        signal.raise_signal(caught[0])
        raise UbenchError(f"verify was interrupted ({signal.Signals(caught[0]).name}); its scratch "
                          "workspace was removed", "run it again")


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


def compare_measured(recorded: dict, recomputed: dict, tolerance: float,
                     all_measured: bool = False) -> tuple[Verdict, str, str]:
    """(verdict, recorded label, recomputed label) for one measured JSON output.

    A measurement varies from run to run: within ``tolerance`` it is equivalent, on another device
    it is not compared; its computed fields (model, input size, IoU ...) must be equal.
    ``all_measured``: every number of the file is a measurement (a summary such as
    metrics/uscore.json, {model: U-Score}).
    """
    rec_label, new_label = _device(recorded), _device(recomputed)
    if "fps" in recorded:
        rec_label = f"{recorded['fps']:.3g} FPS, {rec_label}"
    if "fps" in recomputed:
        new_label = f"{recomputed['fps']:.3g} FPS, {new_label}"
    a, b = _leaves(recorded), _leaves(recomputed)
    measured = {k for k in set(a) | set(b) if (all_measured or MEASURED_KEYS & set(k.split(".")))
                and not NOISE_KEYS & set(k.split("."))}
    labels = {k for k in set(a) | set(b) if (DEVICE_KEYS | NOISE_KEYS) & set(k.split("."))}
    exact_diff = sorted(k for k in (set(a) | set(b)) - measured - labels if a.get(k) != b.get(k))
    if exact_diff:
        return Verdict(DIFFERENT, f"computed fields differ ({', '.join(exact_diff[:4])})"), rec_label, new_label
    if _device_key(recorded) != _device_key(recomputed):
        return Verdict(NOT_COMPARED, "measured on another device"), rec_label, new_label
    worst, where = 0.0, ""
    for k in sorted(measured & set(a) & set(b)):
        x, y = a[k], b[k]
        if not isinstance(x, (int, float)) or not isinstance(y, (int, float)) or isinstance(x, bool):
            continue  # a label of the measurement (e.g. whether its median settled), not a value
        scale = max(abs(x), abs(y))
        rel = 0.0 if scale == 0 else abs(y - x) / scale
        if rel > worst:
            worst, where = rel, k
    if worst <= tolerance:
        return Verdict(EQUIVALENT, f"measured, within ±{tolerance:.0%} (max {worst:.0%})"), rec_label, new_label
    return (Verdict(DIFFERENT, f"measured {where} off by {worst:.0%} (tolerance ±{tolerance:.0%})"),
            rec_label, new_label)


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts and lists, keyed by path (``metrics.iou.mean``, ``data.mean.0``)."""
    if isinstance(obj, (dict, list, tuple)):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        out: dict[str, Any] = {}
        for k, v in items:
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out else {prefix: obj}
    return {prefix: obj}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def metric_gap(x: float, y: float) -> float:
    """|x - y| scaled by max(1, |x|, |y|): the absolute difference for scores within ±1 (IoU,
    Dice, accuracy), the relative one for larger quantities (HD95 in pixels, loss, GFLOPs), so that
    one tolerance fits both."""
    return abs(x - y) / max(1.0, abs(x), abs(y))


def compare_documents(recorded: dict, recomputed: dict, metric_tolerance: float) -> Verdict:
    """The verdict for two computed documents (a metrics JSON, a checkpoint's metadata) whose
    bytes differ.

    Floats are metrics, compared within ``metric_tolerance`` (``metric_gap``); integers, strings,
    booleans and nulls (best epoch, image count, config, model name) must be equal. Equivalent
    needs both platform fingerprints, and different ones: other bytes on the same platform are a
    reproducibility failure of that machine, whatever the size of the difference.
    """
    fp_a, fp_b = recorded.get(PLATFORM_KEY), recomputed.get(PLATFORM_KEY)
    a = _flat({k: v for k, v in recorded.items() if k != PLATFORM_KEY})
    b = _flat({k: v for k, v in recomputed.items() if k != PLATFORM_KEY})
    platforms = (fp_a, fp_b) if isinstance(fp_a, dict) and isinstance(fp_b, dict) and fp_a != fp_b else None
    exact, worst, where = [], 0.0, ""
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if k in a and k in b and _is_number(x) and _is_number(y) and (isinstance(x, float) or isinstance(y, float)):
            if metric_gap(x, y) > worst:
                worst, where = metric_gap(x, y), k
        elif x != y or (k in a) != (k in b):
            exact.append(k)
    if exact:
        return Verdict(DIFFERENT, f"fields differ: {', '.join(exact[:4])}" + (" …" if len(exact) > 4 else ""),
                       platforms)
    largest = f"max gap {worst:.2g}" + (f" at {where} ({a[where]:.4g} -> {b[where]:.4g})" if where else "")
    if worst > metric_tolerance:
        return Verdict(DIFFERENT, f"{largest} > {metric_tolerance:g}", platforms)
    if not isinstance(fp_a, dict) or not isinstance(fp_b, dict):
        side = "recorded" if not isinstance(fp_a, dict) else "recomputed"
        return Verdict(DIFFERENT, f"other bytes ({largest}); no platform fingerprint in the {side} "
                                  "output to tell another machine from a failure")
    if platforms is None:
        return Verdict(DIFFERENT, f"other bytes on the same platform ({largest}): not reproducible "
                                  "on this machine")
    return Verdict(EQUIVALENT, f"{largest} <= {metric_tolerance:g}", platforms)


def _is_document(path: str, md5: str | None) -> bool:
    """Outputs judged by their content: metrics JSON files and checkpoints (never folders)."""
    return path.endswith((".json", ".pt")) and not (md5 or "").endswith(".dir")


def _checkpoint_metadata(data: bytes) -> dict:
    """A checkpoint minus its weights, plus the weights' shapes (the architecture must match).

    Its ``val_iou`` is the metric the best epoch was chosen by; the weights themselves are not a
    metric and differ with any last-bit change, so they are judged through it."""
    import torch

    ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["state_dict_shapes"] = {k: list(v.shape) for k, v in ckpt.get("state_dict", {}).items()}
    return meta


def _load_document(path: str, data: bytes) -> dict:
    return _checkpoint_metadata(data) if path.endswith(".pt") else json.loads(data)


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


def _both_versions(path: str, md5: str | None, root: Path, scratch: Path, cache: Path) -> tuple[bytes, bytes] | Verdict:
    """(recorded bytes, recomputed bytes) of one output, or the verdict when either is missing."""
    raw = _read_recorded(root, cache, path, md5) if md5 else None
    if raw is None:
        return Verdict(DIFFERENT, "recorded file not in the DVC cache (`dvc pull` it)")
    fresh = scratch / path
    if not fresh.is_file():
        return Verdict(DIFFERENT, "not produced")
    return raw, fresh.read_bytes()


def _compare_document(path: str, md5: str, root: Path, scratch: Path, cache: Path,
                      metric_tolerance: float) -> Verdict:
    both = _both_versions(path, md5, root, scratch, cache)
    if isinstance(both, Verdict):
        return both
    try:
        recorded, recomputed = _load_document(path, both[0]), _load_document(path, both[1])
    except Exception as exc:  # noqa: BLE001 - an unreadable output is a difference, not a crash
        return Verdict(DIFFERENT, f"cannot read it ({type(exc).__name__})")
    return compare_documents(recorded, recomputed, metric_tolerance)


def judge_by_documents(documents: dict[str, Verdict]) -> Verdict:
    """The verdict for an output without metrics of its own (CSV, folder, plot) whose bytes
    differ: equivalent only if every JSON file and checkpoint of its stage is identical or
    equivalent, and they show another platform (were they all identical, the platform is the same
    and other bytes are a failure)."""
    if not documents:
        return Verdict(DIFFERENT, "other bytes, and the stage writes no metrics file to judge them by")
    failed = [p for p, v in documents.items() if v.kind != IDENTICAL and v.kind != EQUIVALENT]
    if failed:
        return Verdict(DIFFERENT, f"other bytes, and {failed[0]} is {DIFFERENT}")
    for p, v in documents.items():
        if v.kind == EQUIVALENT and v.platforms is not None:
            return Verdict(EQUIVALENT, f"as {p}", v.platforms)
    return Verdict(DIFFERENT, f"other bytes on the same platform (by {next(iter(documents))})")


def _inputs_changed(rec: dict, new: dict) -> list[str]:
    old = {d["path"]: d.get("md5") for d in rec.get("deps", [])}
    cur = {d["path"]: d.get("md5") for d in new.get("deps", [])}
    changed = [p for p in sorted(set(old) | set(cur)) if old.get(p) != cur.get(p)]
    for f in sorted(set(rec.get("params", {})) | set(new.get("params", {}))):
        op, np_ = _leaves(rec.get("params", {}).get(f, {})), _leaves(new.get("params", {}).get(f, {}))
        where = "" if f == "params.yaml" else f"{f}:"
        changed += [f"param {where}{k}" for k in sorted(set(op) | set(np_)) if op.get(k) != np_.get(k)]
    return changed


def _compare_measured_stage(stage: str, outs: list[dict], new_outs: dict, root: Path, scratch: Path,
                            cache: Path, tolerance: float, report: Report) -> None:
    for o in outs:
        path, md5 = o["path"], o.get("md5")
        got = new_outs.get(path)
        if not path.endswith(".json"):
            report.add(stage, path, _short(md5), _short(got), Verdict(NOT_COMPARED, "rendering of a measurement"))
            continue
        both = _both_versions(path, md5, root, scratch, cache)
        if isinstance(both, Verdict):
            report.add(stage, path, _short(md5), "-", both)
        else:
            verdict, rec_label, new_label = compare_measured(json.loads(both[0]), json.loads(both[1]), tolerance,
                                                             all_measured=path in MEASURED_SUMMARIES)
            report.add(stage, path, rec_label, new_label, verdict)


def _compare_stage(stage: str, rec: dict, new: dict | None, root: Path, scratch: Path, cache: Path,
                   tolerance: float, report: Report, metric_tolerance: float = DEFAULT_METRIC_TOLERANCE) -> None:
    outs = rec.get("outs", [])
    if new is None:
        for o in outs or [{"path": "-", "md5": None}]:
            report.add(stage, o["path"], _short(o.get("md5")), "-",
                       Verdict(DIFFERENT, "the stage did not complete (see dvc's output)"))
        return
    changed = _inputs_changed(rec, new)
    if changed:
        report.notes.append(f"{stage}: inputs differ from dvc.lock: {', '.join(changed[:6])}"
                            + (" …" if len(changed) > 6 else ""))
    new_outs = {o["path"]: o.get("md5") for o in new.get("outs", [])}
    if is_measured(stage):
        _compare_measured_stage(stage, outs, new_outs, root, scratch, cache, tolerance, report)
        return
    verdicts: dict[str, Verdict] = {}
    for o in outs:  # identical, or judged by content (metrics files, checkpoints)
        path, md5 = o["path"], o.get("md5")
        got = new_outs.get(path)
        if got is not None and got == md5:
            verdicts[path] = Verdict(IDENTICAL)
        elif got is None:
            verdicts[path] = Verdict(DIFFERENT, "not produced")
        elif changed:
            verdicts[path] = Verdict(DIFFERENT, "inputs differ from dvc.lock")
        elif _is_document(path, md5):
            verdicts[path] = _compare_document(path, md5, root, scratch, cache, metric_tolerance)
    documents = {p: v for p, v in verdicts.items() if _is_document(p, None)}
    for o in outs:  # the rest, through the stage's metrics files and checkpoints
        path, md5 = o["path"], o.get("md5")
        verdict = verdicts.get(path) or judge_by_documents(documents)
        report.add(stage, path, _short(md5), _short(new_outs.get(path)), verdict)


# --- entry point ----------------------------------------------------------------------------------

def verify(repo: str | Path = ".", stages: list[str] | None = None, tolerance: float = DEFAULT_TOLERANCE,
           workdir: str | Path | None = None, keep: bool = False, quiet: bool = False,
           metric_tolerance: float = DEFAULT_METRIC_TOLERANCE) -> Report:
    """Rerun ``stages`` (default: every stage in dvc.lock) in a scratch workspace and compare.

    ``tolerance`` is the relative tolerance on measured values (0.5 = ±50%); ``metric_tolerance``
    the one on computed metrics whose bytes differ on another platform (0.01: absolute on scores
    within ±1, relative beyond; see ``metric_gap``). ``workdir`` is where the scratch workspace
    goes (default: the system temp folder); ``keep`` leaves it there. SIGTERM/SIGINT remove it too.
    """
    for name, value in (("tolerance", tolerance), ("metric tolerance", metric_tolerance)):
        if value < 0:
            raise UbenchError(f"{name} {value} is negative", "give a non-negative number, e.g. 0.5 or 0.01")
    root = Path(repo).resolve()
    lock = load_lock(root)
    chosen = select_stages(lock, list(stages or []))
    order = [s for s in reversed(_stage_order(lock)) if s in chosen]  # downstream first
    cache = cache_dir(root)
    report = Report(tolerance=tolerance, metric_tolerance=metric_tolerance)
    scratch: Path | None = None
    with interruptible():
        try:
            scratch = Path(tempfile.mkdtemp(prefix="ubench-verify-", dir=workdir))
            _run_in_scratch(root, lock, chosen, order, cache, scratch, quiet, report)
            if keep:
                report.notes.append(f"scratch workspace kept at {scratch}")
        finally:
            if scratch is not None and not keep:
                with _signals_blocked():
                    shutil.rmtree(scratch, ignore_errors=True)
    return report


def _run_in_scratch(root: Path, lock: dict[str, dict], chosen: list[str], order: list[str], cache: Path,
                    scratch: Path, quiet: bool, report: Report) -> None:
    """Steps 1 to 4 of the module's design, in ``scratch``."""
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
    # a stage that fails must not keep its recorded entry (it would read as identical)
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
        _compare_stage(s, lock[s], new.get(s), root, scratch, cache, report.tolerance, report,
                       report.metric_tolerance)
