"""The one rule for dataset and model names: a single path component, never a path.

Why: every output path is built from these names (``ubench.paths``), so a name such as ``.``,
``../../tmp/x`` or ``/etc`` would make a stage read or replace files outside its own folder. The
rule is checked where names enter (the config loader and every CLI argument) and again where
paths are built, so no caller can get round it.

The split protocols (``PROTOCOLS``, ``check_split``) live here too: a light module that both the
config loader and the prepare stage import, so the two check one rule.
"""

from __future__ import annotations

import re

from ubench.errors import UbenchError

# Starts with a letter or digit (so never "." or ".." or a hidden name), then letters, digits,
# "_", "-" or "."; at most 64 characters. Registered models and datasets all fit.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
# Dataset names that would collide with ubench's own folders under models/: the candidate stage's
# (models/candidate/) and imported U-Bench weights (models/imported/).
RESERVED_DATASETS = frozenset({"candidate", "imported"})
RULE = ("a name starts with a letter or digit and holds only letters, digits, '_', '-' and '.' "
        "(at most 64 characters): no '/', no '..', no absolute path")


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(kind: str, name: object, where: str = "") -> str:
    """Return ``name`` if it is a valid ``kind`` name (dataset, model), else a UbenchError."""
    place = f" in {where}" if where else ""
    if kind == "dataset" and name in RESERVED_DATASETS:
        raise UbenchError(f"dataset name {name!r}{place} is reserved (ubench writes its own files "
                          f"under models/{name}/)", "rename the dataset folder")
    if is_valid_name(name):
        return name  # type: ignore[return-value]
    raise UbenchError(f"invalid {kind} name {name!r}{place}", f"{RULE}; use the registered name "
                      f"(`ubench {'models' if kind == 'model' else 'datasets'} list`)")


# --- split protocols -----------------------------------------------------------------------------

#: holdout: best epoch on val, report on test | ubench: val == test, as U-Bench (ubench.data.prepare)
PROTOCOLS = ("holdout", "ubench")


def check_split(protocol: object, val_fraction: object, test_fraction: object, *,
                source: str = "", key: str = "") -> None:
    """The split settings' one rule: a known protocol and two fractions in (0, 1) whose sum leaves
    training images. ``source`` (a params file) and ``key`` (``split.``) name where the values came
    from in the error; without them the error names the arguments of ``prepare_dataset``.

    The sum rule holds for both protocols (``ubench`` ignores ``val_fraction`` but params.yaml must
    still hold a value that ``holdout`` could use), so switching protocol never needs other edits.
    """
    at = f"{source}: " if source else ""
    if protocol not in PROTOCOLS:
        raise UbenchError(f"{at}unknown split protocol `{key}protocol` = {protocol!r}",
                          f"use one of: {', '.join(PROTOCOLS)}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and 0.0 < float(value) < 1.0):  # type: ignore[arg-type]
            raise UbenchError(f"{at}`{key}{name}` is {value!r}",
                              "use a fraction strictly between 0 and 1, e.g. 0.2")
    total = float(val_fraction) + float(test_fraction)  # type: ignore[arg-type]
    if total >= 1.0:
        why = ("that leaves no training images, nothing to train on" if protocol == "holdout" else
               "under protocol holdout that would leave no training images (ubench does not use "
               "val_fraction, but its value must suit both protocols)")
        raise UbenchError(f"{at}`{key}val_fraction + {key}test_fraction` is {total:g}: {why}",
                          "make their sum < 1 (e.g. 0.2 and 0.2)")
