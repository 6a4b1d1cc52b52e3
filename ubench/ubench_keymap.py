"""U-Bench's parameter names to ubench's: one key map per model, proven offline (issue 19).

ubench's models are written on shared blocks (``models/ops/``), so their state_dict keys differ from
U-Bench's even where they compute the same thing. A key map renames U-Bench's keys with prefix
rules (U-Bench prefix -> ubench prefix; the longest matching prefix wins, and a rule that is a whole
key renames that one tensor). It may also drop U-Bench keys that ubench has no tensor for:

* ``tied``: keys U-Bench stores twice because two of its modules share one tensor (HiFormer,
  MALUNet); each is dropped only if the file still ties it to its twin (one storage) or holds equal
  values there, so no weight is silently discarded;
* ``unused``: tensors of modules U-Bench builds but its forward never runs;
* ``buffers``: constant buffers U-Bench stores (relative-position index tables, attention masks)
  that ubench's module computes when it is built; they hold no trained value.

and it may change how a tensor is stored, never its values:

* ``fused``: several U-Bench tensors concatenated along their first dimension into one ubench
  tensor, in the order listed (separate query, key and value projections as one ``qkv`` weight,
  a list of per-group convolutions as one grouped convolution);
* ``reshaped``: a tensor viewed in ubench's shape, same values in the same order (a 1x1
  convolution's kernel ``[out, in, 1, 1]`` as a linear layer's ``[out, in]``).

Maps are package data (``ubench/keymaps/MODEL.json``), written by
``scripts/ubench_reference_keys.py`` for each model it examined. Only a ``proven`` map is used: one
where U-Bench's module and ubench's, given the same deterministic non-trivial weights through the
map, gave the same output on the same input (float32, eval mode, within 1e-5 relative). Any other
status says why U-Bench's weights are refused for that model. Each file records how the pairing
was found, the difference measured and U-Bench's commit. A model without a file must fit with
U-Bench's keys as they are (``ubench_weights.fit_state_dict`` checks either way, all or nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import torch

from ubench.errors import UbenchError

KEYMAP_FOLDER = "keymaps"  # under the package: package data, no code

PROVEN = "proven"  # same output as U-Bench's module on the same weights and input
STATUSES = {
    PROVEN: "imported through the key map",
    "outputs differ": "ubench's module, given U-Bench's weights, does not compute U-Bench's output",
    "not paired": "ubench's module holds other tensors than U-Bench's (counts or shapes differ)",
    "not compared": "U-Bench's module could not be run here to compare (e.g. its CUDA-only kernels)",
}


@dataclass(frozen=True)
class KeyMap:
    """How one model's U-Bench keys become ubench's, and the evidence that the result computes the same."""

    model: str  # ubench's registry name
    ubench_model: str  # U-Bench's name
    source: str  # "FengheTan9/U-Bench@COMMIT path": where the structure was read
    status: str  # PROVEN, or why U-Bench's weights are refused for this model (see STATUSES)
    paired_by: str = ""  # how U-Bench's tensors were matched to ubench's before the outputs were compared
    max_rel_diff: float | None = None  # max |U-Bench - ubench| / max |U-Bench| of the outputs
    rules: tuple[tuple[str, str], ...] = ()
    tied: tuple[tuple[str, str], ...] = ()  # (U-Bench key dropped, the key it is tied to)
    unused: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()  # U-Bench's constant buffers ubench computes at build
    fused: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (ubench key, U-Bench keys concatenated on dim 0)
    reshaped: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (ubench key, its shape): same values viewed
    notes: str = ""

    @property
    def proven(self) -> bool:
        return self.status == PROVEN

    def as_json(self) -> dict:
        return {"model": self.model, "ubench_model": self.ubench_model, "source": self.source,
                "status": self.status, "paired_by": self.paired_by, "max_rel_diff": self.max_rel_diff,
                "notes": self.notes,
                "tied": [list(t) for t in self.tied], "unused": list(self.unused),
                "buffers": list(self.buffers),
                "fused": [[k, list(srcs)] for k, srcs in self.fused],
                "reshaped": [[k, list(shape)] for k, shape in self.reshaped],
                "rules": [list(r) for r in self.rules]}


def _parts_suffix(a: list[str], b: list[str]) -> int:
    """How many trailing dotted parts ``a`` and ``b`` share."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def derive_rules(pairs: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Few prefix rules that rename every key of ``pairs`` (U-Bench key -> ubench key) exactly.

    Each pair proposes the rule of its differing prefixes (``Conv1.conv.`` -> ``encoder.down.0.``
    for ``Conv1.conv.0.weight`` -> ``encoder.down.0.0.weight``); where pairs propose different
    targets for one prefix, or a key would be renamed wrongly by a longer or shorter rule, that key
    gets a whole-key rule. The result is checked against every pair before it is returned."""
    proposals: dict[str, dict[str, list[str]]] = {}
    exact: dict[str, str] = {}
    for src, dst in pairs.items():
        s, d = src.split("."), dst.split(".")
        n = _parts_suffix(s, d)
        if n == 0 or n >= len(s) or n >= len(d):  # the leaf renamed, or one key a suffix of the other
            exact[src] = dst
            continue
        a, b = ".".join(s[:-n]) + ".", ".".join(d[:-n]) + "."
        proposals.setdefault(a, {}).setdefault(b, []).append(src)
    rules: dict[str, str] = {}
    for a, targets in proposals.items():
        best = max(sorted(targets), key=lambda b: len(targets[b]))
        rules[a] = best
        for b, srcs in targets.items():
            if b != best:
                exact.update({k: pairs[k] for k in srcs})
    rules.update(exact)
    ordered = tuple(sorted(rules.items()))
    for _ in range(2):  # a whole-key rule for each key a shorter or longer prefix renames wrongly
        wrong = {k: v for k, v in pairs.items() if rename_key(k, ordered) != v}
        if not wrong:
            return ordered
        rules.update(wrong)
        ordered = tuple(sorted(rules.items()))
    raise AssertionError(f"derive_rules: {len(wrong)} keys not renamed right")  # whole-key rules always win


def rename_key(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    """``key`` renamed by the longest rule that matches it (a whole key, or a prefix ending in '.');
    None when no rule does."""
    best = None
    for a, b in rules:
        if (key == a or (a.endswith(".") and key.startswith(a))) and (best is None or len(a) > len(best[0])):
            best = (a, b)
    if best is None:
        return None
    a, b = best
    return b if key == a else b + key[len(a):]


def load_keymap(model: str) -> KeyMap | None:
    """The key map shipped for ``model``, or None when U-Bench's keys are to be used as they are."""
    res = resources.files("ubench").joinpath(KEYMAP_FOLDER, f"{model}.json")
    return load_keymap_file(res) if res.is_file() else None


def load_keymap_file(path) -> KeyMap:
    """The key map in one file (a ``MODEL.json`` of ``ubench/keymaps``, or one being written)."""
    doc = json.loads(path.read_text())
    if doc.get("status") not in STATUSES:
        raise UbenchError(f"{path} has status {doc.get('status')!r}",
                          f"reinstall ubench; a key map's status is one of {sorted(STATUSES)}")
    rel = doc.get("max_rel_diff")
    return KeyMap(model=doc["model"], ubench_model=doc["ubench_model"], source=doc["source"], status=doc["status"],
                  paired_by=doc["paired_by"], max_rel_diff=None if rel is None else float(rel),
                  notes=doc.get("notes", ""),
                  rules=tuple(tuple(r) for r in doc["rules"]), tied=tuple(tuple(t) for t in doc["tied"]),
                  unused=tuple(doc["unused"]), buffers=tuple(doc.get("buffers", ())),
                  fused=tuple((k, tuple(srcs)) for k, srcs in doc.get("fused", ())),
                  reshaped=tuple((k, tuple(shape)) for k, shape in doc.get("reshaped", ())))


def shipped_keymaps() -> list[str]:
    """The models with a key map, sorted."""
    folder = resources.files("ubench").joinpath(KEYMAP_FOLDER)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")) if folder.is_dir() else []


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.numel() == b.numel():
        return True  # tied in the file (a view of the twin, as MALUNet's permuted linear_0)
    return tuple(a.shape) == tuple(b.shape) and bool(torch.equal(a, b))


def apply_keymap(state: dict[str, torch.Tensor], keymap: KeyMap, what: str) -> dict[str, torch.Tensor]:
    """U-Bench's state_dict under ubench's names: tied, unused and constant-buffer keys dropped,
    fused groups concatenated, the rest renamed, reshaped tensors viewed in ubench's shape.

    Keys no rule renames keep their name (``fit_state_dict`` then reports them as unexpected).
    A tied key whose twin holds other values, two keys renamed onto one, a fused group that is
    incomplete or whose pieces do not stack, or a reshape that changes the number of values is a
    UbenchError."""
    state = dict(state)
    for dropped, kept in keymap.tied:
        if dropped in state and kept in state:
            if not _same_tensor(state[dropped], state[kept]):
                raise UbenchError(f"{what}: U-Bench ties {dropped} to {kept}, but this file holds different "
                                  "values in them", "this checkpoint was not written by U-Bench's model as "
                                  "released; ubench keeps one tensor for both and cannot load two")
            del state[dropped]
    for key in keymap.unused + keymap.buffers:
        state.pop(key, None)
    not_from_this_model = "the file's keys are not the U-Bench model's the key map was proven on"
    fused: dict[str, torch.Tensor] = {}
    for new, sources in keymap.fused:
        absent = [k for k in sources if k not in state]
        if len(absent) == len(sources):
            continue  # none there: fit_state_dict names the missing ubench key
        pieces = [state.pop(k) for k in sources if k in state]
        if absent or len({tuple(p.shape[1:]) for p in pieces}) != 1:
            raise UbenchError(f"{what}: {new} is U-Bench's {', '.join(sources)} stacked, but "
                              + (f"{', '.join(absent)} is missing" if absent else "their shapes do not stack"),
                              not_from_this_model)
        fused[new] = torch.cat(pieces, 0)
    out: dict[str, torch.Tensor] = {}
    for key, value in list(state.items()) + list(fused.items()):
        new = key if key in fused else rename_key(key, keymap.rules)
        new = key if new is None else new
        if new in out:
            raise UbenchError(f"{what}: two U-Bench keys map onto {new}", not_from_this_model)
        out[new] = value
    for key, shape in keymap.reshaped:
        if key in out:
            if out[key].numel() != torch.Size(shape).numel():
                raise UbenchError(f"{what}: {key} holds {tuple(out[key].shape)}, which cannot be viewed as "
                                  f"{tuple(shape)}", not_from_this_model)
            out[key] = out[key].reshape(shape)
    return out
