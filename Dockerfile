# Placeholder GPU image (the delivery issue completes it: mamba-ssm, causal-conv1d, pinned versions).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel
WORKDIR /workspace/ubench
COPY . .
RUN pip install --no-cache-dir -e '.[dev]'
CMD ["dvc", "repro"]
