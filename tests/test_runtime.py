"""runtime.make_deterministic: the flags every stage relies on for byte-identical outputs; and
runtime.platform_fingerprint: where those bytes were computed, recorded beside them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import torch

from ubench.runtime import final_output, make_deterministic, parse_cpuinfo, platform_fingerprint


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


X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu vmx pni sse4_2 avx2 fma avx512f avx512_bf16 amx_tile hypervisor sse4_1

processor\t: 1
model name\t: Some Other Core
flags\t\t: fpu avx
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sve i8mm cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""


def test_cpuinfo_keeps_the_model_and_only_kernel_selecting_flags():
    assert parse_cpuinfo(X86) == ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
                                  "amx_tile avx2 avx512_bf16 avx512f fma sse4_1 sse4_2")
    assert parse_cpuinfo(ARM) == ("implementer 0x41 part 0xd40", "asimd i8mm sve")
    assert parse_cpuinfo("") == ("", "")


def test_platform_fingerprint_is_the_same_in_another_process():
    """Same machine, another process (other PID, later time): the same dict, so that the files
    carrying it stay byte-identical across reruns."""
    code = ("import json, torch; torch.set_num_threads(1); from ubench.runtime import platform_fingerprint; "
            "print(json.dumps(platform_fingerprint('cpu')))")
    other = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout)
    here = platform_fingerprint("cpu", threads=1)
    assert other == here
    assert list(here) == ["os", "arch", "cpu_model", "cpu_flags", "cpu_capability", "torch", "numpy",
                          "threads", "device", "gpu", "cuda"]
    assert here["threads"] == 1 and here["device"] == "cpu" and here["gpu"] == here["cuda"] == "none"
    assert here["torch"] == torch.__version__ and here["numpy"] == np.__version__
    assert here["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    host = socket.gethostname()
    assert len(host) < 4 or host not in json.dumps(here)
    assert platform_fingerprint("cpu", threads=3)["threads"] == 3


def test_platform_fingerprint_loads_from_a_checkpoint_with_weights_only():
    """It goes into every checkpoint, which evaluate loads with ``weights_only=True``: plain types
    only (``torch.__version__`` itself is a TorchVersion, which that loader refuses)."""
    import io

    buf = io.BytesIO()
    torch.save({"platform": platform_fingerprint("cpu")}, buf)
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)["platform"]
    assert loaded == platform_fingerprint("cpu")
    assert all(type(v) in (str, int) for v in loaded.values())
