"""`ubench grid run`: the plan (unit tests), and the tiny grid run by local workers and by Ray
against the sequential `dvc repro` of the same machine (``tiny_repo``): same hashes, a killed worker
retried, a failing task reported while the rest finishes, a rerun that runs only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import clone_tiny, free_port, repo_env, run_in
from ubench.errors import UbenchError
from ubench.grid import plan
from ubench.grid.driver import merge_lock
from ubench.verify import is_measured

# --- the plan -------------------------------------------------------------------------------------


def _stage(name, deps=(), outs=(), uncached=()):
    return plan.Stage(name, tuple(deps), tuple((o, True) for o in outs) + tuple((o, False) for o in uncached))


def _toy() -> dict[str, plan.Stage]:
    """ubench's shape: source digests, data pin, prepare, a model chain with a transfer, aggregates."""
    stages = [
        _stage("code", ["ubench"], [], ["results/code"]),
        plan.Stage("data.dvc", (), (("data/raw", True),), runnable=False),
        _stage("prepare@a", ["results/code/prepare.json"], ["data/prepared/a"]),
        _stage("prepare@b", ["results/code/prepare.json"], ["data/prepared/b"]),
        _stage("prepare_raw@r", ["results/code/prepare.json", "data/raw/r"], ["data/prepared/r"]),
        _stage("train@m-a", ["results/code/train/m.json", "data/prepared/a"], ["models/a/m.pt"], ["results/train/a/m"]),
        _stage("evaluate@m-a", ["models/a/m.pt", "data/prepared/a"], ["results/per_image/a/m.csv"],
               ["results/eval/a/m.json"]),
        _stage("zeroshot@m-pair0", ["models/a/m.pt", "data/prepared/b"], ["results/zeroshot/a/b/m.csv"]),
        _stage("train@m-r", ["results/code/train/m.json", "data/prepared/r"], ["models/r/m.pt"]),
        _stage("evaluate@m-r", ["models/r/m.pt", "data/prepared/r"], [], ["results/eval/r/m.json"]),
        _stage("speed@m", ["results/code/efficiency/m.json"], [], ["results/speed/m.json"]),
        _stage("leaderboard", ["results/per_image", "results/eval"], [], ["results/leaderboard.json"]),
        _stage("uscore", ["results/leaderboard.json", "results/speed"], [], ["results/uscore.json"]),
        _stage("report", ["results/uscore.json", "results/train"], [], ["reports/index.html"]),
    ]
    return {s.name: s for s in stages}


def test_upstream_links_files_folders_and_outputs_inside_a_dep_folder():
    up = plan.upstream(_toy())
    assert up["zeroshot@m-pair0"] == {"train@m-a", "prepare@b"}
    assert up["prepare_raw@r"] == {"data.dvc", "code"}  # a dep inside an output folder
    assert up["leaderboard"] == {"evaluate@m-a", "evaluate@m-r"}  # outputs inside a dep folder
    assert up["report"] == {"uscore", "train@m-a"}
    assert up["prepare@a"] == {"code"}


def test_everything_out_of_date_groups_a_models_chain_into_one_task():
    stages = _toy()
    todo = plan.out_of_date(stages, {s: [] for s in stages})
    assert "data.dvc" not in todo  # a data pin has no command: never scheduled
    tasks = {t.id: t for t in plan.group(stages, todo)}
    assert tasks["train@m-a"].stages == ["train@m-a", "evaluate@m-a", "zeroshot@m-pair0"]
    assert tasks["train@m-a"].after == {"prepare@a", "prepare@b", "code"}
    assert tasks["prepare@a"].stages == ["prepare@a"]  # below the prelude `code`, still a source
    assert tasks["train@m-a"].inputs == ["prepare@a", "prepare@b"]  # by stage name
    assert tasks["train@m-a"].uncached_outs == ["results/train/a/m", "results/eval/a/m.json"]
    assert tasks["leaderboard"].stages == ["leaderboard", "uscore"]  # uscore's other input is a source
    assert tasks["leaderboard"].after == {"train@m-a", "train@m-r", "speed@m"}
    assert tasks["report"].after == {"leaderboard", "train@m-a"}
    assert tasks["prepare_raw@r"].inputs == ["data.dvc"]
    order = [t.id for t in plan.group(stages, todo)]
    for t in tasks.values():  # the tasks come upstream first
        assert all(order.index(a) < order.index(t.id) for a in t.after)


def test_a_changed_model_reruns_its_chain_and_the_aggregates_only():
    stages = _toy()
    todo = plan.out_of_date(stages, {"train@m-a": [{"changed deps": {"results/code/train/m.json": "modified"}}]})
    assert todo == ["train@m-a", "evaluate@m-a", "zeroshot@m-pair0", "leaderboard", "uscore", "report"]
    tasks = {t.id: t for t in plan.group(stages, todo)}
    assert tasks["train@m-a"].after == set()  # its inputs are up to date: checked out, not waited for
    # with one chain out of date, the aggregates have a single upstream task and join it
    assert [t.stages for t in tasks.values()] == [todo]


def test_targets_limit_the_run_to_them_and_their_upstream():
    stages = _toy()
    todo = plan.out_of_date(stages, {s: [] for s in stages}, targets=["evaluate@m-a"])
    assert todo == ["code", "prepare@a", "train@m-a", "evaluate@m-a"]
    todo = plan.out_of_date(stages, {s: [] for s in stages}, targets=["evaluate"])  # a group
    assert set(todo) == {"code", "prepare@a", "train@m-a", "evaluate@m-a", "prepare_raw@r", "train@m-r", "evaluate@m-r"}
    with pytest.raises(UbenchError) as err:
        plan.out_of_date(stages, {}, targets=["evaluat"])
    assert "evaluate" in err.value.fix or "evaluate" in err.value.what


def test_only_deleted_cached_outputs_are_checked_out_instead_of_rerun():
    stages = _toy()
    status = {
        "train@m-a": [{"changed outs": {"models/a/m.pt": "deleted"}}],  # a killed driver's leftover
        "evaluate@m-a": [{"changed outs": {"results/per_image/a/m.csv": "modified"}}],  # the user's edit
        "train@m-r": [{"changed deps": {"results/code/train/m.json": "modified"}},
                      {"changed outs": {"models/r/m.pt": "deleted"}}],
        "speed@m": [{"changed outs": {"results/speed/m.json": "deleted"}}],  # in git, not in the cache
    }
    status["evaluate@m-r"] = [{"changed deps": {"models/r/m.pt": "deleted"}},  # its input is gone too
                              {"changed outs": {"results/eval/r/m.json": "deleted"}}]  # uncached
    status["zeroshot@m-pair0"] = [{"changed deps": {"models/a/m.pt": "deleted"}},
                                  {"changed outs": {"results/zeroshot/a/b/m.csv": "deleted"}}]
    assert plan.missing_outputs(stages, status) == ["train@m-a", "zeroshot@m-pair0"]


def test_merged_lock_entries_keep_dvcs_order_and_read_back(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  a:\n    cmd: x\n  b:\n    cmd: y\n")
    entry = {"cmd": "z", "deps": [{"path": "p", "hash": "md5", "md5": "0" * 32, "size": 1}]}
    merge_lock(tmp_path, {"b": {"cmd": "y2"}, "c": entry})
    data = yaml.safe_load(lock.read_text())
    assert list(data["stages"]) == ["a", "b", "c"] and data["stages"]["b"] == {"cmd": "y2"}
    assert data["stages"]["c"] == entry and data["schema"] == "2.0"
    assert not list(tmp_path.glob(".dvc.lock*"))  # written through a temp file, nothing left


def test_recording_a_task_replaces_its_uncached_outputs_as_a_set(tmp_path):
    from ubench.grid.driver import record

    (tmp_path / "results/train/a/m").mkdir(parents=True)
    (tmp_path / "results/train/a/m/stale.json").write_text("from an earlier run")
    task = plan.Task("train@m-a", ["train@m-a"], uncached_outs=["results/train/a/m", "results/eval/a/m.json"])
    files = {"results/train/a/m/metrics.json": b"{}", "results/train/a/m/plots/iou.tsv": b"1\n",
             "results/eval/a/m.json": b'{"iou": 0.5}'}
    record(tmp_path, task, {"files": files, "entries": {"train@m-a": {"cmd": "ubench train"}}})
    got = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in (tmp_path / "results").rglob("*") if p.is_file()}
    assert got == files  # the folder is replaced, not merged: no stale file stays
    assert yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"] == {"train@m-a": {"cmd": "ubench train"}}


def test_remote_urls_become_absolute_for_a_workspace_elsewhere(tmp_path):
    from ubench.scratch import absolute_remotes

    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(
        "[core]\n    remote = local\n['remote \"local\"']\n    url = ../../store\n"
        "['remote \"s3\"']\n    url = s3://bucket/x\n")
    (tmp_path / ".dvc" / "config.local").write_text(
        "['remote \"s3\"']\n    url = s3://mine/y\n    access_key_id = KEY\n")
    assert absolute_remotes(tmp_path) == {"local": {"url": str(tmp_path.parent / "store")},
                                          "s3": {"url": "s3://mine/y", "access_key_id": "KEY"}}
    from dvc.repo import Repo

    from ubench.scratch import write_dvc_config

    write_dvc_config(tmp_path / "ws", remotes=absolute_remotes(tmp_path), default_remote="s3")
    with Repo(str(tmp_path / "ws")) as repo:  # DVC reads it back: every option, the default remote
        assert repo.config["core"]["remote"] == "s3"
        assert repo.config["remote"]["s3"]["access_key_id"] == "KEY"
        assert repo.config["remote"]["local"]["url"] == str(tmp_path.parent / "store")


def test_local_slots_split_gpus_and_refuse_what_the_machine_lacks(tmp_path, monkeypatch):
    from ubench.grid import driver
    from ubench.grid.task import Transport

    monkeypatch.setattr(driver, "visible_gpus", lambda: ["0", "1", "2", "3"])
    monkeypatch.setattr(driver, "_train_threads", lambda root: 2)
    ex = driver.local_executor(tmp_path, Transport("cache", cache=str(tmp_path)), None, 2, None, 0, [])
    assert [s.gpus for s in ex.slots] == [["0", "1"], ["2", "3"]]
    assert all(len(s.cpus) >= 1 for s in ex.slots)  # train.threads > 0: pinned to a share
    with pytest.raises(UbenchError, match="needs 6 GPUs"):
        driver.local_executor(tmp_path, Transport("cache"), 3, 2, None, 0, [])
    with pytest.raises(UbenchError, match="shows 4 GPU"):
        driver.local_executor(tmp_path, Transport("cache"), None, 5, None, 0, [])
    notes: list[str] = []
    monkeypatch.setattr(driver, "_train_threads", lambda root: 0)
    ex = driver.local_executor(tmp_path, Transport("cache"), 2, 0, None, 0, notes)
    assert all(s.cpus == [] for s in ex.slots) and "not pinned" in notes[0]


def test_workspaces_of_tasks_no_longer_planned_are_removed(tmp_path):
    """A driver killed after recording a task leaves its workspace; the next run removes it, and
    keeps those of the tasks it plans (their resume states)."""
    from ubench.grid.executors import LocalExecutor, safe_name
    from ubench.grid.task import Transport

    ex = LocalExecutor(tmp_path, Transport("cache", cache=str(tmp_path)), 1, 0, [], 0, [], 0)
    work = tmp_path / ".ubench" / "grid" / "work"
    for tid in ("prepare@synth", "train@unet-synth"):
        (work / safe_name(tid) / "ws").mkdir(parents=True)
    ex.prune({"train@unet-synth"})
    assert sorted(p.name for p in work.iterdir()) == [safe_name("train@unet-synth")]


def test_progress_is_a_live_table_on_a_terminal_and_lines_elsewhere():
    import io
    import re

    from ubench.grid.executors import Running
    from ubench.grid.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    now = time.monotonic()
    running = [Running("train@unet-synth", 2, now - 75, "GPU 1")]
    term = Terminal()
    p = Progress(5, 9, term)
    p.finished(3, 60.0)
    p.update(running)
    p.close()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.getvalue())
    assert "stages 3/9 done" in shown and "1 running" in shown and "ETA 4:00" in shown  # 4 tasks x 60 s
    assert re.search(r"train@unet-synth\s*│\s*2\s*│\s*GPU 1\s*│\s*1:15", shown)
    log = io.StringIO()  # a CI log: events and summaries as lines, no terminal codes
    p = Progress(5, 9, log, every=0)
    p.event("done prepare@synth (1 stage(s), 4 s)")
    p.update(running)
    assert log.getvalue().splitlines()[0] == "done prepare@synth (1 stage(s), 4 s)"
    assert "tasks 0/5 done, 1 running" in log.getvalue() and "\x1b" not in log.getvalue()


def test_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    from ubench.grid.executors import RayExecutor
    from ubench.grid.task import Transport

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UbenchError) as err:
        RayExecutor(Transport("remote"), None, 0, 0, 1)
    assert "[ray]" in err.value.fix


def test_ray_without_an_address_starts_its_own_cluster_whatever_ray_start_left(monkeypatch):
    """A `ray start` (the Slurm script's, a user's) records its cluster's address on the machine,
    and leaves it there when it is killed; ray.init() would join that cluster (or fail on a dead
    one, or refuse num_cpus). Without --address the executor starts a cluster of its own."""
    pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")
    import shutil
    import tempfile

    from ubench.grid.executors import RayExecutor
    from ubench.grid.task import Transport

    short = Path(tempfile.mkdtemp(prefix="rt"))  # Ray's sockets live under it: paths of <= 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", str(short))  # Ray's temporary folder, /tmp/ray by default
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (short / "ray").mkdir()
    (short / "ray" / "ray_current_cluster").write_text("192.0.2.1:6379")  # a dead `ray start`'s
    try:
        ex = RayExecutor(Transport("remote"), None, 0, 0, 1, local_cpus=1)
        try:
            assert ex.started_ray and ex.ray.cluster_resources().get("CPU") == 1
            assert ex.capacity == 2
        finally:
            ex.shutdown()
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_ray_needs_a_remote(tmp_path):
    from ubench.grid.driver import _transport

    run_in(tmp_path, "git", "init", "-q")
    run_in(tmp_path, "dvc", "init", "-q")
    with pytest.raises(UbenchError) as err:
        _transport(tmp_path, "ray", None)
    assert "dvc remote add" in err.value.fix


# --- the tiny grid, end to end --------------------------------------------------------------------

def _computed(lock: dict) -> dict[tuple[str, str], str]:
    """(stage, path) -> md5 of every output of every computed stage (not the measured ones)."""
    return {(s, o["path"]): o.get("md5") for s, body in lock["stages"].items() if not is_measured(s)
            for o in body.get("outs", [])}


def _stages_out_of_date(repo: Path) -> list[str]:
    r = run_in(repo, "dvc", "status", "--json")
    import json

    return sorted(s for s in json.loads(r.stdout or "{}") if s != "data.dvc")


def _procs():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                cwd = os.readlink(f"/proc/{pid}/cwd")
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            yield int(pid), ppid, [c.decode(errors="replace") for c in cmd if c], cwd


def _kill_worker_during_training(where: str, worker: str, stop: threading.Event, killed: list) -> None:
    """SIGKILL, once, the worker (cmdline containing ``worker``) that runs a `ubench train` whose
    folder contains ``where``."""
    while not stop.is_set() and not killed:
        listing = list(_procs())
        procs = {pid: (ppid, cmd) for pid, ppid, cmd, _ in listing}
        for _, ppid, cmd, cwd in listing:
            if where in cwd and any(c.endswith("ubench") for c in cmd[:2]) and "train" in cmd:
                p = ppid
                while p in procs and p > 1:
                    if any(worker in c for c in procs[p][1]):
                        os.kill(p, signal.SIGKILL)
                        killed.append((p, procs[p][1]))
                        return
                    p = procs[p][0]
        time.sleep(0.1)


def _grid(repo: Path, *args: str, kill: tuple[str, str] | None = None, kill_driver_when=None,
          timeout: float = 900, cmd: list[str] | None = None, env: dict | None = None):
    """`ubench grid run ARGS` (or ``cmd``) in ``repo``; ``kill``: (folder, worker) for
    ``_kill_worker_during_training``; ``kill_driver_when``: SIGKILL the driver once it is true."""
    stop, killed = threading.Event(), []
    proc = subprocess.Popen(cmd or ["ubench", "grid", "run", *args], cwd=repo, env=env or repo_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchers = []
    if kill:
        watchers.append(threading.Thread(target=_kill_worker_during_training, args=(*kill, stop, killed)))
    if kill_driver_when:
        def watch_driver():
            while not stop.is_set():
                if kill_driver_when():
                    proc.kill()
                    return
                time.sleep(0.2)
        watchers.append(threading.Thread(target=watch_driver))
    for w in watchers:
        w.daemon = True
        w.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        for w in watchers:
            w.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), killed


def _running_in(repo: Path) -> list:
    return [(p, cmd) for p, _, cmd, cwd in _procs() if str(repo) in cwd and p != os.getpid()]


def test_local_workers_reproduce_the_sequential_hashes_after_a_killed_worker_and_driver(tiny_repo, tmp_path):
    repo = clone_tiny(tmp_path / "repo")
    lock_file = repo / "dvc.lock"

    def a_chain_is_recorded() -> bool:
        return lock_file.exists() and "train@" in lock_file.read_text()

    # run 1: a worker is killed during a training (and retried); the driver is killed once a
    # model's chain is recorded, before it checks any output out
    r, killed = _grid(repo, "--jobs", "2", kill=(str(repo / ".ubench" / "grid" / "work"), "ubench.grid.worker"),
                      kill_driver_when=a_chain_is_recorded)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert killed, "no worker was caught during training"
    assert "the worker ended with signal SIGKILL" in r.stderr and "retrying" in r.stderr  # and said so
    time.sleep(2)
    assert not _running_in(repo)  # the dead driver's workers ended with it
    recorded = [s for s in yaml.safe_load(lock_file.read_text())["stages"] if s.startswith("train@")]
    # run 2 picks up where it stopped: what was recorded is checked out, not rerun
    r2, _ = _grid(repo, "--jobs", "2")
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert "dvc status: clean" in r2.stdout
    for stage in recorded:
        assert f"done {stage}" not in r2.stderr
    assert _stages_out_of_date(repo) == []
    lock = yaml.safe_load(lock_file.read_text())
    assert set(lock["stages"]) == set(tiny_repo.lock["stages"])
    assert _computed(lock) == _computed(tiny_repo.lock)
    assert not _running_in(repo) and not list((repo / ".ubench" / "grid" / "work").iterdir())
    r3, _ = _grid(repo)
    assert r3.returncode == 0 and "nothing to run" in r3.stderr


def test_a_failing_task_is_reported_the_rest_finishes_and_a_rerun_runs_only_it(tiny_repo, tmp_path):
    repo = clone_tiny(tmp_path / "repo")
    model = repo / "ubench" / "models" / "attention_unet.py"
    good = model.read_text()
    marker = "def attention_unet("
    head, tail = good.split(marker, 1)
    signature, body = tail.split("\n", 1)
    model.write_text(head + marker + signature + "\n    raise RuntimeError('broken on purpose')\n" + body)
    targets = ["train@unet-synth", "train@attention_unet-synth"]
    r, _ = _grid(repo, "--jobs", "2", "--retries", "1", *targets)
    assert r.returncode == 1
    assert "FAILED train@attention_unet-synth after 2 attempt(s)" in r.stderr
    log = repo / ".ubench" / "grid" / "logs" / "train@attention_unet-synth.log"
    assert log.exists() and "broken on purpose" in log.read_text() and str(log) in r.stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert "train@unet-synth" in lock and "train@attention_unet-synth" not in lock
    assert _computed({"stages": {"train@unet-synth": lock["train@unet-synth"]}}) == \
        _computed({"stages": {"train@unet-synth": tiny_repo.lock["stages"]["train@unet-synth"]}})
    model.write_text(good)
    r2, _ = _grid(repo, "--jobs", "2", *targets)
    assert r2.returncode in (0, 1), r2.stderr[-3000:]  # 1: stages outside the targets stay out of date
    assert "done train@attention_unet-synth" in r2.stderr
    assert "done train@unet-synth" not in r2.stderr and "done prepare@synth" not in r2.stderr
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock["train@attention_unet-synth"]["outs"] == tiny_repo.lock["stages"]["train@attention_unet-synth"]["outs"]


@pytest.mark.slow  # the default run has the Ray executor in the two-node Slurm test below
def test_ray_reproduces_the_sequential_hashes_after_a_killed_worker(tiny_repo, tmp_path):
    """The Ray executor on a cluster it starts itself (no --address)."""
    pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")
    repo = clone_tiny(tmp_path / "repo")  # its default remote: tmp_path/ubench-dvc-store
    r, killed = _grid(repo, "--executor", "ray", "--jobs", "2", "--cpus-per-job", "1",
                      kill=("ubench-grid-", "ray::"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert killed, "no Ray worker was caught during training"
    assert "dvc status: clean" in r.stdout
    assert _stages_out_of_date(repo) == []
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert _computed(lock) == _computed(tiny_repo.lock)
    assert (tmp_path / "ubench-dvc-store" / "files" / "md5").is_dir()  # data went through the remote


@pytest.mark.slow  # three runs of a grid twice the tiny one's size (about 5 minutes on 2 cores)
def test_two_models_by_two_datasets_local_and_ray_reproduce_the_sequential_hashes(tmp_path):
    """Issue 18's test grid to the letter: 2 models x 2 in-domain datasets and a transfer pair, run
    by `dvc repro`, by `--executor local --jobs 2` and by `--executor ray` in three separate clones
    (no shared cache or remote): the same stages, every computed hash equal, `dvc status` clean."""
    pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")
    repos = {}
    for name in ("sequential", "local", "ray"):
        repo = clone_tiny(tmp_path / name / "repo")
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["grid"].update(datasets=["synth", "synth_small"], synthetic=["synth", "synth_shift", "synth_small"])
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run_in(repo, "git", "commit", "-q", "-am", "2 x 2 grid")
        repos[name] = repo
    run_in(repos["sequential"], "dvc", "repro", timeout=1800)
    reference = yaml.safe_load((repos["sequential"] / "dvc.lock").read_text())
    trained = sorted(s for s in reference["stages"] if s.startswith("train@"))
    assert trained == ["train@attention_unet-synth", "train@attention_unet-synth_small",
                       "train@unet-synth", "train@unet-synth_small"]
    runs = {"local": ("--jobs", "2"), "ray": ("--executor", "ray", "--jobs", "2", "--cpus-per-job", "1")}
    for name, args in runs.items():
        r, _ = _grid(repos[name], *args, timeout=1800)
        assert r.returncode == 0, f"{name}: " + r.stdout[-3000:] + r.stderr[-3000:]
        assert "dvc status: clean" in r.stdout and _stages_out_of_date(repos[name]) == []
        lock = yaml.safe_load((repos[name] / "dvc.lock").read_text())
        assert set(lock["stages"]) == set(reference["stages"]), name
        assert _computed(lock) == _computed(reference), name

# --- Slurm: scripts/slurm_grid.sbatch on a two-node Ray cluster ----------------------------------


SLURM_STANDINS = {
    # `scontrol show hostnames LIST`: the allocation's nodes, one per line
    "scontrol": '[ "$1 $2" = "show hostnames" ] || { echo "scontrol stand-in: $*" >&2; exit 2; }\n'
                'printf "%s\\n" node1 node2\n',
    # `srun --nodes=1 --ntasks=1 -w NODE CMD...`: CMD here (every "node" is this machine, 127.0.0.1)
    "srun": 'while [ $# -gt 0 ]; do case "$1" in -w) shift 2;; -*) shift;; *) break;; esac; done\n'
            '[ "$1" = hostname ] && { echo 127.0.0.1; exit 0; }\n'
            'exec "$@"\n',
}


def _standins(bin_dir: Path, scripts: dict[str, str]) -> Path:
    """``bin_dir`` holding one executable bash script per name (to put first on PATH)."""
    bin_dir.mkdir()
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\nset -eu\n" + body)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_slurm_script_runs_the_grid_on_a_two_node_ray_cluster(tiny_repo, tmp_path):
    """The shipped sbatch script, run as Slurm would run it on a two-node allocation (scontrol and
    srun stood in for, both "nodes" on this machine): a Ray head and a worker node joined by
    address, the grid's tasks placed on both, a Ray worker SIGKILLed during a training and the task
    retried, every computed hash the sequential `dvc repro`'s, and no Ray process left behind."""
    pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")
    repo = clone_tiny(tmp_path / "repo")
    bin_dir = _standins(tmp_path / "slurm-bin", SLURM_STANDINS)
    port = free_port()
    env = repo_env(PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(repo),
                   SLURM_JOB_NODELIST="node[1-2]", SLURM_CPUS_PER_TASK="1", VENV=sys.prefix,
                   PORT=str(port), GPUS_PER_JOB="0", CPUS_PER_JOB="1", NODES_TIMEOUT="120",
                   RAY_USAGE_STATS_ENABLED="0")
    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm_grid.sbatch"
    r, killed = _grid(tmp_path, cmd=["bash", str(script)], env=env, kill=("ubench-grid-", "ray::"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert killed, "no Ray worker was caught during training"
    assert "ray: 2 of 2 node(s) joined" in r.stdout
    assert "dvc status: clean" in r.stdout
    nodes = {line.rsplit("(node ", 1)[1].rstrip(")") for line in r.stderr.splitlines()
             if line.lstrip().startswith("done ") and "(node " in line}
    assert len(nodes) == 2, r.stderr[-3000:]  # the tasks ran on both nodes
    assert _stages_out_of_date(repo) == []
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert _computed(lock) == _computed(tiny_repo.lock)
    assert (tmp_path / "ubench-dvc-store" / "files" / "md5").is_dir()  # data went through the remote
    time.sleep(2)
    left = [cmd for _, _, cmd, _ in _procs() if any(f"127.0.0.1:{port}" in c or f"port={port}" in c for c in cmd)]
    assert not left, left  # the script's exit ended the Ray processes it started


def test_slurm_script_exits_with_the_grids_status(tmp_path):
    """`set -e` must not swallow a failed grid run: the job's exit status is the driver's, and the
    Ray processes are stopped all the same."""
    bin_dir = _standins(tmp_path / "bin", {
        **SLURM_STANDINS,
        "ray": 'echo "ray $*" >> "$LOG"; [ "$1" = start ] && exec sleep 300; exit 0\n',
        "ubench": 'echo "ubench $*" >> "$LOG"; exit 3\n',
        "python": 'cat > /dev/null; echo "ray: 2 of 2 node(s) joined"\n'})
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")  # the stand-ins stay first on PATH
    log = tmp_path / "calls.log"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(tmp_path),
               SLURM_JOB_NODELIST="node[1-2]", SLURM_CPUS_PER_TASK="4", VENV=str(venv), LOG=str(log),
               GPUS_PER_JOB="1", CPUS_PER_JOB="2")
    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm_grid.sbatch"
    t = time.monotonic()
    r = subprocess.run(["bash", str(script), "train"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert time.monotonic() - t < 30  # the `ray start --block` steps were ended, not waited for
    calls = log.read_text().splitlines()
    assert "ray start --head --node-ip-address=127.0.0.1 --port=6379 --include-dashboard=false --num-cpus=4 " \
           "--num-gpus=0 --block" in calls
    assert "ray start --address=127.0.0.1:6379 --num-cpus=4 --num-gpus=0 --block" in calls
    assert ("ubench grid run --executor ray --address 127.0.0.1:6379 --gpus-per-job 1 "
                         "--cpus-per-job 2 train") in calls
