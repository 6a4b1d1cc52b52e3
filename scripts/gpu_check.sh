#!/usr/bin/env bash
# One short, prepared run of everything that needs a GPU (issue 17's GPU targets), for a machine
# lent with an NVIDIA GPU: the `gpu` tests, then the speed benchmarks (batch 8, fp32 and bf16 at
# 256 px; ubench's loop vs the re-created U-Bench loop; metric share of inference). Writes the logs
# and .benchmarks/ratios.json to ${OUT:-gpu-check}. Needs a Python with torch for CUDA: the GPU
# image, a venv with `pip install torch` + `pip install -e .[gpu,dev]`, or a machine whose Python
# has torch and the test tools, with the rest carried as wheels in .whl/ (scripts/device_wheels.sh
# makes them; installed here into a temporary folder, never into that Python).
#   bash scripts/gpu_check.sh            # about 10 minutes on an H100
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
py="${PYTHON:-$(command -v python || command -v python3)}"
if [ -d .whl ]; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" - <<'PY' > "$out/device.txt" 2>&1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
PY
cat "$out/device.txt"
# only the files that hold `gpu` tests: collecting the whole suite would import what a GPU-only
# Python lacks (nibabel, xgboost, moto, ...)
mapfile -t gpu_files < <(grep -l "pytest.mark.gpu" tests/test_*.py)
"$py" -m pytest -q -m gpu -p no:cacheprovider "${gpu_files[@]}" > "$out/gpu_tests.log" 2>&1
echo "gpu tests: rc $? ($(tail -1 "$out/gpu_tests.log"))"
"$py" -m pytest -q -s -p no:cacheprovider --benchmark-enable \
    benchmarks/test_bench_train_step.py benchmarks/test_bench_eval.py > "$out/benchmarks.log" 2>&1
echo "benchmarks: rc $?"
grep "bench=" "$out/benchmarks.log"
cp .benchmarks/ratios.json "$out/" 2>/dev/null || true
