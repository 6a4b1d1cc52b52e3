"""Paired statistics checked against values worked out by hand on small fixed inputs."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from scipy import stats as sps

from ubench.analysis.stats import AnalysisInputError, holm, mean_ci, paired_test
from ubench.errors import UbenchError

# 5 images; variant and baseline IoU per image
VARIANT = [0.80, 0.75, 0.90, 0.70, 0.85]
BASELINE = [0.78, 0.70, 0.86, 0.71, 0.80]


def test_paired_t_test_and_cohens_dz_by_hand():
    # differences d = variant - baseline = 0.02, 0.05, 0.04, -0.01, 0.05
    # mean(d) = 0.15 / 5 = 0.03
    # deviations from the mean: -0.01, 0.02, 0.01, -0.04, 0.02
    # squares: 1e-4 + 4e-4 + 1e-4 + 16e-4 + 4e-4 = 26e-4; sample variance = 26e-4 / 4 = 6.5e-4
    # sd = sqrt(6.5e-4) = 0.025495098
    # t = mean / (sd / sqrt(n)) = 0.03 / (0.025495098 / 2.236067977) = 0.03 / 0.011401754 = 2.631174
    # Cohen's d_z = mean / sd = 0.03 / 0.025495098 = 1.176697
    sd = math.sqrt(6.5e-4)
    t_hand = 0.03 / (sd / math.sqrt(5))
    assert t_hand == pytest.approx(2.631174, abs=1e-6)
    p_hand = 2 * sps.t.sf(t_hand, df=4)  # two-sided, df = n - 1 = 4
    assert 0.05 < p_hand < 0.06  # t_{0.975,4} = 2.776 > 2.631 > t_{0.95,4} = 2.132

    res = paired_test(VARIANT, BASELINE)
    assert res["n"] == 5
    assert res["mean_variant"] == pytest.approx(0.80)
    assert res["mean_baseline"] == pytest.approx(0.77)
    assert res["delta"] == pytest.approx(0.03)
    assert res["t"] == pytest.approx(t_hand, rel=1e-9)
    assert res["p_ttest"] == pytest.approx(p_hand, rel=1e-9)
    assert res["effect_size"] == pytest.approx(1.176697, abs=1e-6)
    assert res["effect_size"] == pytest.approx(0.03 / sd, rel=1e-9)


def test_wilcoxon_exact_p_by_enumeration():
    # differences 1, -2, 3, 4, 5: distinct magnitudes, so ranks 1..5; the negative one has rank 2.
    # W = min(R+, R-) = min(13, 2) = 2.
    variant = [10, 20, 30, 40, 50]
    baseline = [9, 22, 27, 36, 45]
    # Exact null distribution: each of the 2^5 sign patterns is equally likely; R+ is the sum of
    # the ranks given a + sign. P(R+ <= 2) = #{subsets of {1..5} with sum <= 2} / 32 = |{}, {1},
    # {2}| / 32 = 3 / 32; by symmetry the two-sided p = 2 * 3 / 32 = 0.1875.
    ranks = [1, 2, 3, 4, 5]
    count = sum(1 for signs in itertools.product([0, 1], repeat=5)
                if sum(r for r, s in zip(ranks, signs) if s) <= 2)
    assert count == 3
    p_exact = 2 * count / 2**5
    assert p_exact == 0.1875

    res = paired_test(variant, baseline)
    assert res["w"] == 2.0
    assert res["p_wilcoxon"] == pytest.approx(p_exact, rel=1e-12)


def test_all_zero_differences_are_defined_not_nan():
    scores = [0.5, 0.6, 0.7, 0.8]
    res = paired_test(scores, list(scores))
    assert res["t"] == 0.0
    assert res["p_ttest"] == 1.0
    assert res["w"] in (None, 0, 0.0)
    assert res["p_wilcoxon"] == 1.0
    assert res["effect_size"] == 0.0
    assert res["delta"] == 0.0
    json.dumps(res, allow_nan=False)


def test_constant_nonzero_difference_has_no_infinite_values():
    # every image improves by exactly 1: zero spread, so t and d_z are infinite
    res = paired_test([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0])
    assert res["t"] is None
    assert res["effect_size"] is None
    assert res["p_ttest"] == 0.0
    # Wilcoxon: all four differences positive, exact two-sided p = 2 / 2^4 = 0.125
    assert res["p_wilcoxon"] == pytest.approx(0.125)
    json.dumps(res, allow_nan=False)


def test_single_pair_has_no_tests():
    res = paired_test([0.9], [0.7])
    assert res["n"] == 1
    assert res["delta"] == pytest.approx(0.2)
    for key in ("t", "p_ttest", "w", "p_wilcoxon", "effect_size"):
        assert res[key] is None


def test_unequal_lengths_name_both():
    with pytest.raises(ValueError, match=r"variant has 3, baseline has 2"):
        paired_test([0.1, 0.2, 0.3], [0.1, 0.2])
    # it is also the project's user-facing error type, with a fix
    with pytest.raises(UbenchError) as info:
        paired_test([0.1, 0.2, 0.3], [0.1, 0.2])
    assert "same test images" in info.value.fix


def test_nan_input_is_refused():
    with pytest.raises(ValueError, match="non-finite"):
        paired_test([0.1, float("nan"), 0.3], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="non-finite"):
        paired_test([0.1, 0.2, 0.3], [0.1, 0.2, float("nan")])
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([0.1, float("nan")])


def test_holm_hand_example():
    # sorted: 0.005, 0.01, 0.03, 0.04 with multipliers 4, 3, 2, 1
    # 0.005*4 = 0.02; 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> running max 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_none_passthrough_not_counted():
    # the None is not a test: m stays 4, so the values match the example above
    adjusted = holm([0.01, None, 0.04, 0.03, None, 0.005])
    assert adjusted[1] is None and adjusted[4] is None
    assert [adjusted[i] for i in (0, 2, 3, 5)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([None, None]) == [None, None]
    assert holm([]) == []


def test_holm_caps_at_one_and_is_monotone():
    # m = 3: 0.4*3 = 1.2 -> 1.0; then 0.8*2 = 1.6 -> 1.0; 0.9*1 = 0.9 -> running max 1.0
    assert holm([0.4, 0.9, 0.8]) == [1.0, 1.0, 1.0]
    # m = 2: 0.3*2 = 0.6; 0.5*1 = 0.5 -> monotone step-down keeps 0.6
    assert holm([0.5, 0.3]) == pytest.approx([0.6, 0.6])
    assert holm([0.02]) == [0.02]


def test_holm_rejects_non_probabilities():
    with pytest.raises(ValueError):
        holm([0.1, 1.5])
    with pytest.raises(ValueError):
        holm([float("nan")])


def test_mean_ci_by_hand():
    # values 1..5: mean 3, sample variance (4+1+0+1+4)/4 = 2.5, sd = 1.5811388
    # standard error = sd / sqrt(5) = 0.7071068; t_{0.975, df=4} = 2.7764451 (t table)
    # half width = 2.7764451 * 0.7071068 = 1.9632432
    res = mean_ci([1, 2, 3, 4, 5])
    assert res["n"] == 5
    assert res["mean"] == 3.0
    assert res["std"] == pytest.approx(math.sqrt(2.5))
    assert res["ci_low"] == pytest.approx(3 - 1.9632432, abs=1e-6)
    assert res["ci_high"] == pytest.approx(3 + 1.9632432, abs=1e-6)
    # a 90% interval is narrower: t_{0.95, 4} = 2.1318468
    res90 = mean_ci([1, 2, 3, 4, 5], confidence=0.90)
    assert res90["ci_high"] == pytest.approx(3 + 2.1318468 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)


def test_mean_ci_degenerate_cases():
    one = mean_ci([0.7])
    assert one == {"mean": 0.7, "std": None, "ci_low": None, "ci_high": None, "n": 1}
    flat = mean_ci([0.5, 0.5, 0.5])
    assert flat["std"] == 0.0
    assert flat["ci_low"] == flat["ci_high"] == flat["mean"] == 0.5
    with pytest.raises(AnalysisInputError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([1, 2], confidence=1.5)
