# Two commands do all set-up on a fresh machine (see README):
#   make demo   installs what is needed, then runs the embedded demo end to end with `dvc repro`
#   make test   installs what is needed (with dev tools), then runs the test suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# CPU build of torch when none is installed (on this project's CI machines pip takes it from local disk).
# On a GPU machine install your CUDA/ROCm torch first: `setup` keeps any torch that is already there.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup setup-dev demo test test-all lint bench

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e .

setup-dev:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"

demo: setup
	@test -d .git || git init -q
	dvc repro

test: setup-dev
	$(PYTHON) -m pytest $(PYTEST_ARGS)

lint: setup-dev
	ruff check . && ruff format --check .

bench: setup
	for b in bench/bench_*.py; do $(PYTHON) $$b || exit 1; done
