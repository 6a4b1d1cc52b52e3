"""The model advisor's ranker and ranking metrics, on a synthetic leaderboard with a known truth.

The synthetic leaderboard makes the best model depend on the dataset: large-capacity models win
on datasets with large foreground, small ones on small targets, and on low-contrast data the
transformer family gains. The average over datasets therefore says little about any one dataset,
so a dataset-blind baseline ranks poorly, and the advisor must use the dataset's attributes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ubench.advisor.ranker import (
    DATASET_FEATURES,
    FEATURE_COLUMNS,
    MAX_GRADE,
    baseline_scores,
    evaluate_lodo,
    load_advisor,
    normalised_scores,
    relevance_labels,
    train_ranker,
)
from ubench.advisor.ranking_metrics import map_at_k, ndcg_at_k, spearman
from ubench.errors import UbenchError
from ubench.io import json_dumps

FAST = {"n_estimators": 60}


def synthetic_leaderboard(n_datasets: int = 12, n_models: int = 14, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, model) with attributes and a score that is a known function of them.

    score = 0.70
            + 0.10 * z * c                  z: foreground fraction scaled to [-1, 1],
                                            c: log10(params) scaled to [-1, 1]
            + 0.04 * [family == transformer] * (1 - boundary_contrast) (helps on low contrast)
            - 0.03 * [family == mamba] * (boundary_contrast - 1)       (hurts on high contrast)
            + 0.01 * deep_supervision
            + noise (sd 0.002)
    The capacity term flips sign between small- and large-target datasets, so it averages out
    across datasets: exactly what a global-average ranking cannot see.
    """
    rng = np.random.default_rng(seed)
    # evenly spread foreground fractions (shuffled), so held-out datasets lie within the range
    fg = rng.permutation(np.linspace(0.02, 0.48, n_datasets))
    datasets = pd.DataFrame({
        "dataset": [f"ds{i:02d}" for i in range(n_datasets)],
        "foreground_fraction": fg,
        "boundary_contrast": rng.uniform(0.2, 2.0, n_datasets),
        "solidity": rng.uniform(0.6, 1.0, n_datasets),
        "isoperimetric": rng.uniform(1.2, 3.0, n_datasets),
        "objects_per_image": rng.uniform(1.0, 5.0, n_datasets),
        "modality": rng.choice(["ct", "dermoscopy", "endoscopy", "ultrasound"], n_datasets),
    })
    params = np.exp(rng.uniform(np.log(1.0), np.log(100.0), n_models))
    models = pd.DataFrame({
        "model": [f"m{j:02d}" for j in range(n_models)],
        "params_m": params,
        "gflops": params * rng.uniform(0.5, 3.0, n_models),
        "fps": np.where(rng.uniform(size=n_models) < 0.2, np.nan, rng.uniform(20, 300, n_models)),
        "deep_supervision": rng.integers(0, 2, n_models),
        "family": rng.choice(["cnn", "transformer", "mamba"], n_models),
    })
    table = datasets.merge(models, how="cross")
    z = (table["foreground_fraction"] - 0.25) / 0.23
    c = (np.log10(table["params_m"]) - 1.0)
    bc = table["boundary_contrast"]
    table["score"] = (0.70 + 0.10 * z * c
                      + 0.04 * (table["family"] == "transformer") * (1.0 - bc)
                      - 0.03 * (table["family"] == "mamba") * (bc - 1.0)
                      + 0.01 * table["deep_supervision"]
                      + rng.normal(0, 0.002, len(table)))
    return table.sample(frac=1.0, random_state=1).reset_index(drop=True)  # order must not matter


@pytest.fixture(scope="module")
def board() -> pd.DataFrame:
    return synthetic_leaderboard()


@pytest.fixture(scope="module")
def lodo(board) -> dict:
    return evaluate_lodo(board, k=5, seed=41, params=FAST)


# ---------------------------------------------------------------------------------------------
# Ranking metrics, against values computed by hand

def test_ndcg_hand_computed():
    # true [3, 2, 1, 0] -> gains (min-max) [1, 2/3, 1/3, 0]
    true = [3.0, 2.0, 1.0, 0.0]
    # perfect order: NDCG = 1 at every k
    assert ndcg_at_k(true, [4, 3, 2, 1], 2) == pytest.approx(1.0)
    # predicted order: models 1, 0, 3, 2 (scores 0.9 > 0.8 > 0.5 > 0.1)
    # DCG@2 = 2/3 / log2(2) + 1 / log2(3) = 0.666667 + 0.630930 = 1.297597
    # IDCG@2 = 1 / 1 + (2/3) / log2(3) = 1 + 0.420620 = 1.420620  -> 0.913401
    pred = [0.8, 0.9, 0.1, 0.5]
    assert ndcg_at_k(true, pred, 2) == pytest.approx(1.297597 / 1.420620, abs=1e-6)
    # @4: DCG = 2/3 + 1/log2(3) + 0 + (1/3)/log2(5) = 0.666667 + 0.630930 + 0.143559 = 1.441156
    #     IDCG = 1 + 0.420620 + (1/3)/log2(4) = 1.420620 + 0.166667 = 1.587287
    assert ndcg_at_k(true, pred, 4) == pytest.approx(1.441156 / 1.587287, abs=1e-6)
    # k beyond the number of models = all of them
    assert ndcg_at_k(true, pred, 10) == ndcg_at_k(true, pred, 4)
    # all true scores equal: every order is ideal, NDCG undefined -> None (not NaN)
    assert ndcg_at_k([0.5, 0.5, 0.5], [1, 2, 3], 2) is None


def test_ndcg_ties_are_pessimistic_and_order_free():
    # a constant prediction ranks the worst true model first: tie -> lower true score first.
    # true [1, 0, 0.5] -> gains [1, 0, 0.5]; tie order: model 1 (0), model 2 (0.5), model 0 (1)
    # DCG@1 = 0 -> NDCG@1 = 0; DCG@3 = 0 + 0.5/log2(3) + 1/2 = 0.815465;
    # IDCG@3 = 1 + 0.5/log2(3) + 0 = 1.315465 -> 0.619905
    assert ndcg_at_k([1.0, 0.0, 0.5], [7, 7, 7], 1) == 0.0
    assert ndcg_at_k([1.0, 0.0, 0.5], [7, 7, 7], 3) == pytest.approx(0.815465 / 1.315465, abs=1e-6)
    # the same models in another row order give the same value
    assert ndcg_at_k([0.5, 1.0, 0.0], [7, 7, 7], 3) == ndcg_at_k([1.0, 0.0, 0.5], [7, 7, 7], 3)


def test_map_hand_computed():
    true = [5.0, 4.0, 3.0, 2.0, 1.0]  # true top 2 = models 0 and 1
    # predicted order 1, 2, 0, 3, 4: relevant at positions 1 and 3
    pred = [0.7, 0.9, 0.8, 0.2, 0.1]
    # AP@2 = (1/min(2, 2)) * (P@1 = 1) = 0.5
    assert map_at_k(true, pred, 2) == pytest.approx(0.5)
    # AP@3, relevant = true top 2: (P@1 + P@3) / min(2, 3) = (1 + 2/3) / 2 = 0.833333
    assert map_at_k(true, pred, 3, relevant_top=2) == pytest.approx((1 + 2 / 3) / 2)
    # AP@3, relevant = true top 3 (models 0, 1, 2): all of the first three -> 1.0
    assert map_at_k(true, pred, 3) == pytest.approx(1.0)
    # nothing relevant in the first k
    assert map_at_k(true, [0, 0.1, 0.2, 0.3, 0.4], 1) == 0.0
    # a tie at the cut-off makes both tied models relevant: true top 1 = models 0 and 1 (5, 5);
    # predicted order 2, 1, 0: AP@2 = (P@2 = 1/2) / min(2, 2) = 0.25
    assert map_at_k([5.0, 5.0, 1.0], [0.1, 0.5, 0.9], 2, relevant_top=1) == pytest.approx(0.25)


def test_spearman_hand_computed():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks [1,2,3,4] vs [2,1,4,3]: d^2 = 1+1+1+1 = 4; rho = 1 - 6*4/(4*15) = 0.6
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1.0], [2.0]) is None


def test_metric_input_errors():
    with pytest.raises(UbenchError, match="equal length"):
        ndcg_at_k([1, 2], [1], 1)
    with pytest.raises(UbenchError, match="NaN"):
        spearman([1, float("nan")], [1, 2])
    with pytest.raises(UbenchError, match="k must be"):
        map_at_k([1, 2], [1, 2], 0)


# ---------------------------------------------------------------------------------------------
# Labels and normalisation

def test_relevance_labels_and_normalised_scores():
    t = pd.DataFrame({"dataset": ["a", "a", "a", "b", "b"], "model": list("xyzxy"),
                      "score": [0.2, 0.9, 0.2, 0.5, 0.7]})
    # in a: x and z tie (beat nobody), y beats two; in b: y beats x
    assert relevance_labels(t).tolist() == [0, 2, 0, 0, 1]
    assert normalised_scores(t).tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0, 1.0])
    # 62 models in one dataset: beaten 0..61 binned to 0..30 (beaten * 31 // 62 = beaten // 2)
    big = pd.DataFrame({"dataset": "a", "model": [f"m{i}" for i in range(62)],
                        "score": np.arange(62, dtype=float)})
    labels = relevance_labels(big)
    assert labels.min() == 0 and labels.max() == MAX_GRADE
    assert labels.tolist() == [i // 2 for i in range(62)]


# ---------------------------------------------------------------------------------------------
# The advisor on the synthetic leaderboard

def test_lodo_advisor_beats_dataset_blind_baseline(lodo):
    adv, base = lodo["mean"]["advisor"], lodo["mean"]["baseline"]
    print(f"\nNDCG@5 advisor {adv['ndcg_at_k']:.4f} baseline {base['ndcg_at_k']:.4f}; "
          f"MAP@5 {adv['map_at_k']:.4f} vs {base['map_at_k']:.4f}; "
          f"Spearman {adv['spearman']:.4f} vs {base['spearman']:.4f}")
    assert lodo["mean"]["n_held_out"] == 12 and len(lodo["held_out"]) == 12
    assert adv["ndcg_at_k"] >= 0.9
    assert adv["ndcg_at_k"] > base["ndcg_at_k"] + 0.1
    assert adv["spearman"] > base["spearman"] + 0.2
    assert adv["map_at_k"] > base["map_at_k"]
    one = lodo["held_out"]["ds00"]
    assert one["n_models"] == 14 and one["n_train_datasets"] == 11
    assert len(one["top_k"]["true"]) == len(one["top_k"]["advisor"]) == 5
    # plain JSON, no NaN: json_dumps refuses non-finite numbers
    json_dumps(lodo)


def test_lodo_subset_and_determinism(board, lodo):
    sub = evaluate_lodo(board.iloc[::-1], k=5, seed=41, params=FAST, held_out=["ds03", "ds00"])
    assert sorted(sub["held_out"]) == ["ds00", "ds03"]
    # row order of the input does not matter: same numbers as the full run for those datasets
    for ds in ("ds00", "ds03"):
        assert sub["held_out"][ds] == lodo["held_out"][ds]
    with pytest.raises(UbenchError, match="unknown dataset 'ds99'"):
        evaluate_lodo(board, held_out=["ds99"], params=FAST)


def test_baseline_is_mean_normalised_score():
    t = pd.DataFrame({"dataset": ["a", "a", "b", "b"], "model": ["x", "y", "x", "y"],
                      "score": [0.9, 0.8, 0.1, 0.3]})
    # a: x 1, y 0; b: x 0, y 1 -> both 0.5; an unseen model ranks last
    assert baseline_scores(t, ["x", "y", "new"]).tolist() == [0.5, 0.5, -1.0]


def test_save_is_byte_identical_and_load_predicts_the_same(board, tmp_path):
    a = train_ranker(board, seed=41, params=FAST)
    b = train_ranker(board.sample(frac=1.0, random_state=7), seed=41, params=FAST)
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    loaded = load_advisor(tmp_path / "a.json")
    assert np.array_equal(loaded.predict(board), a.predict(board))
    assert loaded.categories == {"family": ["cnn", "mamba", "transformer"],
                                 "modality": ["ct", "dermoscopy", "endoscopy", "ultrasound"]}
    assert loaded.feature_names == a.feature_names
    # saving the loaded advisor reproduces the file
    loaded.save(tmp_path / "c.json")
    assert (tmp_path / "c.json").read_bytes() == (tmp_path / "a.json").read_bytes()
    # another seed trains another model (subsampling makes the seed matter)
    c = train_ranker(board, seed=42, params={**FAST, "subsample": 0.7})
    d = train_ranker(board, seed=41, params={**FAST, "subsample": 0.7})
    c.save(tmp_path / "c.json")
    d.save(tmp_path / "d.json")
    assert (tmp_path / "c.json").read_bytes() != (tmp_path / "d.json").read_bytes()


def test_predict_on_a_new_dataset_and_unseen_category(board):
    adv = train_ranker(board, seed=41, params=FAST)
    new = board[board["dataset"] == "ds00"].copy()
    new["dataset"], new["modality"] = "fresh", "microscopy"  # unseen modality -> all zeros
    new["fps"] = np.nan  # missing speed is allowed
    new = new.drop(columns=["score"])  # predicting needs no score
    scores = adv.predict(new)
    assert scores.shape == (14,) and np.isfinite(scores).all()
    ranked = adv.rank(new)
    assert sorted(ranked) == sorted(new["model"])
    assert ranked[0] == new["model"].iloc[int(np.argmax(scores))]


# ---------------------------------------------------------------------------------------------
# Errors

def test_errors_say_what_and_how(board, tmp_path):
    one = board[board["dataset"] == "ds00"]
    with pytest.raises(UbenchError, match="1 dataset.*at least 2") as e:
        train_ranker(one, params=FAST)
    assert e.value.fix
    with pytest.raises(UbenchError, match="at least 2"):
        evaluate_lodo(one, params=FAST)
    lonely = pd.concat([board[board["dataset"] != "ds01"],
                        board[board["dataset"] == "ds01"].head(1)])
    with pytest.raises(UbenchError, match=r"\['ds01'\] have fewer than 2 models"):
        train_ranker(lonely, params=FAST)
    with pytest.raises(UbenchError, match=r"lacks feature column\(s\) \['solidity'\]") as e:
        train_ranker(board.drop(columns=["solidity"]), params=FAST)
    assert "ubench.data.attributes" in e.value.fix
    nan = board.copy()
    nan.loc[3, "score"] = np.nan
    with pytest.raises(UbenchError, match="score.*NaN"):
        train_ranker(nan, params=FAST)
    dup = pd.concat([board, board.head(1)])
    with pytest.raises(UbenchError, match="more than once"):
        train_ranker(dup, params=FAST)
    text = board.copy()
    text["params_m"] = text["params_m"].astype(object)
    text.loc[0, "params_m"] = "big"
    with pytest.raises(UbenchError, match="non-numeric"):
        train_ranker(text, params=FAST)
    with pytest.raises(UbenchError, match="ranking objective"):
        train_ranker(board, params={"objective": "reg:squarederror"})
    with pytest.raises(UbenchError, match="does not exist"):
        load_advisor(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"format": "other"}\n')
    with pytest.raises(UbenchError, match="not a ubench advisor"):
        load_advisor(tmp_path / "bad.json")


def test_feature_columns_convention():
    assert set(DATASET_FEATURES) <= set(FEATURE_COLUMNS)
    model = {"params_m", "gflops", "fps", "deep_supervision", "modality", "family"}
    assert model <= set(FEATURE_COLUMNS)
    assert len(FEATURE_COLUMNS) == len(set(FEATURE_COLUMNS))


def test_ndcg_objective_runs_with_linear_gain(board, tmp_path):
    adv = train_ranker(board, params={"objective": "rank:ndcg", "n_estimators": 20})
    assert adv.params["objective"] == "rank:ndcg" and adv.params["ndcg_exp_gain"] is False
    assert adv.params["random_state"] == 41 and adv.params["n_jobs"] == 1
    adv.save(tmp_path / "ndcg.json")
    assert np.array_equal(load_advisor(tmp_path / "ndcg.json").predict(board), adv.predict(board))
    with pytest.raises(UbenchError, match="seed argument"):
        train_ranker(board, params={"random_state": 3})
