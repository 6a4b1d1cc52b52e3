"""Reading U-Bench's released checkpoints, safely, and fitting them onto ubench's models exactly.

The first half of issue 19 (``ubench weights import``): what a U-Bench checkpoint holds and whether
it fits a model. U-Bench's ``main.py`` saves ``{"state_dict", "config", "epoch", ...}`` where
``config`` is its ``argparse.Namespace`` (``model``, ``dataset_name``, ``img_size``,
``num_classes``, ``input_channel``, ``do_deeps``, ...); a bare state_dict is accepted too.

Safety: checkpoints are loaded with torch's safe loader (``weights_only=True``), allowing only
``argparse.Namespace`` besides tensors and plain containers, so a downloaded file cannot run code.
Fitting is all or nothing: every key of the model present with its shape, nothing left over, or a
``UbenchError`` that lists what is missing, unexpected and mis-shaped (never a partial load).
``identify`` names the ubench model and dataset (U-Bench names through ``ModelInfo.ubench_name``);
``imported_document`` is the dict ``ubench train`` writes, so evaluate reads it unchanged, with the
provenance (file, sha256, U-Bench model, epoch, config) under ``imported``.

Still to come (issue 19): the CLI, per-model key maps for models whose keys differ from U-Bench's,
tied tensors, ``grid.imported`` in the pipeline. ``fit_state_dict`` and
``checkpoint.load_checkpoint`` check keys alike; they become one check when checkpoint.py (a
stage dependency) is next changed.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ubench.errors import UbenchError
from ubench.io import sha256_file

# the fields of U-Bench's argparse config that identify what a checkpoint is
CONFIG_KEYS = ("model", "dataset_name", "img_size", "num_classes", "input_channel", "do_deeps")
_LISTED = 8  # keys named per category in an error; the rest are counted


@dataclass
class UBenchCheckpoint:
    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]
    config: dict = field(default_factory=dict)  # U-Bench's argparse values (empty for a bare state_dict)
    epoch: int | None = None
    stripped_prefix: str = ""  # "module." when it was saved from DataParallel


def read_ubench_checkpoint(path: str | Path) -> UBenchCheckpoint:
    """A U-Bench checkpoint file, loaded safely; UbenchError names what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise UbenchError(f"{path} not found", "give the path of a U-Bench checkpoint (.pth)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            doc = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UbenchError(f"{path} holds objects the safe loader refuses ({str(exc).splitlines()[0][:200]})",
                          "ubench loads only tensors, plain containers and U-Bench's argparse config; "
                          "re-save the state_dict alone with torch.save(model.state_dict(), path)") from None
    except Exception as exc:  # noqa: BLE001 - zip/pickle/EOF errors of a damaged file
        raise UbenchError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})",
                          "download it again (a truncated download is the usual cause)") from None
    if isinstance(doc, dict) and isinstance(doc.get("state_dict"), dict):
        state, config, epoch = doc["state_dict"], doc.get("config"), doc.get("epoch")
    elif isinstance(doc, dict) and doc and all(isinstance(v, torch.Tensor) for v in doc.values()):
        state, config, epoch = doc, None, None
    else:
        raise UbenchError(f"{path} is neither a U-Bench checkpoint (a dict with 'state_dict') nor a state_dict",
                          "give a checkpoint_best.pth / checkpoint_final.pth that U-Bench's main.py wrote")
    if isinstance(config, argparse.Namespace):
        config = vars(config)
    prefix = "module." if state and all(k.startswith("module.") for k in state) else ""
    state = {k[len(prefix):]: v for k, v in state.items()}
    return UBenchCheckpoint(path, sha256_file(path), state, dict(config or {}),
                            int(epoch) if isinstance(epoch, int) else None, prefix)


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def fit_state_dict(model: torch.nn.Module, source: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """``source`` as the model's state_dict (the model's key order), if it fits exactly.

    Exactly: the same keys, each with the model's shape. Anything else is a UbenchError naming the
    missing, unexpected and mis-shaped keys of ``what`` (e.g. the file and the model), so that a
    checkpoint of another architecture or size is refused, never loaded in part."""
    target = model.state_dict()
    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    shapes = [f"{k} {tuple(source[k].shape)} != {tuple(target[k].shape)}" for k in target
              if k in source and tuple(source[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing ({_listed(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_listed(unexpected)})" if unexpected else "",
                 f"{len(shapes)} mis-shaped ({_listed(shapes)})" if shapes else ""]
        raise UbenchError(f"{what} does not fit: " + "; ".join(p for p in parts if p),
                          "check --model (and the checkpoint's num_classes / input channels); a checkpoint of "
                          "another architecture cannot be loaded, and ubench never loads one in part")
    return {k: source[k] for k in target}


def ubench_model_names() -> dict[str, str]:
    """{U-Bench's model name (its ``--model``): ubench's registry name}, from ``ModelInfo.ubench_name``."""
    from ubench.models import list_models, model_info

    return {model_info(n).ubench_name: n for n in list_models() if model_info(n).ubench_name}


def identify(ck: UBenchCheckpoint, model: str | None = None, dataset: str | None = None) -> tuple[str, str]:
    """(ubench model, dataset) of a checkpoint: what the caller says, else what its config says.

    A name the config gives that ubench does not know is a UbenchError naming the closest known
    names; a bare state_dict (no config) needs both given."""
    from ubench.errors import unknown_name_error

    names = ubench_model_names()
    if model is None:
        theirs = ck.config.get("model")
        if not theirs:
            raise UbenchError(f"{ck.path} has no U-Bench config naming its model (a bare state_dict)",
                              "pass --model NAME (`ubench models list`)")
        if theirs not in names:
            raise unknown_name_error("U-Bench model", str(theirs), sorted(names),
                                     "ubench has no model registered under that U-Bench name; pass --model "
                                     "if it is one under another name")
        model = names[theirs]
    if dataset is None:
        dataset = ck.config.get("dataset_name")
        if not dataset:
            raise UbenchError(f"{ck.path} has no U-Bench config naming its dataset",
                              "pass --dataset NAME (`ubench datasets list`)")
    return model, str(dataset)


def _plain(value):
    """A config value as plain data the safe loader reads back (anything else as its repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def imported_document(ck: UBenchCheckpoint, model: str, dataset: str) -> dict:
    """The checkpoint dict ``ubench train`` writes (what evaluate and zero-shot read), holding the
    U-Bench weights fitted onto ``model``, with their provenance under ``imported``."""
    from ubench.models import create_model

    num_classes = int(ck.config.get("num_classes", 1))
    in_channels = int(ck.config.get("input_channel", 3))
    net = create_model(model, num_classes=num_classes, in_channels=in_channels)
    state = fit_state_dict(net, ck.state_dict, f"{ck.path} (U-Bench {ck.config.get('model', '?')}) on ubench's {model}")
    return {
        "model": model, "state_dict": {k: v.detach().clone().contiguous() for k, v in state.items()},
        "epoch": ck.epoch if ck.epoch is not None else -1, "num_classes": num_classes,
        "dataset": dataset,
        "imported": {"from": "U-Bench", "file": ck.path.name, "sha256": ck.sha256,
                     "ubench_model": str(ck.config.get("model", "")), "epoch": ck.epoch,
                     "stripped_prefix": ck.stripped_prefix,
                     "config": {k: _plain(v) for k, v in sorted(ck.config.items())}},
    }
