# Two commands on a fresh machine: `make repro` and `make test`. Everything else is set up here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Stage commands call `python`: put the venv first so `dvc` runs every stage in it.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup lint repro test test-fast bench bench-gpu bench-scale lock clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	@touch $@

setup: $(STAMP)  ## create .venv and install the project with its pinned dependencies

repro: setup  ## run the whole DVC pipeline (download -> ... -> plot)
	$(BIN)/dvc repro

lint: setup  ## ruff over the code and tests (part of make test)
	$(BIN)/ruff check .

# Test modules spread over up to 4 pytest-xdist workers (2 on a 2-core machine), each module whole on
# one worker (its end-to-end fixtures build one repository), the slowest modules first (conftest.py).
XDIST  := -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

test: setup lint  ## lint, then the test suite, end-to-end DVC tests included
	$(BIN)/python -m pytest $(XDIST)

test-fast: setup  ## unit tests only (skips the slow end-to-end DVC tests)
	$(BIN)/python -m pytest $(XDIST) -m "not slow"

bench: setup  ## speed, memory and the experiment loop (cold, busy, revisit, five seeds); writes bench.json (about 15 minutes; BENCH_ARGS=--skip-study saves 6)
	$(BIN)/dvc repro split
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

bench-gpu: setup  ## NeuMF samples/s and full-ranking time on one GPU, ml-100k and MovieLens-20M-shaped (under 5 minutes); writes bench-gpu.json
	$(BIN)/dvc repro split
	$(BIN)/python -m benchmarks.devicebench $(BENCH_GPU_ARGS)

bench-scale: setup  ## time and memory of parse, split, GMF/MLP/NeuMF epochs, evaluation and the baselines at 0.1M-25M synthetic interactions, ranking and compare at MovieLens-25M shape, then every stage of the whole pipeline at 1M (about 95 minutes)
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

lock: $(BIN)/python  ## re-pin every installed package into requirements.lock
	{ head -n 2 requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | sed -E 's/\+cpu$$//'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean-venv:  ## remove .venv
	rm -rf $(VENV)
