"""The advisor stage and `ubench advise` on a real (tiny) grid: two embedded source datasets that
differ in the advisor's attributes, three models of very different cost."""

from __future__ import annotations

import json

import pytest

from tests.conftest import tiny_params
from ubench import paths
from ubench.cli import main
from ubench.config import config_from_dict
from ubench.errors import UbenchError

MODELS = ["unet", "unext", "egeunet"]


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    """A workspace with the tiny grid run up to the leaderboard (shared by the tests below)."""
    import os

    from ubench.pipeline import run_complexity, run_evaluate, run_leaderboard, run_prepare, run_train

    root = tmp_path_factory.mktemp("advisor")
    old = os.getcwd()
    os.chdir(root)
    try:
        cfg = config_from_dict(tiny_params(
            grid={"models": MODELS, "datasets": ["synth", "synth_ragged"], "transfer": [],
                  "synthetic": ["synth", "synth_ragged"]},
            advisor={"n_estimators": 20, "k": 2},
        ))
        for ds in cfg.grid.datasets:
            run_prepare(cfg, ds)
            for m in MODELS:
                run_train(cfg, m, ds)
                run_evaluate(cfg, m, ds)
        for m in MODELS:
            run_complexity(cfg, m)
        run_leaderboard(cfg)
        yield root, cfg
    finally:
        os.chdir(old)


def test_advisor_stage_writes_deterministic_files(grid_dir, monkeypatch):
    from ubench.pipeline import run_advisor

    root, cfg = grid_dir
    monkeypatch.chdir(root)
    metrics = run_advisor(cfg)
    first = paths.ADVISOR_MODEL.read_bytes()
    assert metrics["trained"] and metrics["by"] == "iou"
    lodo = json.loads(first)["lodo"]  # the full held-out evaluation travels with the model
    assert lodo == metrics["lodo"] and lodo["mean"]["n_held_out"] == 2
    # DVC's view: the four held-out numbers, the same as in the model file
    assert json.loads(paths.ADVISOR_METRICS.read_text()) == {
        "advisor_ndcg_at_2": lodo["mean"]["advisor"]["ndcg_at_k"], "baseline_ndcg_at_2": lodo["mean"]["baseline"]["ndcg_at_k"],
        "advisor_spearman": lodo["mean"]["advisor"]["spearman"], "baseline_spearman": lodo["mean"]["baseline"]["spearman"]}
    assert sorted(lodo["held_out"]) == ["synth", "synth_ragged"] and lodo["models"] == sorted(MODELS)
    for who in ("advisor", "baseline"):
        v = lodo["mean"][who]["ndcg_at_k"]
        assert v is None or 0.0 <= v <= 1.0
    doc = json.loads(first)
    assert doc["trained"] and set(doc["model_table"]) == set(MODELS)
    assert all(rec["fps"] is None for rec in doc["model_table"].values())  # IoU ranking: no measurement
    assert "fps" not in doc["numeric_features"]
    run_advisor(cfg)
    assert paths.ADVISOR_MODEL.read_bytes() == first
    assert json.loads(paths.ADVISOR_METRICS.read_text()) == {k: metrics[k] for k in json.loads(paths.ADVISOR_METRICS.read_text())}


def test_advise_ranks_filters_and_explains(grid_dir, monkeypatch, capsys):
    from ubench.pipeline import run_advisor

    root, cfg = grid_dir
    monkeypatch.chdir(root)
    run_advisor(cfg)
    assert main(["advise", "--dataset", "synth_ragged", "--top", "3"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == 3 and {r.split("|")[2].strip() for r in rows} == set(MODELS)
    assert "foreground fraction" in out and "ranked by predicted iou" in out
    # a prepared folder works as well as a name
    assert main(["advise", "--dataset", str(root / "data/prepared/synth"), "--max-params", "2"]) == 0
    out = capsys.readouterr().out
    assert "| unet |" not in out and "| unext |" in out and "| egeunet |" in out
    assert main(["advise", "--dataset", "synth", "--max-params", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "no model the advisor knows meets the limits" in err and "smallest params" in err
    assert main(["advise", "--dataset", "synth", "--min-fps", "1"]) == 2
    assert "needs FPS measurements" in capsys.readouterr().err
    assert main(["advise", "--dataset", "nosuch"]) == 2
    assert "no prepared dataset" in capsys.readouterr().err
    assert main(["advise", "--dataset", "kvasir"]) == 2
    assert "ubench prepare kvasir" in capsys.readouterr().err
    assert main(["advise", "--dataset", "synth", "--by", "uscore"]) == 2
    assert "ranks by iou" in capsys.readouterr().err


def test_one_dataset_grid_gives_a_clear_message(grid_dir, monkeypatch, tmp_path, capsys):
    from ubench.advisor.service import train_advisor

    root, cfg = grid_dir
    monkeypatch.chdir(root)
    one = config_from_dict(tiny_params(grid={"models": MODELS, "datasets": ["synth"], "transfer": [],
                                             "synthetic": ["synth", "synth_ragged"]}))
    model, metrics = tmp_path / "advisor.json", tmp_path / "advisor_metrics.json"
    doc = train_advisor(one, model, metrics)
    assert not doc["trained"] and "at least 2" in doc["reason"]
    assert set(json.loads(metrics.read_text()).values()) == {None}  # no held-out score: null, not NaN
    assert main(["advise", "--dataset", "synth", "--advisor", str(model)]) == 2
    assert "was not trained" in capsys.readouterr().err
    assert main(["advise", "--dataset", "synth", "--advisor", str(tmp_path / "none.json")]) == 2
    assert "dvc pull models/advisor.json" in capsys.readouterr().err


def test_advise_by_uscore_uses_speed(grid_dir, monkeypatch, capsys):
    from ubench.pipeline import run_advisor, run_speed, run_uscore

    root, cfg = grid_dir
    monkeypatch.chdir(root)
    for m in MODELS:
        run_speed(cfg, m)
    by_u = config_from_dict(tiny_params(grid={"models": MODELS, "datasets": ["synth", "synth_ragged"],
                                              "transfer": [], "synthetic": ["synth", "synth_ragged"]},
                                        advisor={"by": "uscore", "n_estimators": 20, "k": 2}))
    with pytest.raises(UbenchError, match="uscore.json"):  # the advisor ranks by the stage's U-Scores
        run_advisor(by_u)
    report = run_uscore(by_u)
    m = run_advisor(by_u)
    assert m["by"] == "uscore"
    # the training table's scores are the per-dataset U-Scores of metrics/uscore.json
    from ubench.advisor.table import build_table

    table, _ = build_table(by_u, "uscore")
    for row in table.itertuples():
        assert row.score == report["datasets"][row.dataset]["uscore"][row.model]
    doc = json.loads(paths.ADVISOR_MODEL.read_text())
    assert "fps" in doc["numeric_features"] and all(r["fps"] > 0 for r in doc["model_table"].values())
    assert main(["advise", "--dataset", "synth", "--by", "uscore", "--min-fps", "0.5"]) == 0
    with pytest.raises(UbenchError, match="--top"):
        from ubench.advisor.service import recommend

        recommend("synth", top=0)


def test_a_published_advisor_needs_nothing_else(grid_dir, monkeypatch, tmp_path, capsys):
    """What `dvc pull models/advisor.json` gives a user: the model file alone ranks models for
    their own prepared dataset: no leaderboard, metrics or checkpoints in the workspace."""
    import shutil

    from ubench.pipeline import run_advisor

    root, cfg = grid_dir
    monkeypatch.chdir(root)
    run_advisor(cfg)
    (tmp_path / "models").mkdir()
    shutil.copy(root / paths.ADVISOR_MODEL, tmp_path / paths.ADVISOR_MODEL)
    shutil.copytree(root / "data/prepared/synth_ragged", tmp_path / "mine")
    manifest = json.loads((tmp_path / "mine/manifest.json").read_text())
    del manifest["attributes"]  # prepared by an older ubench: attributes are computed on the fly
    (tmp_path / "mine/manifest.json").write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)
    assert main(["advise", "--dataset", "mine", "--top", "2"]) == 0  # a folder, relative or not
    out = capsys.readouterr().out
    assert "Advice for synth_ragged" in out and len([ln for ln in out.splitlines() if ln.startswith("| 2 |")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "models"]
