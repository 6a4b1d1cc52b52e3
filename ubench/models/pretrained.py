"""Loading the ImageNet backbone weights U-Bench loads, from local files (``train.pretrained``).

Models whose U-Bench build loads pretrained weights (a torchvision ResNet, a Res2Net release, a
PVTv2 or DeiT checkpoint) are built untrained by their factory, and carry in
``ModelInfo.extra["pretrained"]`` a record (or a list of records, one per checkpoint) saying what
U-Bench loads and how its keys map onto ubench's module:

- ``backbone``, ``source``, ``url``: what the weights are and where U-Bench fetches them;
- ``file``: the file name the weights come as; ubench reads it from ``train.weights_dir``, never
  from the network (the machines that run the benchmark may have none);
- ``modules``: the modules of ubench's state_dict the checkpoint fills (a module path, or one
  tensor's full name where the reference loads a single tensor of a module); every tensor under
  them must be filled (``num_batches_tracked`` counters excepted), so a wrong map cannot load half
  a backbone;
- ``key_map``: (regex, replacement) pairs applied in order with ``re.sub`` to each checkpoint key;
- ``drop``: regexes of checkpoint keys U-Bench's model does not use (an ImageNet classifier).

A stem kernel trained on 3 channels is summed over its input channels for a 1-channel model, which
is what U-Bench's repetition of a grey image to 3 channels computes. The loader returns, per file,
its name and SHA-256, recorded in every checkpoint and metrics file.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn

from ubench.errors import UbenchError
from ubench.io import sha256_file

# torch.hub's convention: a file named NAME-<first hex digits of its SHA-256>.EXT
_HUB_HASH = re.compile(r"-([a-f0-9]{6,})\.")
_CONTAINER_KEYS = ("state_dict", "model")  # checkpoints that wrap the state dict (DeiT: "model")


def pretrained_records(name: str) -> list[dict]:
    """The pretrained-weights records of model ``name`` (empty: no pretrained backbone)."""
    from ubench.models import model_info

    spec = model_info(name).extra.get("pretrained")
    if spec is None:
        return []
    return list(spec) if isinstance(spec, (list, tuple)) else [spec]


def required_files(name: str) -> list[str]:
    """The weight files model ``name`` needs under ``train.weights_dir`` when pretrained."""
    return list(dict.fromkeys(rec["file"] for rec in pretrained_records(name)))  # one file may fill two modules


def _fetch_hint(rec: dict, weights_dir: Path) -> str:
    url = rec.get("url")
    where = f"download {url} " if url else f"get it as U-Bench does ({rec.get('source', '?')}) "
    return (f"{where}into {weights_dir}/ (its name must stay {rec['file']}), or set "
            "`train.pretrained: false` in params.yaml to train the backbone from scratch")


def _read_state_dict(path: Path, rec: dict, weights_dir: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, not a torch file at all
        raise UbenchError(f"pretrained weights {path} cannot be read as a PyTorch state dict "
                          f"({type(exc).__name__}: {(str(exc).splitlines() or ['-'])[0][:200]})",
                          f"the file is damaged or not the right one: {_fetch_hint(rec, weights_dir)}") from exc
    for key in _CONTAINER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UbenchError(f"pretrained weights {path} hold no state dict of tensors",
                          f"the file is not the right one: {_fetch_hint(rec, weights_dir)}")
    return obj


def in_modules(key: str, modules) -> bool:
    """Whether state_dict ``key`` is one of ``modules`` (module paths or full tensor names)."""
    return any(key == m.rstrip(".") or key.startswith(m.rstrip(".") + ".") for m in modules)


def map_keys(state: dict[str, torch.Tensor], rec: dict) -> dict[str, torch.Tensor]:
    """Checkpoint keys renamed by ``rec["key_map"]``, with the ``drop`` keys left out."""
    drop = [re.compile(p) for p in rec.get("drop", ())]
    pairs = [(re.compile(p), r) for p, r in rec.get("key_map", ())]
    out = {}
    for key, value in state.items():
        if any(p.search(key) for p in drop):
            continue
        new = key
        for pattern, repl in pairs:
            new = pattern.sub(repl, new, count=1)
        out[new] = value
    return out


def _fit(key: str, value: torch.Tensor, target: torch.Tensor, path: Path) -> tuple[torch.Tensor, bool]:
    """``value`` shaped as ``target``: as it is, or a 3-channel stem kernel summed for 1 channel."""
    if value.shape == target.shape:
        return value, False
    if (value.dim() == 4 and target.dim() == 4 and value.shape[1] == 3 and target.shape[1] == 1
            and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]):
        return value.sum(dim=1, keepdim=True), True
    raise UbenchError(f"pretrained weights {path}: `{key}` has shape {tuple(value.shape)}, the model "
                      f"expects {tuple(target.shape)}",
                      "the file is for another architecture or the model was built with other "
                      "in_channels/num_classes; use the file the model's record names "
                      "(`ubench models show NAME`)")


def load_pretrained(model: nn.Module, name: str, weights_dir: str | Path, check_hash: bool = True) -> list[dict]:
    """Load every pretrained file of model ``name`` from ``weights_dir`` into ``model``.

    Returns one record per file (backbone, file, sha256, tensors loaded, kernels adapted); raises
    a UbenchError naming the file and how to get it when one is missing, damaged or does not fit,
    or (``check_hash``) when its SHA-256 is not the one its name promises.
    """
    weights_dir = Path(weights_dir)
    records = pretrained_records(name)
    own = model.state_dict()
    loaded_records = []
    for rec in records:
        path = weights_dir / rec["file"]
        if not path.is_file():
            raise UbenchError(f"model {name} needs the pretrained weights file {path} "
                              f"({rec['backbone']}), which is not there", _fetch_hint(rec, weights_dir))
        digest = sha256_file(path)
        claimed = _HUB_HASH.search(rec["file"])
        if check_hash and rec.get("hash_in_name") and claimed and not digest.startswith(claimed.group(1)):
            raise UbenchError(f"pretrained weights {path}: SHA-256 {digest[:12]}... does not start with "
                              f"{claimed.group(1)}, the hash its name promises (torch.hub convention)",
                              f"the file is damaged or not the published one: {_fetch_hint(rec, weights_dir)}")
        mapped = map_keys(_read_state_dict(path, rec, weights_dir), rec)
        unknown = sorted(k for k in mapped if k not in own)
        if unknown:
            raise UbenchError(f"pretrained weights {path}: {len(unknown)} key(s) match nothing in {name}, "
                              f"e.g. {', '.join(unknown[:3])}",
                              f"use the file the record names ({rec['file']}, {rec['backbone']}); if it is "
                              "that file, the model's key_map is wrong: please report it")
        missing = sorted(k for k in own if in_modules(k, rec["modules"]) and k not in mapped
                         and not k.endswith("num_batches_tracked"))
        if missing:
            raise UbenchError(f"pretrained weights {path} leave {len(missing)} tensor(s) of {name}'s "
                              f"{', '.join(rec['modules'])} unfilled, e.g. {', '.join(missing[:3])}",
                              f"use the file the record names ({rec['file']}, {rec['backbone']})")
        adapted = []
        with torch.no_grad():
            for key, value in mapped.items():
                value, changed = _fit(key, value, own[key], path)
                own[key].copy_(value.to(own[key].dtype))
                if changed:
                    adapted.append(key)
        loaded_records.append({"backbone": rec["backbone"], "file": rec["file"], "sha256": digest,
                               "tensors": len(mapped), "adapted": adapted})
    return loaded_records
