"""The shape most 2D datasets share: image files, and for each one or more mask files by name.

Why one configurable class: BUSI, Kvasir-SEG, ISIC 2018, CHASE, STARE, GlaS, Montgomery, PH2 …
differ only in *where* the masks are relative to the images, how masks are encoded (see
``pixels.MASK_POLICIES``) and whether several masks are unioned. Each format is one
``PairedFolders(...)`` record naming those three things; pairing, orphan detection and error
reporting are written once here.

Matching is by relative path, deterministic: images are ``glob`` matches under the root (sorted,
minus ``exclude``); an image's masks are the matches of ``mask_for(image_rel)`` (a glob, relative
to the root) that are EXACT: a glob is only a way to find candidates, never a prefix match.
A ``mask_for`` glob whose name ends in ``.*`` means "this stem with one extension": the file's
stem must equal the rest of the name (so ``img002.*`` finds ``img002.png`` but not
``img002.b.png``, which is ``img002.b``'s mask). Any other wildcard in the name must be narrowed
by ``mask_ok(image_rel, mask_path)`` to the format's documented mask names (BUSI's ``_mask`` and
``_mask_<n>``, STARE's ``.ah.ppm[.gz]`` …). Every file matched by ``mask_glob`` must belong to some
image, or it is reported as unmatched (a mask whose image is missing is usually a broken download).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from ubench.data.converters import pixels
from ubench.data.converters.base import Converter, Problem, RawItem, Sample, ScanResult, relative


def _one_extension(pattern: str, path: Path) -> bool:
    """True unless ``pattern``'s name ends in ``.*`` and ``path``'s stem is not exactly the rest."""
    name = PurePosixPath(pattern).name
    return not name.endswith(".*") or fnmatch.fnmatchcase(path.stem, name[:-2])


def _glob(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: set[Path] = set()
    for pat in patterns:
        found.update(p for p in root.glob(pat) if p.is_file() and not p.name.startswith("."))
    return sorted(found)


class PairedFolders(Converter):
    """A 2D dataset whose masks are found from each image's relative path."""

    def __init__(
        self,
        name: str,
        layout: str,
        images: tuple[str, ...],
        mask_glob: tuple[str, ...],
        mask_for: Callable[[PurePosixPath], str],
        policy: str = "binary",
        *,
        exclude: str | None = None,
        id_for: Callable[[PurePosixPath], str] | None = None,
        extra_for: Callable[[PurePosixPath], str] | None = None,
        mask_ok: Callable[[PurePosixPath, Path], bool] | None = None,
        min_masks: int = 1,
        max_masks: int | None = 1,
        official_split: Callable[[Path, list[RawItem]], dict[str, list[str]] | None] | None = None,
        apply_extra: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        if policy not in pixels.MASK_POLICIES or policy == "labels":
            raise ValueError(f"PairedFolders is binary: policy {policy!r}")
        self.name, self.layout = name, layout
        self.images, self.mask_glob, self.mask_for, self.policy = images, mask_glob, mask_for, policy
        self.exclude = re.compile(exclude) if exclude else None
        self.id_for = id_for or (lambda rel: rel.stem)
        self.extra_for = extra_for
        self.mask_ok = mask_ok
        self.min_masks, self.max_masks = min_masks, max_masks
        self.official_split_fn = official_split
        self.apply_extra = apply_extra

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        problems: list[Problem] = []
        items: list[RawItem] = []
        claimed: set[Path] = set()
        ids: dict[str, str] = {}
        mask_files = set(_glob(root, self.mask_glob))
        seen = 0
        for path in _glob(root, self.images):
            rel = PurePosixPath(relative(path, root))
            if path in mask_files or (self.exclude and self.exclude.search(str(rel))):
                continue
            if path.suffix.lower() not in pixels.IMAGE_EXTS and not path.name.endswith(".gz"):
                continue
            seen += 1
            masks = self._masks(root, rel)
            claimed.update(masks)
            if len(masks) < self.min_masks:
                problems.append(Problem(str(rel), f"no mask found (looked for {self.mask_for(rel)})"))
                continue
            if self.max_masks is not None and len(masks) > self.max_masks:
                shown = ", ".join(relative(m, root) for m in masks[:4])
                problems.append(Problem(str(rel), f"{len(masks)} masks match, expected one: {shown}"))
                continue
            extra: tuple[Path, ...] = ()
            if self.extra_for is not None:
                extra_path = root / self.extra_for(rel)
                if not extra_path.is_file():
                    problems.append(Problem(str(rel), f"missing {self.extra_for(rel)}"))
                    continue
                extra = (extra_path,)
            item_id = self.id_for(rel)
            if item_id in ids:
                problems.append(Problem(str(rel), f"same id {item_id!r} as {ids[item_id]}"))
                continue
            ids[item_id] = str(rel)
            items.append(RawItem(item_id, path, tuple(masks), item_id, extra))
        if not seen:
            looked = ", ".join(f"{(root / pat).as_posix()}" for pat in self.images)
            problems.append(Problem("", f"no images found (looked for {looked})"))
        for orphan in sorted(mask_files - claimed):
            problems.append(Problem(relative(orphan, root), "mask without a matching image"))
        items.sort(key=lambda it: it.id)
        split = self.official_split_fn(root, items) if self.official_split_fn else None
        return ScanResult(items, problems, split)

    def _masks(self, root: Path, rel: PurePosixPath) -> list[Path]:
        """The image's mask files: ``mask_for``'s matches, kept only when exact (module docstring)."""
        pattern = self.mask_for(rel)
        found = (p for p in root.glob(pattern) if p.is_file() and _one_extension(pattern, p))
        return sorted(p for p in found if self.mask_ok is None or self.mask_ok(rel, p))

    def load(self, root: Path, item: RawItem) -> list[Sample]:
        image = pixels.read_image(item.image)
        masks = [pixels.read_mask(p, self.policy) for p in item.masks]
        mask = pixels.union_masks(masks, list(item.masks))
        if self.apply_extra is not None and item.extra:
            extra = pixels.read_mask(item.extra[0], "threshold")
            image, mask = self.apply_extra(image, mask, extra)
        return [Sample(item.id, image, mask, item.group or item.id)]
