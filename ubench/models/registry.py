"""Model registry, after timm's ``_registry.py``.

Each model lives in its own module ``ubench/models/<name>.py`` (flat, as in timm: DVC stages depend
on ``ubench/models/${model}.py``, so the file's path must follow from the name alone). The module
defines a factory ``def <name>(num_classes: int = 1, in_channels: int = 3)`` decorated with
``@register_model(ModelInfo(...))``, and nothing else that every model would repeat: the registry
rejects options a factory does not take, and ``create_model`` attaches an input check built from
the ModelInfo (``input_sizes`` / ``size_multiple``) that runs before every forward, as smp's
``SegmentationModel`` checks the input shape once for all its models. Modules are imported only
when a model is asked for, so one model's missing optional dependency never breaks the others.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ubench.errors import UbenchError, unknown_name_error

if TYPE_CHECKING:  # the registry itself needs no torch: `known_model_names` stays cheap
    import torch.nn as nn

FAMILIES = ("cnn", "transformer", "mamba", "rwkv", "hybrid")
_PACKAGE = "ubench.models"
_NOT_MODELS = {"registry", "ops", "pretrained", "__init__"}


@dataclass(frozen=True)
class ModelInfo:
    """What the benchmark needs to know about a variant besides its code."""

    family: str
    year: int
    paper: str
    deep_supervision: bool = False
    ref_params_m: float | None = None  # reference parameter count, millions (3 in, 1 class)
    ref_source: str = ""  # where ref_params_m comes from (U-Bench models/..., or the paper)
    ref_input_size: int = 256  # input size of the configuration U-Bench benchmarks
    # None: any H, W that are multiples of ``size_multiple``; else the only square sizes accepted
    # (e.g. (224,) for a transformer with fixed positional embeddings)
    input_sizes: tuple[int, ...] | None = None
    size_multiple: int = 32
    notes: str = ""
    extra: dict = field(default_factory=dict)
    # U-Bench's name for this model (its class name in models/__init__.py, the `--model` of its
    # main.py) and its id in models/model_id.json (FengheTan9/U-Bench): how results and imported
    # weights map across
    ubench_name: str = ""
    ubench_id: int | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} not in {FAMILIES}")

    def to_dict(self) -> dict:
        return asdict(self)

    def accepts(self, size: int) -> bool:
        """Whether a square input of ``size`` pixels suits this model."""
        if self.input_sizes is not None:
            return size in self.input_sizes
        return size % self.size_multiple == 0

    def size_for(self, size: int) -> int:
        """``size`` where the model takes it, else the size of the configuration U-Bench benchmarks
        (params/FLOPs/FPS of a fixed-size model are measured at its own size, and say so)."""
        return size if self.accepts(size) else self.ref_input_size

    def smallest_size(self, at_least: int = 64) -> int:
        """The smallest accepted square size >= ``at_least`` (what quick tests run at)."""
        if self.input_sizes is not None:
            bigger = [s for s in sorted(self.input_sizes) if s >= at_least]
            return bigger[0] if bigger else max(self.input_sizes)
        return -(-at_least // self.size_multiple) * self.size_multiple


_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, ModelInfo] = {}
_IMPORT_ERRORS: dict[str, Exception] = {}


def register_model(info: ModelInfo):
    """Decorator: register ``fn`` under its own name with its ModelInfo."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _FACTORIES and _FACTORIES[name] is not fn:
            raise ValueError(f"model {name!r} registered twice")
        _FACTORIES[name] = fn
        _INFO[name] = info
        return fn

    return wrap


def model_source_file(name: str) -> Path:
    """The one source file that defines model ``name`` (what its DVC stages depend on)."""
    return Path(__file__).with_name(f"{name}.py")


def _module_names() -> list[str]:
    pkg_dir = str(Path(__file__).parent)
    return sorted(m.name for m in pkgutil.iter_modules([pkg_dir]) if m.name not in _NOT_MODELS)


def _load(name: str) -> None:
    if name in _FACTORIES:
        return
    if name not in _module_names():
        raise unknown_name_error(
            "model", name, _module_names(), "run `ubench models list` to see all models"
        )
    try:
        importlib.import_module(f"{_PACKAGE}.{name}")
    except ImportError as exc:  # one model's optional dependency, not a registry failure
        _IMPORT_ERRORS[name] = exc
        raise UbenchError(
            f"model {name!r} needs a package that is not installed: {exc}",
            "install it (see the model's docstring), or pick another model",
        ) from exc
    except Exception as exc:  # a broken model file breaks that model only, never the registry
        _IMPORT_ERRORS[name] = exc
        raise UbenchError(
            f"ubench/models/{name}.py fails to import: {type(exc).__name__}: {exc}",
            "fix that file; other models are unaffected",
        ) from exc
    if name not in _FACTORIES:
        raise UbenchError(
            f"module ubench/models/{name}.py registers no model named {name!r}",
            "decorate its factory `def " + name + "(...)` with @register_model",
        )


_SCAN_MODULE = "ubench.models.ops.selective_scan"


def _module_uses_scan(module_name: str, seen: set[str]) -> bool:
    """Whether a ubench module is, or refers (through its globals, recursively) to, the scan."""
    if module_name == _SCAN_MODULE:
        return True
    if module_name in seen or not module_name.startswith("ubench.models") or module_name not in sys.modules:
        return False
    seen.add(module_name)
    for value in vars(sys.modules[module_name]).values():
        ref = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(ref, str) and ref != module_name and _module_uses_scan(ref, seen):
            return True
    return False


def uses_selective_scan(name: str) -> bool:
    """Whether model ``name`` runs the torch selective scan (``ops/selective_scan.py``): the stages
    then tame glibc's heap for it (``ubench.runtime.limit_heap_fragmentation``)."""
    _load(name)
    return _module_uses_scan(f"{_PACKAGE}.{name}", set())


def known_model_names() -> list[str]:
    """Registered model names without importing any model (one file per model: its stem)."""
    return _module_names()


def is_model(name: str) -> bool:
    return name in _module_names()


def unavailable_models() -> dict[str, str]:
    """Models whose module failed to import (after list_models), with the reason."""
    return {k: f"{type(v).__name__}: {v}" for k, v in sorted(_IMPORT_ERRORS.items())}


def list_models(family: str | None = None) -> list[str]:
    """Sorted names of the importable models, optionally of one family (see unavailable_models)."""
    if family is not None and family not in FAMILIES:
        raise UbenchError(f"unknown family {family!r}", f"use one of: {', '.join(FAMILIES)}")
    names = []
    for name in _module_names():
        try:
            _load(name)
        except UbenchError:
            continue
        if family is None or _INFO[name].family == family:
            names.append(name)
    return names


def model_info(name: str) -> ModelInfo:
    _load(name)
    return _INFO[name]


class InputCheck:
    """Forward pre-hook: a (B, C, H, W) input of a size the model's ModelInfo accepts.

    A wrong size otherwise surfaces deep inside the network as a torch.cat shape mismatch. Raises
    ValueError (model code knows nothing of the CLI; the pipeline checks sizes before it builds a
    model, see ``ubench/pipeline.py``). A module-level class, so a model with it still pickles.
    """

    def __init__(self, name: str, info: ModelInfo):
        self.name, self.info = name, info

    def __call__(self, module, args) -> None:
        x = args[0] if args else None
        if getattr(x, "dim", None) is None or x.dim() != 4:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(
                f"model {self.name!r} expects a (B, C, H, W) tensor, got {shape}; "
                "add the batch/channel dimensions (e.g. x[None] for a single image)"
            )
        h, w = x.shape[-2:]
        sizes, m = self.info.input_sizes, self.info.size_multiple
        if sizes is not None and not (h == w and h in sizes):
            listed = ", ".join(map(str, sizes))
            raise ValueError(
                f"model {self.name!r} only takes square inputs of {listed} pixels, got {h}x{w}; "
                f"resize the input to {self.info.ref_input_size}x{self.info.ref_input_size} "
                "(its positional tables or windows are built for those sizes)"
            )
        if sizes is None and (h % m or w % m):
            raise ValueError(
                f"model {self.name!r} needs H and W divisible by {m}, got {h}x{w}; "
                f"resize or pad the input to a multiple of {m} (the protocol uses 256x256)"
            )


def _check_options(name: str, kwargs: dict) -> None:
    """Fail on factory options the model does not have instead of silently ignoring them."""
    takes = [p for p in inspect.signature(_FACTORIES[name]).parameters if p not in ("num_classes", "in_channels")]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        extra = f", {', '.join(takes)}" if takes else ""
        raise UbenchError(
            f"model {name!r} got unknown option(s): {', '.join(unknown)}",
            f"{name} takes only num_classes and in_channels{extra}",
        )


def create_model(name: str, num_classes: int = 1, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build model ``name`` with its input check; unknown names fail with the closest known names,
    unknown options with the options the model takes."""
    _load(name)
    _check_options(name, kwargs)
    model = _FACTORIES[name](num_classes=num_classes, in_channels=in_channels, **kwargs)
    model.register_forward_pre_hook(InputCheck(name, _INFO[name]))
    return model
