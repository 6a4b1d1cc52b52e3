"""params.yaml → a typed, validated config.

Every knob of the protocol lives in params.yaml (so DVC sees a change of protocol), and only there:
the dataclasses below have no defaults, so a missing key is an error that names it, never a silent
fallback to a second, different default. This module turns the file into frozen dataclasses and
refuses a bad file (unknown or missing key, duplicate key, wrong type or value, unknown model or
dataset name) with an error that names the file given, the key, the value and what is expected,
instead of a traceback deep inside training.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ubench.errors import UbenchError, close_names, unknown_name_error
from ubench.names import check_name, check_split


@dataclass(frozen=True)
class TransferPair:
    source: str
    target: str


@dataclass(frozen=True)
class ImportedWeights:
    """U-Bench weights imported with `ubench weights import` (models/imported/DATASET/MODEL.pt)."""

    model: str
    dataset: str


@dataclass(frozen=True)
class GridConfig:
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    transfer: tuple[TransferPair, ...]
    synthetic: tuple[str, ...]
    raw: tuple[str, ...]
    imported: tuple[ImportedWeights, ...]


@dataclass(frozen=True)
class SyntheticConfig:
    n: int
    size: int
    seed: int


@dataclass(frozen=True)
class SplitConfig:
    protocol: str
    seed: int
    val_fraction: float
    test_fraction: float


@dataclass(frozen=True)
class DataConfig:
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_pixel_value: float
    extra_divide: float
    augment: bool


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    poly_power: float
    lambda_ce: float
    lambda_dice: float
    threads: int
    amp: str  # off | bf16 | fp16 (runtime.AMP_DTYPES)
    channels_last: bool
    compile: bool
    resume_every: int  # keep a resume state every N epochs (0 = never)
    pretrained: bool  # load the ImageNet backbone weights U-Bench loads (ubench/models/pretrained.py)
    weights_dir: str  # the folder those weight files are read from (never downloaded)


@dataclass(frozen=True)
class EvaluateConfig:
    threshold: float
    hd95: bool  # test and zero-shot; validation never computes it


@dataclass(frozen=True)
class SpeedConfig:
    warmup: int
    window: int
    max_seconds: float
    tolerance: float


@dataclass(frozen=True)
class EfficiencyConfig:
    input_size: int
    speed: SpeedConfig


@dataclass(frozen=True)
class LeaderboardConfig:
    baseline: str
    alpha: float
    confidence: float


@dataclass(frozen=True)
class CandidateConfig:
    model: str
    datasets: tuple[str, ...]


@dataclass(frozen=True)
class AdvisorConfig:
    by: str  # rank models by IoU (computed) or U-Score (needs the FPS measurements)
    k: int  # NDCG@k / MAP@k of the leave-one-dataset-out evaluation
    seed: int
    n_estimators: int


ADVISOR_BY = ("iou", "uscore")
AMP_MODES = ("off", "bf16", "fp16")  # the keys of ubench.runtime.AMP_DTYPES


@dataclass(frozen=True)
class UscoreConfig:
    reference: str  # ubench: U-Bench's published percentiles | grid: over the models present
    floor: float  # each term raised to at least this (U-Bench's calculator: 0.05; 0 = Eq. 1-3 as printed)


USCORE_REFERENCES = ("ubench", "grid")


@dataclass(frozen=True)
class Config:
    grid: GridConfig
    synthetic: SyntheticConfig
    split: SplitConfig
    data: DataConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    efficiency: EfficiencyConfig
    leaderboard: LeaderboardConfig
    candidate: CandidateConfig
    advisor: AdvisorConfig
    uscore: UscoreConfig


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists → tuples)."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UbenchError(
                f"{source}: `{where}` must be a mapping of keys, got {value!r}",
                f"write `{where}:` followed by indented keys ({', '.join(f.name for f in dataclasses.fields(tp))})",
            )
        return _build(tp, value, where, source)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner,) = typing.get_args(tp)[:1]
        if not isinstance(value, list):
            raise UbenchError(
                f"{source}: `{where}` must be {_type_name(tp)}, got {value!r}",
                f"write it as a YAML list, e.g. `{where}: [...]`",
            )
        return tuple(_convert(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value))
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise UbenchError(
            f"{source}: `{where}` must be {_type_name(tp)}, got {value!r} ({type(value).__name__})",
            f"set `{where}` to {_type_name(tp)} (see the comments in the project's params.yaml)",
        )
    return float(value) if tp is float else value


def _build(cls: type, raw: dict, where: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{where}." if where else ""
    for key in raw:
        if key not in names:
            close = close_names(str(key), names)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise UbenchError(f"{source}: unknown key `{prefix}{key}`", f"{hint}known keys here: {', '.join(names)}")
    missing = [n for n in names if n not in raw]
    if missing:
        keys = ", ".join(f"`{prefix}{n}`" for n in missing)
        raise UbenchError(
            f"{source}: missing key{'s' if len(missing) > 1 else ''} {keys}",
            "params.yaml is the one source of every value (ubench has no hidden defaults): copy the "
            "missing keys from the project's params.yaml",
        )
    return cls(**{n: _convert(raw[n], hints[n], f"{prefix}{n}", source) for n in names})


def _validate_names(cfg: Config, source: str) -> None:
    """Every dataset and model name follows the name rule; every model is registered."""
    from ubench.models.registry import known_model_names

    g = cfg.grid
    datasets = [("grid.datasets", d) for d in g.datasets] + [("grid.synthetic", d) for d in g.synthetic]
    datasets += [("grid.raw", d) for d in g.raw] + [("candidate.datasets", d) for d in cfg.candidate.datasets]
    datasets += [(f"grid.transfer[{i}]", d) for i, p in enumerate(g.transfer) for d in (p.source, p.target)]
    datasets += [(f"grid.imported[{i}]", e.dataset) for i, e in enumerate(g.imported)]
    for where, name in datasets:
        check_name("dataset", name, f"{source} `{where}`")
    models = [("grid.models", m) for m in g.models] + [("candidate.model", cfg.candidate.model),
                                                        ("leaderboard.baseline", cfg.leaderboard.baseline)]
    models += [(f"grid.imported[{i}]", e.model) for i, e in enumerate(g.imported)]
    known = known_model_names()
    for where, name in models:
        check_name("model", name, f"{source} `{where}`")
        if name not in known:
            raise unknown_name_error("model", name, known, f"fix `{where}` in {source}")


def _validate(cfg: Config, source: str) -> None:
    def need(cond: bool, what: str, fix: str) -> None:
        if not cond:
            raise UbenchError(f"{source}: {what}", fix)

    _validate_names(cfg, source)
    check_split(cfg.split.protocol, cfg.split.val_fraction, cfg.split.test_fraction, source=source, key="split.")
    need(cfg.synthetic.n >= 3 and cfg.synthetic.size >= 16,
         f"`synthetic.n` is {cfg.synthetic.n} and `synthetic.size` {cfg.synthetic.size}", "use n >= 3 and size >= 16")
    need(cfg.data.image_size >= 32 and cfg.data.image_size % 32 == 0,
         f"`data.image_size` is {cfg.data.image_size}", "use a multiple of 32 (e.g. 64 or 256)")
    need(len(cfg.data.mean) == 3 and len(cfg.data.std) == 3 and all(s > 0 for s in cfg.data.std),
         "`data.mean`/`data.std` must hold 3 values (std > 0)", "give one value per RGB channel")
    need(cfg.data.max_pixel_value > 0 and cfg.data.extra_divide > 0,
         "`data.max_pixel_value` and `data.extra_divide` must be > 0", "use 255.0 (or 1.0 to disable)")
    for key in ("epochs", "batch_size"):
        need(getattr(cfg.train, key) >= 1, f"`train.{key}` is {getattr(cfg.train, key)}", "use an integer >= 1")
    need(cfg.train.lr > 0, f"`train.lr` is {cfg.train.lr}", "use a positive learning rate, e.g. 0.01")
    need(cfg.train.weights_dir.strip() != "", "`train.weights_dir` is empty",
         "name the folder that holds the pretrained backbone files, e.g. `weights`")
    need(cfg.train.threads >= 0, f"`train.threads` is {cfg.train.threads}", "use 0 (every core) or a count")
    need(cfg.train.amp in AMP_MODES, f"`train.amp` is {cfg.train.amp!r}", f"use one of: {', '.join(AMP_MODES)}")
    need(cfg.train.resume_every >= 0, f"`train.resume_every` is {cfg.train.resume_every}",
         "use 0 (no resume state) or a number of epochs, e.g. 10")
    need(0.0 < cfg.evaluate.threshold < 1.0, f"`evaluate.threshold` is {cfg.evaluate.threshold}",
         "use a probability threshold in (0, 1), e.g. 0.5")
    need(cfg.efficiency.input_size >= 32 and cfg.efficiency.input_size % 32 == 0,
         f"`efficiency.input_size` is {cfg.efficiency.input_size}", "use a multiple of 32 (256 = protocol)")
    sp = cfg.efficiency.speed
    need(sp.window >= 1 and sp.warmup >= 0 and sp.max_seconds > 0 and 0 < sp.tolerance < 1,
         "`efficiency.speed` needs window >= 1, warmup >= 0, max_seconds > 0 and 0 < tolerance < 1",
         "e.g. warmup: 2, window: 5, max_seconds: 15, tolerance: 0.05")
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
    for i, entry in enumerate(cfg.grid.imported):
        need(entry.dataset in cfg.grid.datasets,
             f"`grid.imported[{i}]` dataset `{entry.dataset}` is not in `grid.datasets`",
             "imported weights are tested against the baseline trained there: add it to grid.datasets")
    need(len(set(cfg.grid.imported)) == len(cfg.grid.imported), "`grid.imported` lists an entry twice",
         "remove the duplicate")
    need(cfg.advisor.by in ADVISOR_BY, f"`advisor.by` is {cfg.advisor.by!r}",
         f"use one of: {', '.join(ADVISOR_BY)}")
    need(cfg.advisor.k >= 1 and cfg.advisor.n_estimators >= 1,
         "`advisor.k` and `advisor.n_estimators` must be >= 1", "e.g. k: 5, n_estimators: 100")
    need(cfg.uscore.reference in USCORE_REFERENCES, f"`uscore.reference` is {cfg.uscore.reference!r}",
         f"use one of: {', '.join(USCORE_REFERENCES)}")
    need(0.0 <= cfg.uscore.floor < 1.0, f"`uscore.floor` is {cfg.uscore.floor}",
         "use 0.05 (U-Bench's calculator) or 0 (U-Bench's Eq. 1-3 as printed)")
    for ds in cfg.candidate.datasets:
        need(ds in cfg.grid.datasets, f"`candidate.datasets` has `{ds}`, which is not in `grid.datasets`",
             "the candidate is compared with the baseline's results there: add it to grid.datasets")


def config_from_dict(raw: dict | None, source: str = "params.yaml") -> Config:
    """Build and validate a Config from parsed params content: every key must be there."""
    if not raw:
        raise UbenchError(f"{source} is empty", "copy the project's params.yaml: every key must be set")
    train = raw.get("train")
    if isinstance(train, dict) and train.get("amp") is False:  # YAML 1.1 reads a bare `off` as false
        raw = {**raw, "train": {**train, "amp": "off"}}
    cfg = _build(Config, raw, "", source)
    _validate(cfg, source)
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path) -> dict:
    """Parse a params file strictly (duplicate keys refused); errors name the file given."""
    path = Path(path)
    if not path.exists():
        raise UbenchError(f"{path} not found", "run ubench from the project root (where params.yaml is), "
                          "or pass --params PATH")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise UbenchError(f"{path} is not valid YAML: {exc}", "fix the syntax at the line shown") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UbenchError(f"cannot read {path}: {exc}", "check the file's permissions and encoding") from exc
    if raw is not None and not isinstance(raw, dict):
        raise UbenchError(f"{path} must be a mapping of sections", "see the project's params.yaml")
    return raw or {}


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate a params file; every problem is a UbenchError naming that file."""
    return config_from_dict(read_params(path), source=str(path))


def as_dict(cfg: Any) -> Any:
    """A plain-JSON view of a config (tuples → lists), for recording in metrics files."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: as_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, tuple):
        return [as_dict(v) for v in cfg]
    return cfg
