"""One error type for every user-facing failure: it names the problem and the fix.

``AnalysisInputError`` is the same for bad input to an analysis function (and a ``ValueError``).
The CLI prints ``error: <what>`` and ``fix: <how>`` and exits 2 instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UbenchError(Exception):
    """A failure the user can act on: ``what`` went wrong and ``fix`` says what to do."""

    def __init__(self, what: str, fix: str = ""):
        super().__init__(what if not fix else f"{what}\n  fix: {fix}")
        self.what = what
        self.fix = fix


class AnalysisInputError(UbenchError, ValueError):
    """Bad input to an analysis function: a ``ValueError`` (for callers) and a ``UbenchError``
    (so the CLI prints what went wrong and the fix instead of a traceback)."""


def close_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Known names closest to ``name`` (for 'did you mean' messages)."""
    return difflib.get_close_matches(name, sorted(known), n=n, cutoff=0.5)


def unknown_name_error(kind: str, name: str, known: Iterable[str], fix_tail: str = "",
                       limit: int | None = 12) -> UbenchError:
    """A UbenchError for an unknown model/dataset name that lists the closest known names.

    ``limit`` cuts the listing (with "…") where the full list is long and findable elsewhere;
    None lists every name, for kinds the user can learn nowhere else (formats).
    """
    known = sorted(known)
    close = close_names(name, known)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    cut = limit is not None and len(known) > limit
    listing = ", ".join(known[:limit] if cut else known) + (" …" if cut else "")
    fix = f"{hint}known {kind}s: {listing}" + (f"; {fix_tail}" if fix_tail else "")
    return UbenchError(f"unknown {kind} {name!r}", fix)
