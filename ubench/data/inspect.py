"""Text reports for `ubench datasets list` and `ubench datasets check`.

Why a check before any stage: a raw download with a missing mask or a truncated file should be
found in seconds with every bad file named, not an hour into a `dvc repro`. The check runs the
same converter code as `prepare` (``converters.base.check_folder``), so what passes here prepares.

`ubench datasets check DIR --format NAME` exit status:

- 0: every file decoded and paired cleanly (``verdict:  OK``); `prepare` will convert the folder.
- 1: problems found: each is listed, one line per file with its fix (unmatched or missing mask,
  unreadable or truncated file, decompression bomb, wrong size, non-binary mask, alpha-channel
  mask, bad or incomplete train.txt/val.txt, a folder that does not exist …), after checking
  every file (``verdict:  NOT OK``); `prepare` would refuse the folder.
- 2: the check could not run (unknown format, bad arguments): an ``error:`` and a ``fix:`` line
  on stderr, no report.

Every undecodable file (not an image, truncated, PIL's decompression-bomb guard …) is a problem
line (status 1), never a traceback; a Python traceback (which Python also ends with status 1) is
a bug in U-Bench, not a verdict on the data.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ubench.data.converters import get_converter
from ubench.data.converters.base import check_folder
from ubench.data.converters.ubench_layout import LAYOUT_HINT
from ubench.data.registry import all_datasets


def datasets_table(modality: str | None = None) -> str:
    """A Markdown table of the registered datasets (optionally one modality)."""
    rows = [d for d in all_datasets() if modality is None or d.modality == modality]
    lines = [
        "| name | dataset | modality | classes | role | zero-shot targets | format | licence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in sorted(rows, key=lambda d: (d.modality, d.name)):
        classes = "binary" if d.num_classes == 1 else f"{d.num_classes} ({', '.join(d.class_names)})"
        lines.append(
            f"| {d.name} | {d.title or d.name} | {d.modality} | {classes} | {d.role} | "
            f"{', '.join(d.zero_shot_targets) or '-'} | {d.raw_format or 'generated'} | {d.licence} |"
        )
    lines.append(f"\n{len(rows)} dataset(s). Raw data goes to data/raw/<name>; "
                 "`ubench datasets check data/raw/<name> --format <format>` validates it.\n"
                 f"Your own data: format `ubench` (U-Bench's layout: {LAYOUT_HINT}; "
                 "optional train.txt/val.txt), then `ubench prepare <name>`.")
    return "\n".join(lines)


def check_report(root: str | Path, fmt: str) -> tuple[str, bool]:
    """Validate a raw folder with format ``fmt``'s converter: (report text, True when clean)."""
    conv = get_converter(fmt)
    root = Path(root)
    scan, problems, good = check_folder(conv, root)
    groups = Counter(item.group or item.id for item in scan.items)
    lines = [
        f"format:   {conv.name} — {conv.layout}",
        f"folder:   {root}",
        f"items:    {len(scan.items)} ({len(groups)} split group(s))",
        f"samples:  {good} decoded cleanly"
        + ("" if conv.num_classes == 1 else f"; {conv.num_classes} classes ({', '.join(conv.class_names)})"),
    ]
    if scan.official_split is not None:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in sorted(scan.official_split.items()))
        lines.append(f"split:    official ({sizes} groups)")
    else:
        lines.append("split:    none shipped (prepare makes a seeded split)")
    if problems:
        lines.append(f"problems: {len(problems)}")
        last_fix = ""
        for p in problems:
            lines.append(f"  {p.line()}")
            if p.fix and p.fix != last_fix:  # a run of problems with one fix shows it once
                lines.append(f"    fix: {p.fix}")
            last_fix = p.fix
        lines.append("verdict:  NOT OK — fix or remove the files above, then check again")
    else:
        lines.append("problems: none")
        lines.append("verdict:  OK")
    return "\n".join(lines), not problems
