# syntax=docker/dockerfile:1
# ubench GPU image: the same pipeline as the CPU install, plus mamba-ssm's CUDA selective scan (the
# fast path of the Mamba models; ubench/models/ops/selective_scan.py uses it when it imports) and
# causal-conv1d, both compiled here from source against the image's own CUDA torch.
#
#   docker build -t ubench:gpu .
#   docker run --gpus all -v "$PWD":/work/ubench ubench:gpu                     # dvc repro
#   docker run --gpus all -v "$PWD":/work/ubench ubench:gpu pytest -q -m gpu    # GPU tests
#
# Every version is pinned; tests/test_delivery.py checks the pins against pyproject.toml.
# - Base: PyTorch 2.10.0 (satisfies pyproject's torch>=2.4), CUDA 12.8 toolkit with nvcc (-devel),
#   cuDNN 9; Python >= 3.11 is checked below. torch 2.10 is the newest torch in the upstream build
#   matrix of both mamba-ssm 2.3.2 and causal-conv1d 1.6.1 (torch 2.6 to 2.10, CUDA 12.9 and 13.0).
# - mamba-ssm 2.3.2.post1 and causal-conv1d 1.6.1: the releases built upstream against torch 2.10.
# - ubench's dependencies: the versions the CPU install (make setup) runs the test suite with;
#   xgboost (the CUDA build) instead of xgboost-cpu, from pyproject's `gpu` extra.
FROM pytorch/pytorch:2.10.0-cuda12.8-cudnn9-devel

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Architectures: A100 (8.0), A10/RTX 30xx (8.6), L4/L40/RTX 40xx (8.9), H100/H200 (9.0).
# Both setup.py files also pass their own -gencode list (sm_75, sm_80, sm_87, sm_90, and sm_100,
# sm_120 with CUDA >= 12.8), so their kernels cover this list (sm_80 code runs on 8.6 and 8.9).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
# parallel nvcc jobs: each takes several GB of memory while compiling the scan kernels
ARG MAX_JOBS=4
ARG UBENCH_UID=1000

ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    MAX_JOBS=${MAX_JOBS} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/etc/pip/constraints.txt \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1

# pyproject.toml is read with tomllib below, and numpy 2.4 needs Python >= 3.11: stop here, clearly,
# should a future base image change its Python.
RUN python -c "import sys; assert sys.version_info >= (3, 11), sys.version"

# git: DVC needs it (dvc repro, dvc exp, dvc metrics diff). Not pinned to an exact Ubuntu revision
# (DL3008): the archive drops superseded revisions at each security update, so an exact pin would
# break the build within weeks; the base image tag fixes the Ubuntu release, and so the git series.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/*

# Keep the base image's CUDA torch: no later install may replace it with a PyPI build.
RUN mkdir -p /etc/pip \
 && echo "torch==2.10.0" > /etc/pip/constraints.txt

# Build tools for the two CUDA extensions (--no-build-isolation uses these, not fresh downloads).
RUN pip install --no-cache-dir setuptools==80.9.0 wheel==0.45.1 packaging==25.0 ninja==1.13.0

# causal-conv1d, compiled here (FORCE_BUILD: no prebuilt wheel download) against the image's torch.
RUN CAUSAL_CONV1D_FORCE_BUILD=TRUE pip install --no-cache-dir --no-build-isolation \
        --no-binary causal-conv1d causal-conv1d==1.6.1 \
 && python -c "import torch, causal_conv1d_cuda"

# mamba-ssm, compiled the same way. --no-deps: its other requirements (tilelang, quack-kernels,
# nvidia-cutlass-dsl, about 1 GB) serve only Mamba-3 kernels, whose imports mamba-ssm guards;
# ubench uses the Mamba-1 selective scan, which needs torch, triton (in the base image), einops
# and transformers (imported by mamba_ssm/__init__), installed pinned here.
RUN MAMBA_FORCE_BUILD=TRUE pip install --no-cache-dir --no-build-isolation --no-deps \
        --no-binary mamba-ssm mamba-ssm==2.3.2.post1 \
 && pip install --no-cache-dir einops==0.8.2 transformers==4.57.6 \
 && python -c "import torch, selective_scan_cuda; \
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn"

# The non-root user. --non-unique: the build still works on a base image that already has a user
# with this uid (Ubuntu 24.04's `ubuntu`). safe.directory: git and DVC accept a mounted checkout
# that another user owns.
RUN useradd --create-home --non-unique --uid "${UBENCH_UID}" --shell /bin/bash ubench \
 && git config --system --add safe.directory /work/ubench \
 && mkdir -p /work/ubench \
 && chown ubench:ubench /work/ubench
WORKDIR /work/ubench

# ubench's dependencies, before the source (this layer is rebuilt only when pyproject.toml changes):
# the `dependencies` and the `gpu` extra of pyproject.toml plus dvc[s3], at the pinned versions.
COPY --chown=ubench:ubench pyproject.toml ./
RUN printf '%s\n' \
        "numpy==2.4.6" \
        "scipy==1.17.1" \
        "pandas==3.1.1" \
        "monai==1.6.1" \
        "einops==0.8.2" \
        "medpy==0.5.2" \
        "ptflops==0.7.5" \
        "dvc==3.67.1" \
        "dvc-s3==3.3.0" \
        "dvclive==3.49.1" \
        "matplotlib==3.11.2" \
        "pillow==13.0.0" \
        "pyyaml==6.0.4" \
        "tqdm==4.70.1" \
        "nibabel==5.4.2" \
        "h5py==3.16.0" \
        "simpleitk==2.5.7" \
        "xgboost==3.2.0" \
        >> /etc/pip/constraints.txt \
 && python -c "import tomllib; \
        p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
        print('\n'.join(p['dependencies'] + p['optional-dependencies']['gpu']))" \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt "dvc[s3]==3.67.1" \
 && rm /tmp/requirements.txt

# The source, then ubench itself (editable: a checkout mounted on /work/ubench runs its own code).
COPY --chown=ubench:ubench . .
RUN pip install --no-cache-dir --no-build-isolation -e ".[gpu]" \
 && pip freeze --exclude-editable > /etc/pip/ubench-image-freeze.txt

# the ubench user, by number (Kubernetes runAsNonRoot can only check a numeric user)
USER ${UBENCH_UID}
CMD ["dvc", "repro"]
