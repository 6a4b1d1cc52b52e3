"""train.amp, train.channels_last and train.compile: each trains, is recorded in the checkpoint, and
is off by default (they change the bits of the results); a bare YAML `off` reads as "off"."""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.conftest import project_params, tiny_params
from ubench import paths, pipeline
from ubench.config import config_from_dict, read_params
from ubench.errors import UbenchError

MODEL = "unext"


def _train(options: dict) -> dict:
    cfg = config_from_dict(tiny_params(train={**tiny_params()["train"], **options}))
    pipeline.run_train(cfg, MODEL, "synth")
    return torch.load(paths.checkpoint("synth", MODEL), weights_only=True)


def test_speed_options_are_off_by_default():
    train = project_params()["train"]
    assert (train["amp"], train["channels_last"], train["compile"]) == ("off", False, False)


@pytest.mark.parametrize("options", [{"amp": "bf16"}, {"amp": "fp16"}, {"channels_last": True}],
                         ids=["bf16", "fp16", "channels_last"])
def test_option_trains_and_is_recorded(prepared_tiny, options):
    reference = _train({})
    ckpt = _train(options)
    for key, value in options.items():
        assert ckpt["train"][key] == value
    assert ckpt["state_dict"].keys() == reference["state_dict"].keys()
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point())
    if "amp" in options:  # reduced precision moves the weights: why it is off by default
        assert any(not torch.equal(ckpt["state_dict"][k], t) for k, t in reference["state_dict"].items()
                   if t.is_floating_point())
    summary = pipeline.run_evaluate(config_from_dict(tiny_params()), MODEL, "synth")
    assert 0.0 <= summary["metrics"]["iou"]["mean"] <= 1.0


@pytest.mark.slow  # inductor compiles C++ for the CPU: about a minute
def test_compile_trains_to_the_same_keys(prepared_tiny):
    ckpt = _train({"compile": True})
    assert ckpt["train"]["compile"] is True
    assert not any(k.startswith("_orig_mod.") for k in ckpt["state_dict"])  # the model's own keys


def test_bare_yaml_off_reads_as_off(tmp_path):
    text = yaml.safe_dump(tiny_params()).replace("amp: 'off'", "amp: off")
    assert "amp: off" in text
    (tmp_path / "params.yaml").write_text(text)
    raw = read_params(tmp_path / "params.yaml")
    assert raw["train"]["amp"] is False  # what YAML 1.1 makes of it
    assert config_from_dict(raw).train.amp == "off"


def test_unknown_amp_is_named():
    with pytest.raises(UbenchError, match="train.amp") as exc:
        config_from_dict(tiny_params(train={**tiny_params()["train"], "amp": "fp8"}))
    assert "bf16" in exc.value.fix


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("options", [{}, {"amp": "bf16", "channels_last": True}], ids=["fp32", "bf16-nhwc"])
def test_training_on_cuda(prepared_tiny, options):
    ckpt = _train(options)
    assert ckpt["platform"]["device"] == "cuda" and ckpt["platform"]["cuda"] != "none"
    again = _train(options)  # deterministic kernels on the GPU too
    for key, tensor in ckpt["state_dict"].items():
        assert torch.equal(again["state_dict"][key], tensor), key


def test_config_amp_modes_are_the_runtime_dtypes():
    """config.AMP_MODES (validated without importing torch) names exactly runtime.AMP_DTYPES."""
    from ubench.config import AMP_MODES
    from ubench.runtime import AMP_DTYPES

    assert AMP_MODES == tuple(AMP_DTYPES)
