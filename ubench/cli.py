"""The `ubench` command: argument parsing only; each stage subcommand calls one function of pipeline.py.

This file holds the subcommands the stages of dvc.yaml run (and the dispatch), so it is a source
of every stage (``stage_sources.CORE``): a change here marks every stage out of date. The tools a
user runs by hand (advise, models, weights, datasets, verify, publish, grid) live in
``cli_tools.py``, which no stage runs, so that changing them leaves the results valid.

Each subcommand has a parser builder (``_add_<name>``) and a command function (``cmd_<name>``,
returning the exit status) side by side; the parser records the function (``set_defaults(func=)``)
and ``main`` calls it. Modules that are slow to import are imported inside the command functions,
so `ubench --help` stays fast. Every user-facing failure is a UbenchError, printed as ``error:`` and
``fix:`` lines (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ubench.errors import UbenchError

EPILOG = """The subcommands are the stages of dvc.yaml; normally `dvc repro` runs them for you.
All knobs are read from params.yaml (--params to use another file)."""


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")


def _config(args: argparse.Namespace):
    """The validated config of ``--params`` (every stage's knobs)."""
    from ubench.config import load_config

    return load_config(args.params)


# --- the stages of dvc.yaml ----------------------------------------------------------------------

def _add_code(sub) -> None:
    p = sub.add_parser("code", help="digest the ubench sources each stage runs (the `code` stage)",
                       description="Write results/code/KIND.json (and results/code/KIND/MODEL.json for "
                       "train, evaluate, efficiency and candidate, for every model in grid.models, grid.imported and "
                       "candidate.model): the ubench files a stage of that kind runs, with their SHA-256. "
                       "Each stage of dvc.yaml depends on its one digest instead of ~25 source files, "
                       "which keeps `dvc status` fast on the full grid; editing a file reruns exactly "
                       "the stages whose digest lists it. The lists are in ubench/stage_sources.py.")
    _add_params(p)
    p.set_defaults(func=cmd_code)


def cmd_code(args: argparse.Namespace) -> int:
    from ubench import pipeline

    written = pipeline.run_code(_config(args))
    print(f"wrote {len(written)} source digests under results/code/")
    return 0


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="convert a dataset into the prepared form (npy + splits + manifest)",
                       description="Prepare DATASET into data/prepared/DATASET: resized uint8 images.npy "
                       "and masks.npy, seeded splits.json, manifest.json. DATASET is a registered name "
                       "(synth, synth_shift) or a folder data/raw/DATASET in U-Bench's layout "
                       "(images/*.png, masks/0/*.png; train.txt/val.txt used when present).")
    p.add_argument("dataset")
    p.add_argument("--raw-root", type=Path, default=Path("data/raw"), help="where raw datasets live")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default data/prepared/DATASET); replaced only if absent, empty or "
                   "a previous prepared output, never the project, .git, data/raw or the raw input")
    _add_params(p)
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    from ubench import pipeline

    out = pipeline.run_prepare(_config(args), args.dataset, args.out, args.raw_root)
    print(f"prepared {args.dataset} -> {out}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model on one prepared dataset (U-Bench protocol)",
                       description="Train MODEL on the train split of data/prepared/DATASET (prepare it "
                       "first) with U-Bench's protocol and params.yaml's `train` section: SGD with "
                       "polynomial decay, Dice+CE loss, the checkpoint of best validation IoU kept. "
                       "Writes models/DATASET/MODEL.pt and the dvclive log results/train/DATASET/MODEL/, "
                       "both only when training finishes. Every `train.resume_every` epochs the whole run "
                       "state is kept in .ubench/resume/; rerun the same command after a crash and it "
                       "continues from there, writing the bytes an uninterrupted run writes.")
    p.add_argument("--model", required=True, help="registry name (see `ubench models list`)")
    p.add_argument("--dataset", required=True)
    _add_params(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from ubench import pipeline

    best = pipeline.run_train(_config(args), args.model, args.dataset)
    print(f"{args.model} on {args.dataset}: best val IoU {best['val_iou']:.4f} at epoch {best['epoch']}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="per-image metrics of a trained model (in-domain or zero-shot)",
                       description="Evaluate models/DATASET/MODEL.pt on DATASET's test split, or with "
                       "--target on every image of TARGET (zero-shot transfer).")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True, help="the dataset the model was trained on")
    p.add_argument("--target", default=None, help="zero-shot target dataset")
    p.add_argument("--imported", action="store_true",
                   help="evaluate models/imported/DATASET/MODEL.pt (U-Bench weights, `ubench weights import`) "
                   "on DATASET's test split and zero-shot on its grid.transfer targets (the "
                   "evaluate_imported stage); writes results/*/imported/DATASET/MODEL/")
    _add_params(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ubench import pipeline

    if args.imported:
        if args.target:
            raise UbenchError("--imported takes no --target", "zero-shot targets come from grid.transfer")
        s = pipeline.run_evaluate_imported(_config(args), args.model, args.dataset)
        print(f"{args.model} (U-Bench weights) on {args.dataset} test: IoU {s['metrics']['iou']['mean']:.4f} "
              f"over {s['n_images']} images")
        return 0
    s = pipeline.run_evaluate(_config(args), args.model, args.dataset, args.target)
    where = f"{args.dataset} -> {args.target} (zero-shot)" if args.target else f"{args.dataset} test"
    print(f"{args.model} on {where}: IoU {s['metrics']['iou']['mean']:.4f} over {s['n_images']} images")
    return 0


def _add_efficiency(sub) -> None:
    for name, hlp, desc, func in (
            ("complexity", "params and FLOPs at the protocol input size (computed)",
             "Count MODEL's parameters and FLOPs (ptflops' multiply-accumulates, reported as FLOPs as "
             "U-Bench does) at params.yaml's efficiency.input_size, or the model's own fixed size where "
             "it cannot take that. Deterministic; no dataset or checkpoint needed. Writes "
             "results/complexity/MODEL.json.", cmd_complexity),
            ("speed", "frames per second at batch 1 (measured; differs between runs)",
             "Measure MODEL's frames per second at batch 1 on this machine's device (GPU if present) "
             "after efficiency.speed.warmup runs, timed efficiency.speed.window runs at a time until the "
             "median latency moves by at most efficiency.speed.tolerance (or max_seconds pass); FPS = "
             "1 / that median, with its spread (IQR / median); untrained weights. "
             "Writes results/speed/MODEL.json with the device, torch version and thread count: a "
             "measurement, so it differs between runs and machines.", cmd_speed)):
        p = sub.add_parser(name, help=hlp, description=desc)
        p.add_argument("--model", required=True)
        _add_params(p)
        p.set_defaults(func=func)


def cmd_complexity(args: argparse.Namespace) -> int:
    from ubench import pipeline

    c = pipeline.run_complexity(_config(args), args.model)
    print(f"{args.model}: {c['params_m']:.2f} M params, {c['gflops']:.2f} GFLOPs at {c['input_size']}²")
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from ubench import pipeline

    s = pipeline.run_speed(_config(args), args.model)
    print(f"{args.model}: {s['fps']:.2f} FPS on {s['device_name']} ({s['threads']} threads)")
    return 0


def _add_leaderboard(sub) -> None:
    p = sub.add_parser("leaderboard", help="per-dataset IoU with CIs and paired tests vs the baseline",
                       description="Read the per-image results of every (model, dataset) and zero-shot "
                       "pair of params.yaml's grid (results/per_image, results/zeroshot) and compare each "
                       "model with leaderboard.baseline: mean IoU with bootstrap CIs, paired tests on the "
                       "same images, Holm's correction per dataset. Writes results/leaderboard.json (everything), "
                       "metrics/leaderboard/ (mean IoU per model, one file per dataset: what `dvc metrics "
                       "show` prints), reports/leaderboard.md, reports/leaderboard_iou.png and "
                       "reports/plots/leaderboard/DATASET.csv.")
    _add_params(p)
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from ubench import pipeline

    pipeline.run_leaderboard(_config(args))
    print("wrote results/leaderboard.json, metrics/leaderboard/ and reports/leaderboard.md")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="reports/index.html: every table and figure in one offline page",
                       description="Write reports/index.html, a self-contained page (figures inlined, no "
                       "network needed): the leaderboard tables with warnings and degenerate flags, the "
                       "IoU plot, the U-Score table and scatter, and the training curves. Also writes "
                       "reports/training_iou.png and reports/plots/training/DATASET.csv (for `dvc plots`). "
                       "Reads results/leaderboard.json, results/uscore.json, their PNGs and results/train.")
    _add_params(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ubench import pipeline

    print(f"wrote {pipeline.run_report(_config(args))}")
    return 0


def _add_uscore(sub) -> None:
    p = sub.add_parser(
        "uscore", help="U-Bench's U-Score per (model, dataset) (the `uscore` stage), or `uscore calc`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="U-Bench's U-Score (README \"U-Score\"): IoU, params, GFLOPs and FPS, each normalised\n"
        "by a 10th/90th percentile (params and GFLOPs on a log scale) and floored; efficiency =\n"
        "harmonic mean of the three efficiency terms; U-Score = harmonic mean of the IoU term and\n"
        "the efficiency.\n\n"
        "  ubench uscore          the `uscore` stage of dvc.yaml: the U-Score of every (model, dataset)\n"
        "                         of the grid (in-domain and zero-shot) and each model's mean, from\n"
        "                         results/leaderboard.json, results/complexity and results/speed;\n"
        "                         writes results/uscore.json, metrics/uscore.json (each model's\n"
        "                         U-Score), reports/uscore.md, reports/iou_vs_uscore.png.\n"
        "                         params.yaml `uscore.reference` and `uscore.floor` choose the reference.\n"
        "  ubench uscore calc     the calculator of U-Bench's web page, for one model:\n"
        "                         ubench uscore calc --iou 0.81 --params 3.15 --gflops 7.41 --fps 120 "
        "--dataset busi")
    _add_params(p)
    p.set_defaults(func=cmd_uscore)
    usub = p.add_subparsers(dest="uscore_command", required=False, metavar="[calc]")
    pc = usub.add_parser(
        "calc", help="U-Score of one model, as U-Bench's web calculator (prints 100 x U-Score)",
        description="Print 100 x U-Score with two decimals, as U-Bench's web page does, and each "
        "normalised term. --reference and --floor default to params.yaml's `uscore` section (to U-Bench's "
        "calculator, reference ubench and floor 0.05, where there is no params.yaml). With `--reference "
        "ubench` the dataset is one of U-Bench's 20 in-domain datasets (or a dataset of this workspace's "
        "grid); `--reference grid` takes every percentile from this workspace's grid results.")
    pc.add_argument("--iou", type=float, required=True, help="IoU as a fraction in [0, 1] (e.g. 0.81)")
    pc.add_argument("--params", type=float, required=True, dest="params_m", help="parameters, millions")
    pc.add_argument("--gflops", type=float, required=True, help="GFLOPs at 256x256")
    pc.add_argument("--fps", type=float, required=True, help="frames per second, batch 1 (U-Bench: on a GPU)")
    pc.add_argument("--dataset", required=True, dest="calc_dataset",
                    help="e.g. busi, isic2018 (or the page's ISIC2018 / isic); a grid dataset or "
                    "zero-shot pair (source->target) with --reference grid")
    pc.add_argument("--reference", choices=["ubench", "grid"], default=None,
                    help="ubench: U-Bench's published percentiles; grid: this workspace's grid")
    pc.add_argument("--floor", type=float, default=None, help="floor of each term (0.05 calculator, 0 = Eq. 1-3)")
    pc.add_argument("--json", action="store_true", help="print the result as JSON")
    pc.add_argument("--params-file", type=Path, default=None, dest="calc_params",
                    help="params file for the defaults and the grid (default: params.yaml)")
    pc.set_defaults(func=cmd_uscore_calc)


def cmd_uscore(args: argparse.Namespace) -> int:
    from ubench import pipeline

    pipeline.run_uscore(_config(args))
    print("wrote results/uscore.json, metrics/uscore.json and reports/uscore.md")
    return 0


def cmd_uscore_calc(args: argparse.Namespace) -> int:
    """`ubench uscore calc`: U-Bench's web calculator, with params.yaml's defaults where present."""
    from ubench.analysis import ubench_reference as ubref
    from ubench.analysis.uscore import calculator, render_calculation

    params_file = args.calc_params or Path("params.yaml")
    cfg = None
    if args.calc_params is not None or params_file.exists():
        from ubench.config import load_config

        cfg = load_config(params_file)
    reference = args.reference or (cfg.uscore.reference if cfg else "ubench")
    floor = args.floor if args.floor is not None else (cfg.uscore.floor if cfg else ubref.calculator()["floor"])
    grid = None
    if cfg is not None and (reference == "grid" or ubref.iou_percentiles(args.calc_dataset) is None):
        from ubench import paths
        from ubench.analysis.uscore_inputs import read_grid

        if reference == "grid" or paths.LEADERBOARD_JSON.exists():
            grid = read_grid(cfg.grid.models)
    elif reference == "grid":
        raise UbenchError("--reference grid needs this project's grid results, and there is no params.yaml here",
                          "run it in the project folder after `dvc repro`, or give --params-file")
    result = calculator(args.iou, args.params_m, args.gflops, args.fps, args.calc_dataset,
                        reference=reference, floor=floor, grid=grid)
    if args.json:
        from ubench.io import json_dumps

        print(json_dumps(result), end="")
    else:
        print(render_calculation(result))
    return 0


def _add_candidate(sub) -> None:
    p = sub.add_parser("candidate", help="train+evaluate params.yaml candidate.model, or --report",
                       description="With --dataset: train params.yaml's candidate.model on that prepared "
                       "dataset (or reuse the grid's checkpoint when the model is in grid.models) and "
                       "evaluate it on the test split; writes models/candidate/DATASET.pt, "
                       "results/candidate/DATASET.json and results/candidate/DATASET.csv. With --report: "
                       "compare it with leaderboard.baseline on every candidate.datasets (IoU deltas, "
                       "paired p-values, degenerate-prediction warnings); writes metrics/candidate/DATASET.json "
                       "(the deltas) and results/candidate_report.json (every metric and warning).")
    p.add_argument("--dataset", help="dataset to train and evaluate the candidate on")
    p.add_argument("--report", action="store_true",
                   help="write metrics/candidate/ (deltas, p-values) and results/candidate_report.json")
    _add_params(p)
    p.set_defaults(func=cmd_candidate)


def cmd_candidate(args: argparse.Namespace) -> int:
    from ubench import pipeline

    cfg = _config(args)
    if args.report:
        r = pipeline.run_candidate_report(cfg)
        print(f"candidate {r['model']}: mean IoU {r['mean_iou']:.4f}, "
              f"mean ΔIoU vs {r['baseline']} {r['mean_delta_iou']:+.4f}")
    elif args.dataset:
        s = pipeline.run_candidate(cfg, args.dataset)
        print(f"candidate {cfg.candidate.model} on {args.dataset}: IoU {s['metrics']['iou']['mean']:.4f}")
    else:
        raise UbenchError("`ubench candidate` needs --dataset NAME or --report",
                          "see `ubench candidate --help`")
    return 0


def _add_advisor(sub) -> None:
    p = sub.add_parser("advisor", help="train the model advisor on the leaderboard (the `advisor` stage)",
                       description="Train the XGBoost model advisor on every (dataset, model) result of "
                       "the grid, after a leave-one-dataset-out evaluation against a dataset-blind "
                       "baseline. Writes models/advisor.json (with the held-out evaluation) and "
                       "metrics/advisor.json (its held-out scores).")
    p.add_argument("action", choices=["train"], help="train (the only action)")
    _add_params(p)
    p.set_defaults(func=cmd_advisor)


def cmd_advisor(args: argparse.Namespace) -> int:
    from ubench import pipeline

    cfg = _config(args)
    m = pipeline.run_advisor(cfg)
    if m["trained"]:
        k = cfg.advisor.k
        print(f"advisor (by {m['by']}): held-out NDCG@{k} {m[f'advisor_ndcg_at_{k}']:.3f} "
              f"vs baseline {m[f'baseline_ndcg_at_{k}']:.3f}; wrote models/advisor.json")
    else:
        print(f"advisor not trained: {m['reason']}")
    return 0


#: the stage subcommands, in the order `ubench --help` lists them (the tools follow: cli_tools.TOOLS)
SUBCOMMANDS = (_add_code, _add_prepare, _add_train, _add_evaluate, _add_efficiency, _add_leaderboard, _add_report,
               _add_uscore, _add_candidate, _add_advisor)


def build_parser(tools: bool = True) -> argparse.ArgumentParser:
    """The `ubench` parser; without ``tools``, the stage subcommands only (what a stage needs: its
    process then never loads cli_tools.py, which is no stage's source)."""
    ap = argparse.ArgumentParser(
        prog="ubench", description="Reproducible benchmark of U-Net variants for 2D medical image "
        "segmentation (after U-Bench, Tang et al. 2025).", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from ubench import __version__

    ap.add_argument("--version", action="version", version=f"ubench {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    if tools:
        from ubench.cli_tools import TOOLS

        for add in TOOLS:
            add(sub)
    return ap


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """A stage subcommand is parsed without the tools; anything else (a tool, --help, a typo) with
    the full parser, so that help and errors list every command."""
    argv = sys.argv[1:] if argv is None else argv
    stages = build_parser(tools=False)
    names = next(a for a in stages._actions if isinstance(a, argparse._SubParsersAction)).choices
    return (stages if argv and argv[0] in names else build_parser()).parse_args(argv)


def _check_names(args: argparse.Namespace) -> None:
    """The one name rule (ubench.names) on every model and dataset argument, before any work."""
    from ubench.names import check_name

    for attr, kind in (("model", "model"), ("dataset", "dataset"), ("target", "dataset")):
        value = getattr(args, attr, None)
        if value is None or (args.command == "advise" and attr == "dataset"):  # advise takes a folder too
            continue
        check_name(kind, value, f"--{attr}" if args.command != "prepare" else "")
    if args.command == "models" and args.models_command == "show":
        check_name("model", args.name)


# dvc exp run sets it for the stages it runs (dvc/env.py)
EXPERIMENT_ENV = "DVC_EXP_NAME"
EXPERIMENT_NOTE = ("this stage ran inside `dvc exp run`, which wrote its -S values into params.yaml "
                   "before running and leaves them there when a stage fails: `git checkout params.yaml` "
                   "restores yours (`dvc exp run --temp -S ...` runs outside the workspace and never "
                   "changes it)")


def _report(what: str, fix: str) -> int:
    print(f"error: {what}", file=sys.stderr)
    if fix:
        print(f"  fix: {fix}", file=sys.stderr)
    if os.environ.get(EXPERIMENT_ENV):
        print(f"  note: {EXPERIMENT_NOTE}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        _check_names(args)
        return args.func(args)
    except BrokenPipeError:  # `ubench datasets list | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C: outputs are written atomically, so nothing half-written stays
        print("ubench: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
    except UbenchError as exc:
        return _report(exc.what, exc.fix)
    except PermissionError as exc:
        return _report(f"permission denied: {exc.filename or exc}",
                       "make that folder writable for this user, or run where you may write")
    except OSError as exc:  # a full disk, a read-only file system …: named, never a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        return _report(f"{exc.strerror or exc}{where}", "free space or fix permissions there, then rerun")


if __name__ == "__main__":
    sys.exit(main())
