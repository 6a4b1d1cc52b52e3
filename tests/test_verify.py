"""`ubench verify`: rerun recorded stages in a scratch workspace and compare with dvc.lock.

Unit tests for stage selection, errors, the measured-value comparison, the three verdicts
(identical, equivalent, different) of computed outputs on faked recorded platforms, and the signal
handling; then, on the shared tiny clone (tests/conftest.py `tiny_repo`): recorded stages verify
(exit 0) without touching the workspace or the cache, a tampered dvc.lock or a changed param is
reported (exit 1), a recorded output faked to come from another platform is equivalent, and
SIGTERM removes the scratch workspace and the stage processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import repo_env, run_in
from ubench.errors import UbenchError
from ubench.io import json_dumps
from ubench.runtime import platform_fingerprint
from ubench.verify import (
    DIFFERENT,
    EQUIVALENT,
    IDENTICAL,
    NOT_COMPARED,
    Report,
    _compare_stage,
    cache_object,
    compare_measured,
    interruptible,
    metric_gap,
    select_stages,
    verify,
)

LOCK = {"prepare@synth": {}, "train@unet-synth": {}, "train@attention_unet-synth": {}, "leaderboard": {}}
SPEED = {"batch_size": 1, "device": "cpu", "device_name": "x86_64", "fps": 10.0, "input_size": 64,
         "latency_ms_median": 100.0, "model": "unet", "repeats": 2, "threads": 2,
         "torch_version": "2.13.0+cpu", "warmup": 1, "measured": True}


def test_select_stages_by_name_and_group():
    assert select_stages(LOCK, []) == list(LOCK)
    assert select_stages(LOCK, ["train", "leaderboard"]) == [
        "train@unet-synth", "train@attention_unet-synth", "leaderboard"]
    assert select_stages(LOCK, ["train@unet-synth", "train"]) == [
        "train@unet-synth", "train@attention_unet-synth"]


def test_unknown_stage_names_the_closest(tmp_path):
    with pytest.raises(UbenchError, match="unknown stage 'trian'") as exc:
        select_stages(LOCK, ["trian"])
    assert "train" in exc.value.fix
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": LOCK}))
    with pytest.raises(UbenchError, match="unknown stage 'leaderbord'"):
        verify(tmp_path, ["leaderbord"], quiet=True)


def test_missing_lock_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(UbenchError, match="no dvc.lock"):
        verify(tmp_path, quiet=True)
    from ubench.cli import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["verify"]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "error: no dvc.lock" in err and "fix: run `dvc repro` first" in err


def test_compare_measured_tolerance_and_devices():
    verdict, rec, new = compare_measured(SPEED, {**SPEED, "fps": 7.0, "latency_ms_median": 140.0}, 0.5)
    assert verdict.kind == EQUIVALENT and verdict.detail.startswith("measured, within ±50%")
    assert "10 FPS, cpu x86_64" in rec and "7 FPS, cpu x86_64" in new
    # the noise figures of two good runs (spread 3 % vs 6 %, 10 vs 25 windows) are shown, not compared
    assert compare_measured({**SPEED, "spread": 0.03, "repeats": 10},
                            {**SPEED, "spread": 0.06, "repeats": 25}, 0.5)[0].kind == EQUIVALENT
    verdict, *_ = compare_measured(SPEED, {**SPEED, "fps": 4.0, "latency_ms_median": 250.0}, 0.5)
    assert verdict.kind == DIFFERENT and "fps" in verdict.detail
    # another device: shown, not compared
    verdict, rec, new = compare_measured(SPEED, {**SPEED, "device": "cuda", "device_name": "NVIDIA H100",
                                                 "fps": 900.0}, 0.5)
    assert verdict.kind == NOT_COMPARED and "another device" in verdict.detail
    assert "NVIDIA H100" in new and "x86_64" in rec
    # the computed part of a measured file must match exactly
    verdict, *_ = compare_measured(SPEED, {**SPEED, "input_size": 256}, 0.5)
    assert verdict.kind == DIFFERENT and "input_size" in verdict.detail
    uscore = {"models": {"unet": {"fps": 1.0, "uscore": 0.5, "iou": 0.8, "norm_iou": 1.0}},
              "percentiles": {"fps": {"p10": 1.0}, "iou": {"p10": 0.1}}, "speed_devices": ["x86_64"]}
    near = {"models": {"unet": {"fps": 1.2, "uscore": 0.55, "iou": 0.8, "norm_iou": 1.0}},
            "percentiles": {"fps": {"p10": 1.2}, "iou": {"p10": 0.1}}, "speed_devices": ["x86_64"]}
    assert compare_measured(uscore, near, 0.5)[0].kind == EQUIVALENT
    off_iou = {**near, "percentiles": {"fps": {"p10": 1.2}, "iou": {"p10": 0.2}}}
    verdict, *_ = compare_measured(uscore, off_iou, 0.5)
    assert verdict.kind == DIFFERENT and "percentiles.iou.p10" in verdict.detail
    # a summary of measurements ({model: U-Score}): every number is measured, only when told so
    assert compare_measured({"unet": 0.5}, {"unet": 0.6}, 0.5, all_measured=True)[0].kind == EQUIVALENT
    assert compare_measured({"unet": 0.5}, {"unet": 0.1}, 0.5, all_measured=True)[0].kind == DIFFERENT
    assert compare_measured({"unet": 0.5}, {"unet": 0.6}, 0.5)[0].kind == DIFFERENT


# --- the three verdicts of computed outputs, on faked platforms ------------------------------------

HERE = platform_fingerprint("cpu", threads=2)
ELSEWHERE = {**HERE, "cpu_model": "Other CPU 9000", "threads": 8,
             "cpu_flags": " ".join(f for f in HERE["cpu_flags"].split() if not f.startswith(("avx512", "amx")))
             or "avx2 fma"}
EVAL = {"model": "unet", "dataset": "synth", "n_images": 20, "best_epoch": 3,
        "metrics": {"iou": {"mean": 0.779, "std": 0.12}, "hd95": {"mean": 6.5, "std": 2.0}},
        "train": {"lr": 0.01, "epochs": 3}, "platform": HERE}
EVAL_JSON, EVAL_CSV = "results/eval/synth/unet.json", "results/per_image/synth/unet.csv"


def test_metric_gap_is_absolute_on_scores_and_relative_beyond():
    assert metric_gap(0.779, 0.7808) == pytest.approx(0.0018)
    assert metric_gap(100.0, 101.0) == pytest.approx(1 / 101)
    assert metric_gap(-0.5, 0.5) == pytest.approx(1.0)


def _eval(iou: float = 0.779, platform: dict | None = HERE, **extra) -> bytes:
    doc = {**EVAL, "metrics": {**EVAL["metrics"], "iou": {"mean": iou, "std": 0.12}}, **extra}
    if platform is None:
        doc.pop("platform")
    else:
        doc["platform"] = platform
    return json_dumps(doc).encode()


def _checkpoint(val_iou: float, platform: dict, shape=(2, 3)) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": "unet", "state_dict": {"w": torch.rand(*shape)}, "epoch": 3, "val_iou": val_iou,
                "platform": platform}, buf)
    return buf.getvalue()


def _judge(tmp_path: Path, recorded: dict[str, bytes], recomputed: dict[str, bytes],
           stage: str = "evaluate@unet-synth", metric_tolerance: float = 0.01) -> tuple[dict, Report]:
    """Verdicts of one stage whose recorded outputs are in a fake DVC cache and whose recomputed
    ones are in a fake scratch workspace: {output: Row}, and the report."""
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    rec_outs, new_outs = [], []
    for path, data in recorded.items():
        md5 = hashlib.md5(data).hexdigest()
        cache_object(cache, md5).parent.mkdir(parents=True, exist_ok=True)
        cache_object(cache, md5).write_bytes(data)
        rec_outs.append({"path": path, "md5": md5})
    for path, data in recomputed.items():
        (scratch / path).parent.mkdir(parents=True, exist_ok=True)
        (scratch / path).write_bytes(data)
        new_outs.append({"path": path, "md5": hashlib.md5(data).hexdigest()})
    report = Report()
    _compare_stage(stage, {"outs": rec_outs}, {"outs": new_outs}, tmp_path / "root", scratch, cache, 0.5,
                   report, metric_tolerance)
    return {r.output: r for r in report.rows}, report


def test_same_bytes_are_identical(tmp_path):
    rows, report = _judge(tmp_path, {EVAL_JSON: _eval(), EVAL_CSV: b"id,iou\n1,0.5\n"},
                          {EVAL_JSON: _eval(), EVAL_CSV: b"id,iou\n1,0.5\n"})
    assert [r.kind for r in rows.values()] == [IDENTICAL, IDENTICAL] and report.ok
    assert "2 identical. Verified: every output is identical or equivalent; exit status 0." in report.table()


def test_another_platform_within_tolerance_is_equivalent_and_shows_both_fingerprints(tmp_path):
    rows, report = _judge(tmp_path, {EVAL_JSON: _eval(0.779), EVAL_CSV: b"id,iou\n1,0.779\n"},
                          {EVAL_JSON: _eval(0.7808, ELSEWHERE), EVAL_CSV: b"id,iou\n1,0.7808\n"})
    assert rows[EVAL_JSON].kind == EQUIVALENT
    assert "metrics.iou.mean (0.779 -> 0.7808)" in rows[EVAL_JSON].verdict
    assert rows[EVAL_JSON].verdict.endswith("[platform A]")
    # the per-image CSV has no metrics of its own: judged by the stage's metrics file
    assert rows[EVAL_CSV].kind == EQUIVALENT and f"as {EVAL_JSON}" in rows[EVAL_CSV].verdict
    table = report.table()
    assert "platform A: recorded on another platform" in table
    assert f"cpu_model: {HERE['cpu_model']} -> Other CPU 9000" in table and "threads: 2 -> 8" in table
    assert "torch:" not in table  # only the fields that differ
    assert report.ok and "2 equivalent. Verified" in table and "exit status 0" in table


def test_other_bytes_on_the_same_platform_are_different(tmp_path):
    rows, report = _judge(tmp_path, {EVAL_JSON: _eval(0.779), EVAL_CSV: b"id,iou\n1,0.779\n"},
                          {EVAL_JSON: _eval(0.7808), EVAL_CSV: b"id,iou\n1,0.7808\n"})
    assert rows[EVAL_JSON].kind == DIFFERENT and "same platform" in rows[EVAL_JSON].verdict
    assert rows[EVAL_CSV].kind == DIFFERENT
    assert not report.ok and "NOT verified: 2 output(s) different; exit status 1." in report.table()
    # a metrics file identical to the record (hence the same platform) cannot vouch for a CSV
    rows, _ = _judge(tmp_path / "b", {EVAL_JSON: _eval(), EVAL_CSV: b"id,iou\n1,0.779\n"},
                     {EVAL_JSON: _eval(), EVAL_CSV: b"id,iou\n1,0.7808\n"})
    assert rows[EVAL_JSON].kind == IDENTICAL and rows[EVAL_CSV].kind == DIFFERENT
    assert "same platform" in rows[EVAL_CSV].verdict


@pytest.mark.parametrize("recomputed, why", [
    (_eval(0.80, ELSEWHERE), "max gap 0.021 at metrics.iou.mean (0.779 -> 0.8) > 0.01"),
    (_eval(0.779, ELSEWHERE, n_images=19), "fields differ: n_images"),
    (_eval(0.779, None), "no platform fingerprint in the recomputed output"),
])
def test_another_platform_is_not_enough(tmp_path, recomputed, why):
    rows, report = _judge(tmp_path, {EVAL_JSON: _eval(0.779), EVAL_CSV: b"a"}, {EVAL_JSON: recomputed,
                                                                                 EVAL_CSV: b"b"})
    assert rows[EVAL_JSON].kind == DIFFERENT and why in rows[EVAL_JSON].verdict
    assert rows[EVAL_CSV].kind == DIFFERENT and f"{EVAL_JSON} is different" in rows[EVAL_CSV].verdict
    assert not report.ok


def test_metric_tolerance_is_the_callers(tmp_path):
    rec, new = {EVAL_JSON: _eval(0.779)}, {EVAL_JSON: _eval(0.80, ELSEWHERE)}
    assert _judge(tmp_path / "a", rec, new, metric_tolerance=0.05)[0][EVAL_JSON].kind == EQUIVALENT
    assert _judge(tmp_path / "b", rec, new, metric_tolerance=0.001)[0][EVAL_JSON].kind == DIFFERENT


def test_checkpoints_are_judged_by_their_metadata(tmp_path):
    ckpt, live = "models/synth/unet.pt", "results/train/synth/unet/metrics.json"
    live_json = json_dumps({"best/val_iou": 0.70, "platform": HERE}).encode()
    # weights differ (any last bit does that), validation IoU within tolerance, another platform
    rows, report = _judge(tmp_path / "a", {ckpt: _checkpoint(0.70, HERE), live: live_json},
                          {ckpt: _checkpoint(0.704, ELSEWHERE),
                           live: json_dumps({"best/val_iou": 0.704, "platform": ELSEWHERE}).encode()},
                          stage="train@unet-synth")
    assert rows[ckpt].kind == EQUIVALENT and "val_iou" in rows[ckpt].verdict and report.ok
    # the same platform: a failure, however small the difference
    rows, _ = _judge(tmp_path / "b", {ckpt: _checkpoint(0.70, HERE)}, {ckpt: _checkpoint(0.70, HERE)},
                     stage="train@unet-synth")
    assert rows[ckpt].kind == DIFFERENT and "same platform" in rows[ckpt].verdict
    # another architecture is never equivalent
    rows, _ = _judge(tmp_path / "c", {ckpt: _checkpoint(0.70, HERE)}, {ckpt: _checkpoint(0.70, ELSEWHERE, (3, 3))},
                     stage="train@unet-synth")
    assert rows[ckpt].kind == DIFFERENT and "state_dict_shapes" in rows[ckpt].verdict


def test_an_output_without_metrics_to_judge_it_by_is_different(tmp_path):
    rows, report = _judge(tmp_path, {"data/prepared/synth/images.npy": b"a"},
                          {"data/prepared/synth/images.npy": b"b"}, stage="prepare@synth")
    assert rows["data/prepared/synth/images.npy"].kind == DIFFERENT
    assert "no metrics file" in rows["data/prepared/synth/images.npy"].verdict


# --- interruption --------------------------------------------------------------------------------

def test_sigint_runs_the_cleanup_then_reaches_the_old_handler():
    # Python's own SIGINT handler, as in a terminal: a test run started as a background job
    # inherits SIGINT ignored, which interruptible() rightly leaves alone (tested below)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cleaned = []
        with pytest.raises(KeyboardInterrupt):
            with interruptible():
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)
                    pytest.fail("SIGINT did not interrupt the block")
                finally:
                    cleaned.append(True)
        assert cleaned and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_sigterm_to_a_handler_that_returns_is_an_error_not_half_a_report():
    seen = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(UbenchError, match="interrupted \\(SIGTERM\\)"):
            with interruptible():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        assert seen == [signal.SIGTERM]  # delivered again, to the old handler, once
    finally:
        signal.signal(signal.SIGTERM, before)


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interruptible():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def _rows(stdout: str) -> dict[tuple[str, str], str]:
    """(stage, output) -> the rest of the line (recorded, recomputed, verdict)."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and ("@" in parts[0] or parts[0] in {"leaderboard", "uscore"}) and "/" in parts[1]:
            rows[(parts[0], parts[1])] = " ".join(parts[2:])
    return rows


def _snapshot(repo: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of every file but DVC's and git's scratch state."""
    snap = {}
    for p in repo.rglob("*"):
        rel = p.relative_to(repo).as_posix()
        if p.is_file() and not rel.startswith((".dvc/tmp/", ".git/")):
            st = p.stat()
            snap[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return snap


def test_verify_recorded_stages_match(tiny_repo):
    repo = tiny_repo.path
    before = _snapshot(repo)
    # any measured difference accepted: on a shared machine the FPS recorded by the fixture's
    # `dvc repro` and the one measured here can differ twofold, and their interquartile spreads (a
    # noise figure) by anything; the tolerance rule is tested above, here the computed fields, the
    # labels and the untouched workspace
    r = run_in(repo, "ubench", "verify", "--tolerance", "1",
               "prepare@synth", "complexity@unet", "evaluate@unet-synth", "speed@unet", "uscore")
    rows = _rows(r.stdout)
    # same machine: byte-identical
    assert rows[("prepare@synth", "data/prepared/synth")].endswith("identical")
    assert ".dir" in rows[("prepare@synth", "data/prepared/synth")]
    for out in ("results/complexity/unet.json",):
        assert rows[("complexity@unet", out)].endswith("identical")
    for out in ("results/eval/synth/unet.json", "results/per_image/synth/unet.csv"):
        assert rows[("evaluate@unet-synth", out)].endswith("identical")
    speed = rows[("speed@unet", "results/speed/unet.json")]
    # labelled as a measurement, with the recorded device and this one
    assert "equivalent: measured, within ±100%" in speed
    assert speed.count("cpu x86_64") + speed.count("cuda") == 2 and speed.count("FPS") == 2
    assert "measured" in rows[("uscore", "results/uscore.json")]
    assert "measured" in rows[("uscore", "metrics/uscore.json")]  # the summary: U-Scores follow FPS
    assert "not compared" in rows[("uscore", "reports/uscore.md")]
    assert "Verified: every output is identical or equivalent" in r.stdout and "exit status 0" in r.stdout
    assert "platform A" not in r.stdout
    # the recorded computed outputs carry this machine's fingerprint
    recorded = json.loads((repo / "results/eval/synth/unet.json").read_text())
    assert recorded["platform"] == platform_fingerprint("cpu", threads=2)
    assert _snapshot(repo) == before, "verify changed the workspace or the DVC cache"


def test_verify_reports_tampered_lock_and_changed_param(tiny_copy):
    lock_file = tiny_copy / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text())
    out = lock["stages"]["prepare@synth_shift"]["outs"][0]
    out["md5"] = ("0" if out["md5"][0] != "0" else "1") + out["md5"][1:]  # one changed character
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))
    params = yaml.safe_load((tiny_copy / "params.yaml").read_text())
    params["efficiency"]["input_size"] = 32  # complexity@unet now computes other FLOPs
    (tiny_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    r = run_in(tiny_copy, "ubench", "verify", "--quiet", "prepare@synth", "prepare@synth_shift",
               "complexity@unet", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    assert rows[("prepare@synth", "data/prepared/synth")].endswith("identical")
    assert "different: other bytes, and the stage writes no metrics file" in \
        rows[("prepare@synth_shift", "data/prepared/synth_shift")]
    complexity = rows[("complexity@unet", "results/complexity/unet.json")]
    assert complexity.endswith("different: inputs differ from dvc.lock")
    assert "complexity@unet: inputs differ from dvc.lock: param efficiency.input_size" in r.stdout
    assert "NOT verified: 2 output(s) different; exit status 1." in r.stdout


def _fake_recorded(repo: Path, stage: str, path: str, edit) -> None:
    """Make dvc.lock record ``edit(bytes)`` as ``path``'s output of ``stage``: the new bytes go to
    the DVC cache (a new object; the existing ones are hard links shared with the clone), where
    `ubench verify` looks first."""
    from ubench.verify import cache_dir

    lock_file = repo / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text())
    out = next(o for o in lock["stages"][stage]["outs"] if o["path"] == path)
    cache = cache_dir(repo)
    recorded = cache_object(cache, out["md5"])  # a `cache: false` output: the workspace (git) copy
    data = edit(recorded.read_bytes() if recorded.is_file() else (repo / path).read_bytes())
    out["md5"], out["size"] = hashlib.md5(data).hexdigest(), len(data)
    obj = cache_object(cache, out["md5"])
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(data)
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))


def _other_platform(iou_shift: float, platform: dict | None = None):
    """An edit of a recorded eval JSON: IoU shifted, fingerprint replaced (when given)."""
    def edit(data: bytes) -> bytes:
        doc = json.loads(data)
        doc["metrics"]["iou"]["mean"] += iou_shift
        if platform is not None:
            doc["platform"] = {**doc["platform"], **platform}
        return json_dumps(doc).encode()
    return edit


def test_verify_three_verdicts_on_faked_recorded_platforms(tiny_copy):
    """Recorded outputs faked to come from another CPU (other model, no AVX-512, 8 threads):
    within the metric tolerance they are equivalent, the per-image CSV with them; the same shift
    on this machine's own fingerprint is different; an output left alone is identical."""
    elsewhere = {"cpu_model": "Other CPU 9000", "threads": 8, "cpu_flags": "avx avx2 fma"}
    _fake_recorded(tiny_copy, "evaluate@unet-synth", "results/eval/synth/unet.json",
                   _other_platform(-0.0018, elsewhere))
    _fake_recorded(tiny_copy, "evaluate@unet-synth", "results/per_image/synth/unet.csv",
                   lambda b: b.replace(b"\n", b"\r\n", 1))  # other bytes, same numbers
    _fake_recorded(tiny_copy, "evaluate@attention_unet-synth", "results/eval/synth/attention_unet.json",
                   _other_platform(-0.0018))  # this machine's own fingerprint
    r = run_in(tiny_copy, "ubench", "verify", "--quiet", "evaluate@unet-synth", "evaluate@attention_unet-synth",
               check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    unet = rows[("evaluate@unet-synth", "results/eval/synth/unet.json")]
    assert unet.startswith(tuple("0123456789abcdef")) and "equivalent: max gap 0.0018 at metrics.iou.mean" in unet
    assert unet.endswith("[platform A]")
    assert "equivalent: as results/eval/synth/unet.json [platform A]" in \
        rows[("evaluate@unet-synth", "results/per_image/synth/unet.csv")]
    att = rows[("evaluate@attention_unet-synth", "results/eval/synth/attention_unet.json")]
    assert "different: other bytes on the same platform" in att
    assert rows[("evaluate@attention_unet-synth", "results/per_image/synth/attention_unet.csv")].endswith(
        "identical")
    here = platform_fingerprint("cpu", threads=2)
    assert f"  cpu_model: Other CPU 9000 -> {here['cpu_model']}" in r.stdout
    assert "  threads: 8 -> 2" in r.stdout and "  cpu_flags: only recorded: -; only this run:" in r.stdout
    assert "1 identical, 2 equivalent, 1 different. NOT verified: 1 output(s) different" in r.stdout
    print(r.stdout)  # the table, for the record (pytest -s)


def _processes_in(folder: Path) -> dict[int, str]:
    """{pid: command line} of the processes whose working directory is ``folder`` (Linux)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == folder:
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _wait_for(what, timeout: float):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    return None


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads /proc")
def test_sigterm_removes_the_scratch_workspace_and_the_stage_processes(tiny_repo, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(["ubench", "verify", "--quiet", "--workdir", str(work), "train@unet-synth"],
                            cwd=tiny_repo.path, env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        scratch = _wait_for(lambda: next(work.iterdir(), None), 120)
        assert scratch is not None, "verify made no scratch workspace"
        # wait until dvc runs the stage itself, so that its processes must be ended too
        stage = _wait_for(lambda: {p: c for p, c in _processes_in(scratch).items() if "ubench train" in c}, 120)
        assert stage, f"the train stage never started in {scratch}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM, err  # ended by the signal, as without the handler
    assert list(work.iterdir()) == [], "the scratch workspace was left behind"
    assert _wait_for(lambda: not any(_alive(p) for p in stage), 10), f"stage processes left: {stage}"
    time.sleep(1)
    assert list(work.iterdir()) == [], "something wrote into the scratch folder after its removal"
