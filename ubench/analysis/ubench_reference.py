"""U-Bench's published reference data, shipped with ubench: U-Score constants and rankings.

One JSON file, ``ubench/analysis/data/ubench_reference.json``, holds facts published on U-Bench's
project page (repository FengheTan9/ubench, ``index.html``, commit recorded in the file's
``source``): the U-Score calculator's constants (the IoU 10th/90th percentiles of 20 in-domain
datasets, the natural logs of the params and GFLOPs percentiles, the FPS percentiles, the floor)
and the published rankings (top-10 models by IoU and by U-Score on 20 in-domain datasets and 9
zero-shot pairs, and Table 2's overall top-10 lists with U-Net's rank). Nothing is downloaded at
run time; ``scripts/extract_ubench_reference.py`` re-derives the file from the page by hand.

Names: datasets use ubench's names (``isic2018``, zero-shot pairs ``kvasir->cvc300``) and also
accept the page's labels and calculator keys (``ISIC2018``, ``isic``, ``Kvasir->CVC300``). Each
ranking entry keeps the model name as printed, U-Bench's code name (``MADGNet`` is ``MFMSNet``)
and the ubench registry name where ubench has the model (else ``None``).
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from ubench.errors import UbenchError, unknown_name_error

DATA_FILE = "ubench_reference.json"
BY = ("iou", "uscore")
SETTINGS = ("in-domain", "zero-shot")


@functools.cache
def reference_data() -> dict:
    """The whole shipped file (read once)."""
    text = resources.files("ubench.analysis").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def source() -> dict:
    """Where the data come from: repository, commit, file, how extracted."""
    return reference_data()["source"]


def source_label() -> str:
    """A one-line citation, e.g. ``FengheTan9/ubench@20b9f89 index.html``."""
    s = source()
    return f"{s['repository'].removeprefix('https://github.com/')}@{s['commit'][:7]} {s['file']}"


def calculator() -> dict:
    """The U-Score calculator's constants as published (see the file's ``calculator.formula``)."""
    return reference_data()["calculator"]


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "")


@functools.cache
def _aliases() -> dict[str, str]:
    """Every accepted spelling (lower case) -> ubench dataset name or pair key."""
    data = reference_data()
    out: dict[str, str] = {}
    for key, rec in data["calculator"]["iou"].items():
        for alias in (key, rec["label"], rec["page_key"], rec["menu_label"]):
            out[_norm(alias)] = key
    for key, rec in data["rankings"].items():
        for alias in (key, rec["label"]):
            out[_norm(alias)] = key
    return out


def resolve_dataset(name: str) -> str | None:
    """ubench's name for ``name`` (a ubench name, page label or calculator key), None if unknown."""
    return _aliases().get(_norm(name))


def iou_datasets() -> list[str]:
    """The in-domain datasets U-Bench publishes IoU percentiles for (ubench names)."""
    return sorted(calculator()["iou"])


def iou_percentiles(dataset: str) -> tuple[float, float] | None:
    """U-Bench's (Q10, Q90) of IoU on ``dataset``, or None where it publishes none."""
    key = resolve_dataset(dataset)
    rec = calculator()["iou"].get(key) if key else None
    return None if rec is None else (float(rec["q10"]), float(rec["q90"]))


def ranked_datasets(setting: str | None = None) -> list[str]:
    """Datasets (and zero-shot pairs ``source->target``) with published top-10 lists."""
    if setting is not None and setting not in SETTINGS:
        raise UbenchError(f"unknown setting {setting!r}", f"use one of: {', '.join(SETTINGS)}")
    return sorted(k for k, r in reference_data()["rankings"].items()
                  if setting is None or r["setting"] == setting)


def published_top10(dataset: str, by: str) -> list[dict]:
    """U-Bench's top-10 on ``dataset`` ranked ``by`` 'iou' or 'uscore', best first.

    Each entry: ``rank``, ``name`` (as printed), ``code_name`` (U-Bench's), ``model`` (ubench's
    registry name, or None where ubench does not have the model).
    """
    if by not in BY:
        raise UbenchError(f"unknown ranking {by!r}", f"use one of: {', '.join(BY)}")
    key = resolve_dataset(dataset)
    rankings = reference_data()["rankings"]
    if key not in rankings:
        raise unknown_name_error("dataset", dataset, rankings,
                                 "U-Bench publishes top-10 lists for these datasets and zero-shot pairs")
    return [dict(e) for e in rankings[key][by]]


def top10_counts(setting: str | None = None) -> dict[str, dict]:
    """How often each model is in a published per-dataset top-10, by IoU and by U-Score.

    Keyed by U-Bench code name (so the page's two spellings of one model count together), each
    value has ``iou`` and ``uscore`` counts, ``model`` (ubench name or None) and the ``names``
    printed for it. ``setting`` ('in-domain' or 'zero-shot') restricts the datasets counted.
    """
    counts: dict[str, dict] = {}
    rankings = reference_data()["rankings"]
    for key in ranked_datasets(setting):
        for by in BY:
            for e in rankings[key][by]:
                rec = counts.setdefault(e["code_name"], {"iou": 0, "uscore": 0, "model": e["model"],
                                                          "names": []})
                rec[by] += 1
                if e["name"] not in rec["names"]:
                    rec["names"].append(e["name"])
    for rec in counts.values():
        rec["names"].sort()
    return dict(sorted(counts.items()))


def table2() -> dict:
    """Table 2: ``source_iou``, ``target_iou``, ``source_uscore``, ``target_uscore``, each with
    ``top10`` (rank, name, code_name, model, venue, year) and ``unet_rank``."""
    return json.loads(json.dumps(reference_data()["table2"]))


def code_name(printed: str) -> str | None:
    """U-Bench's code name for a model name as the page prints it."""
    return reference_data()["names"].get(printed)


def registry_name(printed_or_code: str) -> str | None:
    """ubench's registry name for a printed or code name, None where ubench lacks the model."""
    data = reference_data()
    code = data["names"].get(printed_or_code, printed_or_code)
    return data["code_names"].get(code)
