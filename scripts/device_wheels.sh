#!/usr/bin/env bash
# The Python packages the GPU checks (scripts/gpu_check.sh) need that a lent GPU machine's image
# lacks, as wheels for its Python (3.12) in .whl/ (git-ignored; about 4.5 MB, well inside what a
# device call may carry). That machine has PyTorch, numpy, scipy, pandas, pytest and
# pytest-benchmark, and no network: MONAI, medpy, ptflops and dvclive (with the part of DVC it
# imports) travel with the call.
#
#   bash scripts/device_wheels.sh     # here, once (from the package index; medpy is built here)
#   then, on the device, with `.whl` carried:  bash scripts/gpu_check.sh
#
# The versions are this checkout's .venv's, so the device runs what the tests here ran. The list
# was found by installing these wheels alone beside torch in a bare Python 3.12 venv and running
# the `gpu` test files and the benchmarks there on the CPU (every import satisfied). Packages the
# device image already has (attrs, colorama, pathspec, psutil, requests, ...) are not carried.
set -euo pipefail
cd "$(dirname "$0")/.."
venv_py=${VENV_PYTHON:-.venv/bin/python}
out=.whl
dists=(monai ptflops dvclive dvc dvc-data dvc-objects dvc-render dvc-studio-client dvc-http scmrepo dulwich
       funcy ruamel.yaml flatten-dict voluptuous pygtrie sqltrie diskcache dpath flufl.lock atpublic
       zc.lockfile platformdirs configobj)
specs=()
for d in "${dists[@]}"; do
  specs+=("$d==$("$venv_py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$d")")
done
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
"$venv_py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out.tmp" "${specs[@]}"
# medpy is published as a source distribution only; its metric code is pure Python
"$venv_py" -m pip wheel --quiet --no-deps -w "$out.tmp" "medpy==$("$venv_py" -c "import importlib.metadata as m; print(m.version('medpy'))")"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$(ls "$out" | wc -l) wheels, $(du -sh "$out" | cut -f1), in $out/ (carry it: run(carry=[\".whl\"]))"
