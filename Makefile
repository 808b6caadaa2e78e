# Two commands do all set-up on a fresh machine (see README):
#   make demo   installs what is needed, then runs the embedded demo end to end with `dvc repro`
#   make test   installs what is needed (with dev tools), then runs the test suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# CPU build of torch when none is installed (on this project's CI machines pip takes it from local disk).
# On a GPU machine install your CUDA/ROCm torch first: `setup` keeps any torch that is already there.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup setup-dev demo demo-2lanes test test-all lint bench

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e .

setup-dev:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"

demo: setup
	@test -d .git || git init -q
	dvc repro

# The same run with the generators trained and sampled two at a time, one thread each (bench/bench_threads.py:
# two two-thread jobs on 2 cores stall each other). `dvc repro -s` runs one stage without its upstream, so two
# of them take only read locks on the shared faces; each generator is sampled as soon as it is trained (a DM's
# sampling overlaps the next training). Then the reconstructions (two threads), the CNN detectors two at a
# time again (they only read the caches), and a final `dvc repro` finds those cached and does the rest. Two
# lanes' progress bars would interleave, so each lane stage logs to its own file: `multirecon stage-times
# logs/demo-2lanes/*.log` reads the stage times back. Re-running resumes (training banks its state).
# The lane order: `demo.lane_order` in params, else DMs first (`multirecon lane-order --help`).
LANE_ORDER = $(PYTHON) -m pipeline.cli lane-order
LANE_LOGS = logs/demo-2lanes
# $(call lane,WHAT,COMMANDS): one xargs job for item {}, its output in $(LANE_LOGS)/{}.log
lane = sh -c 'echo "{}: $(1) (log: $(LANE_LOGS)/{}.log)"; { $(2); } >> $(LANE_LOGS)/{}.log 2>&1 \
	|| { echo "{}: FAILED, see $(LANE_LOGS)/{}.log"; exit 1; }; echo "{}: done"'
demo-2lanes: setup
	@test -d .git || git init -q
	@mkdir -p $(LANE_LOGS)
	dvc repro faces
	order=$$($(LANE_ORDER)) && echo "$$order" | OMP_NUM_THREADS=1 xargs -P 2 -I{} \
		$(call lane,training then sampling,dvc repro -s train_generator@{} && dvc repro -s sample@{})
	dvc repro recon_ddim@demo recon_gan@demo
	dvc stage list --name-only | grep '^train_detector_' | OMP_NUM_THREADS=1 xargs -P 2 -I{} \
		$(call lane,training,dvc repro -s {})
	dvc repro

test: setup-dev
	$(PYTHON) -m pytest $(PYTEST_ARGS)

lint: setup-dev
	ruff check . && ruff format --check .

bench: setup
	for b in bench/bench_*.py; do $(PYTHON) $$b || exit 1; done
