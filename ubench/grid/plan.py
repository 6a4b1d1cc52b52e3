"""What a grid run has to do: the out-of-date stages, grouped into tasks, in dependency order.

Why not one task per stage: a task runs in a workspace of its own and pays a DVC start-up, a copy
and a checkout of its inputs; a model's evaluation and zero-shot runs read its checkpoint, so they
run in the task that trains it (one transfer instead of three). The grouping rule is structural, so
it holds for any dvc.yaml:

- a *source* stage has no upstream stage with a command besides the prelude (``prepare@*``,
  ``prepare_raw@*`` below the data pin ``data.dvc``, ``complexity@*``, ``speed@*``). The prelude,
  ``code`` (the source digests every stage depends on), is run by the driver before planning;
- an out-of-date stage joins the task of its out-of-date non-source upstream stages when they all
  are in one task (``evaluate@m-d`` and ``zeroshot@m-pairN`` join ``train@m-d``; ``uscore`` joins
  ``leaderboard``); otherwise it heads a task of its own.

Sources never take joiners, so what a joiner adds to its task's inputs comes from source tasks,
which depend on nothing: the tasks form a DAG because the stages do.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path

from ubench.errors import UbenchError, unknown_name_error

PRELUDE = ("code",)  # quick stages every stage depends on: the driver runs them in place first


@dataclass(frozen=True)
class Stage:
    """One stage of dvc.yaml as a grid run needs it (``foreach``/``matrix`` expanded)."""

    name: str
    deps: tuple[str, ...]
    outs: tuple[tuple[str, bool], ...]  # (path, cached in DVC)
    runnable: bool = True  # has a command (a .dvc file only tracks data)


@dataclass
class Task:
    """Stages run together, in this order, in one workspace."""

    id: str
    stages: list[str]
    after: set[str] = field(default_factory=set)  # ids of the tasks that must finish first
    inputs: list[str] = field(default_factory=list)  # stages whose cached outputs to check out first
    cached_outs: list[str] = field(default_factory=list)
    uncached_outs: list[str] = field(default_factory=list)


def upstream(stages: dict[str, Stage]) -> dict[str, set[str]]:
    """{stage: the stages producing one of its deps}, from paths, as DVC links them: a dep is an
    output, lies inside one, or is a folder holding some. Indexed, so that the full grid's 6,000
    stages take well under a second."""
    producer: dict[str, str] = {}
    for s in stages.values():
        for o, _ in s.outs:
            producer[o.rstrip("/")] = s.name
    ordered = sorted(producer)
    found: dict[str, set[str]] = {}

    def producers_of(dep: str) -> set[str]:
        if dep not in found:
            hits = set()
            parts = dep.split("/")
            for i in range(1, len(parts) + 1):  # the dep itself, or an output folder above it
                hit = producer.get("/".join(parts[:i]))
                if hit:
                    hits.add(hit)
            prefix = dep + "/"
            i = bisect.bisect_left(ordered, prefix)  # outputs inside a dep folder
            while i < len(ordered) and ordered[i].startswith(prefix):
                hits.add(producer[ordered[i]])
                i += 1
            found[dep] = hits
        return found[dep]

    return {s.name: {p for d in s.deps for p in producers_of(d.rstrip("/")) if p != s.name}
            for s in stages.values()}


def select(stages: dict[str, Stage], names: list[str]) -> list[str]:
    """Stage names from exact names or group names (``train`` = every ``train@...``)."""
    groups: dict[str, list[str]] = {}
    for s in stages:
        groups.setdefault(s.split("@", 1)[0], []).append(s)
    chosen: list[str] = []
    for name in names:
        hits = [name] if name in stages else groups.get(name)
        if not hits:
            raise unknown_name_error("stage", name, sorted(set(stages) | set(groups)),
                                     "name a stage of dvc.yaml or a group such as `train` (`dvc stage list`)")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def out_of_date(stages: dict[str, Stage], status: dict, targets: list[str] | None = None) -> list[str]:
    """The stages `dvc repro [targets]` may run, upstream first: those ``dvc status`` reports and
    everything downstream of them (a stage whose input is about to change), limited to the targets
    and their upstream. A stage whose input turns out unchanged is skipped by DVC in its task."""
    parents = upstream(stages)
    children: dict[str, set[str]] = {s: set() for s in stages}
    for s, ps in parents.items():
        for p in ps:
            children[p].add(s)
    stale = _closure({s for s in status if s in stages}, children)
    if targets:
        stale &= _closure(set(select(stages, targets)), parents)
    order = list(TopologicalSorter({s: parents[s] for s in stages}).static_order())
    return [s for s in order if s in stale and stages[s].runnable]


def missing_outputs(stages: dict[str, Stage], status: dict) -> list[str]:
    """Stages to check out rather than rerun: those whose changes in ``dvc status`` are only
    cached outputs of their own that are gone, and inputs that are gone (another such stage's
    outputs): what a driver killed before its final checkout leaves. Checking one out touches
    only its deleted outputs, so nothing the user changed is overwritten; whatever is still out
    of date afterwards (an input really deleted) is left to the run."""
    out: list[str] = []
    for name, changes in status.items():
        if name not in stages or not stages[name].runnable:
            continue
        cached = {o for o, c in stages[name].outs if c}
        gone, ok = False, True
        for change in changes:
            kind, paths = next(iter(change.items())) if isinstance(change, dict) and len(change) == 1 else ("", {})
            if kind == "changed outs" and all(v == "deleted" and p in cached for p, v in paths.items()):
                gone = True
            elif not (kind == "changed deps" and all(v == "deleted" for v in paths.values())):
                ok = False
        if ok and gone:
            out.append(name)
    return sorted(out)


def _closure(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    """``start`` and everything reachable from it along ``edges``."""
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def group(stages: dict[str, Stage], todo: list[str]) -> list[Task]:
    """Tasks for the out-of-date stages ``todo`` (upstream first), by the module's rule."""
    parents = upstream(stages)
    source = {s for s, ps in parents.items() if not any(stages[p].runnable and p not in PRELUDE for p in ps)}
    todo_set = set(todo)
    task_of: dict[str, str] = {}
    tasks: dict[str, Task] = {}
    for s in todo:
        heads = {task_of[p] for p in parents[s] if p in todo_set and p not in source}
        if s not in source and len(heads) == 1:
            tid = heads.pop()
            tasks[tid].stages.append(s)
        else:
            tid = s
            tasks[tid] = Task(id=tid, stages=[s])
        task_of[s] = tid
    for t in tasks.values():
        members = set(t.stages)
        for s in t.stages:
            for p in parents[s]:
                if p in members:
                    continue
                if p in todo_set:
                    t.after.add(task_of[p])
                # by stage name: DVC resolves a stage name from its own dvc.yaml entry (1 s on the
                # full grid) but a path only by loading every stage (49 s); only stages with
                # cached outputs (the others travel with the workspace's files)
                if any(cached for _, cached in stages[p].outs):
                    t.inputs.append(p)
            t.cached_outs += [o for o, cached in stages[s].outs if cached]
            t.uncached_outs += [o for o, cached in stages[s].outs if not cached]
        t.inputs = list(dict.fromkeys(t.inputs))
    return list(tasks.values())


def read_repo(root: Path, status: bool = True) -> tuple[dict[str, Stage], dict]:
    """Every stage of the repository (dvc.yaml and .dvc files, through DVC's own resolution) and,
    with ``status``, one ``dvc status`` of all of them, from one loading of DVC's index (on the
    full grid, loading it is most of what a ``dvc status`` costs)."""
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except Exception as exc:  # noqa: BLE001 - DVC's many NotDvcRepo/config errors
        raise UbenchError(f"{root} is not a DVC repository DVC can read ({exc})",
                          "run `ubench grid run` in the ubench repository (where dvc.yaml is)") from exc
    with repo:
        out: dict[str, Stage] = {}
        for st in repo.index.stages:
            out[st.addressing] = Stage(
                name=st.addressing,
                deps=tuple(d.def_path for d in st.deps),
                outs=tuple((o.def_path, bool(o.use_cache)) for o in st.outs),
                runnable=bool(getattr(st, "cmd", None)))
        return out, (repo.status() if status else {})


def dvc_status(root: Path) -> dict:
    """One ``dvc status`` of the whole repository."""
    return read_repo(root)[1]
