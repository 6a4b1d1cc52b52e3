"""U-Score checked against values worked out by hand on 5 models with round numbers."""

from __future__ import annotations

import json
from fractions import Fraction as F

import pytest

from ubench.analysis.uscore import harmonic_mean, render_uscore_markdown, uscore_table

# Each term takes five equally spaced values, so numpy's linear percentiles are easy by hand.
# Sorted x0..x4: p10 sits at position 0.1 * 4 = 0.4 -> x0 + 0.4 (x1 - x0);
#                p90 sits at position 0.9 * 4 = 3.6 -> x3 + 0.6 (x4 - x3).
# iou 0.5..0.9 (step 0.1): p10 = 0.54, p90 = 0.86, range 0.32
# 1/params and 1/FLOPs 1..5 (step 1): p10 = 1.4, p90 = 4.6, range 3.2
# fps 10..50 (step 10): p10 = 14, p90 = 46, range 32
# so for every term the k-th smallest value (k = 0..4) normalises to
#   k=0: -0.4/3.2 -> clipped 0;  k=1: 0.6/3.2 = 3/16;  k=2: 1.6/3.2 = 1/2;
#   k=3: 2.6/3.2 = 13/16;        k=4: 3.6/3.2 -> clipped 1.
ROWS = [
    # model, iou (rank), params_m (1/params rank), gflops (1/FLOPs rank), fps (rank)
    {"model": "a", "iou": 0.9, "params_m": 1 / 3, "gflops": 1 / 3, "fps": 30.0},  # 4, 2, 2, 2
    {"model": "b", "iou": 0.8, "params_m": 0.2, "gflops": 0.25, "fps": 20.0},  # 3, 4, 3, 1
    {"model": "c", "iou": 0.7, "params_m": 0.25, "gflops": 0.2, "fps": 50.0},  # 2, 3, 4, 4
    {"model": "d", "iou": 0.6, "params_m": 0.5, "gflops": 0.5, "fps": 40.0},  # 1, 1, 1, 3
    {"model": "e", "iou": 0.5, "params_m": 1.0, "gflops": 1.0, "fps": 10.0},  # 0, 0, 0, 0
]
N = [F(0), F(3, 16), F(1, 2), F(13, 16), F(1)]

# Hand arithmetic, efficiency e = 3 / (1/p + 1/f + 1/s), U-Score u = 2 a e / (a + e):
# a: a = 1;     p = f = s = 1/2                 -> e = 1/2;  u = 2*1*(1/2)/(3/2) = 2/3
# b: a = 13/16; p = 1, f = 13/16, s = 3/16      -> 1 + 16/13 + 16/3 = 295/39, e = 117/295;
#               u = 2*(13/16)*(117/295) / (13/16 + 117/295) = (3042/4720) / (5707/4720) = 3042/5707
# c: a = 1/2;   p = 13/16, f = 1, s = 1         -> 16/13 + 2 = 42/13, e = 39/42 = 13/14;
#               u = (13/14) / (1/2 + 13/14) = (13/14) / (20/14) = 13/20
# d: a = 3/16;  p = f = 3/16, s = 13/16         -> 32/3 + 16/13 = 464/39, e = 117/464;
#               u = 2*(3/16)*(117/464) / (87/464 + 117/464) = (702/7424) / (204/464) = 117/544
# e: every term 0                               -> e = 0, u = 0 (a harmonic mean with a zero is 0)
EXPECTED = {
    "a": {"norm": (N[4], N[2], N[2], N[2]), "eff": F(1, 2), "u": F(2, 3)},
    "b": {"norm": (N[3], N[4], N[3], N[1]), "eff": F(117, 295), "u": F(3042, 5707)},
    "c": {"norm": (N[2], N[3], N[4], N[4]), "eff": F(13, 14), "u": F(13, 20)},
    "d": {"norm": (N[1], N[1], N[1], N[3]), "eff": F(117, 464), "u": F(117, 544)},
    "e": {"norm": (N[0], N[0], N[0], N[0]), "eff": F(0), "u": F(0)},
}


def test_uscore_five_models_by_hand():
    table = uscore_table(ROWS)
    assert table["reference_models"] == ["a", "b", "c", "d", "e"]
    assert table["warning"] is None
    pct = table["percentiles"]
    assert pct["iou"]["p10"] == pytest.approx(0.54) and pct["iou"]["p90"] == pytest.approx(0.86)
    for term in ("inv_params", "inv_flops"):
        assert pct[term]["p10"] == pytest.approx(1.4) and pct[term]["p90"] == pytest.approx(4.6)
    assert pct["fps"]["p10"] == pytest.approx(14.0) and pct["fps"]["p90"] == pytest.approx(46.0)
    for m, exp in EXPECTED.items():
        got = table["models"][m]
        norm = (got["norm_iou"], got["norm_inv_params"], got["norm_inv_flops"], got["norm_fps"])
        assert norm == pytest.approx([float(x) for x in exp["norm"]], abs=1e-12), m
        assert got["efficiency"] == pytest.approx(float(exp["eff"]), abs=1e-12), m
        assert got["uscore"] == pytest.approx(float(exp["u"]), abs=1e-12), m
    # raw values are kept beside the normalised ones
    assert table["models"]["c"]["fps"] == 50.0 and table["models"]["c"]["params_m"] == 0.25
    json.dumps(table, allow_nan=False)


def test_order_of_rows_does_not_matter():
    assert uscore_table(list(reversed(ROWS))) == uscore_table(ROWS)


def test_zero_term_gives_zero():
    assert harmonic_mean([0.5, 0.0, 1.0]) == 0.0
    assert harmonic_mean([0.5, 0.5]) == 0.5
    # swap a's and e's FPS: a (best IoU, norm 1) becomes the slowest -> norm_fps 0 -> efficiency 0
    # -> U-Score 0, however good its IoU
    rows = [dict(r) for r in ROWS]
    rows[0]["fps"], rows[4]["fps"] = 10.0, 30.0
    a = uscore_table(rows)["models"]["a"]
    assert a["norm_iou"] == 1.0 and a["norm_fps"] == 0.0
    assert a["efficiency"] == 0.0 and a["uscore"] == 0.0


def test_p90_equal_p10_sets_term_to_one():
    # all five models run at 25 FPS: p10 = p90 = 25, so norm_fps is 1.0 for everyone
    rows = [{**r, "fps": 25.0} for r in ROWS]
    table = uscore_table(rows)
    assert table["percentiles"]["fps"] == {"p10": 25.0, "p90": 25.0}
    assert all(m["norm_fps"] == 1.0 for m in table["models"].values())
    # model a: p = f = 1/2, s = 1 -> e = 3 / (2 + 2 + 1) = 3/5; u = 2*1*(3/5)/(8/5) = 3/4
    assert table["models"]["a"]["efficiency"] == pytest.approx(0.6)
    assert table["models"]["a"]["uscore"] == pytest.approx(0.75)
    # one model alone: every term is 1, so is its U-Score
    single = uscore_table([ROWS[2]])
    assert single["models"]["c"]["uscore"] == 1.0


def test_fewer_than_five_models_warns():
    table = uscore_table(ROWS[:3])
    assert table["warning"] == ("U-Score normalised over 3 models; the paper's percentiles assume "
                                "many — compare only within this set")
    assert table["reference_models"] == ["a", "b", "c"]


def test_missing_fps_names_the_model():
    rows = [dict(r) for r in ROWS]
    rows[3]["fps"] = None
    with pytest.raises(ValueError, match="'d'"):
        uscore_table(rows)
    del rows[3]["fps"]
    with pytest.raises(ValueError, match="'d'.*FPS"):
        uscore_table(rows)


def test_bad_inputs():
    with pytest.raises(ValueError, match="twice"):
        uscore_table([ROWS[0], ROWS[0]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        uscore_table([{**ROWS[0], "iou": 85.0}])
    with pytest.raises(ValueError, match="params_m"):
        uscore_table([{**ROWS[0], "params_m": 0.0}])
    with pytest.raises(ValueError):
        uscore_table([])


def test_render_markdown_sorted_with_reference_set_and_warning():
    md = render_uscore_markdown(uscore_table(ROWS))
    # U-Scores: a 0.6667 > c 0.6500 > b 0.5330 > d 0.2151 > e 0
    order = [md.index(f"| {m} |") for m in ("a", "c", "b", "d", "e")]
    assert order == sorted(order)
    assert "0.6667" in md and "0.6500" in md
    assert "a, b, c, d, e" in md
    assert "Warning" not in md
    small = render_uscore_markdown(uscore_table(ROWS[:2]))
    assert "normalised over 2 models" in small
    assert render_uscore_markdown(uscore_table(ROWS)) == md
