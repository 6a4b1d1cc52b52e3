"""Complexity (computed: exact and repeatable) and speed (measured: labelled with its device)."""

from __future__ import annotations

import pytest
import torch

from ubench.efficiency import complexity, speed


def test_complexity_is_exact_and_scales_with_area():
    small, big = complexity("unet", 64), complexity("unet", 128)
    assert small["params"] == big["params"] == 34_527_041
    assert big["gflops"] == pytest.approx(4 * small["gflops"], rel=1e-9)  # every op is per pixel
    assert complexity("unet", 64) == small  # computed, not measured: identical on a rerun
    assert "GMac" in small["flops_unit"] and small["input_size"] == 64


def test_speed_records_what_was_measured_on_what():
    before = torch.get_num_threads()
    s = speed("unet", input_size=64, warmup=1, repeats=2, threads=1)
    torch.set_num_threads(before)
    assert s["fps"] > 0 and s["latency_ms_median"] > 0
    assert s["measured"] is True and s["batch_size"] == 1 and s["threads"] == 1
    assert s["torch_version"] == torch.__version__ and s["device"] in ("cpu", "cuda")
