"""Key maps from U-Bench's parameter names to ubench's (issue 19), on the fixtures of U-Bench's keys.

Whether a map computes what U-Bench's module does was proven offline (scripts/ubench_reference_keys.py
builds U-Bench's code, feeds both models the same weights and input; the map file records the
difference). These tests keep that proof from rotting: every shipped map must still take U-Bench's
keys (tests/data/ubench_keys/, read from U-Bench's code) onto the current ubench model, every tensor
once, shapes equal; models whose map says they differ are refused with the reason."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import UBENCH_KEYS, ubench_fixture, ubench_state
from ubench.errors import UbenchError
from ubench.models import create_model, list_models, model_info
from ubench.ubench_keymap import PROVEN, STATUSES, KeyMap, apply_keymap, derive_rules, load_keymap, rename_key, shipped_keymaps
from ubench.ubench_weights import UBenchCheckpoint, imported_document

UBENCH_NAMED = [n for n in list_models() if model_info(n).ubench_name]
MAPPED = shipped_keymaps()
PROVEN_MAPS = [n for n in MAPPED if load_keymap(n).proven]


def test_every_model_with_a_ubench_name_has_a_fixture_and_a_key_map_verdict():
    assert UBENCH_NAMED, "no model names its U-Bench counterpart"
    missing = [n for n in UBENCH_NAMED if not (UBENCH_KEYS / f"{model_info(n).ubench_name}.json").is_file()]
    assert not missing, f"no fixture of U-Bench's keys (run scripts/ubench_reference_keys.py): {missing}"
    assert sorted(UBENCH_NAMED) == MAPPED, set(UBENCH_NAMED) ^ set(MAPPED)
    for name in MAPPED:
        km = load_keymap(name)
        assert km.model == name and km.ubench_model == model_info(name).ubench_name
        assert km.status in STATUSES and "FengheTan9/U-Bench@" in km.source
        if km.proven:  # within 1e-5, or a float32 near miss that float64 showed to be rounding
            assert km.max_rel_diff is not None and (km.max_rel_diff <= 1e-5 or (
                km.max_rel_diff <= 1e-4 and "in float64 gives" in km.notes)), name
        else:
            assert not km.rules, f"{name}: a refused model ships no rules"


def test_derive_rules_renames_every_pair_exactly_with_few_rules():
    pairs = {f"Conv{i}.conv.{j}.{p}": f"encoder.down.{i - 1}.{j}.{p}"
             for i in (1, 2, 3) for j in (0, 1, 3, 4) for p in ("weight", "bias")}
    pairs.update({"Conv1.conv.9.weight": "head.weight",  # one tensor moved out of its block
                  "pos_embed": "stem.pos_embed",  # a key that is the other's suffix
                  "final.weight": "final.weight", "a.x.weight": "b.y.bias"})
    rules = derive_rules(pairs)
    assert all(rename_key(k, rules) == v for k, v in pairs.items())
    assert len(rules) < len(pairs) / 2
    assert rename_key("unknown.weight", rules) is None


@pytest.mark.parametrize("name", PROVEN_MAPS)
def test_a_proven_map_takes_ubench_keys_onto_the_model(name):
    km = load_keymap(name)
    state = ubench_state(km.ubench_model)
    mapped = apply_keymap(state, km, name)
    target = create_model(name).state_dict()
    assert set(mapped) == set(target), (sorted(set(mapped) - set(target))[:5], sorted(set(target) - set(mapped))[:5])
    for key, value in target.items():
        assert tuple(mapped[key].shape) == tuple(value.shape), key
    # every U-Bench tensor lands once: the fill values (each tensor's own index) are all still there,
    # a fused tensor holding its pieces' values in the map's order
    dropped = {d for d, _ in km.tied} | set(km.unused) | set(km.buffers)
    firsts = {float(v.reshape(-1)[0]) for k, v in state.items() if k not in dropped and v.numel()}
    fused = dict(km.fused)
    landed = set()
    for key, v in mapped.items():
        if key in fused:
            pieces = [float(state[k].reshape(-1)[0]) for k in fused[key]]
            assert torch.unique_consecutive(v.reshape(len(pieces), -1)[:, 0]).tolist() == pieces, key
            landed.update(pieces)
        elif v.numel():
            landed.add(float(v.reshape(-1)[0]))
    assert landed == firsts


@pytest.mark.parametrize("name", [n for n in MAPPED if n not in PROVEN_MAPS][:6] or ["-"])
def test_a_model_whose_map_says_it_differs_is_refused_with_the_reason(name):
    if name == "-":
        pytest.skip("every shipped map is proven")
    km = load_keymap(name)
    ck = UBenchCheckpoint(path=UBENCH_KEYS / "x.pth", sha256="0" * 64, state_dict=ubench_state(km.ubench_model),
                          config={"model": km.ubench_model, "dataset_name": "synth"})
    with pytest.raises(UbenchError) as err:
        imported_document(ck, name, "synth")
    assert km.status in err.value.what and STATUSES[km.status] in err.value.what


def test_imported_document_maps_ubench_keys_and_records_the_proof():
    name = next(n for n in PROVEN_MAPS if load_keymap(n).rules and create_model(n).state_dict() and
                sum(p.numel() for p in create_model(n).parameters()) < 3_000_000)
    km = load_keymap(name)
    state = ubench_state(km.ubench_model)
    ck = UBenchCheckpoint(path=UBENCH_KEYS / "x.pth", sha256="0" * 64, state_dict=state,
                          config={"model": km.ubench_model, "dataset_name": "synth"}, epoch=3)
    doc = imported_document(ck, name, "synth")
    assert doc["imported"]["key_map"]["paired_by"] == km.paired_by
    net = create_model(name)
    net.load_state_dict(doc["state_dict"])  # strict
    src = next(k for k in state if rename_key(k, km.rules) not in (None, k))
    assert torch.equal(doc["state_dict"][rename_key(src, km.rules)], state[src])


def test_tied_tensors_are_dropped_only_while_still_tied():
    km = KeyMap(model="m", ubench_model="M", source="FengheTan9/U-Bench@x", status=PROVEN, paired_by="test",
                max_rel_diff=0.0, rules=(("a.", "b."),), tied=(("a.linear_1.weight", "a.linear_0.weight"),),
                unused=("a.never.weight",))
    w = torch.arange(6.0).reshape(1, 2, 3)
    tied = {"a.linear_0.weight": w, "a.linear_1.weight": w.permute(1, 0, 2), "a.never.weight": torch.ones(1)}
    assert set(apply_keymap(tied, km, "t")) == {"b.linear_0.weight"}
    apart = dict(tied, **{"a.linear_1.weight": w.permute(1, 0, 2).clone() + 1})
    with pytest.raises(UbenchError, match="ties a.linear_1.weight to a.linear_0.weight"):
        apply_keymap(apart, km, "t")


def test_fused_reshaped_and_buffer_keys_are_applied_exactly():
    km = KeyMap(model="m", ubench_model="M", source="FengheTan9/U-Bench@x", status=PROVEN, paired_by="test",
                max_rel_diff=0.0, rules=(("net.", ""),), buffers=("net.attn.relative_position_index",),
                fused=(("attn.qkv.weight", ("net.attn.query.weight", "net.attn.key.weight", "net.attn.value.weight")),),
                reshaped=(("mlp.fc1.weight", (8, 4)),))
    q, k, v = (torch.full((4, 4), float(i)) for i in (1, 2, 3))
    state = {"net.attn.query.weight": q, "net.attn.key.weight": k, "net.attn.value.weight": v,
             "net.attn.relative_position_index": torch.zeros(49, 49, dtype=torch.long),
             "net.mlp.fc1.weight": torch.arange(32.0).reshape(8, 4, 1, 1)}
    out = apply_keymap(state, km, "t")
    assert set(out) == {"attn.qkv.weight", "mlp.fc1.weight"}
    assert torch.equal(out["attn.qkv.weight"], torch.cat([q, k, v]))  # query, key, value in the map's order
    assert torch.equal(out["mlp.fc1.weight"], torch.arange(32.0).reshape(8, 4))
    with pytest.raises(UbenchError, match="net.attn.value.weight is missing"):
        apply_keymap({k_: t for k_, t in state.items() if k_ != "net.attn.value.weight"}, km, "t")
    with pytest.raises(UbenchError, match="do not stack"):
        apply_keymap(dict(state, **{"net.attn.key.weight": torch.ones(4, 5)}), km, "t")
    with pytest.raises(UbenchError, match="cannot be viewed"):
        apply_keymap(dict(state, **{"net.mlp.fc1.weight": torch.ones(8, 5, 1, 1)}), km, "t")
    assert KeyMap(**{**km.__dict__}).as_json()["fused"] == [["attn.qkv.weight", list(km.fused[0][1])]]


def test_fixtures_name_ubench_commit_and_carry_no_weights():
    for path in sorted(UBENCH_KEYS.glob("*.json")):
        fx = ubench_fixture(path.stem)
        assert fx["source"].startswith("FengheTan9/U-Bench@"), path
        assert fx["num_keys"] == len(fx["keys"]) and all(len(k) == 3 for k in fx["keys"]), path
        assert path.stat().st_size < 300_000, path


def test_a_model_without_a_map_must_fit_as_it_is(tmp_path):
    # lv_unet-style: U-Bench's keys are ubench's; a checkpoint in ubench's names needs no map
    name = "unet"
    state = create_model(name).state_dict()
    ck = UBenchCheckpoint(path=tmp_path / "x.pth", sha256="0" * 64, state_dict=state,
                          config={"model": model_info(name).ubench_name, "dataset_name": "synth"})
    doc = imported_document(ck, name, "synth")
    assert doc["imported"]["key_map"] is None


def test_the_readme_lists_each_model_under_its_shipped_verdict():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {"proven": "| proven: imported", "outputs differ": "| outputs differ: refused",
            "not paired": "| tensors do not pair by shape: refused", "not compared": "| not compared: refused"}
    assert set(rows) == set(STATUSES)
    cells = {}
    for status, start in rows.items():
        line = next(ln for ln in readme.splitlines() if ln.startswith(start))
        cells[status] = set(re.findall(r"[a-z0-9_]+", line.split("|")[2]))
        assert f"({sum(load_keymap(n).status == status for n in MAPPED)}" in line, status
    for name in MAPPED:
        status = load_keymap(name).status
        assert name in cells[status], f"README lists {name} elsewhere than under '{status}'"
        assert not any(name in c for s, c in cells.items() if s != status), name
