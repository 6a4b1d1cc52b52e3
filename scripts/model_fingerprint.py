#!/usr/bin/env python3
"""Fingerprint every registered model: parameter count, initial weights and outputs, bit for bit.

A refactoring of the model zoo or its shared blocks (``ubench/models/ops``) must not change any
model. This script builds each model with a fixed seed, hashes its state_dict (names, dtypes,
shapes, bytes) and its outputs on a fixed input, in evaluation and in training mode (dropout and
stochastic depth drawn from a fixed seed), and writes one JSON line per model. Run it before and
after a change, on the same machine, and compare:

    python scripts/model_fingerprint.py --out /tmp/before.json        # on the old commit
    python scripts/model_fingerprint.py --out /tmp/after.json         # on the new one
    python scripts/model_fingerprint.py --compare /tmp/before.json /tmp/after.json

The comparison exits 1 and names each model whose parameter count, weights or outputs differ.
Hashes are exact: compare files made on the same machine type and torch build (float kernels may
round differently elsewhere). One thread, deterministic algorithms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def _hash_tensors(named) -> str:
    import torch

    h = hashlib.sha256()
    for name, t in named:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _outputs(y) -> list:
    if isinstance(y, (list, tuple)):
        return [t for item in y for t in _outputs(item)]
    return [y]


def fingerprint(name: str, batch: int = 2) -> dict:
    """Build ``name`` with seed 0 and hash what it is and what it computes."""
    import torch

    from ubench.models import create_model, model_info

    info = model_info(name)
    size = info.smallest_size(64)
    torch.manual_seed(0)
    model = create_model(name, num_classes=1, in_channels=3)
    n_params = sum(p.numel() for p in model.parameters())
    state = _hash_tensors(model.state_dict().items())
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        y_eval = _outputs(model(x))
    model.train()
    torch.manual_seed(2)
    y_train = _outputs(model(x))
    return {
        "model": name,
        "size": size,
        "params": n_params,
        "state_dict": state,
        "eval_out": _hash_tensors((str(i), t) for i, t in enumerate(y_eval)),
        "train_out": _hash_tensors((str(i), t) for i, t in enumerate(y_train)),
        "eval_shapes": [list(t.shape) for t in y_eval],
    }


def _load(path: Path) -> dict:
    return {r["model"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def compare(before: Path, after: Path) -> int:
    a, b = _load(before), _load(after)
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'after' if name in b else 'before'}")
            bad += 1
            continue
        diff = [k for k in a[name] if a[name][k] != b[name].get(k)]
        if diff:
            print(f"{name}: differs in {', '.join(diff)}")
            bad += 1
    same = len(set(a) & set(b)) - sum(1 for n in set(a) & set(b) if a[n] != b[n])
    print(f"{same} of {len(set(a) | set(b))} models identical (params, state_dict, eval and train outputs)")
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write one JSON line per model here")
    p.add_argument("--models", nargs="*", help="only these models (default: all registered)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        p.error("give --out FILE or --compare BEFORE AFTER")

    import torch

    from ubench.models import list_models, unavailable_models

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = args.models or list_models()
    if unavailable_models():
        print(f"unavailable: {unavailable_models()}", file=sys.stderr)
    lines = []
    for name in names:
        rec = fingerprint(name)
        print(f"{name:22s} {rec['params']:>11,d}  {rec['state_dict'][:12]}  {rec['eval_out'][:12]}", file=sys.stderr)
        lines.append(json.dumps(rec, sort_keys=True))
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
