# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both install the exact versions the test suite passed with (constraints.txt);
# `make lock` is the one command that updates them (see "Development" in README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := constraints.txt
LATEST := .venv-latest

.PHONY: demo test test-latest lock lint format bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch==2.13.0 first: it is the local CPU build; a bare `torch` would pull a multi-GB CUDA build.
# Peers used by the cross-check tests and benchmarks pull torchvision (and with it a CUDA
# torch) when installed normally: they go in with --no-deps plus their real runtime needs.
CROSSCHECK := curvlinops-for-pytorch==3.0.1 backpack-for-pytorch==1.7.1 linear_operator==0.6.1 \
              einops einconv unfoldNd opt-einsum
BENCH_PEERS := pyhessian==0.1 hessian-eigenthings==1.0.0a5 nngeometry==0.4

CHECK_TORCH := -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 'torch was replaced: ' + torch.__version__)"

$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install --quiet -c $(LOCK) torch==2.13.0
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev,ray]'
	$(BIN)/pip install --quiet -c $(LOCK) --no-deps $(CROSSCHECK)
	$(BIN)/python $(CHECK_TORCH)
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/normscope reproduce all --quick --report results/report.html

# Debian's Chromium and the ChromeDriver built from the same source (so their versions
# match), for the browser tests of the HTML pages. Installed when missing and apt-get can
# (as root); where it cannot, the browser tests are skipped and say why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver >/dev/null) || \
	  echo "chromium and chromium-driver could not be installed: browser tests will be skipped"

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The suite against the newest releases pyproject.toml allows, in a venv of its own
# (torch stays the local CPU build 2.13.0): drift is seen here before users see it.
test-latest: browser
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --upgrade pip
	echo "torch==2.13.0" > $(LATEST)/keep-torch.txt
	$(LATEST)/bin/pip install --quiet -c $(LATEST)/keep-torch.txt torch==2.13.0
	$(LATEST)/bin/pip install --quiet -c $(LATEST)/keep-torch.txt --upgrade \
	    --upgrade-strategy eager -e '.[dev,ray]'
	$(LATEST)/bin/pip install --quiet -c $(LATEST)/keep-torch.txt --upgrade --no-deps $(CROSSCHECK)
	$(LATEST)/bin/python $(CHECK_TORCH)
	$(LATEST)/bin/ruff check src tests benchmarks
	$(LATEST)/bin/python -m pytest

# Record the versions `make test-latest` just passed with as the ones every install uses.
lock: test-latest
	$(LATEST)/bin/pip freeze --exclude-editable | grep -v '^normscope' > $(LOCK)
	@echo "$(LOCK) updated; review the diff and commit it"

bench: $(STAMP)
	$(BIN)/pip install --quiet --no-deps $(BENCH_PEERS)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(LATEST) results build *.egg-info src/*.egg-info
