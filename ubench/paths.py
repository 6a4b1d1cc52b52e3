"""Where every stage reads and writes: the one place that mirrors dvc.yaml's paths."""

from __future__ import annotations

from pathlib import Path

RAW = Path("data/raw")
PREPARED = Path("data/prepared")


def prepared(dataset: str) -> Path:
    return PREPARED / dataset


def checkpoint(dataset: str, model: str) -> Path:
    return Path("models") / dataset / f"{model}.pt"


def train_live(dataset: str, model: str) -> Path:
    return Path("metrics/train") / dataset / model


def eval_json(dataset: str, model: str) -> Path:
    return Path("metrics/eval") / dataset / f"{model}.json"


def per_image_csv(dataset: str, model: str) -> Path:
    return Path("results/per_image") / dataset / f"{model}.csv"


def zeroshot_json(source: str, target: str, model: str) -> Path:
    return Path("metrics/zeroshot") / source / target / f"{model}.json"


def zeroshot_csv(source: str, target: str, model: str) -> Path:
    return Path("results/zeroshot") / source / target / f"{model}.csv"


def complexity_json(model: str) -> Path:
    return Path("metrics/complexity") / f"{model}.json"


def speed_json(model: str) -> Path:
    return Path("metrics/speed") / f"{model}.json"


LEADERBOARD_JSON = Path("metrics/leaderboard.json")
LEADERBOARD_MD = Path("reports/leaderboard.md")
LEADERBOARD_PNG = Path("reports/leaderboard_iou.png")
LEADERBOARD_PLOT_CSV = Path("reports/plots/leaderboard.csv")
USCORE_JSON = Path("metrics/uscore.json")
USCORE_MD = Path("reports/uscore.md")
USCORE_PNG = Path("reports/iou_vs_uscore.png")
CANDIDATE_JSON = Path("metrics/candidate.json")


def candidate_checkpoint(dataset: str) -> Path:
    return Path("models/candidate") / f"{dataset}.pt"


def candidate_live(dataset: str) -> Path:
    return Path("metrics/train/candidate") / dataset


def candidate_eval_json(dataset: str) -> Path:
    return Path("metrics/candidate") / f"{dataset}.json"


def candidate_csv(dataset: str) -> Path:
    return Path("results/candidate") / f"{dataset}.csv"


ADVISOR_MODEL = Path("models/advisor.json")
ADVISOR_METRICS = Path("metrics/advisor.json")
