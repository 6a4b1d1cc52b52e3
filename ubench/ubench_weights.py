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

Models whose keys differ from U-Bench's are renamed through their proven key map first
(``ubench_keymap``; tied and unused tensors dropped only as the map says); a model whose map says
ubench's module does not compute U-Bench's output is refused with that reason.
The all-or-nothing key check is ``checkpoint.fit_state_dict``, the one ``load_checkpoint`` uses.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ubench.checkpoint import ZIP_MAGIC, fit_state_dict
from ubench.errors import UbenchError
from ubench.io import sha256_file
from ubench.ubench_keymap import STATUSES, apply_keymap, load_keymap

# the fields of U-Bench's argparse config that identify what a checkpoint is
CONFIG_KEYS = ("model", "dataset_name", "img_size", "num_classes", "input_channel", "do_deeps")


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
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != ZIP_MAGIC:  # torch.save's zip format (PyTorch >= 1.6, what U-Bench used)
        raise UbenchError(f"{path} is not a PyTorch checkpoint (it does not start with the zip header "
                          "torch.save writes)", "download it again, or give the .pth file U-Bench wrote")
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
    what = f"{ck.path} (U-Bench {ck.config.get('model', '?')}) on ubench's {model}"
    keymap = load_keymap(model)
    state = ck.state_dict
    net = create_model(model, num_classes=num_classes, in_channels=in_channels)
    if list(state) == list(net.state_dict()):
        keymap = None  # already ubench's names (and order): nothing to rename
    if keymap is not None and not keymap.proven:
        diff = f" (max relative difference {keymap.max_rel_diff:.2g})" if keymap.max_rel_diff is not None else ""
        raise UbenchError(f"{what}: refused, {keymap.status}{diff}: {STATUSES[keymap.status]}"
                          + (f" ({keymap.notes})" if keymap.notes else ""),
                          f"evaluate a {model} trained by ubench instead (`dvc repro`); the check is "
                          f"scripts/ubench_reference_keys.py against {keymap.source}")
    if keymap is not None:
        state = apply_keymap(state, keymap, what)
        what += f" through its key map ({keymap.paired_by})"
    state = fit_state_dict(net, state, what)
    return {
        "model": model, "state_dict": {k: v.detach().clone().contiguous() for k, v in state.items()},
        "epoch": ck.epoch if ck.epoch is not None else -1, "num_classes": num_classes,
        "dataset": dataset,
        "imported": {"from": "U-Bench", "file": ck.path.name, "sha256": ck.sha256,
                     "ubench_model": str(ck.config.get("model", "")), "epoch": ck.epoch,
                     "stripped_prefix": ck.stripped_prefix,
                     "key_map": None if keymap is None else {
                         "paired_by": keymap.paired_by, "max_rel_diff": keymap.max_rel_diff,
                         "source": keymap.source, "tied_dropped": len(keymap.tied),
                         "unused_dropped": list(keymap.unused), "buffers_dropped": len(keymap.buffers),
                         "fused": len(keymap.fused), "reshaped": len(keymap.reshaped)},
                     "config": {k: _plain(v) for k, v in sorted(ck.config.items())}},
    }


# --- `ubench weights import` and `import-release` -------------------------------------------------

@dataclass
class ImportRow:
    """One checkpoint's fate in an import: where it went, or why it was refused."""

    file: Path
    ubench_model: str = ""  # U-Bench's name, from the checkpoint's config
    model: str = ""  # ubench's registry name
    dataset: str = ""
    out: Path | None = None
    error: str = ""  # empty when imported

    @property
    def imported(self) -> bool:
        return not self.error


def _check_out(out: Path, source: Path) -> None:
    """Never replace anything but an earlier import: not the source, a folder, or another file."""
    if out.resolve() == source.resolve():
        raise UbenchError(f"--out {out} is the U-Bench checkpoint itself", "write the import elsewhere")
    if out.is_dir():
        raise UbenchError(f"--out {out} is a folder", "give a file path ending in .pt")
    if out.exists():
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                doc = torch.load(out, map_location="cpu", weights_only=True)
            earlier = isinstance(doc, dict) and isinstance(doc.get("imported"), dict)
        except Exception:  # noqa: BLE001 - anything unreadable is not an earlier import
            earlier = False
        if not earlier:
            raise UbenchError(f"{out} exists and is not a checkpoint `ubench weights import` wrote",
                              "choose another --out, or move that file away yourself")


def import_checkpoint(path: str | Path, model: str | None = None, dataset: str | None = None,
                      out: str | Path | None = None) -> ImportRow:
    """Read a U-Bench checkpoint, fit it onto ubench's model and write the ubench checkpoint (the
    format ``ubench train`` writes) atomically; ``out`` defaults to models/imported/DATASET/MODEL.pt."""
    from ubench import paths
    from ubench.checkpoint import checkpoint_bytes
    from ubench.errors import unknown_name_error
    from ubench.io import write_bytes_atomic
    from ubench.models import is_model, list_models
    from ubench.names import check_name

    ck = read_ubench_checkpoint(path)
    if model is not None and not is_model(model):
        raise unknown_name_error("model", model, list_models(), "`ubench models list` names them")
    model, dataset = identify(ck, model, dataset)
    check_name("dataset", dataset)
    target = Path(out) if out is not None else paths.imported_checkpoint(dataset, model)
    _check_out(target, ck.path)
    doc = imported_document(ck, model, dataset)
    write_bytes_atomic(target, checkpoint_bytes(doc))
    return ImportRow(ck.path, str(ck.config.get("model", "")), model, dataset, target)


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt")


def release_files(root: Path) -> list[Path]:
    """The checkpoint files under a downloaded release, sorted (the layout is not documented)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES))


def import_release(root: str | Path, out_root: str | Path | None = None) -> list[ImportRow]:
    """Import every checkpoint under ``root`` that identifies itself (its embedded config, never the
    folder names); one row per file. Where several files are one (model, dataset), the one named
    ``*best*`` is imported (U-Bench reports its best-validation checkpoint), else the first."""
    from ubench import paths

    root = Path(root)
    if not root.is_dir():
        raise UbenchError(f"{root} is not a folder", "give the folder the U-Bench release was downloaded to")
    files = release_files(root)
    if not files:
        raise UbenchError(f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) under {root}",
                          "give the folder download_weights_from_huggingface.py filled (U-Bench/weights)")
    rows: list[ImportRow] = []
    chosen: dict[tuple[str, str], Path] = {}
    readable: list[tuple[Path, str, str, str]] = []
    for f in files:
        try:
            ck = read_ubench_checkpoint(f)
            model, dataset = identify(ck)
        except UbenchError as exc:
            rows.append(ImportRow(f, error=exc.what))
            continue
        readable.append((f, str(ck.config.get("model", "")), model, dataset))
        key = (model, dataset)
        if key not in chosen or ("best" in f.name and "best" not in chosen[key].name):
            chosen[key] = f
    for f, theirs, model, dataset in readable:
        if chosen[(model, dataset)] != f:
            rows.append(ImportRow(f, theirs, model, dataset,
                                  error=f"same model and dataset as {chosen[(model, dataset)].relative_to(root)}"))
            continue
        out = (Path(out_root) / dataset / f"{model}.pt" if out_root is not None
               else paths.imported_checkpoint(dataset, model))
        try:
            rows.append(import_checkpoint(f, model, dataset, out))
            rows[-1].ubench_model = theirs
        except UbenchError as exc:
            rows.append(ImportRow(f, theirs, model, dataset, error=exc.what))
    return sorted(rows, key=lambda r: str(r.file))


def import_table(rows: list[ImportRow], root: Path | None = None) -> str:
    """The rows as a plain-text table (file, U-Bench model, ubench model, dataset, result)."""
    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(root)) if root else str(p)
        except ValueError:
            return str(p)

    head = ("file", "U-Bench model", "ubench model", "dataset", "result")
    body = [(rel(r.file), r.ubench_model or "?", r.model or "?", r.dataset or "?",
             f"imported -> {r.out}" if r.imported else f"refused: {r.error.splitlines()[0][:160]}") for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in [head, *body]]
    n = sum(r.imported for r in rows)
    lines.append(f"{n} imported, {len(rows) - n} refused, of {len(rows)} checkpoint file(s)")
    return "\n".join(lines)
