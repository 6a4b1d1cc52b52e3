"""Where every stage reads and writes: the one place that mirrors dvc.yaml's paths.

Every name is checked against the one name rule (``ubench.names``) here, where paths are built, so
no name can make a path leave its folder, whoever calls.
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


def train_live(dataset: str, model: str) -> Path:
    return Path("metrics/train") / _d(dataset) / _m(model)


def eval_json(dataset: str, model: str) -> Path:
    return Path("metrics/eval") / _d(dataset) / f"{_m(model)}.json"


def per_image_csv(dataset: str, model: str) -> Path:
    return Path("results/per_image") / _d(dataset) / f"{_m(model)}.csv"


def zeroshot_json(source: str, target: str, model: str) -> Path:
    return Path("metrics/zeroshot") / _d(source) / _d(target) / f"{_m(model)}.json"


def zeroshot_csv(source: str, target: str, model: str) -> Path:
    return Path("results/zeroshot") / _d(source) / _d(target) / f"{_m(model)}.csv"


def complexity_json(model: str) -> Path:
    return Path("metrics/complexity") / f"{_m(model)}.json"


def speed_json(model: str) -> Path:
    return Path("metrics/speed") / f"{_m(model)}.json"


LEADERBOARD_JSON = Path("metrics/leaderboard.json")
LEADERBOARD_MD = Path("reports/leaderboard.md")
LEADERBOARD_PNG = Path("reports/leaderboard_iou.png")
LEADERBOARD_PLOT_CSV = Path("reports/plots/leaderboard.csv")
USCORE_JSON = Path("metrics/uscore.json")
USCORE_MD = Path("reports/uscore.md")
USCORE_PNG = Path("reports/iou_vs_uscore.png")
CANDIDATE_JSON = Path("metrics/candidate.json")


def candidate_checkpoint(dataset: str) -> Path:
    return Path("models/candidate") / f"{_d(dataset)}.pt"


def candidate_live(dataset: str) -> Path:
    return Path("metrics/train/candidate") / _d(dataset)


def candidate_eval_json(dataset: str) -> Path:
    return Path("metrics/candidate") / f"{_d(dataset)}.json"


def candidate_csv(dataset: str) -> Path:
    return Path("results/candidate") / f"{_d(dataset)}.csv"


ADVISOR_MODEL = Path("models/advisor.json")
ADVISOR_METRICS = Path("metrics/advisor.json")
