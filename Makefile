# Two commands set everything up on a fresh machine:
#   make run    create .venv (CPU torch pinned), then `dvc repro` the default grid
#   make test   create .venv if missing, then run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-slow setup clean-outputs

$(BIN)/.ubench-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the local CPU build, never the multi-GB CUDA one
	$(BIN)/python -m pip install --quiet $(TORCH_CPU)
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev]'
	touch $@

setup: $(BIN)/.ubench-installed

run: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow
