"""Training the advisor from the pipeline's outputs, and answering `ubench advise`.

The model file (``models/advisor.json``) carries everything `advise` needs besides the new
dataset: the ranker, what it ranks by, and the attributes of each model it knows (params, FLOPs,
FPS, family), so a published advisor can be pulled (`dvc pull models/advisor.json`) and used
without training anything. With fewer than two datasets in the grid nothing can be learnt or held
out: the stage then writes both files with ``trained: false`` and the reason, and `advise` says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ubench import paths
from ubench.config import Config, as_dict
from ubench.errors import UbenchError
from ubench.io import json_dumps, write_files_atomic

ADVICE_COLUMNS = ("model", "family", "params_m", "gflops", "fps", "predicted")


def train_advisor(cfg: Config, model_path: Path = paths.ADVISOR_MODEL,
                  metrics_path: Path = paths.ADVISOR_METRICS) -> dict:
    """Build the table, evaluate leave-one-dataset-out, train on everything, write both files."""
    from ubench.advisor.ranker import CATEGORICAL_FEATURES, evaluate_lodo, train_ranker
    from ubench.advisor.table import build_table, numeric_features

    ac = cfg.advisor
    datasets = list(cfg.grid.datasets)
    if len(datasets) < 2:
        reason = (f"the grid has {len(datasets)} in-domain dataset ({', '.join(datasets)}): the advisor "
                  "needs at least 2 to learn how rankings change with the data and to hold one out")
        doc = {"trained": False, "reason": reason, "by": ac.by, "datasets": datasets}
        none = dict.fromkeys((f"advisor_ndcg_at_{ac.k}", f"baseline_ndcg_at_{ac.k}", "advisor_spearman",
                              "baseline_spearman"))  # no held-out score: null, never NaN
        write_files_atomic({model_path: json_dumps(doc), metrics_path: json_dumps(none)})
        return doc
    table, models = build_table(cfg, ac.by)
    numeric = numeric_features(ac.by)
    params = {"n_estimators": ac.n_estimators}
    lodo = evaluate_lodo(table, k=ac.k, seed=ac.seed, params=params, numeric=numeric,
                         categorical=list(CATEGORICAL_FEATURES))
    advisor = train_ranker(table, seed=ac.seed, params=params, numeric=numeric,
                           categorical=list(CATEGORICAL_FEATURES))
    # the held-out evaluation travels with the model (what `ubench advise` reports); the metrics
    # file is DVC's view of it: the four numbers a person compares between experiments
    doc = {**advisor.to_dict(), "trained": True, "by": ac.by, "model_table": models,
           "config": as_dict(ac), "lodo": lodo}
    metrics = {f"advisor_ndcg_at_{ac.k}": lodo["mean"]["advisor"]["ndcg_at_k"],
               f"baseline_ndcg_at_{ac.k}": lodo["mean"]["baseline"]["ndcg_at_k"],
               "advisor_spearman": lodo["mean"]["advisor"]["spearman"],
               "baseline_spearman": lodo["mean"]["baseline"]["spearman"]}
    write_files_atomic({model_path: json_dumps(doc), metrics_path: json_dumps(metrics)})  # a pair, or neither
    return {"trained": True, "by": ac.by, "k": ac.k, **metrics, "lodo": lodo}


def load_model_file(path: Path):
    """(Advisor, the file's ubench metadata) — clear errors for a missing or untrained file."""
    from ubench.advisor.ranker import load_advisor

    path = Path(path)
    absent = _absent_advisor(path)
    if absent is not None:
        raise absent
    doc = json.loads(path.read_text(encoding="utf-8"))
    return load_advisor(path), doc


def _absent_advisor(path: Path) -> UbenchError | None:
    """The error for a missing or untrained advisor file, None otherwise; `advise` turns it into a
    note when it has published rankings to show. A broken file is left to fail in the loader."""
    path = Path(path)
    if not path.exists():
        return UbenchError(
            f"advisor model {path} not found",
            "train it with `dvc repro advisor`, or fetch the published one with `dvc pull models/advisor.json`",
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(doc, dict) and not doc.get("trained", False):
        return UbenchError(f"the advisor in {path} was not trained: {doc.get('reason', 'unknown reason')}",
                           "add a second dataset to grid.datasets and `dvc repro advisor`")
    return None


def dataset_features(dataset: str, prepared_root: Path = Path("data/prepared")) -> tuple[str, dict]:
    """(name, {modality, attributes…}) of a prepared dataset, given its name or its folder.

    A manifest without attributes (prepared by an older ubench) gets them computed from the arrays.
    """
    from ubench.advisor.ranker import DATASET_FEATURES
    from ubench.data.attributes import dataset_attributes

    folder = Path(dataset)
    if not (folder / "manifest.json").exists():
        folder = Path(prepared_root) / dataset
    if not (folder / "manifest.json").exists():
        from ubench.data.registry import list_datasets

        known = dataset in list_datasets()
        raise UbenchError(
            f"no prepared dataset at {dataset!r}"
            + (f" (it is registered but not prepared: {folder} is missing)" if known else ""),
            f"run `ubench prepare {Path(dataset).name}` first" if known else
            "pass a registered dataset name you have prepared, or a folder with manifest.json, images.npy and masks.npy",
        )
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    attrs = manifest.get("attributes")
    if not attrs:
        attrs = dataset_attributes(np.load(folder / "images.npy", mmap_mode="r"),
                                   np.load(folder / "masks.npy", mmap_mode="r"),
                                   int(manifest.get("num_classes", 1)))
    return manifest.get("name", folder.name), {
        "modality": manifest.get("modality", "unknown"), **{k: attrs.get(k) for k in DATASET_FEATURES}}


def _fps(model: str, rec: dict) -> float | None:
    """FPS from the model file (advisors ranking by U-Score), else this workspace's measurement."""
    if rec.get("fps") is not None:
        return float(rec["fps"])
    p = paths.speed_json(model)
    return float(json.loads(p.read_text(encoding="utf-8"))["fps"]) if p.exists() else None


def _limit_text(max_params, max_gflops, min_fps) -> str:
    parts = [f"params <= {max_params} M" if max_params is not None else "",
             f"GFLOPs <= {max_gflops}" if max_gflops is not None else "",
             f"FPS >= {min_fps}" if min_fps is not None else ""]
    return ", ".join(p for p in parts if p) or "none"


def _check_limits(max_params, max_gflops, min_fps, top) -> None:
    """Bad limits fail before anything is printed."""
    for name, value in (("--max-params", max_params), ("--max-gflops", max_gflops), ("--min-fps", min_fps)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UbenchError(f"{name} must be a non-negative number, got {value}", f"e.g. {name} 5")
    if top < 1:
        raise UbenchError(f"--top must be >= 1, got {top}", "e.g. --top 5")


def lodo_summary(doc: dict) -> dict:
    """The advisor's leave-one-dataset-out scores beside the dataset-blind baseline's, from the
    model file itself (``lodo``, written with the model), so a user can judge how far to trust it.

    ``missing`` says why there are none (a model file written before ubench kept them there).
    ``beats`` holds, per metric, whether the advisor scored strictly higher (None if undefined).
    """
    out = {"k": None, "n_held_out": None, "by": doc.get("by"), "advisor": {}, "baseline": {},
           "beats": {}, "missing": None}
    lodo = doc.get("lodo")
    if not isinstance(lodo, dict) or "mean" not in lodo:
        out["missing"] = "the model file has no held-out evaluation; `dvc repro advisor` writes one"
        return out
    out.update(k=lodo.get("k"), n_held_out=lodo["mean"].get("n_held_out"))
    for who in ("advisor", "baseline"):
        out[who] = {"ndcg": lodo["mean"][who].get("ndcg_at_k"), "spearman": lodo["mean"][who].get("spearman")}
    for metric in ("ndcg", "spearman"):
        a, b = out["advisor"][metric], out["baseline"][metric]
        out["beats"][metric] = None if a is None or b is None else bool(a > b)
    return out


def render_lodo(s: dict) -> list[str]:
    """The held-out score line, and a warning when the advisor does not beat the baseline."""
    if s["missing"]:
        return [f"held-out score: not available ({s['missing']})"]
    what = "U-Score" if s["by"] == "uscore" else "IoU"
    k = s["k"]

    def v(x):
        return "–" if x is None else f"{x:.3f}"

    lines = [f"held-out score (leave one dataset out, {s['n_held_out']} datasets): "
             f"NDCG@{k} advisor {v(s['advisor']['ndcg'])} vs baseline {v(s['baseline']['ndcg'])}, "
             f"Spearman advisor {v(s['advisor']['spearman'])} vs baseline {v(s['baseline']['spearman'])} "
             f"(baseline: each model's mean min-max-normalised {what} over the other datasets, "
             "blind to the dataset's attributes)"]
    names = {"ndcg": f"NDCG@{k}", "spearman": "Spearman"}
    fails = [names[m] for m, ok in s["beats"].items() if ok is False]
    if fails:
        lines.append(f"⚠ the advisor does not beat ranking by each model's mean {what} over the other "
                     f"datasets (on {' and '.join(fails)}); treat its order as weak evidence")
    elif all(ok is None for ok in s["beats"].values()):
        lines.append("⚠ no held-out score is defined, so whether the advisor beats the baseline is unknown")
    return lines


def recommend(dataset: str, model_path: Path = paths.ADVISOR_MODEL, *, by: str | None = None,
              max_params: float | None = None, max_gflops: float | None = None,
              min_fps: float | None = None, top: int = 5) -> tuple[pd.DataFrame, dict]:
    """The advisor's ranking of its known models for ``dataset`` under the resource limits."""
    _check_limits(max_params, max_gflops, min_fps, top)
    advisor, doc = load_model_file(model_path)
    if by is not None and by != doc["by"]:
        raise UbenchError(
            f"the advisor in {model_path} ranks by {doc['by']}, not {by}",
            f"retrain it with `dvc exp run -S advisor.by={by}` (or drop --by)",
        )
    name, feats = dataset_features(dataset)
    rows = [{"dataset": name, "model": m, **feats, **rec, "fps": _fps(m, rec)}
            for m, rec in sorted(doc["model_table"].items())]
    table = pd.DataFrame(rows)
    keep = pd.Series(True, index=table.index)
    if max_params is not None:
        keep &= table["params_m"] <= max_params
    if max_gflops is not None:
        keep &= table["gflops"] <= max_gflops
    if min_fps is not None:
        if table["fps"].isna().all():
            raise UbenchError("--min-fps needs FPS measurements, and none are available here",
                              "run the speed stages (`dvc repro speed`) or drop --min-fps")
        keep &= table["fps"].fillna(-1.0) >= min_fps
    if not keep.any():
        best = (f"smallest params {table['params_m'].min():.3g} M, smallest GFLOPs "
                f"{table['gflops'].min():.3g}, highest FPS "
                + (f"{table['fps'].max():.3g}" if table["fps"].notna().any() else "unmeasured"))
        raise UbenchError(
            f"no model the advisor knows meets the limits ({_limit_text(max_params, max_gflops, min_fps)})",
            f"relax them: {best}",
        )
    table = table[keep].reset_index(drop=True)
    table["predicted"] = advisor.predict(table)
    table = table.sort_values(["predicted", "model"], ascending=[False, True], kind="stable")
    info = {"dataset": name, "by": doc["by"], "features": feats,
            "limits": _limit_text(max_params, max_gflops, min_fps), "candidates": int(keep.sum()),
            "trained_on": list(doc["training"]["datasets"]), "lodo": lodo_summary(doc)}
    return table.head(top).reset_index(drop=True)[list(ADVICE_COLUMNS)], info


def render_advice(table: pd.DataFrame, info: dict) -> str:
    """The ranked table as Markdown, with the dataset's attributes above it."""
    f = info["features"]

    def num(v, fmt):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    head = [
        f"Advice for {info['dataset']} (ranked by predicted {info['by']}; advisor trained on "
        f"{', '.join(info['trained_on'])})",
        f"attributes: modality {f['modality']}, foreground fraction {num(f.get('foreground_fraction'), '.3f')}, "
        f"boundary contrast {num(f.get('boundary_contrast'), '.2f')}, solidity {num(f.get('solidity'), '.3f')}",
        f"limits: {info['limits']} ({info['candidates']} model(s) qualify)",
        *(render_lodo(info["lodo"]) if info.get("lodo") else []),
        "",
        "| rank | model | family | predicted score | params (M) | GFLOPs | FPS |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in table.iterrows():
        head.append(f"| {i + 1} | {r['model']} | {r['family']} | {r['predicted']:.3f} | "
                    f"{r['params_m']:.3f} | {r['gflops']:.3f} | {num(r['fps'], '.1f')} |")
    head.append("\nThe predicted score orders models for this dataset; it is not an IoU.")
    return "\n".join(head)


# ---------------------------------------------------------------------------------------------
# U-Bench's published rankings, shown by `ubench advise` before any local result exists

def _name_and_modality(dataset: str) -> tuple[str, str | None]:
    """(name, modality) of a prepared folder's manifest, a registered dataset or a dataset prepared
    under data/prepared, in that order; (the argument, None) when none of them knows it."""
    from ubench.data.registry import get_dataset, list_datasets

    def manifest(folder: Path) -> dict | None:
        try:
            doc = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    if (doc := manifest(Path(dataset))) is not None:
        return str(doc.get("name", Path(dataset).name)), doc.get("modality")
    if dataset in list_datasets():
        return dataset, get_dataset(dataset).modality
    if (doc := manifest(paths.PREPARED / dataset)) is not None:
        return str(doc.get("name", dataset)), doc.get("modality")
    return dataset, None


def published_rankings(dataset: str) -> dict | None:
    """U-Bench's published top-10 lists that bear on ``dataset``, or None if none do.

    Its own lists where U-Bench ranked it (by ubench name or U-Bench's label); else, for a dataset
    of known modality, those of the zero-shot pairs into it and of the in-domain datasets of that
    modality U-Bench ranked. Facts from the page, not measurements: see ``ubench_reference``.
    """
    from ubench.analysis import ubench_reference as ubref
    from ubench.data.registry import get_dataset, list_datasets

    name, modality = _name_and_modality(dataset)
    rankings = ubref.reference_data()["rankings"]
    key = ubref.resolve_dataset(name)
    if key in rankings:
        keys = [key]
    elif modality in (None, "unknown", "synthetic"):
        return None
    else:
        registered = set(list_datasets())
        into = [k for k in ubref.ranked_datasets("zero-shot") if rankings[k].get("target") == name]
        same = [k for k in ubref.ranked_datasets("in-domain")
                if k in registered and get_dataset(k).modality == modality]
        keys = into + same
        if not keys:
            return None
    return {"dataset": name, "ranked": key in rankings, "modality": modality,
            "source": ubref.source_label(),
            "lists": [{"key": k, "label": rankings[k]["label"], "setting": rankings[k]["setting"],
                       "iou": ubref.published_top10(k, "iou"), "uscore": ubref.published_top10(k, "uscore")}
                      for k in keys]}


def render_published(pub: dict) -> str:
    """One table per dataset: rank, the model by IoU and by U-Score, each with ubench's name."""
    if pub["ranked"]:
        head = [f"U-Bench's top-10 for {pub['dataset']}, published by U-Bench ({pub['source']}), "
                "not measured here:"]
    else:
        head = [f"U-Bench did not rank {pub['dataset']}; its published top-10 lists for zero-shot pairs "
                f"into it and for the {pub['modality']} datasets it ranked follow, published by U-Bench "
                f"({pub['source']}), not measured here:"]
    head.append("(ubench: the ubench registry name where ubench has the model, `ubench models show "
                "NAME`; '–' where it does not)")

    def cell(e):
        return f"{e['name']} | {e['model'] or '–'}"

    for rec in pub["lists"]:
        head += ["", f"{rec['label']} ({rec['setting']})", "",
                 "| rank | by IoU | ubench | by U-Score | ubench |", "|---|---|---|---|---|"]
        for a, b in zip(rec["iou"], rec["uscore"]):
            head.append(f"| {a['rank']} | {cell(a)} | {cell(b)} |")
    return "\n".join(head)


def _unknown_dataset(dataset: str, cause: UbenchError) -> UbenchError:
    """Nothing to show: name the datasets U-Bench ranked, and say how to get an advisor."""
    from ubench.analysis import ubench_reference as ubref
    from ubench.errors import close_names

    ranked = ubref.ranked_datasets("in-domain")
    close = close_names(dataset, ranked)
    return UbenchError(
        f"unknown dataset {dataset!r}: U-Bench published no ranking for it, it is neither registered "
        f"nor prepared here, and there is no advisor to rank models for it ({cause.what})",
        (f"did you mean {', '.join(close)}? " if close else "")
        + f"U-Bench ranked: {', '.join(ranked)}; for your own data, prepare it and train the advisor "
        "(`dvc repro advisor`)")


def advise(dataset: str, model_path: Path = paths.ADVISOR_MODEL, *, by: str | None = None,
           max_params: float | None = None, max_gflops: float | None = None,
           min_fps: float | None = None, top: int = 5):
    """`ubench advise`, block by block: U-Bench's published rankings for ``dataset`` (if any), then
    the advisor's ranking, or, with no trained advisor, how to train one.

    A generator, so what was found is printed even if the advisor then fails; without a trained
    advisor and with nothing published to show, the advisor's error stands.
    """
    _check_limits(max_params, max_gflops, min_fps, top)
    pub = published_rankings(dataset)
    absent = _absent_advisor(model_path)
    if absent is not None and pub is None:
        if _name_and_modality(dataset)[1] is None and not Path(dataset).exists():
            raise _unknown_dataset(dataset, absent)
        raise absent
    if pub is not None:
        yield render_published(pub)
    if absent is not None:
        yield (f"No trained advisor here ({absent.what}), so nothing is ranked from ubench's own results. "
               f"To get one: {absent.fix}.")
        return
    table, info = recommend(dataset, model_path, by=by, max_params=max_params, max_gflops=max_gflops,
                            min_fps=min_fps, top=top)
    yield render_advice(table, info)
