"""The stages of dvc.yaml as functions: each reads params, calls the library, writes its outputs.

cli.py only parses arguments and calls one of these; tests call them directly.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ubench import paths
from ubench.config import Config, as_dict
from ubench.errors import UbenchError
from ubench.io import atomic_outputs, json_dumps, write_files_atomic, write_json_atomic


def _check_model(name: str, image_size: int | None = None) -> None:
    from ubench.models import create_model, is_model, model_info

    if not is_model(name):
        create_model(name)  # raises the named error with close names
    info = model_info(name)
    if image_size is not None and not info.accepts(image_size):
        sizes = (f"one of {list(info.input_sizes)}" if info.input_sizes
                 else f"a multiple of {info.size_multiple}")
        raise UbenchError(f"model {name!r} does not accept {image_size}x{image_size} inputs",
                          f"set data.image_size to {sizes} (or drop {name} from grid.models)")


def _efficiency_size(cfg: Config, name: str) -> int:
    """The protocol size, or the model's own fixed size where it cannot take it (recorded)."""
    from ubench.models import model_info

    return model_info(name).size_for(cfg.efficiency.input_size)


def _require_prepared(dataset: str) -> Path:
    p = paths.prepared(dataset)
    if not (p / "manifest.json").exists():
        from ubench.data.registry import get_dataset

        get_dataset(dataset)  # an unknown name fails here with close names
        raise UbenchError(f"dataset {dataset!r} is not prepared ({p} missing)",
                          f"run `ubench prepare {dataset}` (or `dvc repro`) first")
    return p


def _protocol(dataset_dir: Path) -> str:
    return json.loads((dataset_dir / "splits.json").read_text())["protocol"]


def run_code(cfg: Config) -> list[Path]:
    """The ``code`` stage: a digest of the sources each stage kind runs, for every model the grid,
    the candidate and the imported weights use, and, when train.pretrained is true, of the
    backbone weights each model's training loads (ubench/stage_sources.py)."""
    from ubench.stage_sources import write_digests

    weights_dir = Path(cfg.train.weights_dir)
    return write_digests(sorted(set(cfg.grid.models) | {cfg.candidate.model} | {e.model for e in cfg.grid.imported}),
                         weights_dir=weights_dir if cfg.train.pretrained else None)


def run_prepare(cfg: Config, dataset: str, out: Path | None = None, raw_root: Path = paths.RAW) -> Path:
    from ubench.data.prepare import prepare_dataset

    s = cfg.split
    return prepare_dataset(
        dataset, out or paths.prepared(dataset), raw_root=raw_root, image_size=cfg.data.image_size,
        protocol=s.protocol, split_seed=s.seed, val_fraction=s.val_fraction,
        test_fraction=s.test_fraction, synthetic=as_dict(cfg.synthetic),
    )


def run_train(cfg: Config, model: str, dataset: str, ckpt: Path | None = None,
              live: Path | None = None) -> dict:
    from ubench.train import train_model

    _check_model(model, cfg.data.image_size)
    prepared = _require_prepared(dataset)
    ckpt = ckpt or paths.checkpoint(dataset, model)
    return train_model(model, prepared, cfg, ckpt, live or paths.train_live(dataset, model), _protocol(prepared),
                       resume_path=paths.resume_state(ckpt))


def run_evaluate(cfg: Config, model: str, dataset: str, target: str | None = None) -> dict:
    """In-domain test split of ``dataset``, or (with ``target``) zero-shot on all of ``target``."""
    from ubench.evaluate import evaluate_checkpoint

    _check_model(model)
    ckpt = paths.checkpoint(dataset, model)
    if target is None:  # zero-shot reads only the target's data (the stage's declared inputs)
        return evaluate_checkpoint(model, ckpt, _require_prepared(dataset), "test", cfg, paths.per_image_csv(dataset, model),
                                   paths.eval_json(dataset, model), role={"dataset": dataset})
    tgt = _require_prepared(target)
    return evaluate_checkpoint(model, ckpt, tgt, None, cfg, paths.zeroshot_csv(dataset, target, model),
                               paths.zeroshot_json(dataset, target, model),
                               role={"dataset": target, "source": dataset, "zero_shot": True})


def run_evaluate_imported(cfg: Config, model: str, dataset: str) -> dict:
    """evaluate_imported@: U-Bench weights imported for (model, dataset) on the dataset's test split
    and zero-shot on each grid.transfer target of that dataset, written as one set."""
    from ubench.evaluate import evaluate_checkpoint

    _check_model(model)
    ckpt = paths.imported_checkpoint(dataset, model)
    if not ckpt.is_file():
        raise UbenchError(f"no imported checkpoint {ckpt} (grid.imported lists {model} on {dataset})",
                          f"import U-Bench's: `ubench weights import CHECKPOINT --model {model} --dataset "
                          f"{dataset}` (then `dvc add models/imported` to pin it), or remove the entry")
    targets = [p.target for p in cfg.grid.transfer if p.source == dataset]
    prepared = {d: _require_prepared(d) for d in (dataset, *targets)}
    with atomic_outputs() as out:
        rows = out.dir(paths.imported_per_image_dir(dataset, model))
        docs = out.dir(paths.imported_eval_dir(dataset, model))
        summary = evaluate_checkpoint(model, ckpt, prepared[dataset], "test", cfg,
                                      rows / paths.imported_per_image(dataset, model).name,
                                      docs / paths.imported_eval(dataset, model).name, role={"dataset": dataset})
        if summary["imported"] is None:
            raise UbenchError(f"{ckpt} holds no U-Bench provenance: `ubench weights import` did not write it",
                              "import the U-Bench checkpoint again with `ubench weights import` (a checkpoint "
                              "ubench trained belongs under models/DATASET/, not models/imported/)")
        for t in targets:
            evaluate_checkpoint(model, ckpt, prepared[t], None, cfg, rows / paths.imported_per_image(dataset, model, t).name,
                                docs / paths.imported_eval(dataset, model, t).name,
                                role={"dataset": t, "source": dataset, "zero_shot": True})
    return summary


def run_complexity(cfg: Config, model: str) -> dict:
    from ubench.efficiency import complexity

    _check_model(model)
    out = complexity(model, _efficiency_size(cfg, model), seed=cfg.train.seed, threads=cfg.train.threads)
    write_json_atomic(paths.complexity_json(model), out)
    return out


def run_speed(cfg: Config, model: str) -> dict:
    from ubench.efficiency import speed

    _check_model(model)
    sc = cfg.efficiency.speed
    out = speed(model, _efficiency_size(cfg, model), warmup=sc.warmup, window=sc.window, max_seconds=sc.max_seconds,
                tolerance=sc.tolerance, threads=cfg.train.threads, seed=cfg.train.seed)
    write_json_atomic(paths.speed_json(model), out)
    return out


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise UbenchError(f"{path} not found: {what} writes it", "run `dvc repro` (or the stage named)")
    return path.read_bytes()


def _read_text(path: Path, what: str) -> str:
    return _read_bytes(path, what).decode("utf-8")


def _read_csv(path: Path, what: str):
    if not path.exists():
        raise UbenchError(f"{what} missing: {path}", "run `dvc repro` so that every grid stage has run")
    import pandas as pd  # here, not at the top: train, complexity and speed never need it

    return pd.read_csv(path, dtype={"id": str})


def _protocol_of_grid(cfg: Config) -> str:
    protos = {json.loads(paths.eval_json(d, m).read_text())["protocol"]
              for d in cfg.grid.datasets for m in cfg.grid.models if paths.eval_json(d, m).exists()}
    if len(protos) > 1:
        raise UbenchError(f"the grid mixes protocols {sorted(protos)}",
                          "re-run `dvc repro` so that every dataset is prepared with one split.protocol")
    return protos.pop() if protos else cfg.split.protocol


def run_leaderboard(cfg: Config) -> dict:
    import pandas as pd

    from ubench.analysis.leaderboard import build_leaderboard, render_markdown
    from ubench.analysis.plots import leaderboard_plot_rows, plot_iou_ci

    g = cfg.grid
    in_domain = {d: {m: _read_csv(paths.per_image_csv(d, m), "per-image results") for m in g.models}
                 for d in g.datasets}
    zeroshot = {(p.source, p.target): {m: _read_csv(paths.zeroshot_csv(p.source, p.target, m),
                                                    "zero-shot results") for m in g.models}
                for p in g.transfer}
    imported: dict[str, dict] = {}
    imported_zs: dict[tuple[str, str], dict] = {}
    for e in g.imported:  # evaluate_imported@ wrote these (U-Bench weights)
        imported.setdefault(e.dataset, {})[e.model] = _read_csv(paths.imported_per_image(e.dataset, e.model),
                                                                "imported weights' results")
        for p in g.transfer:
            if p.source == e.dataset:
                imported_zs.setdefault((p.source, p.target), {})[e.model] = _read_csv(
                    paths.imported_per_image(e.dataset, e.model, p.target), "imported weights' zero-shot results")
    lb = cfg.leaderboard
    board = build_leaderboard(in_domain, zeroshot, baseline=lb.baseline, alpha=lb.alpha,
                              confidence=lb.confidence, protocol=_protocol_of_grid(cfg),
                              imported=imported, imported_zeroshot=imported_zs)
    plot_iou_ci(board, paths.LEADERBOARD_PNG)
    rows = leaderboard_plot_rows(board)
    # the summary, the table, its plot data and (last, as the mark of a complete set) the JSON
    # land together; the summary folder is replaced whole, so a dataset left out leaves no file
    with atomic_outputs() as out:
        summary = out.dir(paths.LEADERBOARD_METRICS)
        for rel, row in leaderboard_summary(board).items():
            (summary / rel).parent.mkdir(parents=True, exist_ok=True)
            (summary / rel).write_text(json_dumps(row), encoding="utf-8")
        out.file(paths.LEADERBOARD_MD, render_markdown(board))
        plots_dir = out.dir(paths.LEADERBOARD_PLOTS)
        for ds, ds_rows in rows.items():
            (plots_dir / f"{ds}.csv").write_text(pd.DataFrame(ds_rows).to_csv(index=False, lineterminator="\n"),
                                                 encoding="utf-8")
        out.file(paths.LEADERBOARD_JSON, json_dumps(board))
    return board


def leaderboard_summary(board: dict) -> dict[str, dict]:
    """metrics/leaderboard/: per in-domain dataset (and zero-shot pair) a row {model: mean IoU},
    plus which models are degenerate there ("-" when none), as paths relative to the folder.
    Imported U-Bench weights join the row as "MODEL (U-Bench weights)".

    Why this shape: ``dvc metrics show`` prints one row per file and one column per key, so rows of
    the same model names give a table of datasets x models that a person can read.
    """
    def row(section: dict) -> dict:
        models = section["models"]
        out = {m: models[m]["iou_mean"] for m in models}
        out["degenerate"] = " ".join(m for m in models if models[m].get("degenerate")) or "-"
        return out

    imp = board.get("imported", {})
    rows = {}
    for d, section in board["datasets"].items():
        rows[paths.leaderboard_metric(d).relative_to(paths.LEADERBOARD_METRICS).as_posix()] = {
            **row(section), **{m: r["iou_mean"] for m, r in imp.get("datasets", {}).get(d, {}).get("models", {}).items()}}
    for key, section in board["zeroshot"].items():
        rel = paths.leaderboard_zeroshot_metric(section["source"], section["target"])
        rows[rel.relative_to(paths.LEADERBOARD_METRICS).as_posix()] = {
            **row(section), **{m: r["iou_mean"] for m, r in imp.get("zeroshot", {}).get(key, {}).get("models", {}).items()}}
    return rows


def run_uscore(cfg: Config) -> dict:
    """U-Bench's U-Score of every (model, dataset) of the grid, and overall (README "U-Score")."""
    from ubench.analysis.plots import plot_iou_vs_uscore
    from ubench.analysis.uscore import render_uscore_markdown, uscore_report
    from ubench.analysis.uscore_inputs import read_grid

    board, efficiency = read_grid(cfg.grid.models)
    report = uscore_report(board, efficiency, cfg.uscore.reference, cfg.uscore.floor)
    report["speed_devices"] = sorted({e["device_name"] for e in efficiency.values()})  # ubench verify's label
    report["measured"] = True
    for note in (report["device"]["note"], *report["notes"]):
        if note:
            print(f"uscore: {note}", file=sys.stderr)
    plot_iou_vs_uscore(report, paths.USCORE_PNG)
    # the summary a person compares: {model: U-Score} (the mean over the grid's datasets), the
    # same columns as metrics/leaderboard/ in `dvc metrics show`
    compact = dict(report["uscore"])
    compact.update(report.get("imported", {}).get("uscore", {}))  # "MODEL (U-Bench weights)", where scored
    write_files_atomic({paths.USCORE_MD: render_uscore_markdown(report), paths.USCORE_METRICS: json_dumps(compact),
                        paths.USCORE_JSON: json_dumps(report)})
    return report


def run_report(cfg: Config) -> Path:
    """reports/index.html (self-contained), the training-curve figure and its ``dvc plots`` data."""
    import pandas as pd

    from ubench.analysis.html_report import curve_rows, read_curves, render_html
    from ubench.analysis.plots import training_curves_png

    g = cfg.grid
    board = json.loads(_read_text(paths.LEADERBOARD_JSON, "the leaderboard (`dvc repro leaderboard`)"))
    uscore = json.loads(_read_text(paths.USCORE_JSON, "the U-Score report (`dvc repro uscore`)"))
    figures = {"leaderboard": _read_bytes(paths.LEADERBOARD_PNG, "the leaderboard plot (`dvc repro leaderboard`)"),
               "uscore": _read_bytes(paths.USCORE_PNG, "the U-Score plot (`dvc repro uscore`)")}
    curves = read_curves(paths.TRAIN_ROOT, list(g.datasets), list(g.models))
    figures["training"] = training_curves_png(curves, cfg.leaderboard.baseline)
    with atomic_outputs() as out:  # the page last: its presence marks a complete set
        plots_dir = out.dir(paths.TRAINING_PLOTS)
        for ds, rows in curve_rows(curves).items():
            (plots_dir / f"{ds}.csv").write_text(pd.DataFrame(rows).to_csv(index=False, lineterminator="\n"),
                                                 encoding="utf-8")
        out.file(paths.TRAINING_PNG, figures["training"])
        out.file(paths.REPORT_HTML, render_html(board, uscore, figures))
    return paths.REPORT_HTML


def run_candidate(cfg: Config, dataset: str) -> dict:
    """Train and evaluate ``candidate.model`` on ``dataset`` (outputs under */candidate/)."""
    from ubench.evaluate import evaluate_checkpoint
    from ubench.train import train_model

    model = cfg.candidate.model
    _check_model(model, cfg.data.image_size)
    prepared = _require_prepared(dataset)
    ckpt = paths.candidate_checkpoint(dataset)
    grid_ckpt = paths.checkpoint(dataset, model)
    if model in cfg.grid.models and grid_ckpt.exists():
        # Same model, same params, deterministic training: the grid's checkpoint is exactly what
        # training again would produce, so reuse it instead of spending the time twice.
        print(f"candidate {model} is in grid.models: reusing {grid_ckpt}")
        with atomic_outputs() as out:  # the live log and the checkpoint land together, or neither
            shutil.copytree(paths.train_live(dataset, model), out.dir(paths.candidate_live(dataset)),
                            dirs_exist_ok=True)
            out.file(ckpt, grid_ckpt.read_bytes())
    else:
        train_model(model, prepared, cfg, ckpt, paths.candidate_live(dataset), _protocol(prepared),
                    resume_path=paths.resume_state(ckpt))
    return evaluate_checkpoint(model, ckpt, prepared, "test", cfg, paths.candidate_csv(dataset),
                               paths.candidate_eval_json(dataset), role={"dataset": dataset})


def run_candidate_report(cfg: Config) -> dict:
    """metrics/candidate/<dataset>.json and results/candidate_report.json: the same keys for any
    model, with deltas and p-values vs the baseline."""
    from ubench.analysis.degenerate import CRITERION as DEGENERATE_CRITERION
    from ubench.analysis.degenerate import degeneracy, describe
    from ubench.analysis.stats import paired_test

    base = cfg.leaderboard.baseline
    out = {"model": cfg.candidate.model, "baseline": base, "datasets": {}}
    deltas, ious, warns = [], [], []
    for d in cfg.candidate.datasets:
        cand = _read_csv(paths.candidate_csv(d), "candidate results")
        ref = _read_csv(paths.per_image_csv(d, base), "baseline per-image results")
        merged = cand.merge(ref, on="id", suffixes=("", "_base"), validate="one_to_one")
        if len(merged) != len(cand) or len(merged) != len(ref):
            raise UbenchError(f"candidate and baseline were tested on different images of {d}",
                              "re-run `dvc repro`: both must use the same prepared split")
        test = paired_test(merged["iou"].to_numpy(), merged["iou_base"].to_numpy())
        summary = json.loads(paths.candidate_eval_json(d).read_text())
        entry = {k: summary["metrics"][k]["mean"] for k in summary["metrics"]}
        cand_deg, base_deg = degeneracy(cand), degeneracy(ref)
        entry.update(degenerate=cand_deg["degenerate"], pred_empty_share=cand_deg["empty_share"],
                     pred_full_share=cand_deg["full_share"], baseline_degenerate=base_deg["degenerate"])
        for who, name, deg in (("candidate", out["model"], cand_deg), ("baseline", base, base_deg)):
            if deg["degenerate"]:
                warns.append(f"{who} {describe(name, d, deg)}")
        entry.update({
            "baseline_iou": float(merged["iou_base"].mean()), "delta_iou": test["delta"],
            "p_ttest": test["p_ttest"], "p_wilcoxon": test["p_wilcoxon"],
            "effect_size": test["effect_size"], "n_images": int(len(merged)),
            "protocol": summary["protocol"],
        })
        out["datasets"][d] = entry
        deltas.append(test["delta"])
        ious.append(entry["iou"])
    out["mean_iou"] = sum(ious) / len(ious)
    out["mean_delta_iou"] = sum(deltas) / len(deltas)
    out["degenerate"] = any(e["degenerate"] for e in out["datasets"].values())
    out["baseline_degenerate"] = any(e["baseline_degenerate"] for e in out["datasets"].values())
    out["degenerate_criterion"] = DEGENERATE_CRITERION
    out["warnings"] = warns
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
    with atomic_outputs() as staged:  # the summary folder is replaced whole, the report last
        summary = staged.dir(paths.CANDIDATE_METRICS)
        for d, row in candidate_summary(out).items():
            (summary / f"{d}.json").write_text(json_dumps(row), encoding="utf-8")
        staged.file(paths.CANDIDATE_REPORT_JSON, json_dumps(out))
    return out


CANDIDATE_SUMMARY_KEYS = ("iou", "baseline_iou", "delta_iou", "p_wilcoxon", "degenerate", "baseline_degenerate")


def candidate_summary(report: dict) -> dict[str, dict]:
    """metrics/candidate/<dataset>.json: what a person compares between experiments, one row per
    dataset (the full report, with every metric, test and warning, is results/candidate_report.json)."""
    return {d: {"model": report["model"], "baseline": report["baseline"], **{k: e[k] for k in CANDIDATE_SUMMARY_KEYS}}
            for d, e in report["datasets"].items()}


def run_advisor(cfg: Config) -> dict:
    """Train the model advisor on the grid's leaderboard (see ubench/advisor/service.py)."""
    from ubench.advisor.service import train_advisor

    return train_advisor(cfg)
