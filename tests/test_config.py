"""params.yaml validation: a wrong key, type or value is a named error that says what to do."""

from __future__ import annotations

import re

import pytest

from tests.conftest import _merge, project_params, tiny_params
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
        ({"grid": {"models": ["unet", "unett"]}}, "unknown model 'unett'"),
        ({"candidate": {"model": "no_such_net"}}, "unknown model 'no_such_net'"),
        ({"grid": {"datasets": ["../../../../tmp/x"]}}, "invalid dataset name '../../../../tmp/x'"),
        ({"grid": {"datasets": ["synth"], "synthetic": ["synth", "/tmp/x"]}}, "invalid dataset name '/tmp/x'"),
        ({"grid": {"transfer": [{"source": "synth", "target": ".."}]}}, "invalid dataset name '..'"),
        ({"grid": {"synthetic": ["synth", "."]}}, "invalid dataset name '.'"),
        ({"leaderboard": {"baseline": "../unet"}}, "invalid model name '../unet'"),
    ],
)
def test_bad_params_are_named_errors(raw, needle):
    with pytest.raises(UbenchError) as exc:
        config_from_dict(_merge(project_params(), raw))
    assert needle in str(exc.value)
    assert exc.value.fix  # every error says what to do


def test_unparsable_and_missing_files(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UbenchError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UbenchError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_params_yaml_is_the_only_source_of_values():
    """No hidden defaults: a missing key or section is an error naming it, never a fallback."""
    raw = project_params()
    del raw["train"]["epochs"]
    with pytest.raises(UbenchError, match=r"missing key `train.epochs`"):
        config_from_dict(raw)
    raw = project_params()
    del raw["advisor"]
    with pytest.raises(UbenchError, match=r"missing key `advisor`"):
        config_from_dict(raw)
    with pytest.raises(UbenchError, match="is empty"):
        config_from_dict({})


def test_errors_name_the_params_file_given(tmp_path):
    mine = tmp_path / "my-params.yaml"
    mine.write_text("")
    with pytest.raises(UbenchError, match="my-params.yaml is empty"):
        load_config(mine)
    text = re.sub(r"(?m)^(\s+epochs:) \d+", r"\1 0", open("params.yaml").read())
    assert "epochs: 0" in text
    mine.write_text(text)
    with pytest.raises(UbenchError) as exc:
        load_config(mine)
    assert str(mine) in exc.value.what and "train.epochs" in exc.value.what


def test_duplicate_yaml_key_is_refused(tmp_path):
    dup = tmp_path / "params.yaml"
    dup.write_text(open("params.yaml").read() + "\ntrain:\n  epochs: 99\n")
    with pytest.raises(UbenchError, match="key 'train' given twice"):
        load_config(dup)
    nested = tmp_path / "nested.yaml"
    nested.write_text(re.sub(r"(?m)^(  epochs: \d+)", r"\1\n  epochs: 4", open("params.yaml").read()))
    with pytest.raises(UbenchError, match="key 'epochs' given twice"):
        load_config(nested)


def test_no_module_keeps_its_own_default_for_a_params_value():
    """The config dataclasses and prepare_dataset take every value from params.yaml."""
    import dataclasses
    import inspect

    from ubench import config
    from ubench.data.prepare import prepare_dataset

    for cls in [v for v in vars(config).values() if dataclasses.is_dataclass(v)]:
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, \
                f"{cls.__name__}.{f.name} has a default"
    sig = inspect.signature(prepare_dataset)
    for name in ("image_size", "protocol", "split_seed", "val_fraction", "test_fraction", "raw_root"):
        assert sig.parameters[name].default is inspect.Parameter.empty, name
