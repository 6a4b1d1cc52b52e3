"""`ubench models list`: instant by default, params/FLOPs computed once and cached by code hash,
U-Bench top-10 sorting and filtering; plus the CLI's help texts and small output formats."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import ubench.efficiency
import ubench.models
from ubench.cli import build_parser, main
from ubench.model_table import cache_path, top10_by_model
from ubench.models import list_models
from ubench.models.registry import known_model_names

HEADER = ("| name | family | year | params (M) | ref params (M) | FLOPs (G, 256²) | deep sup. | "
          "pretrained backbone | U-Bench top-10s (IoU/U-Score) |")


def rows(out: str) -> list[list[str]]:
    """The table's body rows, as lists of cells."""
    lines = out.splitlines()
    start = lines.index(HEADER) + 2
    body = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    return body


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty per-test cache (XDG_CACHE_HOME), so the user's own cache never leaks in."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "ubench" / "model_complexity.json"


@pytest.fixture
def fake_complexity(monkeypatch) -> list[str]:
    """Replace ptflops' run with a recorder: the names it was asked for, in order."""
    calls: list[str] = []

    def fake(name, input_size, seed, threads):
        calls.append(name)
        return {"params_m": 1.5 + len(calls), "gflops": 0.25 * len(calls), "input_size": input_size}

    monkeypatch.setattr(ubench.efficiency, "complexity", fake)
    return calls


def _fail(*args, **kwargs):
    raise AssertionError("the default `models list` must not build a model or run ptflops")


def test_default_lists_every_model_without_building_any(capsys, cache, monkeypatch):
    import ptflops

    monkeypatch.setattr(ubench.efficiency, "complexity", _fail)
    monkeypatch.setattr(ptflops, "get_model_complexity_info", _fail)
    monkeypatch.setattr(ubench.models.registry, "create_model", _fail)
    monkeypatch.setattr(ubench.efficiency, "create_model", _fail)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    body = rows(out)
    assert [r[0] for r in body] == list_models()
    assert len(body) == len(known_model_names())  # every model file registers an importable model
    assert all(r[3] == "-" and r[5] == "-" for r in body)  # nothing cached yet
    from ubench.models.pretrained import pretrained_records

    backbone = {r[0]: r[7] for r in body}
    assert backbone["pranet"] == "res2net101_v1b_26w_4s" and backbone["unet"] == "-"
    assert all((backbone[n] != "-") == bool(pretrained_records(n)) for n in backbone)
    assert "`ubench models list --flops` computes them" in out
    assert not cache.exists()


def test_flops_computed_once_then_cached_and_recomputed_after_an_edit(capsys, cache, fake_complexity,
                                                                      tmp_path, monkeypatch):
    names = list_models("rwkv")
    assert main(["models", "list", "--family", "rwkv", "--flops"]) == 0
    first = rows(capsys.readouterr().out)
    assert fake_complexity == names
    assert [r[3] for r in first] == ["2.50", "3.50", "4.50"]
    assert [r[5] for r in first] == ["0.25", "0.50", "0.75"]
    stored = json.loads(cache.read_text())["models"]
    assert sorted(stored) == names and cache == cache_path()

    assert main(["models", "list", "--family", "rwkv", "--flops"]) == 0  # second call: all cached
    assert rows(capsys.readouterr().out) == first
    assert fake_complexity == names
    assert main(["models", "list", "--family", "rwkv"]) == 0  # the default shows the cached values
    assert rows(capsys.readouterr().out) == first

    # "edit" one model: its source file now has other content, so its hash no longer matches
    edited = names[1]
    real = ubench.models.model_source_file
    copy = tmp_path / f"{edited}.py"
    copy.write_text(real(edited).read_text() + "\n# edited\n")
    monkeypatch.setattr(ubench.models, "model_source_file", lambda n: copy if n == edited else real(n))
    assert main(["models", "list", "--family", "rwkv"]) == 0
    stale = rows(capsys.readouterr().out)
    assert [r[3] for r in stale] == ["2.50", "-", "4.50"]
    assert main(["models", "list", "--family", "rwkv", "--flops"]) == 0
    assert fake_complexity == [*names, edited]
    assert [r[3] for r in rows(capsys.readouterr().out)] == ["2.50", "5.50", "4.50"]


def test_unwritable_cache_still_prints_the_numbers(capsys, tmp_path, monkeypatch, fake_complexity):
    (tmp_path / "not_a_dir").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not_a_dir"))
    assert main(["models", "list", "--family", "rwkv", "--flops"]) == 0
    out = capsys.readouterr().out
    assert [r[3] for r in rows(out)] == ["2.50", "3.50", "4.50"]
    assert "params/FLOPs not cached" in out


def test_in_top10_and_sort_by_top10(capsys, cache):
    top10 = top10_by_model()
    assert main(["models", "list", "--in-top10", "--sort", "top10"]) == 0
    body = rows(capsys.readouterr().out)
    names = [r[0] for r in body]
    expected = {n for n in list_models() if sum(top10.get(n, (0, 0))) > 0}
    assert set(names) == expected and 0 < len(names) < len(list_models())
    totals = []
    for r in body:
        iou, us = map(int, r[8].split("/"))
        assert (iou, us) == top10[r[0]] and iou + us > 0
        totals.append(iou + us)
    assert [(-t, n) for t, n in zip(totals, names)] == sorted((-t, n) for t, n in zip(totals, names))
    assert totals[0] > totals[-1]

    assert main(["models", "list", "--sort", "top10"]) == 0  # without the filter: zeros come last
    all_rows = rows(capsys.readouterr().out)
    assert len(all_rows) == len(list_models())
    assert [r[0] for r in all_rows[:len(names)]] == names and all_rows[-1][8] == "0/0"


def _subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subparsers(sub, (*path, name))


def test_every_subcommand_has_a_description():
    found = dict(_subparsers(build_parser()))
    assert {("train",), ("complexity",), ("speed",), ("leaderboard",), ("uscore",), ("candidate",),
            ("models", "list"), ("datasets", "check")} <= set(found)
    missing = [" ".join(p) for p, sub in found.items() if not (sub.description or "").strip()]
    assert missing == []


def test_unknown_format_lists_every_format_including_ubench(capsys, tmp_path):
    from ubench.data.converters import all_converters

    assert main(["datasets", "check", str(tmp_path), "--format", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown format 'nope'" in err
    assert "…" not in err
    for name in all_converters():
        assert name in err
    assert "ubench" in all_converters()


def test_datasets_list_names_the_ubench_layout_format(capsys):
    assert main(["datasets", "list"]) == 0
    assert "format `ubench`" in capsys.readouterr().out


def test_advisor_train_prints_ndcg_with_three_decimals(capsys, workdir, monkeypatch):
    import ubench.pipeline

    (workdir / "params.yaml").write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    from ubench.config import load_config

    k = load_config(workdir / "params.yaml").advisor.k
    monkeypatch.setattr(ubench.pipeline, "run_advisor", lambda cfg: {
        "trained": True, "by": "iou", f"advisor_ndcg_at_{k}": 0.8123456789012345,
        f"baseline_ndcg_at_{k}": 0.7})
    assert main(["advisor", "train"]) == 0
    assert f"NDCG@{k} 0.812 vs baseline 0.700;" in capsys.readouterr().out
