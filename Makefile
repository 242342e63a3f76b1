# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch==2.13.0 first: it is the local CPU build; a bare `torch` would pull a multi-GB CUDA build.
# Peers used by the cross-check tests and benchmarks pull torchvision (and with it a CUDA
# torch) when installed normally: they go in with --no-deps plus their real runtime needs.
CROSSCHECK := curvlinops-for-pytorch==3.0.1 backpack-for-pytorch==1.7.1 linear_operator==0.6.1 \
              einops einconv unfoldNd opt-einsum
BENCH_PEERS := pyhessian==0.1 hessian-eigenthings==1.0.0a5 nngeometry==0.4

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	$(BIN)/pip install --quiet --no-deps $(CROSSCHECK)
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 'torch was replaced: ' + torch.__version__)"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/normscope reproduce all --quick --report results/report.html

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/pip install --quiet --no-deps $(BENCH_PEERS)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) results build *.egg-info src/*.egg-info
