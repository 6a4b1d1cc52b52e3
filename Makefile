# Two commands set everything up on a fresh machine:
#   make run    create .venv (CPU torch pinned), then `dvc repro` the default grid
#   make test   create .venv if missing, then run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-slow setup data-pin browser clean-outputs

$(BIN)/.ubench-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the local CPU build, never the multi-GB CUDA one
	$(BIN)/python -m pip install --quiet $(TORCH_CPU)
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev]'
	touch $@

setup: $(BIN)/.ubench-installed

# Ray, the optional extra of `ubench grid run --executor ray`: the tests install it, so that the Ray
# tests run (about 80 MB); `make run` never needs it.
$(BIN)/.ubench-ray: $(BIN)/.ubench-installed
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev,ray]'
	touch $@

# data.dvc pins data/raw as shipped: an empty folder. A fresh clone has the pin but no cache entry
# for it, so `dvc status` would say "not in cache". Only while the pin is that empty folder's hash
# and data/raw is empty, `dvc commit` recreates exactly that entry (data.dvc is unchanged); a pin
# of real data is never touched (`dvc pull data.dvc` fetches it).
EMPTY_DIR_MD5 := d751713988987e9331980363e24189ce.dir

data-pin:
	@if grep -q '$(EMPTY_DIR_MD5)' data.dvc && [ -z "$$(ls -A data/raw 2>/dev/null)" ]; then \
		mkdir -p data/raw && $(BIN)/dvc commit --force --quiet data.dvc; fi

run: setup data-pin
	$(BIN)/dvc repro

# Debian's Chromium renders reports/index.html in tests/test_html_report.py. It is installed where
# this user may (root, with apt-get: about 1 minute); elsewhere that test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		echo "installing Debian's chromium for the report's browser test" && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: no chromium (not root, or no apt-get): the browser test will be skipped"

test: setup $(BIN)/.ubench-ray browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow: setup $(BIN)/.ubench-ray
	$(BIN)/python -m pytest -q -m slow
