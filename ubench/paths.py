"""Where every stage reads and writes: the one place that mirrors dvc.yaml's paths.

Every name is checked against the one name rule (``ubench.names``) here, where paths are built, so
no name can make a path leave its folder, whoever calls.

Two folders of results, by who reads them:
- ``metrics/``: the few numbers a person compares between commits and experiments (mean IoU per
  model and dataset, U-Score, the candidate's deltas, the advisor's held-out score). Small, in git
  (``cache: false``), declared as DVC metrics, so ``dvc metrics diff`` and ``dvc exp show`` print
  readable tables from any clone.
- ``results/``: everything else a stage computes. Summaries (JSON, training logs) are in git too;
  per-image tables and checkpoints (``models/``) live in the DVC cache.
"""

from __future__ import annotations

from pathlib import Path

from ubench.names import check_name

RAW = Path("data/raw")
PREPARED = Path("data/prepared")


def _d(name: str) -> str:
    return check_name("dataset", name)


def _m(name: str) -> str:
    return check_name("model", name)


def prepared(dataset: str) -> Path:
    return PREPARED / _d(dataset)


def checkpoint(dataset: str, model: str) -> Path:
    return Path("models") / _d(dataset) / f"{_m(model)}.pt"


TRAIN_ROOT = Path("results/train")
# Resume states of unfinished training runs (ubench.train): not a DVC output, ignored by git and
# DVC, removed when the run finishes. Mirrors the checkpoint's path, so every checkpoint has one.
RESUME_ROOT = Path(".ubench/resume")


def resume_state(ckpt: Path) -> Path:
    """Where the unfinished run that writes checkpoint ``ckpt`` keeps its resume state."""
    ckpt = Path(ckpt)
    parts = ckpt.parts[1:] if ckpt.is_absolute() else ckpt.parts
    if ".." in parts:
        raise ValueError(f"checkpoint path {ckpt} leaves its folder")
    return RESUME_ROOT.joinpath(*parts)


def train_live(dataset: str, model: str) -> Path:
    return TRAIN_ROOT / _d(dataset) / _m(model)


def eval_json(dataset: str, model: str) -> Path:
    return Path("results/eval") / _d(dataset) / f"{_m(model)}.json"


def per_image_csv(dataset: str, model: str) -> Path:
    return Path("results/per_image") / _d(dataset) / f"{_m(model)}.csv"


def zeroshot_json(source: str, target: str, model: str) -> Path:
    return Path("results/zeroshot") / _d(source) / _d(target) / f"{_m(model)}.json"


def zeroshot_csv(source: str, target: str, model: str) -> Path:
    return Path("results/zeroshot") / _d(source) / _d(target) / f"{_m(model)}.csv"


def leaderboard_metric(dataset: str) -> Path:
    """One in-domain dataset's row of the summary: {model: mean IoU}."""
    return LEADERBOARD_METRICS / f"{_d(dataset)}.json"


def leaderboard_zeroshot_metric(source: str, target: str) -> Path:
    return LEADERBOARD_METRICS / "zeroshot" / _d(source) / f"{_d(target)}.json"


def complexity_json(model: str) -> Path:
    return Path("results/complexity") / f"{_m(model)}.json"


def speed_json(model: str) -> Path:
    return Path("results/speed") / f"{_m(model)}.json"


LEADERBOARD_JSON = Path("results/leaderboard.json")  # everything; metrics/leaderboard/ is its summary
LEADERBOARD_METRICS = Path("metrics/leaderboard")
LEADERBOARD_MD = Path("reports/leaderboard.md")
LEADERBOARD_PNG = Path("reports/leaderboard_iou.png")
LEADERBOARD_PLOTS = Path("reports/plots/leaderboard")  # one CSV per dataset: one bar chart each
USCORE_JSON = Path("results/uscore.json")
USCORE_METRICS = Path("metrics/uscore.json")
USCORE_MD = Path("reports/uscore.md")
USCORE_PNG = Path("reports/iou_vs_uscore.png")
REPORT_HTML = Path("reports/index.html")   # self-contained: opens offline
TRAINING_PNG = Path("reports/training_iou.png")
TRAINING_PLOTS = Path("reports/plots/training")  # one CSV per dataset, every model's curve
CANDIDATE_METRICS = Path("metrics/candidate")  # one row per candidate.datasets entry
CANDIDATE_REPORT_JSON = Path("results/candidate_report.json")


def imported_checkpoint(dataset: str, model: str) -> Path:
    """A U-Bench checkpoint imported by `ubench weights import` (ubench's checkpoint format)."""
    return Path("models/imported") / _d(dataset) / f"{_m(model)}.pt"


def imported_per_image_dir(dataset: str, model: str) -> Path:
    """evaluate_imported@'s cached output: the per-image rows of imported U-Bench weights. Under
    "imported", a reserved dataset name, so it never meets a dataset's own folder."""
    return Path("results/per_image/imported") / _d(dataset) / _m(model)


def imported_eval_dir(dataset: str, model: str) -> Path:
    """evaluate_imported@'s summaries (in git), beside the grid's under results/eval/imported/."""
    return Path("results/eval/imported") / _d(dataset) / _m(model)


def _imported_name(target: str | None, suffix: str) -> str:
    return f"zeroshot_{_d(target)}{suffix}" if target else f"test{suffix}"


def imported_per_image(dataset: str, model: str, target: str | None = None) -> Path:
    """Rows on ``dataset``'s test split, or (with ``target``) zero-shot on all of ``target``."""
    return imported_per_image_dir(dataset, model) / _imported_name(target, ".csv")


def imported_eval(dataset: str, model: str, target: str | None = None) -> Path:
    return imported_eval_dir(dataset, model) / _imported_name(target, ".json")


def candidate_checkpoint(dataset: str) -> Path:
    return Path("models/candidate") / f"{_d(dataset)}.pt"


def candidate_live(dataset: str) -> Path:
    return Path("results/candidate/train") / _d(dataset)


def candidate_eval_json(dataset: str) -> Path:
    return Path("results/candidate") / f"{_d(dataset)}.json"


def candidate_csv(dataset: str) -> Path:
    return Path("results/candidate") / f"{_d(dataset)}.csv"


ADVISOR_MODEL = Path("models/advisor.json")
ADVISOR_METRICS = Path("metrics/advisor.json")


CODE = Path("results/code")


def code_digest(kind: str, model: str | None = None) -> Path:
    """The ``code`` stage's digest of the sources a stage of ``kind`` runs (ubench/stage_sources.py)."""
    return CODE / kind / f"{_m(model)}.json" if model else CODE / f"{kind}.json"
