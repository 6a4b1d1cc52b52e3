#!/usr/bin/env bash
# One short, prepared run of everything that needs a GPU (issue 17's GPU targets), for a machine
# lent with an NVIDIA GPU: the `gpu` tests, then the speed benchmarks (batch 8, fp32 and bf16 at
# 256 px; ubench's loop vs the re-created U-Bench loop; metric share of inference). Writes the logs
# and .benchmarks/ratios.json to ${OUT:-gpu-check}. Assumes a venv with torch for CUDA (the GPU
# image, or `pip install torch` + `pip install -e .[gpu,dev]`).
#   bash scripts/gpu_check.sh            # about 10 minutes on an H100
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
py="${PYTHON:-python}"
"$py" - <<'PY' > "$out/device.txt" 2>&1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
PY
cat "$out/device.txt"
"$py" -m pytest -q -m gpu -p no:cacheprovider tests > "$out/gpu_tests.log" 2>&1
echo "gpu tests: rc $? ($(tail -1 "$out/gpu_tests.log"))"
"$py" -m pytest -q -s -p no:cacheprovider --benchmark-enable \
    benchmarks/test_bench_train_step.py benchmarks/test_bench_eval.py > "$out/benchmarks.log" 2>&1
echo "benchmarks: rc $?"
grep "bench=" "$out/benchmarks.log"
cp .benchmarks/ratios.json "$out/" 2>/dev/null || true
