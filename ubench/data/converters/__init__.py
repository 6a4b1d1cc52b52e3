"""Converters: one per raw format, as each dataset's owners distribute it (see ``base.py``).

Each module below exports ``CONVERTERS``, a list of ``Converter`` objects; ``get_converter(name)``
finds one by its ``--format`` name. Modules are grouped by modality only to keep files small.
"""

from __future__ import annotations

import importlib

from ubench.data.converters.base import Converter
from ubench.errors import unknown_name_error

_MODULES = (
    "ubench_layout",
    "ultrasound",
    "oct",
    "dermoscopy",
    "endoscopy",
    "fundus",
    "histology",
    "xray",
    "volumes",
)


def all_converters() -> dict[str, Converter]:
    """Every converter by format name (sorted)."""
    out: dict[str, Converter] = {}
    for mod in _MODULES:
        for conv in importlib.import_module(f"ubench.data.converters.{mod}").CONVERTERS:
            if conv.name in out:
                raise RuntimeError(f"two converters named {conv.name!r}")
            out[conv.name] = conv
    return dict(sorted(out.items()))


def get_converter(name: str) -> Converter:
    """The converter for format ``name``, or a UbenchError listing every format.

    Every name is listed, uncut: ``ubench`` (U-Bench's layout, for one's own data) belongs to no
    registered dataset, so `datasets list` alone would never show it.
    """
    convs = all_converters()
    if name not in convs:
        raise unknown_name_error(
            "format", name, convs, limit=None,
            fix_tail="`ubench datasets list` shows each dataset's format; `ubench` is U-Bench's layout "
            "(images/ + masks/0/) for your own data")
    return convs[name]
