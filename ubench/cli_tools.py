"""The `ubench` tools a user runs by hand, outside the pipeline: advise, models, weights, datasets,
verify, publish, grid.

No stage of dvc.yaml runs these (``tests/test_cli_tools.py`` checks it), so this file is not a stage
source: changing a tool's output or options leaves every result valid. The conventions are
cli.py's: a parser builder (``_add_<name>``) beside its command function (``cmd_<name>``), slow
imports inside the functions, failures as UbenchError (cli.main prints them).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _add_advise(sub) -> None:
    p = sub.add_parser("advise", help="rank models for a dataset under resource limits",
                       description="First, where U-Bench published rankings for DATASET (or, for a "
                       "registered dataset it did not rank, for the datasets of the same modality), "
                       "print its top-10 by IoU and by U-Score (published, not measured here). Then "
                       "rank the models the advisor knows for DATASET (a prepared dataset's "
                       "name or folder; its attributes are computed if missing), keeping only those "
                       "within the limits, with the advisor's held-out score beside the baseline's. "
                       "The advisor is models/advisor.json: `dvc repro advisor`, or "
                       "`dvc pull models/advisor.json` for the published one.")
    p.add_argument("--dataset", required=True,
                   help="dataset name (U-Bench's or registered), prepared dataset name, or a folder with manifest.json")
    p.add_argument("--by", choices=["iou", "uscore"], default=None,
                   help="what the advisor must rank by (checked against the model file)")
    p.add_argument("--max-params", type=float, default=None, help="at most this many million parameters")
    p.add_argument("--max-gflops", type=float, default=None, help="at most this many GFLOPs (256x256)")
    p.add_argument("--min-fps", type=float, default=None, help="at least this many frames per second")
    p.add_argument("--top", type=int, default=5, help="how many models to show (default 5)")
    p.add_argument("--advisor", type=Path, default=Path("models/advisor.json"), help="advisor model file")
    p.set_defaults(func=cmd_advise)


def cmd_advise(args: argparse.Namespace) -> int:
    from ubench.advisor.service import advise

    blocks = advise(args.dataset, args.advisor, by=args.by, max_params=args.max_params,
                    max_gflops=args.max_gflops, min_fps=args.min_fps, top=args.top)
    for i, block in enumerate(blocks):  # printed as found: an advisor failure keeps what came before
        print(("\n" if i else "") + block, flush=True)
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo, or show one model's record",
                       description="`models list` prints the registered models as a table (see `ubench "
                       "models list --help`); `models show NAME` prints one model's ModelInfo as JSON; `models "
                       "weights` lists the pretrained backbone files. None writes anything in the project.")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    pl = msub.add_parser(
        "list", help="table of models",
        description="Print every registered model with its family, year, reference params (ModelInfo), "
        "deep supervision and how often U-Bench's published per-dataset top-10s hold it (by IoU / by "
        "U-Score). Params and FLOPs (ptflops, 256²) are shown where cached; --flops computes the "
        "missing ones (seconds per model) and caches them in $XDG_CACHE_HOME/ubench/"
        "model_complexity.json (default ~/.cache/ubench/), keyed by a hash of the model's code.")
    pl.add_argument("--family", default=None, help="cnn, transformer, mamba, rwkv or hybrid")
    pl.add_argument("--flops", action="store_true",
                    help="compute params and FLOPs where not cached (builds each such model once)")
    pl.add_argument("--no-flops", action="store_true", help=argparse.SUPPRESS)  # deprecated: the default now
    pl.add_argument("--sort", choices=["name", "top10"], default="name",
                    help="name (default), or top10: most U-Bench top-10 places first, then name")
    pl.add_argument("--in-top10", action="store_true",
                    help="only models in at least one of U-Bench's published top-10s")
    pl.set_defaults(func=cmd_models_list)
    ps = msub.add_parser("show", help="one model's ModelInfo",
                         description="Print NAME's registry record (family, year, paper, reference params "
                         "and their source, accepted input sizes, deep supervision) as JSON, with "
                         "ubench_weights: whether `ubench weights import` takes U-Bench's released "
                         "weights for it (its key map's verdict, the difference measured against "
                         "U-Bench's module and how the tensors were paired), or why it refuses them.")
    ps.add_argument("name")
    ps.set_defaults(func=cmd_models_show)
    pw = msub.add_parser(
        "weights", help="pretrained backbone files: which model needs which, and whether they are here",
        description="List the ImageNet weight files U-Bench loads into some models' backbones, the "
        "models that load each, the URL U-Bench fetches it from, and whether the weights folder holds "
        "it. ubench never downloads them: with `train.pretrained: true` in params.yaml, training reads "
        "them from train.weights_dir and stops, naming the file, when one is missing.")
    pw.add_argument("--dir", default=None,
                    help="the weights folder (default: train.weights_dir of ./params.yaml, else weights)")
    pw.set_defaults(func=cmd_models_weights)


def cmd_models_list(args: argparse.Namespace) -> int:
    from ubench.model_table import models_table

    print(models_table(args.family, compute=args.flops, sort=args.sort, in_top10=args.in_top10))
    return 0


def cmd_models_weights(args: argparse.Namespace) -> int:
    from ubench.model_table import weights_table

    folder = args.dir
    if folder is None:
        folder = "weights"
        if Path("params.yaml").is_file():
            from ubench.config import load_config

            folder = load_config("params.yaml").train.weights_dir
    print(weights_table(folder))
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    from ubench.io import json_dumps
    from ubench.models import model_info

    print(json_dumps({"name": args.name, **model_info(args.name).to_dict(),
                      "ubench_weights": ubench_weights_verdict(args.name)}), end="")
    return 0


def ubench_weights_verdict(name: str) -> dict | None:
    """Whether U-Bench's released weights import onto ``name``, from its shipped key map (None for a
    model U-Bench does not have)."""
    from ubench.models import model_info
    from ubench.ubench_keymap import STATUSES, load_keymap

    if not model_info(name).ubench_name:
        return None
    km = load_keymap(name)
    if km is None:
        return {"imports": True, "verdict": "U-Bench's keys are ubench's (no key map)"}
    return {"imports": km.proven, "verdict": km.status, "meaning": STATUSES[km.status],
            "max_rel_diff": km.max_rel_diff, "paired_by": km.paired_by, "notes": km.notes, "source": km.source}


def _add_weights(sub) -> None:
    p = sub.add_parser("weights", help="import U-Bench's released checkpoints as ubench checkpoints",
                       description="Bring U-Bench's trained weights (its Model Zoo release) into ubench: "
                       "each checkpoint is read with the safe loader (tensors and U-Bench's argparse "
                       "config only), fitted onto ubench's model all or nothing (a checkpoint that does "
                       "not fit is refused, naming its missing, unexpected and mis-shaped keys), and "
                       "written in the format `ubench train` writes, with its provenance (file, SHA-256, "
                       "U-Bench model, epoch, config) under 'imported'.")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="SUBCOMMAND")
    pi = wsub.add_parser("import", help="import one U-Bench checkpoint",
                         description="Import CHECKPOINT (a checkpoint_best.pth / checkpoint_final.pth that "
                         "U-Bench's main.py wrote, or a bare state_dict) into models/imported/DATASET/"
                         "MODEL.pt. MODEL and DATASET default to what the checkpoint's config says "
                         "(U-Bench's model names map to ubench's through `ubench models show`'s "
                         "ubench_name); a bare state_dict needs both.")
    pi.add_argument("checkpoint", type=Path)
    pi.add_argument("--model", default=None, help="ubench's model name (default: from the checkpoint's config)")
    pi.add_argument("--dataset", default=None, help="the dataset it was trained on (default: from its config)")
    pi.add_argument("--out", type=Path, default=None,
                    help="where to write (default models/imported/DATASET/MODEL.pt); replaces only an "
                    "earlier import, never another file")
    pi.set_defaults(func=cmd_weights_import)
    pr = wsub.add_parser("import-release", help="import every checkpoint of a downloaded release",
                         description="Walk DIR (the folder U-Bench's download_weights_from_huggingface.py "
                         "fills), import every checkpoint whose embedded config names a model ubench has "
                         "(folder names are not trusted: the release layout is not documented), and print "
                         "a table: file, U-Bench model, ubench model, dataset, imported or refused and why. "
                         "Where a model and dataset have several files, the one named *best* is imported. "
                         "Exit 1 when any file is refused.")
    pr.add_argument("dir", type=Path)
    pr.add_argument("--out-root", type=Path, default=None,
                    help="write OUT_ROOT/DATASET/MODEL.pt (default models/imported/DATASET/MODEL.pt)")
    pr.set_defaults(func=cmd_weights_import_release)


def cmd_weights_import(args: argparse.Namespace) -> int:
    from ubench.ubench_weights import import_checkpoint

    row = import_checkpoint(args.checkpoint, args.model, args.dataset, args.out)
    print(f"imported {row.file} (U-Bench {row.ubench_model or 'state_dict'}) as {row.model} on {row.dataset} "
          f"-> {row.out}")
    return 0


def cmd_weights_import_release(args: argparse.Namespace) -> int:
    from ubench.ubench_weights import import_release, import_table

    rows = import_release(args.dir, args.out_root)
    print(import_table(rows, args.dir))
    return 0 if all(r.imported for r in rows) else 1


def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="list the registered datasets, or check a raw download",
                       description="`datasets list` prints the 28 U-Bench datasets (and the embedded "
                       "synthetic ones) with modality, classes, zero-shot targets, raw format and "
                       "licence. `datasets check DIR --format NAME` validates a raw download before "
                       "any stage runs: every unmatched, unreadable, mis-sized or non-binary file is "
                       "reported, and the exit status is 1 if there is any.")
    dsub = p.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="table of datasets",
                         description="Print the registered datasets as a Markdown table (modality, classes, "
                         "role, zero-shot targets, raw format for `datasets check --format`, licence), and "
                         "the `ubench` format for your own data in U-Bench's layout.")
    dl.add_argument("--modality", default=None, help="only this modality (e.g. ultrasound)")
    dl.set_defaults(func=cmd_datasets_list)
    dsh = dsub.add_parser("show", help="one dataset's record (JSON)",
                          description="Print NAME's registry record (source, licence, raw format, classes, "
                          "zero-shot targets …) as JSON.")
    dsh.add_argument("name")
    dsh.set_defaults(func=cmd_datasets_show)
    dc = dsub.add_parser("check", help="validate a raw dataset folder (exit 1 on problems)",
                         description="Validate a raw download before any stage runs. Exit status: "
                         "0 = clean, every image has exactly one valid mask; 1 = problems found, each "
                         "printed with its fix; 2 = the check could not run (unknown format, missing "
                         "folder).")
    dc.add_argument("dir", type=Path, help="the folder as downloaded (e.g. data/raw/busi)")
    dc.add_argument("--format", required=True, dest="fmt",
                    help="raw format name (the `format` column of `ubench datasets list`; `ubench` "
                    "for your own data in U-Bench's layout)")
    dc.set_defaults(func=cmd_datasets_check)


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from ubench.data import inspect

    print(inspect.datasets_table(args.modality))
    return 0


def cmd_datasets_show(args: argparse.Namespace) -> int:
    from ubench.data.registry import get_dataset
    from ubench.io import json_dumps

    print(json_dumps(get_dataset(args.name).to_dict()), end="")
    return 0


def cmd_datasets_check(args: argparse.Namespace) -> int:
    from ubench.data import inspect

    report, ok = inspect.check_report(args.dir, args.fmt)
    print(report)
    return 0 if ok else 1


def _add_verify(sub) -> None:
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
    p.add_argument("--metric-tolerance", type=float, default=0.01,
                   help="tolerance on computed metrics whose bytes differ on another platform: absolute "
                   "on values within ±1 (IoU, Dice), relative beyond (HD95 px); default 0.01")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the scratch workspace goes (default: the system temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch workspace (its path is printed)")
    p.add_argument("--quiet", action="store_true", help="do not echo dvc's output")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from ubench.verify import verify

    report = verify(".", args.stages, tolerance=args.tolerance, workdir=args.workdir, keep=args.keep,
                    quiet=args.quiet, metric_tolerance=args.metric_tolerance)
    print(report.table())
    return 0 if report.ok else 1


def _add_publish(sub) -> None:
    p = sub.add_parser("publish", help="push the pipeline's outputs to a DVC remote",
                       description="`dvc push` of every stage recorded in dvc.lock (checkpoints, "
                       "per-image results, metrics, reports) to REMOTE (default: the default remote, "
                       "`local`). Raw data and what is prepared from it stay out unless --with-data "
                       "(dataset licences rarely allow redistribution).")
    p.add_argument("-r", "--remote", default=None, help="remote name (`dvc remote list`)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="parallel transfers")
    p.add_argument("--with-data", action="store_true", help="also push data.dvc and prepare_raw@* outputs")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from ubench.publish import publish

    targets = publish(".", remote=args.remote, jobs=args.jobs, with_data=args.with_data)
    print(f"published the outputs of {len(targets)} targets to {args.remote or 'the default remote'}")
    return 0


def _add_grid(sub) -> None:
    p = sub.add_parser("grid", help="run the grid's out-of-date stages in parallel: local workers or Ray",
                       description="The grid beyond one `dvc repro` at a time.")
    gsub = p.add_subparsers(dest="grid_command", required=True, metavar="SUBCOMMAND")
    r = gsub.add_parser(
        "run", help="run what `dvc status` says is out of date, many stages at a time",
        description="Run the stages of dvc.yaml that are out of date (one `dvc status`; STAGES limits "
        "it to those stages and their upstream, as `dvc repro STAGES` does), as many at a time as "
        "resources allow. A model's train -> evaluate -> zero-shot chain is one task; each task runs "
        "`dvc repro` in a workspace of its own, so DVC's run cache restores what was computed before, "
        "and its dvc.lock entries are copied into this dvc.lock: at the end `dvc status` is clean and "
        "dvc.lock holds what a sequential `dvc repro` on the same kind of machine writes. A failed "
        "task is retried (--retries), then reported with its log (.ubench/grid/logs/) while the "
        "rest goes on. Ctrl-C keeps what finished; rerunning continues from there. "
        "--executor local: --jobs worker processes here, each on its own GPU(s) "
        "(CUDA_VISIBLE_DEVICES) or CPU cores, sharing the DVC cache. --executor ray: each task is a "
        "Ray task (pip install -e '.[ray]') on the cluster at --address, moving data through the DVC "
        "remote (--remote, default: the default remote), which every node must reach.")
    r.add_argument("stages", nargs="*", help="stage or group names (default: every stage)")
    r.add_argument("--executor", choices=("local", "ray"), default="local", help="where tasks run (default: local)")
    r.add_argument("-j", "--jobs", type=int, default=None,
                   help="local: worker processes (default: one per GPU share, or 1 without GPUs); "
                   "ray without --address: CPUs of the local Ray cluster it starts")
    r.add_argument("--address", default=None,
                   help="ray: cluster address (`ray start --head` prints it; 'auto' finds a running one); "
                   "default: start a local cluster for this run")
    r.add_argument("--gpus-per-job", type=int, default=None, help="GPUs per task (default: 1 if there are GPUs)")
    r.add_argument("--cpus-per-job", type=int, default=None,
                   help="CPU cores per task: local pins each worker to them (default: an equal share when "
                   "train.threads > 0, no pinning when it is 0); ray asks for them (default 1)")
    r.add_argument("--retries", type=int, default=2, help="retries of a failed task before it is reported (default 2)")
    r.add_argument("-r", "--remote", default=None, help="ray: the DVC remote tasks pull from and push to")
    r.add_argument("--dry", action="store_true", help="print the tasks and their order; run nothing")
    r.set_defaults(func=cmd_grid_run)


def cmd_grid_run(args: argparse.Namespace) -> int:
    from ubench.grid.driver import run_grid

    result = run_grid(".", executor=args.executor, jobs=args.jobs, address=args.address,
                      gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, retries=args.retries,
                      remote=args.remote, targets=args.stages, dry=args.dry)
    if args.dry:
        return 0
    print(result.report())
    return 130 if result.interrupted else (0 if result.ok else 1)


#: the tools, in the order `ubench --help` lists them (after the stage subcommands)
TOOLS = (_add_advise, _add_models, _add_weights, _add_datasets, _add_verify, _add_publish, _add_grid)
