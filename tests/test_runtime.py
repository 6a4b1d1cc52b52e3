"""runtime.make_deterministic: the flags every stage relies on for byte-identical outputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from ubench.runtime import final_output, make_deterministic


def test_make_deterministic_sets_flags_seeds_and_threads():
    old = torch.get_num_threads()
    try:
        assert make_deterministic(7, threads=1) == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.get_num_threads() == 1
        a = (torch.rand(3), np.random.rand())
        make_deterministic(7, threads=1)
        b = (torch.rand(3), np.random.rand())
        assert torch.equal(a[0], b[0]) and a[1] == b[1]
    finally:
        torch.set_num_threads(old)


def test_a_fresh_process_gets_the_flag_without_importing_inductor():
    code = ("import sys, torch; from ubench.runtime import make_deterministic; make_deterministic(1, 1); "
            "print(torch.are_deterministic_algorithms_enabled(), 'torch._inductor.config' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


def test_final_output_of_deep_supervision_lists():
    x, y = torch.zeros(1), torch.ones(1)
    assert final_output([x, y]) is y and final_output((x,)) is x and final_output(x) is x
