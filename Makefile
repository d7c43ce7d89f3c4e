# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv if needed and installs everything into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= pipelines,local-s3,gcs,dev
STAMP := $(VENV)/.installed-$(shell echo $(EXTRAS) | tr ',' '-')

.PHONY: setup demo test test-fast test-slow test-all bench gpu-check clean

setup: $(STAMP)

# torch first: the CPU wheel (`torch==2.13.0`) unless the venv already has a torch
# (GPU users install their own CUDA build first). A plain `torch` requirement would
# otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

demo: setup
	$(VENV)/bin/elmo demo

test: setup
	$(PY) -m pytest -m "not slow and not network" $(PYTEST_ARGS)

# No Ray, nothing slow: the model, formats, training loop, the commands without Ray; one pytest
# worker per core (pytest-xdist): about 3 minutes on 2 cores.
test-fast: setup
	$(PY) -m pytest -n auto -m "not slow and not network and not ray" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: no slow tests collected

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# GPU-marked tests + GPU throughput (original shape) vs the README projections; skips without CUDA.
gpu-check: setup
	PYTHON=$(PY) benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
