"""Every registered model trains one epoch on the embedded synthetic data and evaluates (slow set).

The quick model tests (tests/test_models.py) run one forward/backward; this runs the real stage
functions, as `dvc repro` would for the model in `grid.models`: data prepared at a size the model
accepts (its smallest declared size, else the smallest multiple of its stride from 64), one epoch
of SGD with the loss over every deep-supervision output, the checkpoint, then evaluation of it.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_params
from ubench import paths, pipeline
from ubench.config import config_from_dict
from ubench.models import list_models, model_info

pytestmark = pytest.mark.slow


def train_size(name: str) -> int:
    """The smallest square input ``name`` accepts from 64 on."""
    info = model_info(name)
    if info.input_sizes:
        return min(s for s in info.input_sizes if s >= 64) if max(info.input_sizes) >= 64 else max(info.input_sizes)
    m = info.size_multiple
    return max(m, -(-64 // m) * m)


@pytest.mark.parametrize("name", list_models())
def test_trains_one_epoch_and_evaluates(name, workdir):
    size = train_size(name)
    params = tiny_params(
        grid={**tiny_params()["grid"], "models": ["unet", name] if name != "unet" else ["unet"]},
        synthetic={"n": 8, "size": size, "seed": 41},
        data={**tiny_params()["data"], "image_size": size},
        train={**tiny_params()["train"], "epochs": 1, "batch_size": 2},
    )
    cfg = config_from_dict(params)
    pipeline.run_prepare(cfg, "synth")
    best = pipeline.run_train(cfg, name, "synth")
    assert math.isfinite(best["val_iou"]) and 0.0 <= best["val_iou"] <= 1.0
    ckpt = torch.load(paths.checkpoint("synth", name), weights_only=True)
    assert ckpt["model"] == name and ckpt["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point())
    summary = pipeline.run_evaluate(cfg, name, "synth")
    assert summary["n_images"] > 0
    assert 0.0 <= summary["metrics"]["iou"]["mean"] <= 1.0
    assert summary["pretrained"]["requested"] is False
