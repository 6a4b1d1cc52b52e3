"""The model advisor: an XGBoost ranker that orders U-Net variants for a dataset.

Input is one table with a row per (dataset, model) pair: ``dataset``, ``model``, ``score`` (IoU or
U-Score on that dataset, higher is better) and the feature columns below. The functions here are
pure functions of that table (and a seed); only :meth:`Advisor.save` / :func:`load_advisor` touch
files.

Features (:data:`FEATURE_COLUMNS`):

- numeric dataset attributes (:data:`DATASET_FEATURES`, from ``ubench.data.attributes``):
  ``foreground_fraction``, ``boundary_contrast``, ``solidity``, ``isoperimetric``,
  ``objects_per_image``;
- numeric model attributes (:data:`MODEL_FEATURES`): ``params_m``, ``gflops``, ``fps`` and
  ``deep_supervision`` (0/1);
- categorical (:data:`CATEGORICAL_FEATURES`): ``modality`` (of the dataset) and ``family`` (of the
  model), one-hot encoded over the categories seen in training, sorted, and stored in the model
  file, so the columns never depend on row order. A category not seen in training (or a missing
  one) encodes as all zeros.

A numeric feature may be missing (NaN/None): XGBoost treats it as a missing value and learns, at
each split, which side missing values go to. That is meant for ``fps`` (a speed measurement a
model may lack) and for dataset attributes that are undefined on some data (e.g.
``boundary_contrast`` without any boundary); infinities are refused.

Labels (:func:`relevance_labels`): per dataset, the number of models a model beats (strictly lower
score; ties share a grade), compressed to at most :data:`MAX_GRADE` + 1 grades when the dataset
has more than 31 models: ``grade = beaten * G // n`` with ``G = min(n, 31)``. With up to 31
models that is exactly the number beaten (0 .. n-1); beyond, equal-width rank bins 0 .. 30. So
the label is integer, non-negative, at most 30 (XGBoost's ``rank:ndcg`` with its default
exponential gain refuses labels above 31), and depends only on the order of the scores, not on
their scale, so datasets with different IoU levels teach the same thing.

Objective: ``rank:pairwise`` by default, over all pairs of models within a dataset
(``lambdarank_pair_method="topk"`` with no truncation), shallow trees (depth 3). On the synthetic
leaderboard of the tests it ranked held-out datasets better (NDCG@5 and Spearman) than
``rank:ndcg``, with either gain. ``rank:ndcg`` is available through ``params``; it then runs with
linear gain (``ndcg_exp_gain: False``) unless told otherwise, matching the linear gain of the
evaluation's NDCG (``ubench.advisor.ranking_metrics``) instead of letting the top grade's
``2^30`` swamp everything else.

Determinism: rows are sorted by (dataset, model) before training, XGBoost runs single-threaded
(``n_jobs=1``) with ``tree_method="hist"`` and ``random_state=seed``, and the saved file is
written with sorted keys: two trainings with the same table, seed and params give byte-identical
files (with the same xgboost version; the booster records it).

Evaluation (:func:`evaluate_lodo`): leave one dataset out, train on the rest, rank the held-out
dataset's models, and compare with the true order by NDCG@k, MAP@k and Spearman. The baseline
ignores the dataset: it ranks models by their mean normalised score over the training datasets,
where a dataset's scores are min-max scaled to [0, 1] first, so that a dataset where every model
scores high does not outweigh one where every model scores low.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from ubench.advisor.ranking_metrics import map_at_k, min_max, ndcg_at_k, predicted_order, spearman
from ubench.errors import AnalysisInputError, UbenchError, unknown_name_error
from ubench.io import write_json_atomic

#: numeric dataset attributes (from ``ubench.data.attributes``)
DATASET_FEATURES = ("foreground_fraction", "boundary_contrast", "solidity", "isoperimetric",
                    "objects_per_image")
#: numeric model attributes (complexity, speed, deep supervision as 0/1)
MODEL_FEATURES = ("params_m", "gflops", "fps", "deep_supervision")
NUMERIC_FEATURES = DATASET_FEATURES + MODEL_FEATURES
#: one-hot encoded over the sorted categories seen in training
CATEGORICAL_FEATURES = ("modality", "family")
#: every feature column the table must have (with the default feature lists)
FEATURE_COLUMNS = NUMERIC_FEATURES + CATEGORICAL_FEATURES
#: the columns that identify a row and its target
KEY_COLUMNS = ("dataset", "model", "score")
#: the largest relevance label (XGBoost's exponential NDCG gain allows at most 31)
MAX_GRADE = 30
#: ranking objectives XGBoost offers
OBJECTIVES = ("rank:ndcg", "rank:pairwise", "rank:map")
#: defaults, in ``xgboost.XGBRanker``'s vocabulary; ``random_state`` is always the ``seed``
#: argument. Training calls ``xgboost.train`` (the same booster XGBRanker builds, without
#: needing scikit-learn): ``n_estimators`` -> boosting rounds, ``n_jobs`` -> nthread,
#: ``random_state`` -> seed
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "rank:pairwise",
    "lambdarank_pair_method": "topk",
    "n_estimators": 100,
    "max_depth": 3,
    "learning_rate": 0.1,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "tree_method": "hist",
    "n_jobs": 1,
}
#: added for ``rank:ndcg`` unless ``params`` set them: linear gain, as in the evaluation's NDCG
NDCG_DEFAULTS: dict[str, Any] = {"ndcg_exp_gain": False}
FORMAT = "ubench-advisor"
FORMAT_VERSION = 1
#: the baseline's score for a model absent from every training dataset: below any mean in [0, 1]
UNSEEN_MODEL_SCORE = -1.0

_FEATURE_FIX = ("merge the dataset attributes (ubench.data.attributes) and the model attributes "
                "(params_m, gflops, fps, deep_supervision, family) into the table")


# ---------------------------------------------------------------------------------------------
# Validation

def _require_frame(table: Any, where: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise AnalysisInputError(
            f"{where}: expected a pandas DataFrame, got {type(table).__name__}",
            "pass the advisor table as a DataFrame")
    if len(table) == 0:
        raise AnalysisInputError(f"{where}: the table has no rows",
                                 "run the evaluate stages so that there are scores to learn from")
    return table


def _require_columns(table: pd.DataFrame, columns: Sequence[str], where: str, fix: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        kind = "feature column(s)" if set(missing) - set(KEY_COLUMNS) else "column(s)"
        raise AnalysisInputError(f"{where}: table lacks {kind} {missing}", fix)


def _numeric(table: pd.DataFrame, columns: Sequence[str], where: str) -> pd.DataFrame:
    """``columns`` as float64; None/NaN stay missing, text or infinities are refused."""
    out = {}
    for c in columns:
        col = table[c]
        try:
            values = pd.to_numeric(col.astype(object).where(col.notna(), np.nan), errors="raise")
        except (TypeError, ValueError):
            bad = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()]
            raise AnalysisInputError(
                f"{where}: feature {c!r} has non-numeric value(s) {bad.astype(str).tolist()[:3]}",
                "numeric features must be numbers (missing values as NaN/None)") from None
        arr = values.to_numpy(dtype=float)
        if np.isinf(arr).any():
            raise AnalysisInputError(f"{where}: feature {c!r} has infinite value(s)",
                                     "use NaN for a missing value; fix the attribute that "
                                     "produced an infinity")
        out[c] = arr
    return pd.DataFrame(out, index=table.index)


def _categorical(col: pd.Series) -> pd.Series:
    """Category values as strings; missing (None/NaN) stays None."""
    return col.astype(object).where(col.notna(), None).map(lambda v: None if v is None else str(v))


def _check_features(numeric: Sequence[str] | None, categorical: Sequence[str] | None
                    ) -> tuple[list[str], list[str]]:
    num = list(NUMERIC_FEATURES if numeric is None else numeric)
    cat = list(CATEGORICAL_FEATURES if categorical is None else categorical)
    names = num + cat
    if not names:
        raise AnalysisInputError("no feature columns given", "use the default FEATURE_COLUMNS")
    dup = sorted({n for n in names if names.count(n) > 1})
    clash = sorted(set(names) & set(KEY_COLUMNS))
    if dup or clash:
        raise AnalysisInputError(f"feature columns repeated {dup} or clashing with {clash}",
                                 "name each feature once, and not dataset/model/score")
    return num, cat


def check_table(table: pd.DataFrame, numeric: Sequence[str] | None = None,
                categorical: Sequence[str] | None = None, min_datasets: int = 2,
                where: str = "advisor table") -> pd.DataFrame:
    """Validated copy of ``table``: rows sorted by (dataset, model), index 0..n-1.

    Refuses (with a UbenchError saying what to do): a missing column, a NaN/infinite score, a
    (dataset, model) pair twice, fewer than ``min_datasets`` datasets, a dataset with fewer than
    two models, non-numeric or infinite numeric features.
    """
    num, cat = _check_features(numeric, categorical)
    table = _require_frame(table, where)
    _require_columns(table, KEY_COLUMNS, where,
                     "the table needs dataset, model and score (IoU or U-Score) per row")
    _require_columns(table, num + cat, where, _FEATURE_FIX)
    out = pd.DataFrame({"dataset": table["dataset"].astype(str),
                        "model": table["model"].astype(str)}, index=table.index)
    score = pd.to_numeric(table["score"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(score)
    if bad.any():
        rows = out[bad].head(3)
        pairs = ", ".join(f"{d}/{m}" for d, m in zip(rows["dataset"], rows["model"]))
        raise AnalysisInputError(
            f"{where}: {int(bad.sum())} score(s) are NaN, missing or infinite (e.g. {pairs})",
            "every (dataset, model) row needs a finite score; re-run its evaluate stage or drop "
            "the row")
    out["score"] = score
    dup = out[out.duplicated(["dataset", "model"], keep=False)]
    if len(dup):
        pairs = sorted({f"{d}/{m}" for d, m in zip(dup["dataset"], dup["model"])})
        raise AnalysisInputError(f"{where}: (dataset, model) pair(s) appear more than once: "
                                 f"{pairs[:5]}", "give one row per dataset and model")
    datasets = sorted(out["dataset"].unique())
    if len(datasets) < min_datasets:
        raise AnalysisInputError(
            f"{where}: {len(datasets)} dataset(s) {datasets}; the advisor needs at least "
            f"{min_datasets}: it learns how rankings change between datasets, and the evaluation "
            "holds one out",
            "evaluate the models on more datasets (grid.datasets in params.yaml)")
    counts = out.groupby("dataset")["model"].count()
    few = sorted(counts[counts < 2].index)
    if few:
        raise AnalysisInputError(
            f"{where}: dataset(s) {few} have fewer than 2 models; there is nothing to rank",
            "evaluate at least two models on each dataset, or drop those datasets")
    out = out.join(_numeric(table, num, where))
    for c in cat:
        out[c] = _categorical(table[c])
    return out.sort_values(["dataset", "model"], kind="mergesort").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Labels and normalised scores

def normalised_scores(table: pd.DataFrame) -> pd.Series:
    """Each score min-max scaled within its dataset (best 1, worst 0; all 0 if all tie)."""
    _require_columns(table, ("dataset", "score"), "normalised_scores", "pass the advisor table")
    out = pd.Series(np.zeros(len(table)), index=table.index, name="normalised_score")
    for _, idx in table.groupby("dataset", sort=True).groups.items():
        out.loc[idx] = min_max(table.loc[idx, "score"].to_numpy(dtype=float))
    return out


def relevance_labels(table: pd.DataFrame) -> pd.Series:
    """Integer relevance per row: models beaten within the dataset, binned to at most 0..30.

    ``grade = beaten * G // n`` with ``n`` the dataset's models, ``G = min(n, 31)`` and ``beaten``
    the number of models with a strictly lower score (tied models share a grade).
    """
    _require_columns(table, ("dataset", "score"), "relevance_labels", "pass the advisor table")
    out = pd.Series(np.zeros(len(table), dtype=np.int64), index=table.index, name="relevance")
    for _, idx in table.groupby("dataset", sort=True).groups.items():
        s = table.loc[idx, "score"].to_numpy(dtype=float)
        n = s.size
        beaten = np.searchsorted(np.sort(s), s, side="left")
        out.loc[idx] = beaten * min(n, MAX_GRADE + 1) // n
    return out


# ---------------------------------------------------------------------------------------------
# The advisor

def _feature_name(column: str, value: str) -> str:
    # XGBoost refuses '[', ']' and '<' in feature names
    return re.sub(r"[\[\]<]", "_", f"{column}={value}")


@dataclass
class Advisor:
    """A trained ranker: the booster, the features it expects and how it was trained."""

    booster: xgb.Booster
    numeric: list[str]
    categories: dict[str, list[str]]
    params: dict[str, Any]
    seed: int
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        """The design matrix's columns: numeric features, then one column per category."""
        return self.numeric + [_feature_name(c, v) for c in sorted(self.categories)
                               for v in self.categories[c]]

    def design_matrix(self, table: pd.DataFrame) -> np.ndarray:
        """Features of each row (in row order) as float64; missing numeric values are NaN."""
        table = _require_frame(table, "advisor input")
        _require_columns(table, self.numeric + sorted(self.categories), "advisor input",
                         _FEATURE_FIX)
        cols = [_numeric(table, self.numeric, "advisor input").to_numpy(dtype=float)]
        for c in sorted(self.categories):
            values = _categorical(table[c]).to_numpy(dtype=object)
            cols.append(np.stack([values == v for v in self.categories[c]], axis=1).astype(float)
                        if self.categories[c] else np.zeros((len(table), 0)))
        return np.concatenate(cols, axis=1)

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Ranking score per row (higher = recommended); comparable within one dataset."""
        dm = xgb.DMatrix(self.design_matrix(table), missing=np.nan,
                         feature_names=self.feature_names, nthread=1)
        return self.booster.predict(dm).astype(np.float64)

    def rank(self, table: pd.DataFrame) -> list[str]:
        """The table's models (one dataset's candidates) by predicted score, best first, ties
        by name."""
        _require_columns(table, ("model",), "advisor input", "add a model column")
        pred = self.predict(table)
        names = table["model"].astype(str).tolist()
        return [m for _, m in sorted(zip(-pred, names))]

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of the model file (the booster as XGBoost's own JSON model)."""
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "numeric_features": list(self.numeric),
            "categories": {c: list(v) for c, v in sorted(self.categories.items())},
            "feature_names": self.feature_names,
            "params": dict(self.params), "seed": int(self.seed),
            "labels": f"models beaten within the dataset, binned to 0..{MAX_GRADE}",
            "training": {"datasets": list(self.datasets), "models": list(self.models)},
            "xgboost_version": xgb.__version__,
            "booster": json.loads(bytes(self.booster.save_raw("json")).decode("utf-8")),
        }

    def save(self, path: str | Path) -> None:
        """Write the advisor to one JSON file, atomically; same training -> same bytes."""
        write_json_atomic(path, self.to_dict())


def load_advisor(path: str | Path) -> Advisor:
    """Read a model file written by :meth:`Advisor.save`."""
    path = Path(path)
    fix = "run `ubench advisor train` to (re)create it"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UbenchError(f"advisor model file {str(path)!r} does not exist", fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UbenchError(f"cannot read advisor model file {str(path)!r}: {exc}", fix) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UbenchError(f"{str(path)!r} is not a ubench advisor model file", fix)
    if doc.get("format_version") != FORMAT_VERSION:
        raise UbenchError(f"{str(path)!r} has advisor format version "
                          f"{doc.get('format_version')!r}; this ubench reads version "
                          f"{FORMAT_VERSION}", fix)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(json.dumps(doc["booster"]).encode("utf-8")))
    except (KeyError, xgb.core.XGBoostError) as exc:
        raise UbenchError(f"advisor model file {str(path)!r} holds no valid booster: {exc}",
                          fix) from None
    booster.set_param({"nthread": 1})
    advisor = Advisor(booster=booster, numeric=list(doc["numeric_features"]),
                      categories={c: list(v) for c, v in doc["categories"].items()},
                      params=dict(doc["params"]), seed=int(doc["seed"]),
                      datasets=list(doc["training"]["datasets"]),
                      models=list(doc["training"]["models"]))
    if advisor.feature_names != list(doc["feature_names"]):
        raise UbenchError(f"advisor model file {str(path)!r} is inconsistent (feature names)", fix)
    return advisor


def _effective_params(params: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise AnalysisInputError(f"seed must be an integer, got {seed!r}", "use e.g. seed=41")
    params = dict(params or {})
    for key in ("random_state", "seed"):
        if key in params:
            raise AnalysisInputError(f"params must not set {key!r}",
                                     "pass the seed as the seed argument")
    out = {**DEFAULT_PARAMS, **params, "random_state": int(seed)}
    if out["objective"] not in OBJECTIVES:
        raise AnalysisInputError(f"objective {out['objective']!r} is not a ranking objective",
                                 f"use one of {list(OBJECTIVES)}")
    if out["objective"] == "rank:ndcg":
        out = {**NDCG_DEFAULTS, **out}
    return out


def _fit(table: pd.DataFrame, seed: int, params: Mapping[str, Any] | None,
         numeric: list[str], categorical: list[str]) -> Advisor:
    """Train on an already validated, sorted table (one or more datasets)."""
    eff = _effective_params(params, seed)
    categories = {c: sorted({v for v in table[c] if v is not None}) for c in categorical}
    advisor = Advisor(booster=xgb.Booster(), numeric=list(numeric), categories=categories,
                      params=eff, seed=int(seed),
                      datasets=sorted(table["dataset"].unique()),
                      models=sorted(table["model"].unique()))
    x = advisor.design_matrix(table)
    y = relevance_labels(table).to_numpy()
    qid = table["dataset"].map({d: i for i, d in enumerate(advisor.datasets)}).to_numpy()
    native = dict(eff)
    rounds = int(native.pop("n_estimators"))
    native["nthread"] = native.pop("n_jobs")
    native["seed"] = native.pop("random_state")
    dtrain = xgb.DMatrix(x, label=y, qid=qid, missing=np.nan,
                         feature_names=advisor.feature_names, nthread=1)
    advisor.booster = xgb.train(native, dtrain, num_boost_round=rounds)
    advisor.booster.set_param({"nthread": 1})
    return advisor


def train_ranker(table: pd.DataFrame, seed: int = 41, params: Mapping[str, Any] | None = None,
                 numeric: Sequence[str] | None = None,
                 categorical: Sequence[str] | None = None) -> Advisor:
    """Train the advisor on every (dataset, model) row of ``table``.

    ``params`` override :data:`DEFAULT_PARAMS` (XGBRanker keyword arguments); ``numeric`` and
    ``categorical`` override the feature lists (default :data:`NUMERIC_FEATURES` and
    :data:`CATEGORICAL_FEATURES`). Needs at least two datasets, each with at least two models.
    """
    num, cat = _check_features(numeric, categorical)
    clean = check_table(table, num, cat, min_datasets=2)
    return _fit(clean, seed, params, num, cat)


# ---------------------------------------------------------------------------------------------
# Evaluation

def baseline_scores(train: pd.DataFrame, models: Sequence[str]) -> np.ndarray:
    """The dataset-blind baseline: each model's mean normalised score over ``train``'s datasets.

    A model absent from every training dataset gets :data:`UNSEEN_MODEL_SCORE` (ranked last).
    """
    norm = train.assign(_n=normalised_scores(train)).groupby("model")["_n"].mean()
    return np.array([float(norm[m]) if m in norm.index else UNSEEN_MODEL_SCORE for m in models])


def _metrics(true: np.ndarray, pred: np.ndarray, k: int, relevant_top: int | None) -> dict:
    return {"ndcg_at_k": ndcg_at_k(true, pred, k),
            "map_at_k": map_at_k(true, pred, k, relevant_top),
            "spearman": spearman(true, pred)}


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate_lodo(table: pd.DataFrame, k: int = 5, seed: int = 41,
                  held_out: Sequence[str] | None = None, params: Mapping[str, Any] | None = None,
                  numeric: Sequence[str] | None = None, categorical: Sequence[str] | None = None,
                  relevant_top: int | None = None) -> dict:
    """Leave-one-dataset-out evaluation of the advisor against the dataset-blind baseline.

    For each dataset in ``held_out`` (default: every dataset), train on all the other datasets,
    score the held-out dataset's models with the advisor and with :func:`baseline_scores`, and
    compare each with the true scores: NDCG@k, MAP@k (relevant = true top ``relevant_top``,
    default ``k``) and Spearman (see ``ubench.advisor.ranking_metrics`` for the gain, the ties
    and when a metric is None). ``mean`` averages each metric over the held-out datasets where it
    is defined (None if none). The result holds only plain JSON values, never NaN (undefined
    metrics are None); ``ubench.io`` checks that when it is written.
    """
    num, cat = _check_features(numeric, categorical)
    clean = check_table(table, num, cat, min_datasets=2)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise AnalysisInputError(f"k must be an integer >= 1, got {k!r}", "use e.g. k=5")
    datasets = sorted(clean["dataset"].unique())
    if held_out is None:
        targets = datasets
    else:
        targets = sorted({str(d) for d in held_out})
        if not targets:
            raise AnalysisInputError("no held-out datasets given",
                                     "name at least one dataset, or pass None for all")
        for d in targets:
            if d not in datasets:
                raise unknown_name_error("dataset", d, datasets, "hold out a dataset of the table")
    eff = _effective_params(params, seed)

    per: dict[str, dict] = {}
    for ds in targets:
        train = clean[clean["dataset"] != ds].reset_index(drop=True)
        test = clean[clean["dataset"] == ds].reset_index(drop=True)
        advisor = _fit(train, seed, params, num, cat)
        true = test["score"].to_numpy(dtype=float)
        names = test["model"].tolist()
        scores = {"advisor": advisor.predict(test), "baseline": baseline_scores(train, names)}
        top_true = [names[i] for i in np.lexsort((np.arange(len(names)), -true))[:k]]
        per[ds] = {
            "n_models": len(names), "n_train_datasets": len(datasets) - 1,
            **{who: _metrics(true, s, k, relevant_top) for who, s in scores.items()},
            "top_k": {"true": top_true,
                      **{who: [names[i] for i in predicted_order(true, s)[:k]]
                         for who, s in scores.items()}},
        }
    mean = {who: {m: _mean([per[d][who][m] for d in targets])
                  for m in ("ndcg_at_k", "map_at_k", "spearman")}
            for who in ("advisor", "baseline")}
    return {
        "protocol": "leave-one-dataset-out", "k": int(k),
        "relevant_top": int(k if relevant_top is None else relevant_top),
        "seed": int(seed), "params": eff,
        "datasets": datasets, "models": sorted(clean["model"].unique()),
        "baseline": "mean min-max normalised score over the training datasets",
        "held_out": per, "mean": {**mean, "n_held_out": len(targets)},
    }
