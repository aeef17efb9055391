# Two commands do everything: `make demo` runs the main job on the embedded model,
# `make test` runs the tests. Both set up what they need and skip what is done.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ASSAY := $(VENV)/bin/assay
INSTALLED := $(VENV)/.installed
MODEL := smollm2-135m-instruct
PYTEST_ARGS ?=

.PHONY: setup model docker demo test test-slow lint bench clean

setup: $(INSTALLED)

# Reinstall only when the dependencies change.
$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

model: setup
	$(ASSAY) models pull $(MODEL)

docker:
	bash scripts/ensure_docker.sh

demo: model
	$(ASSAY) run examples/best_of_n_ifeval.yaml

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: setup docker lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: setup model docker
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: model
	$(PY) benchmarks/hf_batching.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
