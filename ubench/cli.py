"""The `ubench` command: argument parsing only; each subcommand calls one function of pipeline.py.

Every user-facing failure is a UbenchError, printed as ``error:`` and ``fix:`` lines (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ubench.errors import UbenchError

EPILOG = """The subcommands are the stages of dvc.yaml; normally `dvc repro` runs them for you.
All knobs are read from params.yaml (--params to use another file)."""


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ubench", description="Reproducible benchmark of U-Net variants for 2D medical image "
        "segmentation (after U-Bench, Tang et al. 2025).", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from ubench import __version__

    ap.add_argument("--version", action="version", version=f"ubench {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    p = sub.add_parser("train", help="train one model on one prepared dataset (U-Bench protocol)")
    p.add_argument("--model", required=True, help="registry name (see `ubench models list`)")
    p.add_argument("--dataset", required=True)
    _add_params(p)

    p = sub.add_parser("evaluate", help="per-image metrics of a trained model (in-domain or zero-shot)",
                       description="Evaluate models/DATASET/MODEL.pt on DATASET's test split, or with "
                       "--target on every image of TARGET (zero-shot transfer).")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True, help="the dataset the model was trained on")
    p.add_argument("--target", default=None, help="zero-shot target dataset")
    _add_params(p)

    for name, hlp in (("complexity", "params and FLOPs at the protocol input size (computed)"),
                      ("speed", "frames per second at batch 1 (measured; differs between runs)")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--model", required=True)
        _add_params(p)

    p = sub.add_parser("leaderboard", help="per-dataset IoU with CIs and paired tests vs the baseline")
    _add_params(p)
    p = sub.add_parser("uscore", help="U-Score of each model (needs the speed measurements)")
    _add_params(p)

    p = sub.add_parser("candidate", help="train+evaluate params.yaml candidate.model, or --report")
    p.add_argument("--dataset", help="dataset to train and evaluate the candidate on")
    p.add_argument("--report", action="store_true", help="write metrics/candidate.json (deltas, p-values)")
    _add_params(p)

    p = sub.add_parser("advisor", help="train the model advisor on the leaderboard (the `advisor` stage)",
                       description="Train the XGBoost model advisor on every (dataset, model) result of "
                       "the grid, after a leave-one-dataset-out evaluation against a dataset-blind "
                       "baseline. Writes models/advisor.json and metrics/advisor.json.")
    p.add_argument("action", choices=["train"], help="train (the only action)")
    _add_params(p)

    p = sub.add_parser("advise", help="rank models for a dataset under resource limits",
                       description="Rank the models the advisor knows for DATASET (a prepared dataset's "
                       "name or folder; its attributes are computed if missing), keeping only those "
                       "within the limits. Needs models/advisor.json: `dvc repro advisor`, or "
                       "`dvc pull models/advisor.json` for the published one.")
    p.add_argument("--dataset", required=True, help="prepared dataset name, or a folder with manifest.json")
    p.add_argument("--by", choices=["iou", "uscore"], default=None,
                   help="what the advisor must rank by (checked against the model file)")
    p.add_argument("--max-params", type=float, default=None, help="at most this many million parameters")
    p.add_argument("--max-gflops", type=float, default=None, help="at most this many GFLOPs (256x256)")
    p.add_argument("--min-fps", type=float, default=None, help="at least this many frames per second")
    p.add_argument("--top", type=int, default=5, help="how many models to show (default 5)")
    p.add_argument("--advisor", type=Path, default=Path("models/advisor.json"), help="advisor model file")

    p = sub.add_parser("models", help="list the model zoo, or show one model's record")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    pl = msub.add_parser("list", help="table of models")
    pl.add_argument("--family", default=None, help="cnn, transformer, mamba, rwkv or hybrid")
    pl.add_argument("--no-flops", action="store_true",
                    help="skip the FLOPs column (ptflops runs every model once at 256x256)")
    ps = msub.add_parser("show", help="one model's ModelInfo")
    ps.add_argument("name")

    p = sub.add_parser("datasets", help="list the registered datasets, or check a raw download",
                       description="`datasets list` prints the 28 U-Bench datasets (and the embedded "
                       "synthetic ones) with modality, classes, zero-shot targets, raw format and "
                       "licence. `datasets check DIR --format NAME` validates a raw download before "
                       "any stage runs: every unmatched, unreadable, mis-sized or non-binary file is "
                       "reported, and the exit status is 1 if there is any.")
    dsub = p.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="table of datasets")
    dl.add_argument("--modality", default=None, help="only this modality (e.g. ultrasound)")
    dsh = dsub.add_parser("show", help="one dataset's record (JSON)")
    dsh.add_argument("name")
    dc = dsub.add_parser("check", help="validate a raw dataset folder (exit 1 on problems)")
    dc.add_argument("dir", type=Path, help="the folder as downloaded (e.g. data/raw/busi)")
    dc.add_argument("--format", required=True, dest="fmt",
                    help="raw format name (the `format` column of `ubench datasets list`)")

    p = sub.add_parser("verify", help="rerun recorded stages in a scratch copy and compare with dvc.lock",
                       description="Rerun STAGES (default: every stage in dvc.lock; a group name such "
                       "as `train` means all of its stages) in a temporary copy of the repository that "
                       "reads the DVC cache, each on its recorded inputs, and compare every output's "
                       "hash with dvc.lock. The measured stages (speed@*, uscore) are compared by "
                       "value within --tolerance and labelled with the recorded and this device. "
                       "Prints a table; exit status 1 on any mismatch. Your workspace is not touched.")
    p.add_argument("stages", nargs="*", help="stage or group names (default: all)")
    p.add_argument("--tolerance", type=float, default=0.5,
                   help="relative tolerance on measured values (FPS, U-Score), default 0.5 = ±50%%")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the scratch workspace goes (default: the system temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch workspace (its path is printed)")
    p.add_argument("--quiet", action="store_true", help="do not echo dvc's output")

    p = sub.add_parser("publish", help="push the pipeline's outputs to a DVC remote",
                       description="`dvc push` of every stage recorded in dvc.lock (checkpoints, "
                       "per-image results, metrics, reports) to REMOTE (default: the default remote, "
                       "`local`). Raw data and what is prepared from it stay out unless --with-data "
                       "(dataset licences rarely allow redistribution).")
    p.add_argument("-r", "--remote", default=None, help="remote name (`dvc remote list`)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="parallel transfers")
    p.add_argument("--with-data", action="store_true", help="also push data.dvc and prepare_raw@* outputs")
    return ap


def _models_list(family: str | None, with_flops: bool) -> str:
    from tqdm import tqdm

    from ubench.efficiency import complexity, count_params
    from ubench.models import create_model, list_models, model_info

    lines = ["| name | family | year | params (M) | ref params (M) | FLOPs (G, 256²) | deep sup. |",
             "|---|---|---|---:|---:|---:|---|"]
    for name in tqdm(list_models(family), desc="models", leave=False, disable=not with_flops):
        info = model_info(name)
        params = count_params(create_model(name)) / 1e6
        size = 256 if info.accepts(256) else info.ref_input_size
        flops = f"{complexity(name, size)['gflops']:.2f}" + ("" if size == 256 else f" ({size}²)") \
            if with_flops else "-"
        ref = f"{info.ref_params_m:.2f}" if info.ref_params_m else "-"
        lines.append(f"| {name} | {info.family} | {info.year} | {params:.2f} | {ref} | {flops} | "
                     f"{'yes' if info.deep_supervision else 'no'} |")
    from ubench.models import unavailable_models

    for name, why in unavailable_models().items():
        lines.append(f"\n{name}: unavailable ({why})")
    return "\n".join(lines)


def _datasets(args: argparse.Namespace) -> int:
    from ubench.data import inspect

    if args.datasets_command == "list":
        print(inspect.datasets_table(args.modality))
        return 0
    if args.datasets_command == "show":
        from ubench.data.registry import get_dataset
        from ubench.io import json_dumps

        print(json_dumps(get_dataset(args.name).to_dict()), end="")
        return 0
    report, ok = inspect.check_report(args.dir, args.fmt)
    print(report)
    return 0 if ok else 1


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


def run(args: argparse.Namespace) -> int | None:
    _check_names(args)
    if args.command == "verify":
        from ubench.verify import verify

        report = verify(".", args.stages, tolerance=args.tolerance, workdir=args.workdir, keep=args.keep,
                        quiet=args.quiet)
        print(report.table())
        return 0 if report.ok else 1
    if args.command == "publish":
        from ubench.publish import publish

        targets = publish(".", remote=args.remote, jobs=args.jobs, with_data=args.with_data)
        print(f"published the outputs of {len(targets)} targets to {args.remote or 'the default remote'}")
        return 0
    if args.command == "datasets":
        return _datasets(args)
    if args.command == "advise":
        from ubench.advisor.service import recommend, render_advice

        table, info = recommend(args.dataset, args.advisor, by=args.by, max_params=args.max_params,
                                max_gflops=args.max_gflops, min_fps=args.min_fps, top=args.top)
        print(render_advice(table, info))
        return 0
    if args.command == "models":
        from ubench.io import json_dumps
        from ubench.models import model_info

        if args.models_command == "list":
            print(_models_list(args.family, not args.no_flops))
        else:
            print(json_dumps({"name": args.name, **model_info(args.name).to_dict()}), end="")
        return

    from ubench import pipeline
    from ubench.config import load_config

    cfg = load_config(args.params)
    cmd = args.command
    if cmd == "prepare":
        out = pipeline.run_prepare(cfg, args.dataset, args.out, args.raw_root)
        print(f"prepared {args.dataset} -> {out}")
    elif cmd == "train":
        best = pipeline.run_train(cfg, args.model, args.dataset)
        print(f"{args.model} on {args.dataset}: best val IoU {best['val_iou']:.4f} at epoch {best['epoch']}")
    elif cmd == "evaluate":
        s = pipeline.run_evaluate(cfg, args.model, args.dataset, args.target)
        where = f"{args.dataset} -> {args.target} (zero-shot)" if args.target else f"{args.dataset} test"
        print(f"{args.model} on {where}: IoU {s['metrics']['iou']['mean']:.4f} over {s['n_images']} images")
    elif cmd == "complexity":
        c = pipeline.run_complexity(cfg, args.model)
        print(f"{args.model}: {c['params_m']:.2f} M params, {c['gflops']:.2f} GFLOPs at {c['input_size']}²")
    elif cmd == "speed":
        s = pipeline.run_speed(cfg, args.model)
        print(f"{args.model}: {s['fps']:.2f} FPS on {s['device_name']} ({s['threads']} threads)")
    elif cmd == "leaderboard":
        pipeline.run_leaderboard(cfg)
        print("wrote metrics/leaderboard.json and reports/leaderboard.md")
    elif cmd == "uscore":
        pipeline.run_uscore(cfg)
        print("wrote metrics/uscore.json and reports/uscore.md")
    elif cmd == "advisor":
        m = pipeline.run_advisor(cfg)
        if m["trained"]:
            k = cfg.advisor.k
            print(f"advisor (by {m['by']}): held-out NDCG@{k} {m[f'advisor_ndcg_at_{k}']} "
                  f"vs baseline {m[f'baseline_ndcg_at_{k}']}; wrote models/advisor.json")
        else:
            print(f"advisor not trained: {m['reason']}")
    elif cmd == "candidate":
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


def _report(what: str, fix: str) -> int:
    print(f"error: {what}", file=sys.stderr)
    if fix:
        print(f"  fix: {fix}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = run(args)
    except BrokenPipeError:  # `ubench datasets list | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except UbenchError as exc:
        return _report(exc.what, exc.fix)
    except PermissionError as exc:
        return _report(f"permission denied: {exc.filename or exc}",
                       "make that folder writable for this user, or run where you may write")
    except OSError as exc:  # a full disk, a read-only file system …: named, never a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        return _report(f"{exc.strerror or exc}{where}", "free space or fix permissions there, then rerun")
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
