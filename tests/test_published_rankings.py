"""U-Bench's published rankings where a user needs them: beside the leaderboard of a dataset U-Bench
ranked (with the rank agreement), and in `ubench advise` before any local result exists."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from ubench.analysis import ubench_reference as ubref
from ubench.analysis.leaderboard import build_leaderboard, render_markdown
from ubench.cli import main

IDS = [f"img{i}" for i in range(6)]
WIGGLE = np.array([0.00, 0.03, -0.02, 0.05, -0.04, 0.01])


def frame(mean: float, ids=IDS) -> pd.DataFrame:
    """A per-image table whose IoU averages ``mean`` (the other metrics follow IoU)."""
    iou = np.clip(mean + WIGGLE[: len(ids)], 0.0, 1.0).tolist()
    n = len(ids)
    return pd.DataFrame({"id": ids, "iou": iou, "dice": [2 * x / (1 + x) for x in iou], "se": iou,
                         "pc": iou, "f1": [2 * x / (1 + x) for x in iou], "acc": [0.9] * n,
                         "hd95": [1.0] * n})


def tau_by_pairs(a: list[float], b: list[float]) -> float:
    """Kendall's tau of two tie-free orders, from concordant and discordant pairs."""
    c = d = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        s = (a[i] - a[j]) * (b[i] - b[j])
        c, d = c + (s > 0), d + (s < 0)
    return (c - d) / (len(a) * (len(a) - 1) / 2)


def exact_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of Kendall's tau without ties: share of orders at least as far from zero."""
    t = abs(tau_by_pairs(a, b))
    perms = list(itertools.permutations(b))
    return sum(abs(tau_by_pairs(a, list(p))) >= t - 1e-12 for p in perms) / len(perms)


# chase_db1: U-Bench's IoU top 10 has cmunet 1, attention_unet 2, unet 3, unet3plus 4, uctransnet 6.
# Here: attention_unet > unet3plus > cmunet > unext (not in U-Bench's top 10) > unet > uctransnet.
CHASE_MEANS = {"attention_unet": 0.80, "unet3plus": 0.75, "cmunet": 0.70, "unext": 0.68,
               "unet": 0.65, "uctransnet": 0.60}


def board():
    in_domain = {"chase_db1": {m: frame(v) for m, v in CHASE_MEANS.items()},
                 "synth_small": {"unet": frame(0.6), "cmunet": frame(0.7)}}
    zs_ids = ["t0", "t1", "t2", "t3"]
    # U-Bench's chase_db1 -> stare IoU top 10: rwkv_unet 1, swinunetr 3, unetr 6; unet is not in it
    zeroshot = {("chase_db1", "stare"): {"unet": frame(0.5, zs_ids), "rwkv_unet": frame(0.4, zs_ids),
                                         "swinunetr": frame(0.6, zs_ids), "unetr": frame(0.3, zs_ids)},
                ("synth_small", "synth_small_shift"): {"unet": frame(0.4, zs_ids), "cmunet": frame(0.3, zs_ids)}}
    return build_leaderboard(in_domain, zeroshot)


def test_a_ubench_dataset_carries_the_published_top10_and_kendall_tau():
    b = board()
    json.dumps(b, allow_nan=False)  # plain JSON throughout
    pub = b["datasets"]["chase_db1"]["published"]
    assert pub["dataset"] == "chase_db1" and pub["ranked_by"] == "iou"
    assert pub["source"] == ubref.source_label() and "not measured here" in pub["note"]
    published = ubref.published_top10("chase_db1", "iou")
    assert [(e["rank"], e["name"], e["model"]) for e in pub["top10"]] == \
        [(e["rank"], e["name"], e["model"]) for e in published]
    here = {m: r["rank"] for m, r in b["datasets"]["chase_db1"]["models"].items()}
    assert here["attention_unet"] == 1 and here["unext"] == 4
    expected_shared = {e["model"]: e["rank"] for e in published if e["model"] in CHASE_MEANS}
    assert set(expected_shared) == {"cmunet", "attention_unet", "unet", "unet3plus", "uctransnet"}
    for e in pub["top10"]:
        assert e["rank_here"] == (here[e["model"]] if e["model"] in CHASE_MEANS else None)

    a = pub["agreement"]
    assert a["statistic"] == "kendall_tau_b" and "Kendall" in a["description"]
    assert "top 10" in a["compared"] and "no published rank" in a["compared"]
    assert sorted(a["models"]) == sorted(expected_shared) and "unext" not in a["models"]
    ms = sorted(expected_shared)
    pub_ranks, our_ranks = [expected_shared[m] for m in ms], [here[m] for m in ms]
    assert a["n"] == 5 and a["reason"] is None
    assert a["tau"] == pytest.approx(tau_by_pairs(pub_ranks, our_ranks))
    assert a["tau"] == pytest.approx(0.4)  # 7 concordant, 3 discordant pairs
    assert a["p_value"] == pytest.approx(exact_p(pub_ranks, our_ranks))


def test_zero_shot_pairs_are_compared_too():
    z = board()["zeroshot"]
    pub = z["chase_db1->stare"]["published"]
    assert pub["dataset"] == "chase_db1->stare"
    a = pub["agreement"]
    assert a["n"] == 3 and sorted(a["models"]) == ["rwkv_unet", "swinunetr", "unetr"]
    # published 1, 3, 6; here swinunetr 1, unet 2 (not in U-Bench's list), rwkv_unet 3, unetr 4
    assert {e["model"]: e["rank_here"] for e in pub["top10"] if e["rank_here"]} == \
        {"rwkv_unet": 3, "swinunetr": 1, "unetr": 4}
    assert a["tau"] == pytest.approx(tau_by_pairs([1, 3, 6], [3, 1, 4]))
    assert a["tau"] == pytest.approx(1 / 3)
    assert "published" not in z["synth_small->synth_small_shift"]


def test_synthetic_datasets_have_no_published_block():
    b = board()
    assert "published" not in b["datasets"]["synth_small"]
    only_synth = build_leaderboard({"synth_small": {"unet": frame(0.6), "cmunet": frame(0.7)}}, {})
    assert "published" not in json.dumps(only_synth)


def test_fewer_than_two_shared_models_give_null_with_reason():
    # busi's published IoU top 10 has rwkv_unet (1) but neither unet nor unext
    b = build_leaderboard({"busi": {"unet": frame(0.6), "rwkv_unet": frame(0.7), "unext": frame(0.5)},
                           "glas": {"unet": frame(0.6), "unext": frame(0.5)}}, {})
    for ds, n in (("busi", 1), ("glas", 0)):
        a = b["datasets"][ds]["published"]["agreement"]
        assert a["n"] == n and a["tau"] is None and a["p_value"] is None
        assert "at least 2" in a["reason"]
    md = render_markdown(b)
    assert md.count("not computed: 1 model(s) of this grid") == 1
    assert md.count("not computed: 0 model(s) of this grid") == 1


def test_all_shared_models_tied_gives_null_with_reason():
    # rwkv_unet and da_transunet (busi ranks 1 and 4) score the same here: tau-b is undefined
    b = build_leaderboard({"busi": {"unext": frame(0.5), "rwkv_unet": frame(0.7),
                                    "da_transunet": frame(0.7)}}, {}, baseline="unext")
    a = b["datasets"]["busi"]["published"]["agreement"]
    assert a["n"] == 2 and a["tau"] is None and "same rank" in a["reason"]


def test_u_bench_labels_find_the_dataset():
    b = build_leaderboard({"ISIC2018": {"unet": frame(0.6), "rwkv_unet": frame(0.7)}}, {})
    assert b["datasets"]["ISIC2018"]["published"]["dataset"] == "isic2018"


def test_markdown_shows_the_published_line_under_the_dataset_table():
    md = render_markdown(board())
    lines = md.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("U-Bench published top-10 (IoU)")]
    assert len(starts) == 2  # chase_db1 and chase_db1 -> stare; not the synthetic ones
    i = starts[0]
    section = max(j for j in range(i) if lines[j].startswith("### "))
    assert lines[section].startswith("### chase_db1 ")
    line = lines[i]
    assert ubref.source_label() in line and "not measured here" in line
    names = {e["model"]: e["name"] for e in ubref.published_top10("chase_db1", "iou")}
    assert f"{names['attention_unet']} (here: rank 1)" in line
    assert f"{names['cmunet']} (here: rank 3)" in line
    assert "(here: rank 4)" not in line  # unext is 4th here but not in U-Bench's top 10
    agree = lines[i + 2]
    assert agree.startswith("Rank agreement with U-Bench, Kendall's tau-b") and "tau = 0.400" in agree
    assert "only models both in this grid and in U-Bench's published top 10" in agree
    assert lines[starts[1] - 1] == "" and "### chase_db1 → stare" in "\n".join(lines[:starts[1]])


# ---------------------------------------------------------------------------------------------
# ubench advise

def published_rows(key: str) -> list[str]:
    rows = []
    for a, b in zip(ubref.published_top10(key, "iou"), ubref.published_top10(key, "uscore")):
        rows.append(f"| {a['rank']} | {a['name']} | {a['model'] or '–'} | {b['name']} | {b['model'] or '–'} |")
    return rows


def test_advise_without_an_advisor_prints_the_published_lists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["advise", "--dataset", "busi"]) == 0
    out = capsys.readouterr().out
    assert "published by U-Bench" in out and ubref.source_label() in out and "not measured here" in out
    for row in published_rows("busi"):
        assert row in out
    assert "rwkv_unet" in out and "| LGMSNet | lgmsnet |" in out
    assert "No trained advisor here" in out and "dvc repro advisor" in out
    assert "Advice for" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_published_models_ubench_lacks_print_a_dash(tmp_path, monkeypatch, capsys):
    """A published name with no ubench model (the page may list models ubench does not build)."""
    real = ubref.published_top10

    def without_lgmsnet(dataset, by):
        return [{**e, "model": None} if e["name"] == "LGMSNet" else e for e in real(dataset, by)]

    monkeypatch.setattr(ubref, "published_top10", without_lgmsnet)
    monkeypatch.chdir(tmp_path)
    assert main(["advise", "--dataset", "busi"]) == 0
    out = capsys.readouterr().out
    assert "| LGMSNet | – |" in out and "| LGMSNet | lgmsnet |" not in out


def test_advise_for_an_unranked_registered_dataset_shows_its_modality(tmp_path, monkeypatch, capsys):
    from ubench.data.registry import get_dataset

    monkeypatch.chdir(tmp_path)
    assert main(["advise", "--dataset", "ph2"]) == 0
    out = capsys.readouterr().out
    assert "U-Bench did not rank ph2" in out and "dermoscopy" in out
    same = [k for k in ubref.ranked_datasets("in-domain") if get_dataset(k).modality == "dermoscopy"]
    assert same and "busi" not in same
    labels = ubref.reference_data()["rankings"]
    for key in same + ["isic2018->ph2"]:
        assert f"{labels[key]['label']} (" in out
        for row in published_rows(key):
            assert row in out
    assert "BUSI (" not in out


def test_advise_unknown_dataset_names_the_known_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["advise", "--dataset", "bussi"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'bussi'" in err and "did you mean busi" in err
    assert "kvasir" in err and "isic2018" in err and "dvc repro advisor" in err
    # a registered dataset U-Bench published nothing for: the advisor's own error stands
    assert main(["advise", "--dataset", "synth"]) == 2
    captured = capsys.readouterr()
    assert "advisor model" in captured.err and "not found" in captured.err and captured.out == ""


def write_advisor(root, lodo: dict | None):
    """A small trained advisor (two datasets, three models) with its held-out evaluation ``lodo``
    (none when None), and a prepared busi manifest."""
    from ubench.advisor.ranker import CATEGORICAL_FEATURES, DATASET_FEATURES, train_ranker
    from ubench.advisor.table import numeric_features

    models = {"unet": {"family": "cnn", "deep_supervision": 0, "params_m": 30.0, "gflops": 50.0, "fps": None},
              "unext": {"family": "cnn", "deep_supervision": 0, "params_m": 1.5, "gflops": 0.6, "fps": None},
              "cmunet": {"family": "cnn", "deep_supervision": 0, "params_m": 50.0, "gflops": 70.0, "fps": None}}
    attrs = {"d1": dict(zip(DATASET_FEATURES, (0.1, 0.2, 0.9, 0.7, 1.0))),
             "d2": dict(zip(DATASET_FEATURES, (0.4, 0.6, 0.6, 0.3, 3.0)))}
    scores = {"d1": {"unet": 0.7, "unext": 0.6, "cmunet": 0.8}, "d2": {"unet": 0.5, "unext": 0.65, "cmunet": 0.55}}
    rows = [{"dataset": d, "model": m, "score": scores[d][m], "modality": "ultrasound", **attrs[d], **rec}
            for d in ("d1", "d2") for m, rec in models.items()]
    adv = train_ranker(pd.DataFrame(rows), seed=1, params={"n_estimators": 3},
                       numeric=numeric_features("iou"), categorical=list(CATEGORICAL_FEATURES))
    (root / "models").mkdir(exist_ok=True)
    doc = {**adv.to_dict(), "trained": True, "by": "iou", "model_table": models}
    if lodo is not None:
        doc["lodo"] = lodo
    (root / "models/advisor.json").write_text(json.dumps(doc))
    prepared = root / "data/prepared/busi"
    prepared.mkdir(parents=True, exist_ok=True)
    (prepared / "manifest.json").write_text(json.dumps(
        {"name": "busi", "modality": "ultrasound", "attributes": attrs["d2"]}))


def lodo_metrics(advisor_ndcg, baseline_ndcg, advisor_rho, baseline_rho):
    """A held-out evaluation as the advisor stage stores it in the model file (``lodo``)."""
    return {"k": 2, "datasets": ["d1", "d2"],
            "mean": {"advisor": {"ndcg_at_k": advisor_ndcg, "spearman": advisor_rho},
                     "baseline": {"ndcg_at_k": baseline_ndcg, "spearman": baseline_rho}, "n_held_out": 2}}


def test_advise_prints_lodo_scores_and_warns_when_the_baseline_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_advisor(tmp_path, lodo_metrics(0.71234, 0.85, 0.1, 0.4))
    assert main(["advise", "--dataset", "busi", "--top", "3"]) == 0
    out = capsys.readouterr().out
    for row in published_rows("busi"):
        assert row in out
    assert out.index("published by U-Bench") < out.index("Advice for busi")
    assert "NDCG@2 advisor 0.712 vs baseline 0.850" in out
    assert "Spearman advisor 0.100 vs baseline 0.400" in out
    assert "mean min-max-normalised IoU over the other datasets" in out
    warn = [ln for ln in out.splitlines() if ln.startswith("⚠")]
    assert len(warn) == 1 and "does not beat" in warn[0] and "NDCG@2 and Spearman" in warn[0]
    assert "weak evidence" in warn[0]
    assert len([ln for ln in out.splitlines() if ln.startswith("| ") and ln.split("|")[1].strip() in "123"
                and ln.split("|")[2].strip() in ("unet", "unext", "cmunet")]) == 3

    # better on NDCG, worse on Spearman: the warning names only Spearman
    write_advisor(tmp_path, lodo_metrics(0.9, 0.85, 0.1, 0.4))
    assert main(["advise", "--dataset", "busi"]) == 0
    warn = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("⚠")]
    assert len(warn) == 1 and "(on Spearman)" in warn[0]

    # better on both: scores shown, no warning
    write_advisor(tmp_path, lodo_metrics(0.9, 0.85, 0.5, 0.4))
    assert main(["advise", "--dataset", "busi"]) == 0
    out = capsys.readouterr().out
    assert "NDCG@2 advisor 0.900 vs baseline 0.850" in out and "does not beat" not in out


def test_advise_lodo_line_says_when_the_model_file_has_none(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_advisor(tmp_path, None)  # a model file written before ubench kept its held-out scores
    assert main(["advise", "--dataset", "busi"]) == 0
    out = capsys.readouterr().out
    assert "held-out score: not available" in out and "dvc repro advisor" in out and "NDCG@2" not in out


def test_advise_with_an_untrained_advisor_still_shows_the_published_lists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models/advisor.json").write_text(json.dumps({"trained": False, "reason": "one dataset"}))
    assert main(["advise", "--dataset", "kvasir"]) == 0
    out = capsys.readouterr().out
    for row in published_rows("kvasir"):
        assert row in out
    assert "was not trained: one dataset" in out and "dvc repro advisor" in out
    assert main(["advise", "--dataset", "kvasir", "--top", "0"]) == 2  # bad limits fail before any output
    captured = capsys.readouterr()
    assert "--top must be >= 1" in captured.err and captured.out == ""
