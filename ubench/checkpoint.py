"""Reading and writing the checkpoints `ubench train` writes, with a named error for every bad file.

A checkpoint is a ``torch.save`` zip archive of a dict (model, state_dict, epoch, num_classes, ...)
of plain tensors and containers. It is always read with ``weights_only=True``: a pickle can run
arbitrary code when loaded, and the safe loader refuses anything but tensors and plain data. When
it refuses a file, torch's own message advises retrying with the unsafe loader; ubench never
repeats that advice (a checkpoint ubench wrote never needs it), it says how to get a good file.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

import torch

from ubench.errors import UbenchError
from ubench.models import create_model

ZIP_MAGIC = b"PK\x03\x04"  # torch.save (since 1.6) writes a zip archive
# What evaluate cannot do without; the other keys train writes (class_names, protocol, ...) have
# defaults when absent.
REQUIRED_KEYS = {"model": str, "state_dict": dict, "epoch": int}
_LISTED = 8  # keys named per category in a fit error; the rest are counted


def _stage(path: Path, model: str) -> str | None:
    """The DVC stage that writes ``path`` (``train@MODEL-DATASET`` or ``candidate@DATASET``)."""
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-3] == "models":
        if parts[-2] == "candidate":
            return f"candidate@{Path(parts[-1]).stem}"
        if parts[-1] == f"{model}.pt":
            return f"train@{model}-{parts[-2]}"
    return None


def _retrain(path: Path, model: str, force: bool = True) -> str:
    """The command that writes ``path`` again: its DVC stage (forced when the file exists), else train."""
    stage = _stage(path, model)
    if stage:
        return f"`dvc repro {'-f ' if force else ''}{stage}`"
    return f"`ubench train --model {model} --dataset ...`"


def _recreate_fix(path: Path, model: str) -> str:
    return (f"restore the version dvc.lock records with `dvc pull --force {path}`, or retrain it: "
            f"{_retrain(path, model)}")


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _refused_what(exc: Exception) -> str:
    """The class torch's safe loader refused, from its message (torch's advice is not repeated)."""
    m = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f"e.g. {m.group(1)}" if m else "objects other than tensors and plain data"


def read_checkpoint(path: str | Path, model_name: str) -> dict:
    """The checkpoint dict at ``path``, safely loaded and checked; a UbenchError for a bad file."""
    path = Path(path)
    if not path.exists():
        raise UbenchError(f"checkpoint {path} not found",
                          f"fetch it with `dvc pull {path}` if a DVC remote holds it, or train it: "
                          f"{_retrain(path, model_name, force=False)}")
    fix = _recreate_fix(path, model_name)
    try:
        with open(path, "rb") as fh:
            head, size = fh.read(len(ZIP_MAGIC)), os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise UbenchError(f"checkpoint {path} cannot be read: {exc.strerror}",
                          f"check its permissions (`ls -l {path}`)") from exc
    if size == 0:
        raise UbenchError(f"checkpoint {path} is empty (0 bytes)", fix)
    if head != ZIP_MAGIC:
        if ZIP_MAGIC.startswith(head):  # the first bytes of the header, and nothing after them
            raise UbenchError(f"checkpoint {path} is truncated: only {size} byte(s)", fix)
        raise UbenchError(f"checkpoint {path} is not a PyTorch checkpoint: it does not start with the "
                          "zip header that torch.save writes", fix)
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UbenchError(f"checkpoint {path} was refused by the safe (weights-only) loader: it holds "
                          f"objects that ubench never writes ({_refused_what(exc)})",
                          f"use only checkpoints written by `ubench train`; {fix}") from None
    except OSError as exc:
        raise UbenchError(f"checkpoint {path} cannot be read: {exc.strerror or exc}", fix) from exc
    except Exception as exc:  # torch reports a cut or damaged archive as RuntimeError, EOFError, ...
        raise UbenchError(f"checkpoint {path} is truncated or corrupt: torch cannot read it "
                          f"({type(exc).__name__})", fix) from None
    _check_keys(doc, path, fix)
    return doc


def _check_keys(doc, path: Path, fix: str) -> None:
    """Refuse anything but the dict `ubench train` writes (right keys, right types)."""
    not_ours = f"checkpoint {path} is not a ubench checkpoint"
    if not isinstance(doc, dict):
        raise UbenchError(f"{not_ours}: it holds a {type(doc).__name__}, not the dict `ubench train` writes", fix)
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise UbenchError(f"{not_ours}: it lacks {', '.join(missing)} (the keys `ubench train` writes)", fix)
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(doc[key], kind) or isinstance(doc[key], bool):
            raise UbenchError(f"{not_ours}: `{key}` is a {type(doc[key]).__name__}, not {kind.__name__}", fix)
    n = doc.get("num_classes", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UbenchError(f"{not_ours}: `num_classes` is {n!r}, not a positive integer", fix)
    odd = [k for k, v in doc["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise UbenchError(f"{not_ours}: `state_dict` holds non-tensors at {_few(sorted(map(str, odd)))}", fix)


def load_checkpoint(path: str | Path, model_name: str):
    """Rebuild ``model_name`` from a checkpoint written by train_model: (model, checkpoint dict)."""
    path = Path(path)
    ckpt = read_checkpoint(path, model_name)
    retrain = _retrain(path, model_name)
    if ckpt["model"] != model_name:
        raise UbenchError(f"checkpoint {path} holds model {ckpt['model']!r}, not {model_name!r}",
                          f"pass the matching --model, or retrain it: {retrain}")
    model = create_model(model_name, num_classes=int(ckpt.get("num_classes", 1)), in_channels=3)
    state = fit_state_dict(model, ckpt["state_dict"], f"checkpoint {path} on the {model_name} model",
                           f"it was written by another version of the model's code: retrain it with {retrain}")
    model.load_state_dict(state)
    return model, ckpt


def fit_state_dict(model: torch.nn.Module, source: dict[str, torch.Tensor], what: str,
                   fix: str = "") -> dict[str, torch.Tensor]:
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
        parts = [f"{len(missing)} missing ({_few(missing, _LISTED)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_few(unexpected, _LISTED)})" if unexpected else "",
                 f"{len(shapes)} mis-shaped ({_few(shapes, _LISTED)})" if shapes else ""]
        raise UbenchError(f"{what} does not fit: " + "; ".join(p for p in parts if p),
                          fix or "check --model (and the checkpoint's num_classes / input channels); a checkpoint "
                          "of another architecture cannot be loaded, and ubench never loads one in part")
    return {k: source[k] for k in target}


def checkpoint_bytes(doc: dict) -> bytes:
    """``torch.save`` bytes of ``doc``, checked to load back with the safe loader that evaluate uses.

    Why: a value the safe loader refuses (a numpy scalar, ``torch.__version__``, any custom class)
    would make every checkpoint unreadable by evaluate; this catches it where it is written.
    """
    buf = io.BytesIO()
    torch.save(doc, buf)
    data = buf.getvalue()
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TypeError(f"the checkpoint dict holds a value the safe loader refuses ({_refused_what(exc)}): "
                        "store plain str/int/float/list/dict and tensors only") from None
    return data
