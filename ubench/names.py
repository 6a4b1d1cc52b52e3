"""The one rule for dataset and model names: a single path component, never a path.

Why: every output path is built from these names (``ubench.paths``), so a name such as ``.``,
``../../tmp/x`` or ``/etc`` would make a stage read or replace files outside its own folder. The
rule is checked where names enter (the config loader and every CLI argument) and again where
paths are built, so no caller can get round it.
"""

from __future__ import annotations

import re

from ubench.errors import UbenchError

# Starts with a letter or digit (so never "." or ".." or a hidden name), then letters, digits,
# "_", "-" or "."; at most 64 characters. Registered models and datasets all fit.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
# Dataset names that would collide with the candidate stage's folders (models/candidate/ ...).
RESERVED_DATASETS = frozenset({"candidate"})
RULE = ("a name starts with a letter or digit and holds only letters, digits, '_', '-' and '.' "
        "(at most 64 characters): no '/', no '..', no absolute path")


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(kind: str, name: object, where: str = "") -> str:
    """Return ``name`` if it is a valid ``kind`` name (dataset, model), else a UbenchError."""
    place = f" in {where}" if where else ""
    if kind == "dataset" and name in RESERVED_DATASETS:
        raise UbenchError(f"dataset name {name!r}{place} is reserved (ubench's candidate stage "
                          "writes under that folder name)", "rename the dataset folder")
    if is_valid_name(name):
        return name  # type: ignore[return-value]
    raise UbenchError(f"invalid {kind} name {name!r}{place}", f"{RULE}; use the registered name "
                      f"(`ubench {'models' if kind == 'model' else 'datasets'} list`)")
