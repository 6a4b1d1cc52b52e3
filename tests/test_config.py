"""params.yaml validation: a wrong key, type or value is a named error that says what to do."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_params
from ubench.config import as_dict, config_from_dict, load_config
from ubench.errors import UbenchError


def test_repository_params_file_is_valid():
    cfg = load_config("params.yaml")
    assert cfg.leaderboard.baseline in cfg.grid.models
    assert cfg.train.lr == 0.01 and cfg.train.momentum == 0.9 and cfg.train.weight_decay == 1e-4
    assert cfg.train.poly_power == 0.9 and cfg.train.seed == 41


def test_defaults_round_trip_through_as_dict():
    cfg = config_from_dict(tiny_params())
    assert config_from_dict(as_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"train": {"epochs": "ten"}}, "`train.epochs` must be an integer"),
        ({"train": {"lr": True}}, "`train.lr` must be a number"),
        ({"train": {"epoks": 3}}, "did you mean `epochs`"),
        ({"trian": {}}, "did you mean `train`"),
        ({"grid": {"models": "unet"}}, "`grid.models` must be a list"),
        ({"split": {"protocol": "kfold"}}, "holdout, ubench"),
        ({"split": {"val_fraction": 0.6, "test_fraction": 0.5}}, "leaves no training images"),
        ({"data": {"image_size": 100}}, "multiple of 32"),
        ({"grid": {"models": ["unetpp"]}}, "baseline `unet` is not in `grid.models`"),
        ({"grid": {"datasets": ["busi"]}}, "not prepared by any stage"),
        ({"candidate": {"datasets": ["other"]}}, "not in `grid.datasets`"),
        ({"train": 5}, "must be a mapping"),
    ],
)
def test_bad_params_are_named_errors(raw, needle):
    with pytest.raises(UbenchError) as exc:
        config_from_dict(raw)
    assert needle in str(exc.value)
    assert exc.value.fix  # every error says what to do


def test_unparsable_and_missing_files(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UbenchError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UbenchError, match="not found"):
        load_config(tmp_path / "nope.yaml")
