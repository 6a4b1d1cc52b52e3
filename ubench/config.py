"""params.yaml → a typed, validated config.

Every knob of the protocol lives in params.yaml (so DVC sees a change of protocol). This module turns
it into frozen dataclasses and refuses a bad file with an error that names the key, the value and
what is expected, instead of a traceback deep inside training.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ubench.errors import UbenchError, close_names


@dataclass(frozen=True)
class TransferPair:
    source: str
    target: str


@dataclass(frozen=True)
class GridConfig:
    models: tuple[str, ...] = ("unet", "unetpp", "attention_unet")
    datasets: tuple[str, ...] = ("synth",)
    transfer: tuple[TransferPair, ...] = (TransferPair("synth", "synth_shift"),)
    synthetic: tuple[str, ...] = ("synth", "synth_shift")
    raw: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyntheticConfig:
    n: int = 160
    size: int = 128
    seed: int = 41


@dataclass(frozen=True)
class SplitConfig:
    protocol: str = "holdout"
    seed: int = 41
    val_fraction: float = 0.2
    test_fraction: float = 0.25


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 64
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    max_pixel_value: float = 255.0
    extra_divide: float = 255.0
    augment: bool = True


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 41
    epochs: int = 6
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0001
    poly_power: float = 0.9
    lambda_ce: float = 0.5
    lambda_dice: float = 1.0
    num_workers: int = 0
    threads: int = 0


@dataclass(frozen=True)
class EvaluateConfig:
    threshold: float = 0.5


@dataclass(frozen=True)
class SpeedConfig:
    warmup: int = 3
    repeats: int = 10


@dataclass(frozen=True)
class EfficiencyConfig:
    input_size: int = 256
    speed: SpeedConfig = field(default_factory=SpeedConfig)


@dataclass(frozen=True)
class LeaderboardConfig:
    baseline: str = "unet"
    alpha: float = 0.05
    confidence: float = 0.95


@dataclass(frozen=True)
class CandidateConfig:
    model: str = "unet"
    datasets: tuple[str, ...] = ("synth",)


@dataclass(frozen=True)
class AdvisorConfig:
    by: str = "iou"  # rank models by IoU (computed) or U-Score (needs the FPS measurements)
    k: int = 5  # NDCG@k / MAP@k of the leave-one-dataset-out evaluation
    seed: int = 41
    n_estimators: int = 100


ADVISOR_BY = ("iou", "uscore")


@dataclass(frozen=True)
class Config:
    grid: GridConfig = field(default_factory=GridConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    efficiency: EfficiencyConfig = field(default_factory=EfficiencyConfig)
    leaderboard: LeaderboardConfig = field(default_factory=LeaderboardConfig)
    candidate: CandidateConfig = field(default_factory=CandidateConfig)
    advisor: AdvisorConfig = field(default_factory=AdvisorConfig)


PROTOCOLS = ("holdout", "ubench")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists → tuples)."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UbenchError(
                f"params.yaml: `{where}` must be a mapping of keys, got {value!r}",
                f"write `{where}:` followed by indented keys ({', '.join(f.name for f in dataclasses.fields(tp))})",
            )
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner,) = typing.get_args(tp)[:1]
        if not isinstance(value, list):
            raise UbenchError(
                f"params.yaml: `{where}` must be {_type_name(tp)}, got {value!r}",
                f"write it as a YAML list, e.g. `{where}: [...]`",
            )
        return tuple(_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise UbenchError(
            f"params.yaml: `{where}` must be {_type_name(tp)}, got {value!r} ({type(value).__name__})",
            f"set `{where}` to {_type_name(tp)} (default: see the README's params table)",
        )
    return float(value) if tp is float else value


def _build(cls: type, raw: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            close = close_names(str(key), names)
            hint = f"did you mean `{close[0]}`? " if close else ""
            prefix = f"{where}." if where else ""
            raise UbenchError(
                f"params.yaml: unknown key `{prefix}{key}`",
                f"{hint}known keys here: {', '.join(names)}",
            )
    kwargs = {}
    for name in names:
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    def need(cond: bool, what: str, fix: str) -> None:
        if not cond:
            raise UbenchError(f"params.yaml: {what}", fix)

    need(cfg.split.protocol in PROTOCOLS, f"`split.protocol` is {cfg.split.protocol!r}",
         f"use one of: {', '.join(PROTOCOLS)}")
    for key in ("val_fraction", "test_fraction"):
        v = getattr(cfg.split, key)
        need(0.0 < v < 1.0, f"`split.{key}` is {v}", "use a fraction strictly between 0 and 1")
    need(cfg.split.val_fraction + cfg.split.test_fraction < 1.0,
         "`split.val_fraction + split.test_fraction` leaves no training images", "make their sum < 1")
    need(cfg.data.image_size >= 32 and cfg.data.image_size % 32 == 0,
         f"`data.image_size` is {cfg.data.image_size}", "use a multiple of 32 (e.g. 64 or 256)")
    need(len(cfg.data.mean) == 3 and len(cfg.data.std) == 3 and all(s > 0 for s in cfg.data.std),
         "`data.mean`/`data.std` must hold 3 values (std > 0)", "give one value per RGB channel")
    need(cfg.data.max_pixel_value > 0 and cfg.data.extra_divide > 0,
         "`data.max_pixel_value` and `data.extra_divide` must be > 0", "use 255.0 (or 1.0 to disable)")
    for key in ("epochs", "batch_size"):
        need(getattr(cfg.train, key) >= 1, f"`train.{key}` is {getattr(cfg.train, key)}", "use an integer >= 1")
    need(cfg.train.lr > 0, f"`train.lr` is {cfg.train.lr}", "use a positive learning rate, e.g. 0.01")
    need(cfg.train.num_workers >= 0 and cfg.train.threads >= 0,
         "`train.num_workers`/`train.threads` must be >= 0", "use 0 (threads: 0 = every core)")
    need(0.0 < cfg.evaluate.threshold < 1.0, f"`evaluate.threshold` is {cfg.evaluate.threshold}",
         "use a probability threshold in (0, 1), e.g. 0.5")
    need(cfg.efficiency.input_size >= 32 and cfg.efficiency.input_size % 32 == 0,
         f"`efficiency.input_size` is {cfg.efficiency.input_size}", "use a multiple of 32 (256 = protocol)")
    need(cfg.efficiency.speed.repeats >= 1 and cfg.efficiency.speed.warmup >= 0,
         "`efficiency.speed.repeats` must be >= 1 and `warmup` >= 0", "e.g. warmup: 3, repeats: 10")
    need(0.0 < cfg.leaderboard.alpha < 1.0 and 0.0 < cfg.leaderboard.confidence < 1.0,
         "`leaderboard.alpha`/`leaderboard.confidence` must be in (0, 1)", "e.g. alpha 0.05, confidence 0.95")
    need(len(cfg.grid.models) > 0 and len(cfg.grid.datasets) > 0,
         "`grid.models` and `grid.datasets` must not be empty", "list at least one model and dataset")
    need(len(set(cfg.grid.models)) == len(cfg.grid.models), "`grid.models` lists a model twice",
         "remove the duplicate")
    need(cfg.leaderboard.baseline in cfg.grid.models,
         f"the baseline `{cfg.leaderboard.baseline}` is not in `grid.models`",
         "add it to grid.models: every variant is compared against it")
    prepared = set(cfg.grid.synthetic) | set(cfg.grid.raw)
    need(not set(cfg.grid.synthetic) & set(cfg.grid.raw),
         f"`grid.synthetic` and `grid.raw` share {sorted(set(cfg.grid.synthetic) & set(cfg.grid.raw))}",
         "a dataset is either generated (synthetic) or read from data/raw (raw), not both")
    for ds in (*cfg.grid.datasets, *(p.target for p in cfg.grid.transfer)):
        need(ds in prepared, f"dataset `{ds}` is used in `grid` but not prepared by any stage",
             "add it to `grid.raw` (a U-Bench-layout folder at data/raw/<name>) or `grid.synthetic`")
    for pair in cfg.grid.transfer:
        need(pair.source in cfg.grid.datasets,
             f"`grid.transfer` source `{pair.source}` is not in `grid.datasets`",
             "a zero-shot pair needs models trained on its source: add the source to grid.datasets")
    need(cfg.advisor.by in ADVISOR_BY, f"`advisor.by` is {cfg.advisor.by!r}",
         f"use one of: {', '.join(ADVISOR_BY)}")
    need(cfg.advisor.k >= 1 and cfg.advisor.n_estimators >= 1,
         "`advisor.k` and `advisor.n_estimators` must be >= 1", "e.g. k: 5, n_estimators: 100")
    for ds in cfg.candidate.datasets:
        need(ds in cfg.grid.datasets, f"`candidate.datasets` has `{ds}`, which is not in `grid.datasets`",
             "the candidate is compared with the baseline's results there: add it to grid.datasets")


def config_from_dict(raw: dict | None) -> Config:
    """Build and validate a Config from parsed params.yaml content (missing keys take defaults)."""
    cfg = _build(Config, raw or {}, "")
    _validate(cfg)
    return cfg


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate params.yaml; a missing or unparsable file is a UbenchError."""
    path = Path(path)
    if not path.exists():
        raise UbenchError(f"{path} not found", "run ubench from the project root (where params.yaml is)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UbenchError(f"{path} is not valid YAML: {exc}", "fix the syntax at the line shown") from exc
    if raw is not None and not isinstance(raw, dict):
        raise UbenchError(f"{path} must be a mapping of sections", "see the README's params table")
    return config_from_dict(raw)


def as_dict(cfg: Any) -> Any:
    """A plain-JSON view of a config (tuples → lists), for recording in metrics files."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: as_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, tuple):
        return [as_dict(v) for v in cfg]
    return cfg


