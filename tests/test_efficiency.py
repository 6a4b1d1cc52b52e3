"""Complexity (computed: exact and repeatable) and speed (measured: labelled with its device)."""

from __future__ import annotations

import statistics

import pytest
import torch

from ubench.efficiency import complexity, speed, time_until_stable


def test_complexity_is_exact_and_scales_with_area():
    small, big = complexity("unet", 64, seed=41, threads=0), complexity("unet", 128, seed=41, threads=0)
    assert small["params"] == big["params"] == 34_527_041
    assert big["gflops"] == pytest.approx(4 * small["gflops"], rel=1e-9)  # every op is per pixel
    assert complexity("unet", 64, seed=41, threads=0) == small  # computed, not measured: identical on a rerun
    assert "GMac" in small["flops_unit"] and small["input_size"] == 64


def test_speed_records_what_was_measured_on_what():
    before = torch.get_num_threads()
    s = speed("unet", input_size=64, warmup=1, window=2, max_seconds=0.5, tolerance=0.5, threads=1)
    torch.set_num_threads(before)
    assert s["fps"] > 0 and s["latency_ms_median"] > 0
    assert s["fps"] == pytest.approx(1000.0 / s["latency_ms_median"])
    assert s["latency_ms_q1"] <= s["latency_ms_median"] <= s["latency_ms_q3"] and s["spread"] >= 0
    assert s["repeats"] >= 4 and s["repeats"] % 2 == 0 and isinstance(s["stable"], bool)
    assert s["measured"] is True and s["batch_size"] == 1 and s["threads"] == 1
    assert s["torch_version"] == torch.__version__ and s["device"] in ("cpu", "cuda")


class _Clock:
    """A fake clock: each run() advances it by the next planned duration."""

    def __init__(self, durations):
        self.now, self.durations = 0.0, list(durations)

    def __call__(self):
        return self.now

    def run(self):
        self.now += self.durations.pop(0)


def test_timing_stops_when_the_median_settles():
    # two slow warm-up calls (not timed), a noisy first window (median 2.0), then steady: the median
    # moves by 50 % from window 1 to 2 and by 0 from window 2 to 3
    clock = _Clock([5.0, 5.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0] + [1.0] * 20)
    times, stable = time_until_stable(clock.run, warmup=2, window=2, max_seconds=1e9, tolerance=0.05, clock=clock)
    assert stable and len(times) == 6 and statistics.median(times) == 1.0


def test_timing_stops_at_the_cap_and_says_it_was_not_stable():
    # every window doubles: the median never settles, the cap ends it after two windows at least
    durations = [2.0 ** i for i in range(40)]
    clock = _Clock(durations)
    times, stable = time_until_stable(clock.run, warmup=0, window=1, max_seconds=10.0, tolerance=0.05, clock=clock)
    assert not stable and 2 <= len(times) < 40
    assert sum(times) >= 10.0 and sum(times[:-1]) < 10.0 + times[-1]
